"""Fusion modules: label/word ``CrossFuser`` (post-fusion) and encoder ``LayersFuser`` (fuse_layers).

Parameter names match published checkpoints (``cross_fuser.layers.{i}.{j}.*`` and
``token_rep_layer.bert_layer.layers_fuser.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FUSION_TOKENS


class MultiheadAttention(nn.Module):
    """Multi-head SDPA with input projections only (no output projection)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.query_layer = nn.Linear(hidden_size, hidden_size)
        self.key_layer = nn.Linear(hidden_size, hidden_size)
        self.value_layer = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: Tensor) -> Tensor:
        """[B, L, D] -> [B, H, L, D/H]."""
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor) -> Tensor:
        """query [B, Q, D], key/value [B, K, D], mask [B, Q, K] (True = attend) -> [B, Q, D]."""
        out = F.scaled_dot_product_attention(
            self._heads(self.query_layer(query)),
            self._heads(self.key_layer(key)),
            self._heads(self.value_layer(value)),
            attn_mask=mask.unsqueeze(1),  # [B, 1, Q, K]
            dropout_p=self.dropout if self.training else 0.0,
        )  # [B, H, Q, D/H]
        B, _, Q, _ = out.shape
        return out.transpose(1, 2).reshape(B, Q, -1)  # [B, Q, D]


class SelfAttentionBlock(nn.Module):
    """``x = pre_norm(x); post_norm(x + Dropout(MHA(q_proj(x), k_proj(x), v_proj(x))))``."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(d_model)
        self.post_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.pre_norm(x)  # [B, L, D]
        attn = self.self_attn(self.q_proj(x), self.k_proj(x), self.v_proj(x), mask)  # [B, L, D]
        return self.post_norm(x + self.dropout(attn))


class CrossAttentionBlock(nn.Module):
    """``q = pre_norm(query); post_norm(q + Dropout(MHA(q, key, v_proj(key))))`` (key is raw)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.cross_attn = MultiheadAttention(d_model, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(d_model)
        self.post_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.v_proj = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, key: Tensor, mask: Tensor) -> Tensor:
        query = self.pre_norm(query)  # [B, Q, D]
        attn = self.cross_attn(query, key, self.v_proj(key), mask)  # [B, Q, D]
        return self.post_norm(query + self.dropout(attn))


class CrossFuser(nn.Module):
    """Label/word fusion following ``schema`` (e.g. ``["l2l", "l2t"]``), repeated ``num_layers`` times.

    ``l2l``/``t2t``: self-attention over labels/words; ``l2t``: labels attend to words;
    ``t2l``: words attend to labels. Block ``layers[i][j]`` handles ``schema[j]`` in repeat ``i``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_layers: int,
        dropout: float,
        schema: Union[str, Sequence[str]],
    ) -> None:
        super().__init__()
        self.schema = schema.split("-") if isinstance(schema, str) else list(schema)
        bad = [t for t in self.schema if t not in FUSION_TOKENS]
        if bad:
            raise ValueError(
                f"Unknown fusion schema token(s) {bad}; valid tokens: {', '.join(FUSION_TOKENS)}"
            )

        def block(token: str) -> nn.Module:
            cls = SelfAttentionBlock if token in ("l2l", "t2t") else CrossAttentionBlock
            return cls(d_model, num_heads, dropout)

        self.layers = nn.ModuleList(
            nn.ModuleList(block(t) for t in self.schema) for _ in range(num_layers)
        )

    def forward(
        self, labels: Tensor, words: Tensor, labels_mask: Tensor, words_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """labels [B, C, D], words [B, W, D], masks [B, C] / [B, W] (nonzero = valid)."""
        lm, wm = labels_mask.bool(), words_mask.bool()
        masks = {
            "l2l": lm[:, :, None] & lm[:, None, :],  # [B, C, C]
            "t2t": wm[:, :, None] & wm[:, None, :],  # [B, W, W]
            "l2t": lm[:, :, None] & wm[:, None, :],  # [B, C, W]
            "t2l": wm[:, :, None] & lm[:, None, :],  # [B, W, C]
        }
        for layer in self.layers:
            for token, block in zip(self.schema, cast(nn.ModuleList, layer)):
                mask = masks[token]
                if token == "l2l":
                    labels = block(labels, mask)
                elif token == "t2t":
                    words = block(words, mask)
                elif token == "l2t":
                    labels = block(labels, words, mask)
                else:  # t2l
                    words = block(words, labels, mask)
        return labels, words


class LayersFuser(nn.Module):
    """Squeeze-and-excitation mix of the encoder's layer outputs (embedding output skipped)."""

    def __init__(self, num_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(hidden_size, 1)
        self.W1 = nn.Linear(num_layers, num_layers // 2)
        self.W2 = nn.Linear(num_layers // 2, num_layers)
        self.output_projection = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: Sequence[Tensor]) -> Tensor:
        """hidden_states: N+1 tensors [B, T, H] (index 0 = embeddings, skipped) -> [B, T, H]."""
        U = torch.stack(tuple(hidden_states[1:]), dim=1)  # [B, N, T, H]
        z = self.squeeze(U).squeeze(-1).mean(dim=2)  # [B, N], mean over all T incl. padding
        s = torch.sigmoid(self.W2(F.relu(self.W1(z))))  # [B, N]
        return self.output_projection((U * s[:, :, None, None]).sum(dim=1))  # [B, T, H]
