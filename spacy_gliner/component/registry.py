"""Registered functions: the thinc model that holds GLiNER, weight loaders, the loss, the scorer.
Importing and calling them imports no torch (spaCy resolves them for the onnxruntime runtime
too); the weight loaders' loaders and the loss's calls do."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional

from spacy.util import registry
from thinc.api import Model

from ..model.config import GLiNERConfig
from ..model.loss_modes import MASKING_MODES, REDUCTIONS
from ..training.loss import SpanLoss
from .scorer import GLiNERScorer
from .shim import GLiNERShim

Loader = Callable[[], Any]  # returns a spacy_gliner.gliner.GLiNER


@registry.architectures("spacy_gliner.GLiNERModel.v1")
def build_gliner_model(checkpoint: Optional[str] = None) -> Model:
    """The component's model block: a thinc model holding the GLiNER torch module in a shim.

    ``checkpoint`` (hub id or directory of a GLiNER checkpoint) is loaded by ``initialize`` or on
    first use; ``null`` when the weights come from ``[initialize.components.gliner.model_loader]``
    or from a saved pipeline. The structure is the same before and after loading."""
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
        raise ValueError(
            f"spacy_gliner.GLiNERModel.v1: checkpoint must be a hub id or a directory, got {checkpoint!r}."
        )
    return Model("gliner", _unused_forward, shims=[GLiNERShim()], attrs={"checkpoint": checkpoint})


def _unused_forward(
    model: Model, docs, is_train: bool
):  # pragma: no cover - the component runs torch itself
    raise NotImplementedError(
        "The GLiNER component runs its model through GLiNERPipe.predict / update."
    )


@registry.misc("spacy_gliner.CheckpointLoader.v1")
def checkpoint_loader(
    name: str,
    cache_dir: Optional[str] = None,
    local_files_only: bool = False,
    revision: Optional[str] = None,
) -> Loader:
    """Load a published GLiNER checkpoint (hub id or directory), e.g. to fine-tune it."""

    def load():
        from ..gliner import GLiNER

        return GLiNER.from_pretrained(
            name, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision
        )

    return load


@registry.misc("spacy_gliner.EncoderLoader.v1")
def encoder_loader(
    name: str,
    span_mode: str = "markerV0",
    hidden_size: int = 512,
    max_width: int = 12,
    dropout: float = 0.4,
    subtoken_pooling: str = "first",
    num_rnn_layers: int = 1,
    post_fusion_schema: str = "",
    num_post_fusion_layers: int = 1,
    fuse_layers: bool = False,
    embed_ent_token: bool = True,
    labels_encoder: Optional[str] = None,
    max_len: int = 384,
    max_types: int = 25,
    max_neg_type_ratio: int = 1,
    cache_dir: Optional[str] = None,
    local_files_only: bool = False,
) -> Loader:
    """A new GLiNER from a bare Hugging Face encoder (hub id or directory) with fresh heads."""
    settings = dict(locals())
    for key in ("name", "cache_dir", "local_files_only"):
        settings.pop(key)

    def load():
        from ..gliner import GLiNER

        config = GLiNERConfig(model_name=name, **settings)
        return GLiNER(config, cache_dir=cache_dir, local_files_only=local_files_only)

    return load


@registry.losses("spacy_gliner.span_loss.v1")
def make_span_loss(
    focal_loss_alpha: float = -1.0,
    focal_loss_gamma: float = 0.0,
    label_smoothing: float = 0.0,
    loss_reduction: str = "sum",
    negatives: float = 1.0,
    masking: str = "global",
) -> Callable:
    """GLiNER's span loss with its training options (reference defaults). ``masking``: "none",
    "global", "label", "span" or "softmax" (hard-negative sampling; see ``modeling/loss.py``)."""
    if masking not in MASKING_MODES:
        raise ValueError(
            f"spacy_gliner.span_loss.v1: masking must be one of {MASKING_MODES}, got {masking!r}."
        )
    if loss_reduction not in REDUCTIONS:
        raise ValueError(
            f"spacy_gliner.span_loss.v1: loss_reduction must be one of {REDUCTIONS}, got {loss_reduction!r}."
        )
    if not 0.0 <= negatives <= 1.0:
        raise ValueError(
            f"spacy_gliner.span_loss.v1: negatives must be in [0, 1], got {negatives!r}."
        )

    return SpanLoss(
        focal_loss_alpha, focal_loss_gamma, label_smoothing, loss_reduction, negatives, masking
    )


@registry.schedules("spacy_gliner.warmup_cosine.v1")
def warmup_cosine(
    initial_rate: float, warmup_steps: int, total_steps: int, min_rate: float = 0.0
) -> Iterable[float]:
    """Linear warm-up to ``initial_rate`` over ``warmup_steps``, then cosine decay to ``min_rate`` at
    ``total_steps`` (the reference trainer's "cosine" schedule)."""
    import math

    step = 0
    while True:
        if step < warmup_steps:
            yield initial_rate * step / max(1, warmup_steps)
        else:
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            yield min_rate + (initial_rate - min_rate) * 0.5 * (1.0 + math.cos(math.pi * progress))
        step += 1


@registry.scorers("spacy_gliner.scorer.v1")
def make_gliner_scorer(spans_key: Optional[str] = None) -> Callable:
    """``ents_p/r/f`` + ``ents_per_type``, and ``spans_<key>_p/r/f`` (overlap allowed) for the spans key."""

    return GLiNERScorer(spans_key)
