"""Inference without spaCy: plan (windows, label groups) -> encode -> score -> decode."""

from .dtypes import DTYPES, engine_dtype
from .engine import Engine, EngineOptions, predict_words
from .labels import LabelSet
from .relations import RelationEngine, RelexResult
from .results import WordsResult

__all__ = [
    "DTYPES",
    "Engine",
    "EngineOptions",
    "LabelSet",
    "RelationEngine",
    "RelexResult",
    "WordsResult",
    "engine_dtype",
    "predict_words",
]
