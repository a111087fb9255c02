"""Label sets per training example, as the reference's collator samples them (pure Python)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Optional

MAX_SAMPLED_NEGATIVES = 100


def sample_label_sets(
    examples_types: Sequence[Sequence[str]],
    all_types_in_batch: Optional[Iterable[str]] = None,
    max_types: int = 25,
    max_neg_type_ratio: int = 1,
    rng: Optional[random.Random] = None,
    *,
    labels: Optional[Sequence[Optional[Sequence[str]]]] = None,
    negatives: Optional[Sequence[Optional[Sequence[str]]]] = None,
) -> list[list[str]]:
    """The label (prompt) list of each example, as the reference's ``batch_generate_class_mappings``.

    ``examples_types[i]`` holds the label of every annotated span of example ``i`` (one entry per
    span; its length scales the number of negatives, as in the reference). ``all_types_in_batch``
    defaults to the union of ``examples_types``; it may hold more types (e.g. every label of the
    corpus), which then also serve as negatives.

    1. ``pool = rng.sample(types, min(100, len(types)))`` (types deduplicated, first-seen order).
    2. Per example: ``ratio = rng.randint(0, max_neg_type_ratio)`` (no draw when that is 0);
       negatives are ``negatives[i]`` if given, else ``pool[: len(examples_types[i]) * ratio]``.
    3. ``labels[i]``, if given, is used as-is. Otherwise the distinct positive types plus the
       negatives are shuffled with ``rng`` and truncated to ``max_types`` (truncation may drop
       positive types; their spans then count as negatives).

    Deviations from the reference: (a) deduplication in first-seen order, not ``set`` order (which
    depends on string hashing): the result is a function of the inputs and ``rng`` alone; (b) an
    example with no label at all gets one negative ``rng.choice(pool)`` instead of the blank
    label ``""`` (``[""]`` stays the fallback when the batch has no types).
    """
    rng = rng if rng is not None else random.Random()
    if all_types_in_batch is None:
        all_types_in_batch = (t for types in examples_types for t in types)
    types_pool = list(dict.fromkeys(all_types_in_batch))
    pool = rng.sample(types_pool, min(MAX_SAMPLED_NEGATIVES, len(types_pool)))
    label_sets: list[list[str]] = []
    for i, positives in enumerate(examples_types):
        ratio = rng.randint(0, max_neg_type_ratio) if max_neg_type_ratio else 0
        given_negs = negatives[i] if negatives is not None else None
        negs = list(given_negs) if given_negs is not None else pool[: len(positives) * ratio]
        given_labels = labels[i] if labels is not None else None
        if given_labels is not None:
            types = list(given_labels)
        else:
            types = list(dict.fromkeys([*positives, *negs]))
            rng.shuffle(types)
            types = types[:max_types]
        if not types:
            types = [rng.choice(pool)] if pool else [""]
        label_sets.append(types)
    return label_sets


# ------------------------------------------------------------------------------- targets
