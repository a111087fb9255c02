"""spacy-gliner: native GLiNER zero-shot NER for spaCy.

``import spacy_gliner`` is light: the torch model and the spaCy component load on first use
(the ``gliner`` factory is found by spaCy through the package's entry points).
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["GLiNER", "GLiNERConfig", "GLiNERPipe", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GLiNER":
        from .gliner import GLiNER

        return GLiNER
    if name == "GLiNERConfig":
        from .config import GLiNERConfig

        return GLiNERConfig
    if name == "GLiNERPipe":
        from .pipeline import GLiNERPipe

        return GLiNERPipe
    raise AttributeError(f"module 'spacy_gliner' has no attribute {name!r}")
