"""Spans formed from a token-level model's per-word start / end / inside decisions.

``span_pairs`` (``span_pairs.py``, numpy only) is the pairing step both users share: the engine's token-level decoding
(``engine/token_spans.py``) and the reference's ``extract_spans_from_tokens`` that token-level
label-decoder models run inside their network (``extract_token_spans``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .span_pairs import span_pairs

START, END, INSIDE = 0, 1, 2


def extract_token_spans(probs: Tensor, limit: Tensor | float) -> tuple[Tensor, Tensor]:
    """The reference's ``extract_spans_from_tokens`` (gliner 0.2.29) at inference:
    ``(span_idx [B, S, 2], span_mask [B, S])`` from start / end / inside probabilities ``probs``
    ``[B, W, C, 3]`` and thresholds ``limit`` (one, or ``[B, C]``), all compared strictly in
    ``probs``' dtype. A span ``(s, e)`` of label ``c``: ``s`` starts, ``e`` ends and every word
    ``s..e`` is inside, all above ``c``'s threshold; any width; every word of the row, padding
    included, as the reference does. Each row lists its spans by (start, label, end), so a span
    found for two labels is listed twice; rows are padded with ``(0, 0)`` (mask False) to
    ``S = max(1, most spans in a row)``."""
    rows = probs.size(0)
    if isinstance(limit, Tensor):  # [B, C]
        limit = limit.to(device=probs.device, dtype=probs.dtype)[:, None, :, None]
    above = (probs > limit).cpu().numpy().transpose(0, 2, 1, 3)  # [B, C, W, 3]
    b, c, s, e = span_pairs(above[..., START], above[..., END], above[..., INSIDE])
    order = np.lexsort((e, c, s, b))
    b, s, e = b[order], s[order], e[order]
    counts = np.bincount(b, minlength=rows)
    width = max(int(counts.max()) if len(b) else 0, 1)
    slot = np.arange(len(b)) - np.repeat(np.cumsum(counts) - counts, counts)
    span_idx = np.zeros((rows, width, 2), dtype=np.int64)
    span_idx[b, slot, 0], span_idx[b, slot, 1] = s, e
    mask = np.zeros((rows, width), dtype=bool)
    mask[b, slot] = True
    device = probs.device
    return torch.from_numpy(span_idx).to(device), torch.from_numpy(mask).to(device)
