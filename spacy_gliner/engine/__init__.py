"""Inference without spaCy: plan (windows, label groups) -> encode -> score -> decode."""

from .engine import Engine, EngineOptions, predict_words
from .labels import LabelSet
from .relations import RelationEngine, RelexResult
from .results import WordsResult

__all__ = [
    "Engine",
    "EngineOptions",
    "LabelSet",
    "RelationEngine",
    "RelexResult",
    "WordsResult",
    "predict_words",
]
