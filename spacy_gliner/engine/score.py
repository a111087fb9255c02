"""From a batch's probabilities to owned candidates, and from candidates to results."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

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
    [
        torch.Tensor,
        Sequence[Task],
        Sequence[Sequence[Window]],
        Sequence[TextTokens],
        np.ndarray,
        np.ndarray,
    ],
    Found,
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
    _, num_words, width, num_classes = probs.shape
    bounds = [windows[t.text][t.window] for t in batch]
    lengths = np.array([w.end - w.start for w in bounds], dtype=np.int64)
    # Cells that are real spans of the window ...
    ends = np.arange(num_words)[:, None] + np.arange(width)[None, :]
    cell_ok = ends[None] < lengths[:, None, None]
    # ... and that this window owns (texts with several windows only).
    for row, t in enumerate(batch):
        wins = windows[t.text]
        if len(wins) > 1:
            num_text_words = int(tokens[t.text].offsets.size - 1)
            cell_ok[row, : lengths[row]] &= owned_cells(wins, t.window, num_text_words, max_width)
    groups = np.array([t.group for t in batch], dtype=np.int64)
    thr = thresholds[groups][:, :num_classes]
    limit = torch.from_numpy(np.ascontiguousarray(thr)).to(device=device, dtype=probs.dtype)
    keep = probs > limit[:, None, None, :]
    keep &= torch.from_numpy(cell_ok).to(device)[..., None]
    idx = keep.nonzero().cpu().numpy()  # [N, 4] (row, start, width, class), row-major
    score = probs[keep].cpu().numpy()
    r, s, k, c = idx.T if len(idx) else (_EMPTY_I,) * 4
    win_start = np.array([w.start for w in bounds], dtype=np.int64)
    texts = np.array([t.text for t in batch], dtype=np.int64)
    start = s + win_start[r]
    return texts[r], start, start + k, table[groups[r], c], score


def candidates_function(output: str, max_width: int) -> Candidates:
    """The function that turns a batch's probabilities into owned candidates, for a model
    family's output kind (``"span"``: ``[B, W, K, C]``; ``"token"``: ``[B, W, C, 3]``)."""
    if output == "span":
        return functools.partial(owned_candidates, max_width=max_width)
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
