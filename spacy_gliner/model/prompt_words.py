"""The part every GLiNER family shares: encoder -> contextual word vectors and label vectors.

Span-level and token-level models differ only in the head they put on top of
:meth:`WordsAndPrompts.encode` (``span_model.GLiNERModel``: span x label logits;
``token_model.TokenModel``: word x label start/end/inside logits).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import GLiNERConfig
from .encoder import TokenRepLayer
from .fusion import CrossFuser
from .lstm import BiLSTM
from .marker_scores import Workspace
from .words import gather_prompts, largest, pool_words


class WordsAndPrompts(nn.Module):
    """``token_rep_layer`` (text encoder, labels encoder for bi-encoders), optional ``rnn`` and
    ``cross_fuser``, with the reference's attribute names so state dicts map key for key.

    A subclass builds its head after ``super().__init__`` and then calls :meth:`add_fuser` (the
    order modules are created in decides the random initialisation of fresh heads). The module
    keeps no per-call state: concurrent forward passes in evaluation mode are independent.
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

    def add_fuser(self, text_model: nn.Module) -> None:
        """Create ``cross_fuser`` when ``config.post_fusion_schema`` asks for one."""
        cfg = self.config
        if cfg.fusion_schema:
            text_config: Any = text_model.config  # a transformers config
            heads = text_config.num_attention_heads
            self.cross_fuser = CrossFuser(
                cfg.hidden_size, heads, cfg.num_post_fusion_layers, cfg.dropout, cfg.fusion_schema
            )

    @property
    def uses_rnn(self) -> bool:
        # The reference bi-encoders build their LSTM but never call it.
        cfg = self.config
        return hasattr(self, "rnn") and (not cfg.is_bi_encoder or cfg.documented_architecture)

    @property
    def uses_fusion(self) -> bool:
        # The reference uni-encoders build their CrossFuser but never call it.
        cfg = self.config
        return hasattr(self, "cross_fuser") and (cfg.is_bi_encoder or cfg.documented_architecture)

    def encode_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Bi-encoder label vectors ``[N, D]`` (before any head); cacheable per label set."""
        return self.token_rep_layer.encode_labels(input_ids, attention_mask)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        labels_embeddings: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contextual word vectors [B, W, D] + mask [B, W], label vectors [B, C, D] + mask [B, C].
        ``hidden``: the text encoder's sub-token vectors [B, T, D] when the caller already has
        them (relation models read their relation prompts from the same vectors)."""
        cfg = self.config
        text_lengths = text_lengths.view(-1)
        num_words = largest(text_lengths)
        if hidden is None:
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

    def head(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """The family's logits from :meth:`encode`'s output (span models ``[B, W, K, C]``, token
        models ``[B, W, C, 3]``); every family defines it."""
        raise NotImplementedError(f"{type(self).__name__} defines no head")

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
        """``(logits, word_mask [B, W], label_mask [B, C])``: :meth:`head` on :meth:`encode`'s
        output. ``workspace``: buffers an inference call reuses across its batches (see
        ``marker_scores.Workspace``), for the heads that use them."""
        words, word_mask, prompts, prompts_mask = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, labels_embeddings, labels_mask
        )
        return self.head(words, word_mask, prompts, workspace), word_mask, prompts_mask
