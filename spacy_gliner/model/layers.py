"""Small building blocks shared by several heads."""

from __future__ import annotations

from typing import Optional

from torch import nn


def projection_mlp(in_dim: int, dropout: float, out_dim: Optional[int] = None) -> nn.Sequential:
    """GLiNER's ``create_projection_layer``: Linear(in, 4*out) -> ReLU -> Dropout -> Linear(4*out, out).

    State-dict indices are ``.0`` and ``.3``, as in published checkpoints.
    """
    out_dim = in_dim if out_dim is None else out_dim
    return nn.Sequential(
        nn.Linear(in_dim, out_dim * 4),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(out_dim * 4, out_dim),
    )
