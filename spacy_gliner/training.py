"""Training helpers: per-example label sets, span targets, optimizer parameter groups, freezing.

Pure data + torch (no spaCy). Behaviour follows gliner 0.2.29's uni-encoder collator
(``batch_generate_class_mappings``, ``create_labels``) and ``gliner.training.Trainer.create_optimizer``.
"""
from __future__ import annotations

import random
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

Span = Tuple[int, int, str]  # (start word, end word inclusive, label)
ENCODER_KEY = "token_rep_layer"
MAX_SAMPLED_NEGATIVES = 100


# ------------------------------------------------------------------------------- label sets
def sample_label_sets(
    examples_types: Sequence[Sequence[str]],
    all_types_in_batch: Optional[Iterable[str]] = None,
    max_types: int = 25,
    max_neg_type_ratio: int = 1,
    rng: Optional[random.Random] = None,
    *,
    labels: Optional[Sequence[Optional[Sequence[str]]]] = None,
    negatives: Optional[Sequence[Optional[Sequence[str]]]] = None,
) -> List[List[str]]:
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

    Deviations from the reference: (a) the reference deduplicates with ``set``, whose order depends
    on Python's string hashing; we deduplicate in first-seen order, so the result is a function of
    the inputs and ``rng`` alone (same distribution, since the list is shuffled anyway); (b) an
    example that ends up with no label at all (no entities, no negatives) gets one negative drawn
    with ``rng.choice(pool)`` instead of the reference's blank label ``""``; ``[""]`` remains the
    fallback when the batch has no types.
    """
    rng = rng if rng is not None else random.Random()
    if all_types_in_batch is None:
        all_types_in_batch = (t for types in examples_types for t in types)
    types_pool = list(dict.fromkeys(all_types_in_batch))
    pool = rng.sample(types_pool, min(MAX_SAMPLED_NEGATIVES, len(types_pool)))
    label_sets: List[List[str]] = []
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
def span_targets(
    spans: Sequence[Sequence[Span]],
    label_sets: Sequence[Sequence[str]],
    num_words: Sequence[int],
    max_width: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
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
        columns: Dict[str, List[int]] = {}
        for c, label in enumerate(label_set):
            columns.setdefault(label, []).append(c)
        for start, end, label in example_spans:
            k = end - start
            if 0 <= start and 0 <= k < max_width and end < num_words[b]:
                for c in columns.get(label, ()):
                    targets[b, start, k, c] = 1.0
    ends = torch.arange(width)[:, None] + torch.arange(max_width)[None, :]  # [W, K]
    span_mask = ends[None] < torch.tensor(list(num_words), dtype=torch.long).view(-1, 1, 1)  # [B, W, K]
    return targets, span_mask


# ------------------------------------------------------------------------------- optimizer
def _module(model) -> nn.Module:
    """Accept an ``nn.Module`` or a wrapper holding one as ``.model`` (e.g. ``GLiNER``)."""
    return model if isinstance(model, nn.Module) else model.model


def is_encoder_param(name: str) -> bool:
    """Reference split: names containing ``token_rep_layer`` (backbone, projection, labels encoder)."""
    return ENCODER_KEY in name


def decay_param_names(model) -> set:
    """Names that get weight decay: all but ``nn.LayerNorm`` parameters and names containing "bias"."""
    module = _module(model)
    norm = {
        f"{mod_name}.{p_name}" if mod_name else p_name
        for mod_name, mod in module.named_modules()
        if isinstance(mod, nn.LayerNorm)
        for p_name, _ in mod.named_parameters(recurse=False)
    }
    return {name for name, _ in module.named_parameters() if name not in norm and "bias" not in name}


def optimizer_groups(
    model,
    lr: float,
    weight_decay: float,
    others_lr: Optional[float] = None,
    others_weight_decay: Optional[float] = None,
) -> List[dict]:
    """Torch parameter groups as the reference trainer: others+decay, others+no-decay, encoder+decay,
    encoder+no-decay (in that order; empty groups dropped; frozen parameters left out).

    ``others_lr`` / ``others_weight_decay`` default to ``lr`` / ``weight_decay``. Each group carries
    ``"name"``, ``"lr"`` and ``"weight_decay"``.
    """
    module = _module(model)
    others_lr = lr if others_lr is None else others_lr
    others_wd = weight_decay if others_weight_decay is None else others_weight_decay
    decay = decay_param_names(module)
    specs = [
        ("others_decay", False, True, others_lr, others_wd),
        ("others_no_decay", False, False, others_lr, 0.0),
        ("encoder_decay", True, True, lr, weight_decay),
        ("encoder_no_decay", True, False, lr, 0.0),
    ]
    groups = []
    for group_name, encoder, decayed, group_lr, group_wd in specs:
        params = [
            p for n, p in module.named_parameters()
            if p.requires_grad and is_encoder_param(n) == encoder and (n in decay) == decayed
        ]
        if params:
            groups.append({"name": group_name, "params": params, "lr": group_lr, "weight_decay": group_wd})
    return groups


def param_lr_scales(model, lr: float, others_lr: Optional[float] = None) -> Dict[str, float]:
    """Per-parameter learning-rate multiplier relative to ``lr``: encoder 1.0, others ``others_lr / lr``."""
    others_lr = lr if others_lr is None else others_lr
    if lr == 0 and others_lr != 0:
        raise ValueError("param_lr_scales needs a non-zero base lr when others_lr is set.")
    others_scale = 1.0 if others_lr == lr else others_lr / lr
    return {n: 1.0 if is_encoder_param(n) else others_scale for n, _ in _module(model).named_parameters()}


def param_weight_decay(
    model, weight_decay: float, others_weight_decay: Optional[float] = None
) -> Dict[str, float]:
    """Per-parameter weight decay: 0 for LayerNorm/bias, ``weight_decay`` (encoder) or
    ``others_weight_decay`` (everything else, default ``weight_decay``)."""
    others_wd = weight_decay if others_weight_decay is None else others_weight_decay
    decay = decay_param_names(model)
    return {
        n: (weight_decay if is_encoder_param(n) else others_wd) if n in decay else 0.0
        for n, _ in _module(model).named_parameters()
    }


def freeze_encoder(model, frozen: bool = True) -> int:
    """Set ``requires_grad = not frozen`` on every ``token_rep_layer`` parameter (the text encoder and,
    for bi-encoders, the labels encoder); returns the number of parameter tensors set."""
    count = 0
    for name, param in _module(model).named_parameters():
        if is_encoder_param(name):
            param.requires_grad_(not frozen)
            count += 1
    return count


__all__ = [
    "decay_param_names",
    "freeze_encoder",
    "is_encoder_param",
    "optimizer_groups",
    "param_lr_scales",
    "param_weight_decay",
    "sample_label_sets",
    "span_targets",
]
