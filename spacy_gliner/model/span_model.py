"""The span-level GLiNER network: encoder -> word and label vectors -> span x label logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import GLiNERConfig
from .dropout import use_fast_dropout
from .encoder import TokenRepLayer
from .fusion import CrossFuser
from .layers import projection_mlp
from .lstm import BiLSTM
from .marker_scores import Workspace, factored_marker_logits
from .span_rep import MarkerV0, SpanRepLayer
from .words import enumerate_spans, gather_prompts, pool_words


class GLiNERModel(nn.Module):
    """Span-level GLiNER (uni-encoder, or bi-encoder when ``config.labels_encoder`` is set).

    Attribute names follow the reference so state dicts map key for key. The module keeps no
    per-call state: concurrent forward passes in evaluation mode are independent.
    """

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.token_rep_layer = TokenRepLayer(text_model, dim, config.fuse_layers, labels_model)
        if config.num_rnn_layers > 0:
            self.rnn = BiLSTM(dim, config.num_rnn_layers)
        self.span_rep_layer = SpanRepLayer(config.span_mode, dim, config.max_width, config.dropout)
        self.prompt_rep_layer = projection_mlp(dim, config.dropout)
        if config.fusion_schema:
            text_config: Any = text_model.config  # a transformers config
            heads = text_config.num_attention_heads
            self.cross_fuser = CrossFuser(
                dim, heads, config.num_post_fusion_layers, config.dropout, config.fusion_schema
            )
        use_fast_dropout(self)  # CPU training: dropout masks from random bits (see dropout.py)

    @property
    def uses_rnn(self) -> bool:
        # The reference bi-encoder builds its LSTM but never calls it.
        cfg = self.config
        return hasattr(self, "rnn") and (not cfg.is_bi_encoder or cfg.documented_architecture)

    @property
    def uses_fusion(self) -> bool:
        # The reference uni-encoder builds its CrossFuser but never calls it.
        cfg = self.config
        return hasattr(self, "cross_fuser") and (cfg.is_bi_encoder or cfg.documented_architecture)

    def encode_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Bi-encoder label vectors ``[N, D]`` (before the prompt MLP); cacheable per label set."""
        return self.token_rep_layer.encode_labels(input_ids, attention_mask)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        labels_embeddings: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contextual word vectors [B, W, D] + mask [B, W], label vectors [B, C, D] + mask [B, C]."""
        cfg = self.config
        text_lengths = text_lengths.view(-1)
        num_words = int(text_lengths.max()) if text_lengths.numel() else 0
        hidden = self.token_rep_layer.encode_text(input_ids, attention_mask)  # [B, T, D]
        if cfg.is_bi_encoder:
            if labels_embeddings is None or labels_mask is None:
                raise ValueError("A bi-encoder GLiNER needs labels_embeddings and labels_mask.")
            prompts, prompts_mask = labels_embeddings, labels_mask.bool()
        else:
            shift = 0 if cfg.embed_ent_token else 1
            prompts, prompts_mask = gather_prompts(
                hidden, input_ids, attention_mask, cfg.class_token_index, shift
            )
        words = pool_words(hidden, words_mask, attention_mask, num_words, cfg.subtoken_pooling)
        positions = torch.arange(num_words, device=words.device)[None, :]
        word_mask = positions < text_lengths[:, None]  # [B, W]
        if self.uses_rnn:
            words = self.rnn(words, text_lengths)
        if self.uses_fusion:
            prompts, words = self.cross_fuser(prompts, words, prompts_mask, word_mask)
            prompts = prompts * prompts_mask.unsqueeze(-1).to(prompts.dtype)
        return words, word_mask, prompts, prompts_mask

    def score_spans(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """Logits [B, W, K, C] for every (start word, width, label).

        markerV0 takes the factored path (``marker_scores.py``), except when training under
        autocast, which takes the plain module path like every other span mode.
        """
        labels = self.prompt_rep_layer(prompts)  # [B, C, D]
        span_layer = self.span_rep_layer.span_rep_layer
        autocast_training = torch.is_grad_enabled() and torch.is_autocast_enabled(words.device.type)
        if isinstance(span_layer, MarkerV0) and not autocast_training:
            return factored_marker_logits(
                span_layer, words, labels, self.config.max_width, workspace
            )
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

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        labels_embeddings: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits [B, W, K, C], word_mask [B, W], label_mask [B, C])``. ``workspace``: buffers
        an inference call reuses across its batches (see ``marker_scores.Workspace``)."""
        words, word_mask, prompts, prompts_mask = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, labels_embeddings, labels_mask
        )
        return self.score_spans(words, word_mask, prompts, workspace), word_mask, prompts_mask
