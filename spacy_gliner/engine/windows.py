"""Long documents: windows of words and which window owns each span.

A document is cut into windows of words that fit the encoder's sub-token budget *with* the label
prompt (and at most ``max_len`` words), overlapping by at least ``max_width`` words so every span
of up to ``max_width`` words lies entirely inside some window. Each (start, width) cell is *owned*
by exactly one window: the one where the span is farthest from a cut window edge (document edges
do not count as cuts; ties go to the earlier window). Only the owner's score is used, so a span
gets one deterministic score and is decoded once over the whole document. Token-level models
form spans of any width inside a window; the same rule (``owned_spans``) picks the window whose
span is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np

_FAR = 1 << 30


class Window(NamedTuple):
    start: int  # first word (document index)
    end: int  # one past the last word


def plan_windows(
    token_counts: np.ndarray,
    token_budget: int,
    max_words: int,
    overlap: int,
    sentence_starts: Optional[Sequence[int]] = None,
) -> list[Window]:
    """Cut ``len(token_counts)`` words into windows of at most ``token_budget`` sub-tokens and
    ``max_words`` words, consecutive windows sharing at least ``overlap`` words.

    Window ends and the next window's start prefer sentence boundaries when ``sentence_starts`` is
    given (a window ends at the last sentence start in its second half; the next one starts at the
    last sentence start that keeps the overlap), without ever giving up the ``overlap`` guarantee.
    A single word longer than the budget still gets a window of its own (the encoder input is then
    truncated, see ``PromptTokenizer.assemble``).
    """
    n = len(token_counts)
    if n == 0:
        return []
    if n <= max_words:
        total = int(np.sum(token_counts))
        if total <= token_budget:
            return [Window(0, n)]
    cum = np.concatenate([[0], np.cumsum(token_counts)])
    sents = np.unique(
        np.asarray(sentence_starts if sentence_starts is not None else (), dtype=np.int64)
    )
    windows: list[Window] = []
    start = 0
    while True:
        fit = int(np.searchsorted(cum, cum[start] + token_budget, side="right")) - 1
        end = max(start + 1, min(start + max_words, fit, n))
        if end >= n:
            windows.append(Window(start, n))
            return windows
        half = start + (end - start) // 2
        end = _last_in(sents, half + 1, end, default=end)
        windows.append(Window(start, end))
        nxt = end - overlap
        nxt = _last_in(sents, max(start + 1, end - (end - start) // 2), nxt, default=nxt)
        start = max(start + 1, nxt)


def _last_in(sorted_values: np.ndarray, low: int, high: int, default: int) -> int:
    """The largest value in [low, high], or ``default``."""
    if sorted_values.size == 0 or low > high:
        return default
    i = int(np.searchsorted(sorted_values, high, side="right")) - 1
    return int(sorted_values[i]) if i >= 0 and sorted_values[i] >= low else default


def owned_cells(
    windows: Sequence[Window], index: int, num_words: int, max_width: int
) -> np.ndarray:
    """Bool [len(window), K]: the cells (start, width) whose score this window provides.

    A cell is owned by the window that contains the whole span and where the span is farthest
    from a cut edge (a window edge that is not a document edge); ties go to the earlier window.
    """
    own = windows[index]
    priority = _priority(own, num_words, max_width, own)
    keep = priority >= 0
    if len(windows) == 1:
        return keep
    starts = np.fromiter((w.start for w in windows), dtype=np.int64, count=len(windows))
    ends = np.fromiter((w.end for w in windows), dtype=np.int64, count=len(windows))
    for j in np.flatnonzero((ends > own.start) & (starts < own.end)).tolist():
        if j == index:
            continue
        theirs = _priority(windows[j], num_words, max_width, own)
        keep &= (priority > theirs) if j < index else (priority >= theirs)
    return keep


def owned_spans(
    windows: Sequence[Window], index: int, num_words: int, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Bool per span ``(starts[i], ends[i])`` (document words, inclusive ends, any width) inside
    window ``index``: whether that window owns it, by the rule of :func:`owned_cells`."""
    own = windows[index]
    priority = _span_priority(own, num_words, starts, ends)
    keep = priority >= 0
    for j, other in enumerate(windows):
        if j == index or other.end <= own.start or other.start >= own.end:
            continue
        theirs = _span_priority(other, num_words, starts, ends)
        keep &= (priority > theirs) if j < index else (priority >= theirs)
    return keep


def _priority(window: Window, num_words: int, max_width: int, grid: Window) -> np.ndarray:
    """Distance to the nearest cut edge of ``window`` for spans on ``grid``'s cells; -1 if not inside."""
    starts = np.arange(grid.start, grid.end)[:, None]
    ends = starts + np.arange(max_width)[None, :]
    return _span_priority(window, num_words, starts, ends)


def _span_priority(
    window: Window, num_words: int, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Distance to the nearest cut edge of ``window`` for spans (starts, ends inclusive; arrays
    that broadcast); -1 for spans not inside it."""
    left = starts - window.start if window.start > 0 else np.full_like(starts, _FAR)
    right = window.end - 1 - ends if window.end < num_words else np.full_like(ends, _FAR)
    inside = (starts >= window.start) & (ends < window.end)
    return np.where(inside, np.minimum(left, right), -1)


def unscored_spans(windows: Sequence[Window], num_words: int, max_width: int) -> int:
    """How many spans of up to ``max_width`` words lie inside no window (0 unless windows are
    shorter than ``max_width`` words, e.g. under a tiny sub-token budget)."""
    if num_words == 0:
        return 0
    reach = np.zeros(
        num_words, dtype=np.int64
    )  # furthest window end among windows starting at or before s
    for w in windows:
        reach[w.start] = max(reach[w.start], w.end)
    reach = np.maximum.accumulate(reach)
    s = np.arange(num_words)
    want = np.minimum(max_width, num_words - s)
    have = np.clip(reach - s, 0, None)
    return int(np.clip(want - have, 0, None).sum())
