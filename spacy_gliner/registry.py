"""Registered functions: the thinc model that holds GLiNER, weight loaders, the scorer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model
from thinc.shims import PyTorchShim

from .config import GLiNERConfig

Loader = Callable[[], Any]  # returns a spacy_gliner.gliner.GLiNER


class GLiNERShim(PyTorchShim):
    """A PyTorchShim whose torch module arrives later (initialize / from_disk) and whose update
    scales the learning rate and weight decay per parameter (encoder vs. the other layers)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.lr_scales: Dict[str, float] = {}
        self.weight_decay: Dict[str, float] = {}
        self.grad_clip = 0.0

    def set_model(self, module: Any) -> None:
        self._model = module

    @property
    def has_model(self) -> bool:
        return self._model is not None

    def finish_update(self, optimizer) -> None:
        import torch

        from .optimizer_step import apply_optimizer

        if self._model is None:
            return
        params = [(n, p) for n, p in self._model.named_parameters() if p.grad is not None]
        if self._grad_scaler.found_inf:
            for _, param in params:
                param.grad = None
        else:
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for _, p in params], self.grad_clip)
            apply_optimizer(optimizer, self.id, params, self.lr_scales, self.weight_decay)
        self._grad_scaler.update()


@registry.architectures("spacy_gliner.GLiNERModel.v1")
def build_gliner_model() -> Model:
    """A thinc model holding the GLiNER torch module in a shim; weights arrive in ``initialize``
    or ``from_disk``, so the structure is the same before and after loading."""
    return Model("gliner", _unused_forward, shims=[GLiNERShim()])


def _unused_forward(model: Model, docs, is_train: bool):  # pragma: no cover - the component runs torch itself
    raise NotImplementedError("The GLiNER component runs its model through GLiNERPipe.predict / update.")


@registry.misc("spacy_gliner.CheckpointLoader.v1")
def checkpoint_loader(
    name: str, cache_dir: Optional[str] = None, local_files_only: bool = False, revision: Optional[str] = None
) -> Loader:
    """Load a published GLiNER checkpoint (hub id or directory), e.g. to fine-tune it."""

    def load():
        from .gliner import GLiNER

        return GLiNER.from_pretrained(name, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision)

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
        from .gliner import GLiNER

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
    from .modeling.loss import MASKING_MODES, REDUCTIONS

    if masking not in MASKING_MODES:
        raise ValueError(f"spacy_gliner.span_loss.v1: masking must be one of {MASKING_MODES}, got {masking!r}.")
    if loss_reduction not in REDUCTIONS:
        raise ValueError(f"spacy_gliner.span_loss.v1: loss_reduction must be one of {REDUCTIONS}, got {loss_reduction!r}.")
    if not 0.0 <= negatives <= 1.0:
        raise ValueError(f"spacy_gliner.span_loss.v1: negatives must be in [0, 1], got {negatives!r}.")

    return SpanLoss(focal_loss_alpha, focal_loss_gamma, label_smoothing, loss_reduction, negatives, masking)


@dataclass(frozen=True)
class SpanLoss:
    """The configured loss (a picklable callable, for multiprocessing)."""

    alpha: float
    gamma: float
    label_smoothing: float
    reduction: str
    negatives: float
    masking: str

    def __call__(self, logits, targets, span_mask, label_mask):
        from .modeling.loss import span_loss

        return span_loss(
            logits, targets, span_mask, label_mask, alpha=self.alpha, gamma=self.gamma,
            label_smoothing=self.label_smoothing, reduction=self.reduction, masking=self.masking,
            negatives=self.negatives,
        )


@registry.schedules("spacy_gliner.warmup_cosine.v1")
def warmup_cosine(initial_rate: float, warmup_steps: int, total_steps: int, min_rate: float = 0.0) -> Iterable[float]:
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


@dataclass(frozen=True)
class GLiNERScorer:
    """Scores ``doc.ents`` and ``doc.spans[spans_key]`` (a picklable callable)."""

    spans_key: Optional[str] = None

    def __call__(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        examples = list(examples)
        scores = Scorer.score_spans(examples, "ents", **kwargs)
        key = self.spans_key
        if key:
            scores.update(
                Scorer.score_spans(
                    examples,
                    f"spans_{key}",
                    getter=lambda doc, _: list(doc.spans.get(key, [])),
                    has_annotation=lambda doc: key in doc.spans,
                    allow_overlap=True,
                    **kwargs,
                )
            )
        return scores
