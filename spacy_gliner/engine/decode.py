"""Greedy span decoding: the reference's plain algorithm and the array version inference runs.

``greedy_select`` is the reference (a direct transcription of gliner's greedy search);
``decode_arrays`` is the fast path, pinned equal to it by a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import numpy as np


class Candidate(NamedTuple):
    start: int  # first word
    end: int  # last word (inclusive)
    label: int  # class index
    score: float


def greedy_select(cands: Sequence[Candidate], flat: bool, multi_label: bool) -> list[Candidate]:
    """The reference's greedy decoding: highest score first (stable), skip conflicts, sort by start.

    Flat: any overlap conflicts. Nested: only crossing spans conflict. Identical boundaries
    conflict unless ``multi_label``.
    """
    order = sorted(range(len(cands)), key=lambda i: -cands[i].score)
    accepted: list[Candidate] = []
    covering: dict = {}  # word -> indices into ``accepted`` of spans covering it
    for i in order:
        cand = cands[i]
        if not _conflicts(cand, accepted, covering, flat, multi_label):
            for w in range(cand.start, cand.end + 1):
                covering.setdefault(w, []).append(len(accepted))
            accepted.append(cand)
    accepted.sort(key=lambda c: c.start)
    return accepted


def _conflicts(
    cand: Candidate, accepted: list[Candidate], covering: dict, flat: bool, multi_label: bool
) -> bool:
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


Decoded = tuple[int, int, int, float]  # (first word, last word inclusive, label index, score)


def decode_arrays(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    flat_ner: bool,
    multi_label: bool,
) -> list[Decoded]:
    """The reference's greedy decoding over candidates in enumeration order (start, end, label).

    Same result as :func:`greedy_select`; the flat modes run over a word-coverage bitmap (only the
    best label of each cell can win without ``multi_label``).
    """
    if len(scores) == 0:
        return []
    order = np.argsort(-scores, kind="stable")  # ties keep the enumeration order
    if not flat_ner:
        cands = [
            Candidate(s, e, lab, p)
            for s, e, lab, p in zip(
                starts.tolist(), ends.tolist(), labels.tolist(), scores.tolist()
            )
        ]
        return [cast(Decoded, tuple(c)) for c in greedy_select(cands, False, multi_label)]
    if not multi_label:
        # Identical boundaries conflict: only a cell's first candidate in score order can win.
        cell = starts[order] * (int(ends.max()) + 1) + ends[order]
        _, first = np.unique(cell, return_index=True)
        order = order[np.sort(first)]
    accepted = _accept_flat(order, starts, ends, multi_label)
    accepted.sort(key=lambda i: int(starts[i]))  # stable: acceptance order within a start
    return [(int(starts[i]), int(ends[i]), int(labels[i]), float(scores[i])) for i in accepted]


def _accept_flat(
    order: np.ndarray, starts: np.ndarray, ends: np.ndarray, multi_label: bool
) -> list[int]:
    covered = bytearray(int(ends.max()) + 2)
    accepted: list[int] = []
    cells = set()
    for i, s, e in zip(order.tolist(), starts[order].tolist(), ends[order].tolist()):
        if multi_label and (s, e) in cells:
            accepted.append(i)  # same boundaries as an accepted span: overlaps nothing else
            continue
        if covered.find(1, s, e + 1) != -1:
            continue
        covered[s : e + 1] = b"\x01" * (e + 1 - s)
        cells.add((s, e))
        accepted.append(i)
    return accepted
