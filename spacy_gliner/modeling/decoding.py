"""From span probabilities to spans: strict ``> threshold`` candidates, then greedy selection."""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import numpy as np


class Candidate(NamedTuple):
    start: int  # first word
    end: int  # last word (inclusive)
    label: int  # class index
    score: float


def candidates(probs: np.ndarray, num_words: int, thresholds: np.ndarray, offset: int = 0) -> List[Candidate]:
    """Cells of ``probs`` [W, K, C] above their class threshold, in (start, width, class) order.

    ``offset`` is added to word indices (for windows of a longer document).
    """
    width = probs.shape[1]
    keep = probs > thresholds[None, None, :]
    starts = np.arange(probs.shape[0])[:, None]
    keep &= ((starts + np.arange(width)[None, :]) < num_words)[:, :, None]
    s, k, c = np.nonzero(keep)
    scores = probs[s, k, c]
    return [
        Candidate(int(a) + offset, int(a + b) + offset, int(l), float(p))
        for a, b, l, p in zip(s.tolist(), k.tolist(), c.tolist(), scores.tolist())
    ]


def greedy_select(cands: Sequence[Candidate], flat: bool, multi_label: bool) -> List[Candidate]:
    """The reference's greedy decoding: highest score first (stable), skip conflicts, sort by start.

    Flat: any overlap conflicts. Nested: only crossing spans conflict. Identical boundaries
    conflict unless ``multi_label``.
    """
    order = sorted(range(len(cands)), key=lambda i: -cands[i].score)
    accepted: List[Candidate] = []
    covering: dict = {}  # word -> indices into ``accepted`` of spans covering it
    for i in order:
        cand = cands[i]
        if not _conflicts(cand, accepted, covering, flat, multi_label):
            for w in range(cand.start, cand.end + 1):
                covering.setdefault(w, []).append(len(accepted))
            accepted.append(cand)
    accepted.sort(key=lambda c: c.start)
    return accepted


def _conflicts(cand: Candidate, accepted: List[Candidate], covering: dict, flat: bool, multi_label: bool) -> bool:
    seen = set()
    for w in range(cand.start, cand.end + 1):
        for j in covering.get(w, ()):
            if j in seen:
                continue
            seen.add(j)
            other = accepted[j]
            if other.start == cand.start and other.end == cand.end:
                if not multi_label:
                    return True
                continue
            if flat:
                return True
            nested = (other.start <= cand.start and cand.end <= other.end) or (
                cand.start <= other.start and other.end <= cand.end
            )
            if not nested:
                return True
    return False


def decode(
    probs: np.ndarray, num_words: int, thresholds: np.ndarray, flat: bool, multi_label: bool
) -> List[Tuple[int, int, int, float]]:
    """Decode one text's probabilities [W, K, C] into (start, end, class, score) spans."""
    return [tuple(c) for c in greedy_select(candidates(probs, num_words, thresholds), flat, multi_label)]
