"""Span targets of training examples (torch tensors, no spaCy)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Span = tuple[int, int, str]  # (start word, end word inclusive, label)


def span_targets(
    spans: Sequence[Sequence[Span]],
    label_sets: Sequence[Sequence[str]],
    num_words: Sequence[int],
    max_width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``[B, W, K, C]`` (float 0/1) and ``span_mask [B, W, K]`` (bool) for ``span_loss``.

    ``W = max(num_words)``, ``K = max_width``, ``C = max(len(label_set))``. Span ``(s, e, label)`` sets
    ``targets[b, s, e - s, c]`` for every ``c`` with ``label_sets[b][c] == label`` (the reference
    marks only the last duplicate). Spans wider than ``max_width``, ending at or beyond
    ``num_words[b]``, or whose label is not in the set get no positive. ``span_mask[b, s, k]`` is
    ``s + k < num_words[b]``.
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
    span_mask = ends[None] < torch.tensor(list(num_words), dtype=torch.long).view(
        -1, 1, 1
    )  # [B, W, K]
    return targets, span_mask


# ------------------------------------------------------------------------------- optimizer
