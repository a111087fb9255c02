"""From a batch's torch probabilities to owned candidates (the torch runtime's candidate step).

The cell selection (window ownership, thresholds) is ``collect.CellSelection``, shared with the
numpy twin ``collect.owned_candidates_numpy``; only the comparison and the gather of kept cells
run in torch here, on the probabilities' device. ``collect_results`` is re-exported from
``collect.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from ..io.tokenizers import TextTokens
from .batches import Task
from .collect import Candidates, CellSelection, Found, collect_results
from .token_spans import token_candidates
from .windows import Window

__all__ = ["Candidates", "Found", "candidates_function", "collect_results", "owned_candidates"]


def owned_candidates(
    probs: torch.Tensor,
    batch: Sequence[Task],
    windows: Sequence[Sequence[Window]],
    tokens: Sequence[TextTokens],
    table: np.ndarray,
    thresholds: np.ndarray,
    max_width: int,
) -> Found:
    """(text, start, end, label, score) of the cells of ``probs`` ``[B, W, K, C]`` that are real
    spans of their window, owned by it, and strictly above their label's threshold; row-major."""
    device = probs.device
    sel = CellSelection(batch, windows, tokens, thresholds, tuple(probs.shape), max_width)
    limit = torch.from_numpy(sel.limits).to(device=device, dtype=probs.dtype)
    keep = probs > limit[:, None, None, :]
    keep &= torch.from_numpy(sel.cell_ok).to(device)[..., None]
    idx = keep.nonzero().cpu().numpy()  # [N, 4] (row, start, width, class), row-major
    score = probs[keep].cpu().numpy()
    return sel.found(idx, score, table)


def candidates_function(output: str, max_width: int) -> Candidates:
    """The function that turns a batch's probabilities into owned candidates, for a model
    family's output kind (``"span"``: ``[B, W, K, C]``; ``"token"``: ``[B, W, C, 3]``)."""
    if output == "span":
        return functools.partial(owned_candidates, max_width=max_width)
    if output == "token":
        return token_candidates
    raise ValueError(f"No candidate extraction for model output kind {output!r}.")
