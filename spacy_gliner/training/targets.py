"""Span targets (span-level models) and word targets (token-level models) of training examples
(torch tensors, no spaCy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

Span = tuple[int, int, str]  # (start word, end word inclusive, label)


def span_targets(
    spans: Sequence[Sequence[Span]],
    label_sets: Sequence[Sequence[str]],
    num_words: Sequence[int],
    max_width: int,
    unknown: Optional[Sequence[Optional[Sequence[bool]]]] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``[B, W, K, C]`` (float 0/1) and ``span_mask [B, W, K]`` (bool) for ``span_loss``.

    ``W = max(num_words)``, ``K = max_width``, ``C = max(len(label_set))``. Span ``(s, e, label)`` sets
    ``targets[b, s, e - s, c]`` for every ``c`` with ``label_sets[b][c] == label`` (the reference
    marks only the last duplicate). Spans wider than ``max_width``, ending at or beyond
    ``num_words[b]``, or whose label is not in the set get no positive. ``span_mask[b, s, k]`` is
    ``s + k < num_words[b]`` and, when ``unknown[b]`` is given, no word ``s..s+k`` is flagged
    unknown (spans touching unannotated words are neither positives nor negatives).
    """
    batch = len(num_words)
    width = max(num_words, default=0)
    num_classes = max((len(ls) for ls in label_sets), default=0)
    targets = torch.zeros(batch, width, max_width, num_classes)  # [B, W, K, C]
    for b, (example_spans, label_set) in enumerate(zip(spans, label_sets)):
        columns: dict[str, list[int]] = {}
        for c, label in enumerate(label_set):
            columns.setdefault(label, []).append(c)
        for start, end, label in example_spans:
            k = end - start
            if start >= 0 and 0 <= k < max_width and end < num_words[b]:
                for c in columns.get(label, ()):
                    targets[b, start, k, c] = 1.0
    ends = torch.arange(width)[:, None] + torch.arange(max_width)[None, :]  # [W, K]
    lengths = torch.tensor(list(num_words), dtype=torch.long).view(-1, 1, 1)
    span_mask = ends[None] < lengths  # [B, W, K]
    for b, flags in enumerate(unknown or ()):
        if flags is not None and any(flags):
            span_mask[b] &= ~_touches(torch.tensor(list(flags), dtype=torch.bool), width, max_width)
    return targets, span_mask


def token_targets(
    spans: Sequence[Sequence[Span]],
    label_sets: Sequence[Sequence[str]],
    num_words: Sequence[int],
    unknown: Optional[Sequence[Optional[Sequence[bool]]]] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``[B, W, C, 3]`` (float 0/1: start, end, inside) and ``word_mask [B, W]`` (bool)
    for ``token_loss``, as the reference's ``UniEncoderTokenProcessor.create_labels``.

    ``W = max(num_words)``, ``C = max(len(label_set))``. Span ``(s, e, label)`` sets, for every ``c``
    with ``label_sets[b][c] == label``, ``targets[b, s, c, 0]``, ``targets[b, e, c, 1]`` and
    ``targets[b, s..e, c, 2]``; spans of any width, except those ending at or beyond
    ``num_words[b]`` or whose label is not in the set. ``word_mask[b, w]`` is ``w < num_words[b]``
    and, when ``unknown[b]`` is given, word ``w`` is not flagged unknown (left out of the loss).
    """
    batch = len(num_words)
    width = max(num_words, default=0)
    num_classes = max((len(ls) for ls in label_sets), default=0)
    targets = torch.zeros(batch, width, num_classes, 3)  # [B, W, C, 3]
    for b, (example_spans, label_set) in enumerate(zip(spans, label_sets)):
        for start, end, label in example_spans:
            if not 0 <= start <= end < num_words[b]:
                continue
            for c in (c for c, name in enumerate(label_set) if name == label):
                targets[b, start, c, 0] = 1.0
                targets[b, end, c, 1] = 1.0
                targets[b, start : end + 1, c, 2] = 1.0
    lengths = torch.tensor(list(num_words), dtype=torch.long).view(-1, 1)
    word_mask = torch.arange(width)[None, :] < lengths  # [B, W]
    for b, flags in enumerate(unknown or ()):
        if flags is not None and any(flags):
            word_mask[b, : len(flags)] &= ~torch.tensor(list(flags), dtype=torch.bool)
    return targets, word_mask


def _touches(flags: torch.Tensor, width: int, max_width: int) -> torch.Tensor:
    """[W, K] bool: span (s, s + k) covers a flagged word (flags [n] for the first n words)."""
    padded = torch.zeros(width + max_width, dtype=torch.long)
    padded[: flags.numel()] = flags.long()
    cum = torch.cat([torch.zeros(1, dtype=torch.long), padded.cumsum(0)])  # [W + K + 1]
    starts = torch.arange(width)[:, None]
    ends = starts + torch.arange(max_width)[None, :]  # inclusive
    return (cum[ends + 1] - cum[starts]) > 0


# ------------------------------------------------------------------------------- optimizer
