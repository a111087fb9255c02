"""Checkpoints and tokenizers: resolve (directory or hub id), read, check, write."""

from .errors import CheckpointError
from .hub import read_config, resolve_checkpoint_dir
from .model_files import ModelFiles

__all__ = ["CheckpointError", "ModelFiles", "read_config", "resolve_checkpoint_dir"]
