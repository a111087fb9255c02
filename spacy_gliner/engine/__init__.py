"""Inference without spaCy: plan (windows, label groups) -> encode -> score -> decode."""

from .dtypes import DTYPES, engine_dtype
from .engine import Engine, EngineOptions, predict_words
from .labels import LabelSet
from .results import WordsResult

__all__ = [
    "DTYPES",
    "Engine",
    "EngineOptions",
    "LabelSet",
    "WordsResult",
    "engine_dtype",
    "predict_words",
]
