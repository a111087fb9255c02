"""Spans from a token-level model's per-word start / end / inside probabilities.

The reference's ``TokenDecoder`` (gliner 0.2.29), per text and label ``c`` with threshold ``t``:
word ``s`` may start a span when ``p_start[s, c] > t`` and word ``e`` may end one when
``p_end[e, c] > t`` (both compared in float32, as torch compares a float32 tensor with a Python
float); ``(s, e)`` with ``s <= e`` is a span when every word ``s..e`` has ``p_inside >= t``
(compared in float64, as the reference compares Python floats). Its score is the minimum of
``p_start[s]``, ``p_end[e]`` and every ``p_inside[s..e]``. Spans have any width (``max_width``
does not apply). The candidates then go through the same greedy decoding as span models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..io.tokenizers import TextTokens
from ..model.span_pairs import span_pairs
from .batches import Task
from .windows import Window, owned_spans

Found = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
START, END, INSIDE = 0, 1, 2
SPAN_LISTS = "token_spans"  # output kind of token-level families that represent spans


def token_candidates(
    probs: Any,
    batch: Sequence[Task],
    windows: Sequence[Sequence[Window]],
    tokens: Sequence[TextTokens],
    table: np.ndarray,
    thresholds: np.ndarray,
) -> Found:
    """(text, start, end, label, score) of the spans ``probs`` ``[B, W, C, 3]`` (start, end, inside
    probabilities of each batch row's window) forms under each label's threshold, in document
    word indices (``end`` inclusive), keeping only the spans the row's window owns.

    Window ownership (texts cut into several windows): a span is formed inside one window, from
    that window's probabilities only, and is kept from the window that holds the whole span
    farthest from a cut window edge, ties to the earlier window (``windows.owned_spans``: the
    rule span models use for their cells, for spans of any width). A span longer than every
    window that reaches it, or crossing every window edge, is not found.
    """
    # A torch tensor (any device or float dtype) or a numpy array (ONNX Runtime).
    if isinstance(probs, np.ndarray):
        p = probs.astype(np.float32, copy=False)
    else:
        p = probs.float().cpu().numpy()  # [B, W, C, 3]
    _, num_words, num_classes, _ = p.shape
    bounds = [windows[t.text][t.window] for t in batch]
    lengths = np.array([w.end - w.start for w in bounds], dtype=np.int64)
    groups = np.array([t.group for t in batch], dtype=np.int64)
    thr = thresholds[groups][:, :num_classes]  # [B, C] float64, +inf on padding slots
    real = (np.arange(num_words)[None, :] < lengths[:, None])[:, :, None]  # [B, W, 1]
    by_label = p.transpose(0, 2, 1, 3)  # [B, C, W, 3]
    thr32 = thr.astype(np.float32)[:, :, None]
    real_t = real.transpose(0, 2, 1)  # [B, 1, W]
    is_start = (by_label[..., START] > thr32) & real_t
    is_end = (by_label[..., END] > thr32) & real_t
    is_inside = (by_label[..., INSIDE] >= thr[:, :, None]) & real_t  # float64 comparison
    row, label, start, end = span_pairs(is_start, is_end, is_inside)
    inside = by_label[..., INSIDE].reshape(-1, num_words)  # [B*C, W]
    score = np.minimum(
        _range_min(inside, row * num_classes + label, start, end),
        np.minimum(by_label[row, label, start, START], by_label[row, label, end, END]),
    )
    keep = owned_span_rows(batch, windows, tokens, row, start, end)
    row, label, start, end, score = row[keep], label[keep], start[keep], end[keep], score[keep]
    offset = np.array([w.start for w in bounds], dtype=np.int64)[row]
    texts = np.array([t.text for t in batch], dtype=np.int64)
    return texts[row], start + offset, end + offset, table[groups[row], label], score


def _range_min(values: np.ndarray, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min(values[r, lo..hi])`` (inclusive) per query, through a sparse table of minima over
    power-of-two windows (exact: minima only, no arithmetic)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=values.dtype)
    width = values.shape[-1]
    levels = [values]
    while (2 ** len(levels)) <= width:
        half = 2 ** (len(levels) - 1)
        prev = levels[-1]
        pad = np.full((prev.shape[0], half), np.inf, dtype=values.dtype)
        levels.append(np.minimum(prev, np.concatenate([prev[:, half:], pad], axis=1)))
    table = np.stack(levels)  # [L, rows, W]
    k = np.floor(np.log2(hi - lo + 1)).astype(np.int64)
    return np.minimum(table[k, rows, lo], table[k, rows, hi - (1 << k) + 1])


def owned_span_rows(
    batch: Sequence[Task],
    windows: Sequence[Sequence[Window]],
    tokens: Sequence[TextTokens],
    row: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """Whether each span (window word indices) is owned by its row's window."""
    keep = np.ones(len(row), dtype=bool)
    for r, task in enumerate(batch):
        wins = windows[task.text]
        if len(wins) < 2:
            continue
        mine = np.flatnonzero(row == r)
        win = wins[task.window]
        num_text_words = int(tokens[task.text].offsets.size - 1)
        keep[mine] = owned_spans(
            wins, task.window, num_text_words, start[mine] + win.start, end[mine] + win.start
        )
    return keep
