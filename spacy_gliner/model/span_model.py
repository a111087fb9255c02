"""The span-level GLiNER network: encoder -> word and label vectors -> span x label logits."""

from __future__ import annotations

import torch
from torch import nn

from .config import GLiNERConfig
from .dropout import use_fast_dropout
from .layers import projection_mlp
from .marker_scores import Workspace, factored_marker_logits, traced_marker_logits
from .prompt_words import WordsAndPrompts
from .span_rep import MarkerV0, SpanRepLayer
from .words import enumerate_spans


class GLiNERModel(WordsAndPrompts):
    """Span-level GLiNER (uni-encoder, or bi-encoder when ``config.labels_encoder`` is set).

    Attribute names follow the reference so state dicts map key for key. The module keeps no
    per-call state: concurrent forward passes in evaluation mode are independent.
    """

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        dim = config.hidden_size
        self.span_rep_layer = SpanRepLayer(config.span_mode, dim, config.max_width, config.dropout)
        self.prompt_rep_layer = projection_mlp(dim, config.dropout)
        self.add_fuser(text_model)
        use_fast_dropout(self)  # CPU training: dropout masks from random bits (see dropout.py)

    def score_spans(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """Logits [B, W, K, C] for every (start word, width, label).

        markerV0 takes the factored path (``marker_scores.py``; its whole-tensor form when traced
        for an ONNX export), except when training under autocast, which takes the plain module
        path like every other span mode.
        """
        labels = self.prompt_rep_layer(prompts)  # [B, C, D]
        span_layer = self.span_rep_layer.span_rep_layer
        autocast_training = torch.is_grad_enabled() and torch.is_autocast_enabled(words.device.type)
        if isinstance(span_layer, MarkerV0) and not autocast_training:
            width = self.config.max_width
            if torch.jit.is_tracing():
                return traced_marker_logits(span_layer, words, labels, width)
            return factored_marker_logits(span_layer, words, labels, width, workspace)
        return self.plain_span_logits(words, word_mask, labels)

    def plain_span_logits(
        self, words: torch.Tensor, word_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The reference computation: span vectors [B, W, K, D], then a product with the
        projected label vectors ``labels`` [B, C, D] -> [B, W, K, C]."""
        lengths = word_mask.sum(-1)
        span_idx = enumerate_spans(lengths, words.size(1), self.config.max_width)
        spans = self.span_rep_layer(words, span_idx)  # [B, W, K, D]
        return torch.einsum("bwkd,bcd->bwkc", spans, labels)

    def head(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """The family's head on :meth:`encode`'s output: logits [B, W, K, C] (``forward``'s)."""
        return self.score_spans(words, word_mask, prompts, workspace)

    def entity_vectors(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        row: int,
        spans: torch.Tensor,
        columns: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors the scorer multiplies for ``N`` spans of batch row ``row``: span vectors
        ``[N, D]`` (``span_rep_layer`` of ``spans`` ``[N, 2]``, first and last word in the row)
        and label vectors ``[N, D]`` (``prompt_rep_layer`` of prompt ``columns`` ``[N]``); a
        span's logit for that label is their dot product. These are the reference's
        ``span_embeddings`` and ``prompts_embedding`` (``return_vectors``); the row's span vectors
        are computed over the batch's padded width, as its logits are."""
        lengths = word_mask[row : row + 1].sum(-1)
        span_idx = enumerate_spans(lengths, words.size(1), self.config.max_width)
        grid = self.span_rep_layer(words[row : row + 1], span_idx)[0]  # [W, K, D]
        vectors = grid[spans[:, 0], spans[:, 1] - spans[:, 0]]
        return vectors, self.prompt_rep_layer(prompts[row])[columns]
