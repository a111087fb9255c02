"""Inference without spaCy: plan (windows, label groups) -> encode -> score -> decode.

The names below load on first use, so the torch-free modules (``core``, ``windows``, ``labels``,
``collect``, ``onnx_runtime`` ...) import without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    "DTYPES": "dtypes",
    "engine_dtype": "dtypes",
    "Engine": "engine",
    "predict_words": "engine",
    "EngineOptions": "core",
    "LabelSet": "labels",
    "RelationEngine": "relations",
    "RelexResult": "relations",
    "WordsResult": "results",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
