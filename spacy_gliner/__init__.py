"""spacy-gliner: native GLiNER zero-shot NER for spaCy.

``import spacy_gliner`` is light: the torch model and the spaCy component load on first use
(the ``gliner`` factory is found by spaCy through the package's entry points).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "GLiNER",
    "GLiNERConfig",
    "GLiNERPipe",
    "OnnxGLiNER",
    "__version__",
    "read_config",
    "register_doc_extensions",
]

_LAZY = {
    "GLiNER": ("gliner", "GLiNER"),
    "GLiNERConfig": ("model.config", "GLiNERConfig"),
    "GLiNERPipe": ("component.pipe", "GLiNERPipe"),
    "OnnxGLiNER": ("onnx_gliner", "OnnxGLiNER"),
    "read_config": ("io.hub", "read_config"),
    "register_doc_extensions": ("component.doc_labels", "register_doc_extensions"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spacy_gliner' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(f".{module}", __name__), attr)
