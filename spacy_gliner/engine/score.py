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
from .token_spans import owned_span_rows, token_candidates
from .windows import Window

__all__ = [
    "Candidates",
    "Found",
    "candidates_function",
    "collect_results",
    "listed_candidates",
    "owned_candidates",
]


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


def listed_candidates(
    span_idx: torch.Tensor,
    span_mask: torch.Tensor,
    span_logits: torch.Tensor,
    batch: Sequence[Task],
    windows: Sequence[Sequence[Window]],
    tokens: Sequence[TextTokens],
    table: np.ndarray,
    thresholds: np.ndarray,
) -> Found:
    """(text, start, end, label, score) from listed spans with per-label logits (token-level
    models that represent spans: ``span_idx`` ``[B, S, 2]`` window words, ``span_mask``
    ``[B, S]``, ``span_logits`` ``[B, S, C]``), as the reference's ``TokenDecoder`` decodes them
    from span logits: a span's label counts when its probability is strictly above the label's
    threshold (compared as Python floats, float64). Spans reaching past the window's words (the
    reference lists spans over padding words, then fails mapping them to text) and spans the
    window does not own are dropped; a span listed twice (found for two labels) counts once."""
    probs = torch.sigmoid(span_logits.float()).cpu().numpy()  # [B, S, C]
    idx = span_idx.cpu().numpy()
    bounds = [windows[t.text][t.window] for t in batch]
    lengths = np.array([w.end - w.start for w in bounds], dtype=np.int64)
    real = span_mask.cpu().numpy() & (idx[..., 1] < lengths[:, None])
    groups = np.array([t.group for t in batch], dtype=np.int64)
    thr = thresholds[groups][:, None, : probs.shape[-1]]  # [B, 1, C] float64
    row, slot, label = np.nonzero((probs.astype(np.float64) > thr) & real[..., None])
    start, end = idx[row, slot, 0], idx[row, slot, 1]
    _, first = np.unique(np.stack([row, start, end, label]), axis=1, return_index=True)
    keep = np.zeros(len(row), dtype=bool)
    keep[first] = True
    keep &= owned_span_rows(batch, windows, tokens, row, start, end)
    row, slot, label, start, end = row[keep], slot[keep], label[keep], start[keep], end[keep]
    offset = np.array([w.start for w in bounds], dtype=np.int64)[row]
    texts = np.array([t.text for t in batch], dtype=np.int64)
    score = probs[row, slot, label]
    return texts[row], start + offset, end + offset, table[groups[row], label], score
