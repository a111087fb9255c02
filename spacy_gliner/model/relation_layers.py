"""Relation-extraction building blocks: the adjacency layers of gliner's ``RelationsRepLayer``
and the tensor functions that pick entities and entity pairs (pure, no per-call state).

Adjacency layers map entity vectors ``X [B, E, D]`` and a mask ``[B, E]`` to edge probabilities
``[B, E, E]`` in ``[0, 1]``, zero wherever an endpoint is masked. Attribute names follow the
reference (``relations_rep_layer.relation_rep_layer.*``) so state dicts map key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# relations_layer values with an adjacency layer; "none" scores every ordered entity pair.
ADJACENCY_MODES = ("dot", "mlp", "attention", "attn", "bilinear", "gcn", "gat")
ALL_PAIRS = "none"
ATTENTION_HEADS = 8  # the reference's default nhead


def _pair_mask(adj: Tensor, mask: Tensor) -> Tensor:
    m = mask.float()
    return adj * m.unsqueeze(2) * m.unsqueeze(1)


def _dot_adjacency(x: Tensor, mask: Tensor) -> Tensor:
    return _pair_mask(torch.sigmoid(torch.bmm(x, x.transpose(1, 2))), mask)


class _Dot(nn.Module):
    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return _dot_adjacency(x, mask)


class _MLP(nn.Module):
    """``mlp``: ``sigmoid(mlp([x_i; x_j]))``. The first linear layer is applied per half
    (``W[:, :D] x_i + W[:, D:] x_j + b``), the same map without the ``[B, E, E, 2D]``
    concatenation of every pair."""

    READS_WEIGHTS = ("mlp.0",)  # int8 keeps these float32 (model/int8.py)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        dim = x.size(-1)
        head = F.linear(x, first.weight[:, :dim], first.bias)  # [B, E, D]
        tail = F.linear(x, first.weight[:, dim:])  # [B, E, D]
        hidden = torch.relu(head.unsqueeze(2) + tail.unsqueeze(1))  # [B, E, E, D]
        return _pair_mask(torch.sigmoid(self.mlp[2](hidden).squeeze(-1)), mask)


class _Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, ATTENTION_HEADS, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        _, weights = self.attn(x, x, x, key_padding_mask=~mask.bool(), need_weights=True)
        if weights.dim() == 4:
            weights = weights.mean(dim=1)
        return _pair_mask(weights, mask)


class _Bilinear(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        z = self.proj(x)
        return _pair_mask(torch.sigmoid(torch.bmm(z, z.transpose(1, 2))), mask)


class _GCNLayer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        adj = _pair_mask(adj, mask) + torch.diag_embed(mask.float())
        inv_sqrt = adj.sum(dim=-1).clamp(min=1e-6).pow(-0.5)
        norm = torch.diag_embed(inv_sqrt) @ adj @ torch.diag_embed(inv_sqrt)
        return F.relu(self.linear(torch.bmm(norm, x)))


class _GCN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gcn = _GCNLayer(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.gcn(x, _dot_adjacency(x, mask), mask)
        return _pair_mask(
            torch.sigmoid(torch.bmm(self.proj(h), self.proj(h).transpose(1, 2))), mask
        )


class _GAT(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, ATTENTION_HEADS, batch_first=True)
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.attn(x, x, x, key_padding_mask=~mask.bool(), need_weights=True)
        z = self.linear(h)
        return _pair_mask(torch.sigmoid(torch.bmm(z, z.transpose(1, 2))), mask)


_LAYERS = {
    "dot": lambda dim: _Dot(),
    "mlp": _MLP,
    "attention": _Attention,
    "attn": _Attention,
    "bilinear": _Bilinear,
    "gcn": _GCN,
    "gat": _GAT,
}


class RelationsRepLayer(nn.Module):
    """gliner's ``RelationsRepLayer`` for ``relation_mode`` in :data:`ADJACENCY_MODES` (hidden
    and latent sizes equal ``in_dim``, 8 attention heads: the reference's defaults)."""

    def __init__(self, in_dim: int, relation_mode: str) -> None:
        super().__init__()
        mode = relation_mode.lower()
        if mode not in _LAYERS:
            raise ValueError(
                f"Unknown relations_layer {relation_mode!r}; use one of {', '.join(ADJACENCY_MODES)} "
                f"or {ALL_PAIRS!r}."
            )
        self.relation_rep_layer = _LAYERS[mode](in_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Edge probabilities ``[B, E, E]`` of entity vectors ``x [B, E, D]``, mask ``[B, E]``."""
        return self.relation_rep_layer(x, mask)


def pack_rows(values: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The rows ``values[b, s]`` with ``keep[b, s]``, moved to the front in order: ``[B, E, ...]``
    (zeros after each row's count) and the mask ``[B, E]``; ``E`` is the largest count."""
    counts = keep.sum(dim=1)
    size = int(counts.max()) if counts.numel() else 0
    out = values.new_zeros(values.size(0), size, *values.shape[2:])
    mask = torch.zeros(values.size(0), size, dtype=torch.bool, device=values.device)
    b, s = torch.nonzero(keep, as_tuple=True)
    slot = keep.long().cumsum(dim=1)[b, s] - 1
    out[b, slot] = values[b, s]
    mask[b, slot] = True
    return out, mask


def entity_pairs(selected: Tensor) -> tuple[Tensor, Tensor]:
    """Ordered pairs ``(head, tail)`` with ``selected[b, head, tail]`` (``[B, E, E]`` bool; the
    diagonal is never a pair), row-major as the reference's ``build_entity_pairs``: ``pair_idx
    [B, N, 2]`` (-1 on padding) and ``pair_mask [B, N]``; N is at least 1."""
    E = selected.size(1)
    off_diagonal = ~torch.eye(E, dtype=torch.bool, device=selected.device)
    selected = selected & off_diagonal
    counts = selected.flatten(1).sum(dim=1)
    size = max(int(counts.max()) if counts.numel() else 0, 1)
    pair_idx = torch.full((selected.size(0), size, 2), -1, dtype=torch.long, device=selected.device)
    pair_mask = torch.zeros(selected.size(0), size, dtype=torch.bool, device=selected.device)
    b, head, tail = torch.nonzero(selected, as_tuple=True)
    slot = selected.flatten(1).long().cumsum(dim=1)[b, head * E + tail] - 1
    pair_idx[b, slot] = torch.stack([head, tail], dim=-1)
    pair_mask[b, slot] = True
    return pair_idx, pair_mask
