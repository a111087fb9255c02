"""The pairing step of token-level decoding (numpy only: the ONNX Runtime path imports it).

Spans are formed from per-word start / end / inside decisions as the reference does; shared by
the engine's token-level decoding (``engine/token_spans.py``) and the span lists that token-level
label-decoder models build inside their network (``token_span_lists.py``).
"""

from __future__ import annotations

import numpy as np


def span_pairs(
    is_start: np.ndarray, is_end: np.ndarray, is_inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, label, start, end) of every start/end pair with every word from start to end
    inside (start <= end), all ``[B, C, W]`` bool inputs; ordered by (row, label, start, end)."""
    _, classes, width = is_start.shape
    positions = np.arange(width)
    # Last word of the inside run that begins at each word (word - 1 where it is not inside).
    stop = np.where(is_inside, width, positions)
    run_end = np.minimum.accumulate(stop[..., ::-1], axis=-1)[..., ::-1] - 1  # [B, C, W]
    flat_end = is_end.reshape(-1)
    before = np.concatenate([[0], np.cumsum(flat_end)])  # end marks before each flat index
    end_words = np.flatnonzero(flat_end) % width  # in (row, label, word) order
    b, c, s = np.nonzero(is_start)
    base = (b * classes + c) * width
    first = before[base + s]
    count = before[base + run_end[b, c, s] + 1] - first  # 0 when s is not inside
    which = np.repeat(np.arange(len(s)), count)
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    e = end_words[first[which] + step]
    return b[which], c[which], s[which], e
