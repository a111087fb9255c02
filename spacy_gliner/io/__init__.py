"""Checkpoints and tokenizers: resolve (directory or hub id), read, check, write.

The names below load on first use, so ``io.tokenizers`` and ``io.fast_tokenizer`` import
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import CheckpointError
    from .hub import read_config, resolve_checkpoint_dir
    from .model_files import ModelFiles

__all__ = ["CheckpointError", "ModelFiles", "read_config", "resolve_checkpoint_dir"]

_LAZY = {
    "CheckpointError": "errors",
    "read_config": "hub",
    "resolve_checkpoint_dir": "hub",
    "ModelFiles": "model_files",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
