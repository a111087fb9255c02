"""From a batch's probabilities to owned candidates (numpy), and from candidates to results.

Runtime-independent (no torch): the torch runtime's candidate step (``score.py``) shares
:func:`cell_selection` with :func:`owned_candidates_numpy`, which runtimes that produce numpy
arrays (ONNX Runtime) use.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..io.tokenizers import TextTokens
from .batches import Task
from .results import WordsResult
from .token_spans import token_candidates
from .windows import Window, owned_cells, unscored_spans

logger = logging.getLogger("spacy_gliner")

Found = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float32)
# (probs, batch, windows, tokens, label table, thresholds) -> owned candidates above threshold
Candidates = Callable[
    [Any, Sequence[Task], Sequence[Sequence[Window]], Sequence[TextTokens], np.ndarray, np.ndarray],
    Found,
]


class CellSelection:
    """Which cells of a span batch ``[B, W, K, C]`` may become candidates: ``cell_ok`` ``[B, W,
    K]`` (real spans of the row's window that it owns), ``limits`` ``[B, C]`` (each slot's
    threshold, +inf on padding), and what maps a kept cell back to a document span."""

    def __init__(
        self,
        batch: Sequence[Task],
        windows: Sequence[Sequence[Window]],
        tokens: Sequence[TextTokens],
        thresholds: np.ndarray,
        shape: tuple[int, ...],
        max_width: int,
    ) -> None:
        _, num_words, width, num_classes = shape
        bounds = [windows[t.text][t.window] for t in batch]
        lengths = np.array([w.end - w.start for w in bounds], dtype=np.int64)
        ends = np.arange(num_words)[:, None] + np.arange(width)[None, :]
        cell_ok = ends[None] < lengths[:, None, None]  # real spans of the window ...
        for row, t in enumerate(batch):  # ... that it owns (texts with several windows only)
            wins = windows[t.text]
            if len(wins) > 1:
                text_words = int(tokens[t.text].offsets.size - 1)
                cell_ok[row, : lengths[row]] &= owned_cells(wins, t.window, text_words, max_width)
        self.cell_ok = cell_ok
        self.groups = np.array([t.group for t in batch], dtype=np.int64)
        self.limits = np.ascontiguousarray(thresholds[self.groups][:, :num_classes])
        self.win_start = np.array([w.start for w in bounds], dtype=np.int64)
        self.texts = np.array([t.text for t in batch], dtype=np.int64)

    def found(self, idx: np.ndarray, score: np.ndarray, table: np.ndarray) -> Found:
        """Candidates of the kept cells ``idx`` ``[N, 4]`` (row, start, width, class; row-major)."""
        r, s, k, c = idx.T if len(idx) else (_EMPTY_I,) * 4
        start = s + self.win_start[r]
        return self.texts[r], start, start + k, table[self.groups[r], c], score


def owned_candidates_numpy(
    probs: np.ndarray,
    batch: Sequence[Task],
    windows: Sequence[Sequence[Window]],
    tokens: Sequence[TextTokens],
    table: np.ndarray,
    thresholds: np.ndarray,
    max_width: int,
) -> Found:
    """(text, start, end, label, score) of the cells of ``probs`` ``[B, W, K, C]`` (numpy) that
    are real spans of their window, owned by it, and strictly above their label's threshold
    (compared in the probabilities' dtype); row-major. The numpy twin of
    ``score.owned_candidates``."""
    sel = CellSelection(batch, windows, tokens, thresholds, probs.shape, max_width)
    keep = probs > sel.limits.astype(probs.dtype)[:, None, None, :]
    keep &= sel.cell_ok[..., None]
    idx = np.argwhere(keep)
    return sel.found(idx, probs[keep], table)


def numpy_candidates_function(output: str, max_width: int) -> Candidates:
    """Candidate extraction on numpy probabilities for a model family's output kind."""
    if output == "span":
        return functools.partial(owned_candidates_numpy, max_width=max_width)
    if output == "token":
        return token_candidates
    raise ValueError(f"No candidate extraction for model output kind {output!r}.")


def collect_results(
    windows: Sequence[Sequence[Window]],
    num_words: Sequence[int],
    found: Sequence[Found],
    truncated: np.ndarray,
    num_groups: int,
    max_width: int,
    output: str = "span",
) -> list[WordsResult]:
    """One result per text: its candidates in the reference decoder's enumeration order for the
    ``output`` kind (ties in score keep it): (start, end, label) for span models, (start, label,
    end) for token models. Found tuples with two more columns (span and label vectors, ``[N, D]``:
    ``vectors.py``) give results with ``span_vectors`` / ``label_vectors``."""
    if found:
        columns = [np.concatenate(parts) for parts in zip(*found)]
    else:
        columns = [_EMPTY_I] * 4 + [_EMPTY_F]
    text, start, end, label = columns[:4]
    keys = (end, label, start, text) if output == "token" else (label, end, start, text)
    order = np.lexsort(keys)
    text, start, end, label, score, *vectors = (column[order] for column in columns)
    bounds = np.searchsorted(text, np.arange(len(windows) + 1))
    results = []
    for t, wins in enumerate(windows):
        a, b = bounds[t], bounds[t + 1]
        missing = unscored_spans(wins, num_words[t], max_width) if len(wins) > 1 else 0
        if missing or truncated[t]:
            logger.warning(
                "GLiNER text %d: %d span(s) fit in no window and %d word(s) fell past the "
                "encoder's sub-token limit (a word longer than the window, or a tiny token budget).",
                t,
                missing,
                int(truncated[t]),
            )
        arrays = (start[a:b].copy(), end[a:b].copy(), label[a:b].copy(), score[a:b].copy())
        pair = (vectors[0][a:b], vectors[1][a:b]) if vectors else None
        results.append(
            WordsResult(
                num_windows=len(wins),
                num_label_groups=num_groups if wins else 0,
                arrays=arrays,
                unscored_spans=missing,
                truncated_words=int(truncated[t]),
                vectors=pair,
            )
        )
    return results
