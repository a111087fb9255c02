"""Token-level GLiNER with span representations (``represent_spans``): gliner's
``UniEncoderTokenModel`` / ``BiEncoderTokenModel`` when its configuration sets
``represent_spans``, and the entity head of its token-level label decoder.

The token model's start / end / inside logits (``forward`` returns them, as ``TokenModel`` does)
only list the candidate spans, under the call's thresholds (``token_span_lists
.extract_token_spans``: any width, every word of the padded row, a span found for two labels
listed twice); each listed span's vector (``TokenMarker`` over its first and last word) times
the label vectors gives its per-label logits, which decide the entities (the reference's
``TokenDecoder`` decodes them as span models' cells). ``span_encoder_config`` (a context encoder
before the span vectors) is not built: the family check refuses it.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor, nn

from .config import GLiNERConfig
from .span_rep import TokenSpanRepLayer
from .token_model import TokenModel
from .token_span_lists import extract_token_spans

Threshold = Union[float, Tensor]  # one, per label [C], or per row and label [B, C]


class SpanLists(NamedTuple):
    """Token logits, and the spans they list with their label logits."""

    logits: Tensor  # [B, W, C, 3] start, end, inside
    span_idx: Tensor  # [B, S, 2] first and last word (in the row), (0, 0) on padding
    span_mask: Tensor  # [B, S]
    span_logits: Tensor  # [B, S, C]
    span_vectors: Tensor  # [B, S, D]


class TokenSpanModel(TokenModel):
    """Token-level GLiNER (uni- or bi-encoder) that scores the spans its token logits list;
    attribute names follow the reference (``span_rep_layer.span_rep_layer``)."""

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        self.span_rep_layer = TokenSpanRepLayer(config.hidden_size, config.dropout)

    def list_spans(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        words_mask: Tensor,
        text_lengths: Tensor,
        labels_embeddings: Tensor | None = None,
        labels_mask: Tensor | None = None,
        *,
        threshold: Threshold,
    ) -> SpanLists:
        """The spans listed under ``threshold`` (compared with the start / end / inside
        probabilities in their dtype) and their label logits."""
        words, _, prompts, _ = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, labels_embeddings, labels_mask
        )
        logits = self.scorer(words, prompts)  # [B, W, C, 3]
        span_idx, span_mask = extract_token_spans(torch.sigmoid(logits), _limit(threshold, logits))
        spans = self.span_rep_layer(words, span_idx)  # [B, S, D]
        span_logits = torch.einsum("bsd,bcd->bsc", spans, prompts)
        return SpanLists(logits, span_idx, span_mask, span_logits, spans)


def _limit(threshold: Threshold, logits: Tensor) -> Tensor | float:
    """``threshold`` as ``extract_token_spans`` takes it: a number, or ``[B, C]`` values."""
    if not isinstance(threshold, Tensor):
        return float(threshold)
    batch, classes = logits.size(0), logits.size(2)
    limit = threshold.to(logits.device)
    limit = limit[..., :classes] if limit.dim() else limit
    return limit.expand(batch, classes) if limit.dim() < 2 else limit
