"""Span-level label-decoder GLiNER: gliner's ``UniEncoderSpanDecoderModel``.

The span head is the span-level uni-encoder's (``forward`` returns the same logits, so entity
prediction runs through the shared engine unchanged); ``generate`` adds a generated type name for
every span with some label above its threshold, written greedily by a causal language model
(``decoder``, see ``label_decoder.py``) that reads the span's vector, projected by
``_enc2dec_proj`` when the decoder's width differs, and (``full_decoder_context``) the decoder
tokens of the span's words.

Decoder modes: ``"span"`` generates per span; ``None`` generates nothing (the reference discards
its generations then); ``"prompt"`` (one name per label prompt) is refused by the family check,
since the reference's own inference fails on it.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor, nn

from .config import GLiNERConfig
from .label_decoder import LabelDecoding, span_decoder_inputs
from .span_model import GLiNERModel
from .words import enumerate_spans

Threshold = Union[float, Tensor]  # a number, or one per label [C]
SPAN_MODE = "span"


class DecoderOutput(NamedTuple):
    """Span logits and the generated token ids of the selected spans (row-major)."""

    logits: Tensor  # [B, W, K, C]
    rows: Tensor  # [M] batch row of each selected span
    starts: Tensor  # [M] first word (in the row)
    widths: Tensor  # [M] last word - first word
    token_ids: Tensor  # [M, n] generated ids, ``pad`` after a row's ``eos``


class SpanDecoderModel(GLiNERModel, LabelDecoding):
    """Span-level GLiNER with a label decoder; attribute names follow the reference."""

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        self.attach_decoder(config)

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        words_mask: Tensor,
        text_lengths: Tensor,
        decoder_input_ids: Tensor | None = None,
        decoder_words_mask: Tensor | None = None,
        *,
        threshold: Threshold,
        eos_token_id: int,
        pad_token_id: int,
        max_new_tokens: int,
    ) -> DecoderOutput:
        """Logits, and generated ids for the real spans with some label's probability strictly
        above its ``threshold``. ``decoder_input_ids`` / ``decoder_words_mask`` ``[B, L]``: the
        decoder tokenization of each row (prompt words, then text words) and 1-based text word
        ids (0 elsewhere), as the reference's processor makes them; needed with
        ``full_decoder_context``. Nothing is generated when ``decoder_mode`` is not ``"span"``."""
        words, word_mask, prompts, _ = self.encode(
            input_ids, attention_mask, words_mask, text_lengths
        )
        labels = self.prompt_rep_layer(prompts)
        k = self.config.max_width
        lengths = word_mask.sum(-1)
        span_idx = enumerate_spans(lengths, words.size(1), k)
        spans = self.span_rep_layer(words, span_idx)  # [B, W, K, D]
        logits = torch.einsum("bwkd,bcd->bwkc", spans, labels)
        batch = logits.size(0)
        keep = (torch.sigmoid(logits) > threshold_limit(threshold, logits)).any(-1).view(batch, -1)
        keep &= _real_spans(lengths, words.size(1), k) & (self.decoder_mode == SPAN_MODE)
        vectors = self.to_decoder(spans.view(batch, -1, spans.size(-1)))
        embeds, token_words = self.decoder_context(decoder_input_ids, decoder_words_mask)
        inputs, rows, flat = span_decoder_inputs(vectors, keep, k, embeds, token_words)
        ids = self.decoder.greedy(inputs, eos_token_id, pad_token_id, max_new_tokens)
        return DecoderOutput(logits, rows, flat // k, flat % k, ids)


def threshold_limit(threshold: Threshold, logits: Tensor) -> Tensor | float:
    """``threshold`` to compare with probabilities of ``logits`` ``[..., C]`` (a tensor: its
    first ``C`` values, on the logits' device)."""
    if isinstance(threshold, Tensor):
        return threshold.to(logits.device)[: logits.size(-1)]
    return float(threshold)


def _real_spans(lengths: Tensor, num_words: int, max_width: int) -> Tensor:
    """``[B, W*K]``: spans that end inside their text (start-major, as ``enumerate_spans``)."""
    start = torch.arange(num_words, device=lengths.device).repeat_interleave(max_width)
    end = start + torch.arange(max_width, device=lengths.device).repeat(num_words)
    return end[None, :] < lengths[:, None]
