"""Component settings: the one source of their defaults, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

ENTS_MODES = ("overwrite", "merge", "none")
DTYPES = ("float32", "float16", "bfloat16")
# Where and how this process runs the model: from the config at load time, never from a saved pipeline.
RUNTIME_SETTINGS = ("device", "dtype", "batch_size", "cache_dir")
MODEL_DIR = "model"

DEFAULT_CONFIG: dict[str, Any] = {
    "model": None,
    "labels": [],
    "threshold": 0.5,
    "flat_ner": True,
    "multi_label": False,
    "spans_key": "sc",
    "ents": "overwrite",
    "batch_size": 16,
    "window_overlap": None,
    "window_words": None,
    "max_labels_per_pass": None,
    "device": None,
    "dtype": "float32",
    "cache_dir": None,
    "scorer": {"@scorers": "spacy_gliner.scorer.v1", "spans_key": "sc"},
    # Training only (spacy train); see configs/ and the README.
    "loss": {"@losses": "spacy_gliner.span_loss.v1"},
    "fine_tune": True,
    "encoder_lr": None,
    "others_lr": None,
    "weight_decay": 0.0,
    "others_weight_decay": None,
    "grad_clip": 0.0,
    "max_types": None,
    "max_neg_type_ratio": None,
    "rehearsal_labels": [],
    "rehearsal_weight": 0.0,
    "seed": 0,
}


@dataclass
class TrainingSettings:
    """How ``update`` trains (the loss itself is the registered ``loss`` function).

    ``encoder_lr``/``others_lr``: the learning rates of the encoder (``token_rep_layer``) and of the
    other layers. spaCy's optimizer schedule should peak at ``encoder_lr``; the other layers get
    ``others_lr / encoder_lr`` times its rate. Decoupled weight decay per group (LayerNorm and bias
    excluded). ``grad_clip``: global gradient-norm clipping (0 = off). ``max_types`` and
    ``max_neg_type_ratio`` (default: the model's) drive negative label sampling.
    ``rehearsal_weight`` > 0 distils the starting model's scores for ``rehearsal_labels`` into
    every update, against forgetting zero-shot labels while fine-tuning on a few.
    """

    fine_tune: bool = True
    encoder_lr: Optional[float] = None
    others_lr: Optional[float] = None
    weight_decay: float = 0.0
    others_weight_decay: Optional[float] = None
    grad_clip: float = 0.0
    max_types: Optional[int] = None
    max_neg_type_ratio: Optional[int] = None
    rehearsal_labels: list[str] = field(default_factory=list)
    rehearsal_weight: float = 0.0
    seed: int = 0


def plain(value: Any) -> Any:
    """Config values as plain lists/dicts (spaCy may pass tuples or confection containers)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return list(value)
    return value
