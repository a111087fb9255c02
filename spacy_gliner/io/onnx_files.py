"""The directory an ONNX export writes and the ONNX runtime reads (no torch, no transformers).

Layout: ``model.onnx`` (float32), optionally ``model_int8.onnx`` (dynamic int8 weights),
``gliner_config.json`` (the checkpoint's config), ``tokenizer.json`` (the ``tokenizers``
library's format, special tokens included) and ``onnx_export.json``: the output kind, the
encoder's sub-token window, the tokenizer settings that live outside ``tokenizer.json`` and the
files written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.config import CONFIG_FILE, GLiNERConfig
from .errors import CheckpointError
from .fast_tokenizer import TOKENIZER_FILE, JsonTokenizer

MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model_int8.onnx"
EXPORT_FILE = "onnx_export.json"
EXPORT_FORMAT = 1


@dataclass(frozen=True)
class OnnxExport:
    """A read export directory: ``model_path`` is the file chosen (float32 or int8)."""

    directory: Path
    config: GLiNERConfig
    tokenizer: JsonTokenizer
    model_path: Path
    output: str  # "span" ([B, W, K, C]) or "token" ([B, W, C, 3])
    max_tokens: int
    meta: dict[str, Any]


def write_export_meta(directory: Path, meta: dict[str, Any]) -> None:
    (directory / EXPORT_FILE).write_text(
        json.dumps({"format": EXPORT_FORMAT, **meta}, indent=2, sort_keys=True)
    )


def check_export(directory: str | Path, *, int8: bool = False) -> dict[str, Any]:
    """The metadata of an export directory that has every file ``read_export`` needs (cheap: reads
    ``onnx_export.json`` only); ``CheckpointError`` naming what is missing and how to get it."""
    directory = Path(directory)
    meta_path = directory / EXPORT_FILE
    if not meta_path.exists():
        raise CheckpointError(
            f"{directory} is not a spacy-gliner ONNX export (no {EXPORT_FILE}). Export a "
            "checkpoint with `spacy-gliner export MODEL DIR --onnx` (or "
            "spacy_gliner.export.onnx.export_onnx) and load that directory."
        )
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{meta_path} has export format {meta.get('format')!r}; this spacy-gliner reads "
            f"format {EXPORT_FORMAT}. Export the checkpoint again with this version."
        )
    name = INT8_MODEL_FILE if int8 else MODEL_FILE
    for needed in (name, CONFIG_FILE, TOKENIZER_FILE):
        if not (directory / needed).exists():
            hint = " (export with --int8 to write it)" if needed == INT8_MODEL_FILE else ""
            raise CheckpointError(f"{directory} has no {needed}{hint}.")
    return meta


def export_files(directory: str | Path, *, int8: bool = False) -> list[Path]:
    """The files of an export directory checked as ``check_export`` does (the model files it
    was written with that it still has, its config, tokenizer and metadata): what a copy of it
    needs."""
    directory = Path(directory)
    meta = check_export(directory, int8=int8)
    names = [*meta["files"], CONFIG_FILE, TOKENIZER_FILE, EXPORT_FILE]
    return [directory / name for name in names if (directory / name).exists()]


def read_export(directory: str | Path, *, int8: bool = False) -> OnnxExport:
    """Read an export directory; ``CheckpointError`` naming what is missing and how to get it."""
    directory = Path(directory)
    meta = check_export(directory, int8=int8)
    name = INT8_MODEL_FILE if int8 else MODEL_FILE
    config = GLiNERConfig.from_json_file(directory / CONFIG_FILE)
    tokenizer = JsonTokenizer.from_file(directory / TOKENIZER_FILE, meta["tokenizer_settings"])
    return OnnxExport(
        directory,
        config,
        tokenizer,
        directory / name,
        str(meta["output"]),
        int(meta["max_tokens"]),
        meta,
    )
