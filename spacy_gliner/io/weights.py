"""Weights files in the format the ``gliner`` package writes: read, load strictly, save."""

from __future__ import annotations

import logging
import os
import re
import stat
import warnings
from pathlib import Path

import torch

from ..model.config import GLiNERConfig
from .errors import CheckpointError

logger = logging.getLogger("spacy_gliner")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LABELS_TOKENIZER_DIR = "labels_tokenizer"
# Buffers some transformers versions save and others do not; never weights.
_IGNORABLE_KEYS = re.compile(r"(^|\.)position_ids$")


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = directory / name
        if path.exists():
            try:
                state_dict = _read_weights_file(path)
            except (
                Exception
            ) as err:  # torch / safetensors raise pickle, runtime or rust errors here
                raise CheckpointError(
                    f"Could not read the weights file {path} ({type(err).__name__}: {str(err)[:200]}). "
                    "The file is corrupt, truncated or not a GLiNER weights file."
                ) from err
            if not isinstance(state_dict, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
            ):
                raise CheckpointError(f"{path} does not hold a state dict of named tensors.")
            return state_dict
    raise CheckpointError(
        f"{directory} holds no weights: expected one of {', '.join(WEIGHT_FILES)}."
    )


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            state_dict = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
            metadata = f.metadata() or {}
        # gliner (like safetensors.torch.save_model) stores tensors that share storage once and
        # records each omitted name as metadata {omitted: kept}; re-create those entries.
        for omitted, kept in metadata.items():
            if omitted not in state_dict and kept in state_dict:
                state_dict[omitted] = state_dict[kept]
        return state_dict
    return torch.load(path, map_location="cpu", weights_only=True)


def rnn_layers_in(state_dict: dict[str, torch.Tensor]) -> int:
    """Number of BiLSTM layers stored in a state dict (0 when it has none)."""
    layers = {
        int(m.group(1)) for k in state_dict if (m := re.match(r"rnn\.lstm\.weight_ih_l(\d+)$", k))
    }
    return max(layers) + 1 if layers else 0


def load_weights_strict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load every weight; raise naming missing or unexpected keys (the reference silently ignores them)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state_dict and not _IGNORABLE_KEYS.search(k))
    unexpected = sorted(k for k in state_dict if k not in own and not _IGNORABLE_KEYS.search(k))
    if missing or unexpected:
        raise CheckpointError(
            f"The weights in {source} do not match its gliner_config.json: "
            f"{len(missing)} missing {_some(missing)}, {len(unexpected)} unexpected {_some(unexpected)}. "
            "Check span_mode, post_fusion_schema, fuse_layers, labels_encoder and hidden_size in the config, "
            "or whether the weights belong to another model."
        )
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if shapes:
        k = shapes[0]
        raise CheckpointError(
            f"The weights in {source} do not match its configuration: {k} has shape "
            f"{tuple(state_dict[k].shape)}, the model expects {tuple(own[k].shape)} ({len(shapes)} such tensors)."
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)


def _some(keys, limit: int = 20) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"


def save_state_dict(
    model: torch.nn.Module,
    directory: Path,
    safe_serialization: bool = True,
    mode_like: Path | None = None,
) -> None:
    """Write ``model.safetensors`` (or ``pytorch_model.bin``) and remove the other format. The file
    gets the permissions of ``mode_like`` (safetensors writes 0600 through a temporary file)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if safe_serialization:
        from safetensors.torch import save_file

        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        stale = directory / "pytorch_model.bin"
    else:
        torch.save(state, directory / "pytorch_model.bin")
        stale = directory / "model.safetensors"
    if stale.exists():
        stale.unlink()
    written = directory / ("model.safetensors" if safe_serialization else "pytorch_model.bin")
    if mode_like is not None and mode_like.exists():
        os.chmod(written, stat.S_IMODE(os.stat(mode_like).st_mode))


def warn_unused_layers(
    config: GLiNERConfig, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    if config.documented_architecture:
        return
    if not config.is_bi_encoder and any(k.startswith("cross_fuser.") for k in state_dict):
        warnings.warn(
            f"{source} was written by the reference gliner package with post_fusion_schema="
            f"{config.post_fusion_schema!r}, whose uni-encoder never applies the fuser (its weights were "
            "never trained). The fuser is loaded but not applied, so scores match the reference.",
            stacklevel=3,
        )
    if config.is_bi_encoder and any(k.startswith("rnn.") for k in state_dict):
        logger.info(
            "%s: the reference bi-encoder never applies its LSTM; it is kept unused.", source
        )
