"""Token-level label-decoder GLiNER: gliner's ``UniEncoderTokenDecoderModel``.

The reference's token-level decoder always represents spans (its configuration fixes
``represent_spans``): its entities are those of ``TokenSpanModel`` (spans listed from the token
logits under the thresholds, decided by their own label logits). A listed span whose best label
probability is above a fixed 0.5 (the reference's cut-off, whatever the threshold) gets a
generated name, written greedily by the causal LM ``decoder`` from its projected vector and
(``full_decoder_context``) the decoder tokens whose 1-based word id lies in ``[first, last]`` of
its 0-based words, as the reference compares them (so its prefix reads the word before it, and
a span from the first word also reads the prompt, special and padding tokens); the reference's
padding slots read the last listed span of their row. ``prompt_rep_layer`` is in the
reference's checkpoints and unused, here as there.

Decoder modes: ``"span"`` generates; ``None`` generates nothing (the reference discards its
generations then); ``"prompt"`` is refused by the family check.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .config import GLiNERConfig
from .label_decoder import LabelDecoding, decoder_prefixes
from .layers import projection_mlp
from .span_decoder_model import SPAN_MODE
from .token_span_model import Threshold, TokenSpanModel

GENERATION_CUTOFF = 0.5  # the reference's fixed probability for generating a span's name


class TokenDecoderOutput(NamedTuple):
    """Token logits, the listed spans with their label logits, and the generated token ids of
    the spans selected for generation (row-major, in list order)."""

    logits: Tensor  # [B, W, C, 3] start, end, inside
    span_idx: Tensor  # [B, S, 2] first and last word (in the row), (0, 0) on padding
    span_mask: Tensor  # [B, S]
    span_logits: Tensor  # [B, S, C]
    rows: Tensor  # [M] batch row of each generated span
    starts: Tensor  # [M] first word
    widths: Tensor  # [M] last word - first word
    token_ids: Tensor  # [M, n] generated ids, ``pad`` after a row's ``eos``


class TokenDecoderModel(TokenSpanModel, LabelDecoding):
    """Token-level GLiNER with a label decoder; attribute names follow the reference."""

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        self.prompt_rep_layer = projection_mlp(config.hidden_size, config.dropout)
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
    ) -> TokenDecoderOutput:
        """Token logits, the spans listed under ``threshold`` (one, or one per label) with their
        label logits, and generated ids for the listed spans whose best label probability is
        above 0.5. ``decoder_input_ids`` / ``decoder_words_mask`` ``[B, L]``: as for
        ``SpanDecoderModel.generate``. Nothing is generated when ``decoder_mode`` is not
        ``"span"``."""
        lists = self.list_spans(
            input_ids, attention_mask, words_mask, text_lengths, threshold=threshold
        )
        span_idx = lists.span_idx
        best = torch.sigmoid(lists.span_logits).max(-1).values
        keep = (best > GENERATION_CUTOFF) & lists.span_mask & (self.decoder_mode == SPAN_MODE)
        rows, slot = torch.nonzero(keep, as_tuple=True)
        first, last = span_idx[rows, slot, 0], span_idx[rows, slot, 1]
        embeds, token_words = self.decoder_context(decoder_input_ids, decoder_words_mask)
        inputs = decoder_prefixes(
            self.to_decoder(lists.span_vectors)[rows, slot],
            rows,
            (first, last),
            keep,
            (span_idx[:, -1, 0], span_idx[:, -1, 1]),
            embeds,
            token_words,
        )
        ids = self.decoder.greedy(inputs, eos_token_id, pad_token_id, max_new_tokens)
        return TokenDecoderOutput(*lists[:4], rows, first, last - first, ids)
