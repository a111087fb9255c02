"""Read and write checkpoints in the format the ``gliner`` package uses (local directory or hub id)."""
from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .config import CONFIG_FILE, GLiNERConfig

logger = logging.getLogger("spacy_gliner")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LABELS_TOKENIZER_DIR = "labels_tokenizer"
# Buffers some transformers versions save and others do not; never weights.
_IGNORABLE_KEYS = re.compile(r"(^|\.)position_ids$")


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete or does not match its configuration."""


def hub_offline(local_files_only: bool = False) -> bool:
    """``local_files_only``, or ``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it only at import)."""
    return bool(local_files_only) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def resolve_checkpoint_dir(
    name_or_path: Union[str, Path],
    *,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
    revision: Optional[str] = None,
    token: Optional[str] = None,
) -> Path:
    """A local directory as is, otherwise a Hugging Face hub snapshot (downloaded into ``cache_dir``).

    Offline mode (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) only looks in the cache.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).exists():
            raise CheckpointError(
                f"{path} has no {CONFIG_FILE}: it is not a GLiNER checkpoint directory (the gliner package "
                "writes gliner_config.json plus model.safetensors or pytorch_model.bin)."
            )
        return path
    if path.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1:
        raise CheckpointError(f"GLiNER checkpoint directory {name_or_path} does not exist.")
    from huggingface_hub import snapshot_download

    offline = hub_offline(local_files_only)
    try:
        directory = snapshot_download(
            str(name_or_path), cache_dir=cache_dir, local_files_only=offline, revision=revision, token=token
        )
    except Exception as err:  # huggingface_hub raises several error types here
        hint = "it is not in the local cache (offline mode)" if offline else "the download failed"
        raise CheckpointError(
            f"Could not get GLiNER checkpoint {name_or_path!r} from the Hugging Face hub: {hint} "
            f"({type(err).__name__}: {err}). Pass a local checkpoint directory instead, or set cache_dir "
            "to where it was downloaded."
        ) from err
    return Path(directory)


def read_state_dict(directory: Path) -> Dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = directory / name
        if path.exists():
            try:
                state_dict = _read_weights_file(path)
            except Exception as err:  # torch / safetensors raise pickle, runtime or rust errors here
                raise CheckpointError(
                    f"Could not read the weights file {path} ({type(err).__name__}: {str(err)[:200]}). "
                    "The file is corrupt, truncated or not a GLiNER weights file."
                ) from err
            if not isinstance(state_dict, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
            ):
                raise CheckpointError(f"{path} does not hold a state dict of named tensors.")
            return state_dict
    raise CheckpointError(f"{directory} holds no weights: expected one of {', '.join(WEIGHT_FILES)}.")


def _read_weights_file(path: Path) -> Dict[str, torch.Tensor]:
    if path.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata() or {}
        # gliner (like safetensors.torch.save_model) stores tensors that share storage once and
        # records each omitted name as metadata {omitted: kept}; re-create those entries.
        for omitted, kept in metadata.items():
            if omitted not in state_dict and kept in state_dict:
                state_dict[omitted] = state_dict[kept]
        return state_dict
    return torch.load(path, map_location="cpu", weights_only=True)


def rnn_layers_in(state_dict: Dict[str, torch.Tensor]) -> int:
    """Number of BiLSTM layers stored in a state dict (0 when it has none)."""
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"rnn\.lstm\.weight_ih_l(\d+)$", k))}
    return max(layers) + 1 if layers else 0


def load_weights_strict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str) -> None:
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


def save_state_dict(model: torch.nn.Module, directory: Path, safe_serialization: bool = True) -> None:
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


def load_tokenizer(directory: Path, fallback: str, hub_kwargs: Dict[str, Any], what: str = "tokenizer"):
    """The checkpoint's own tokenizer files, or the encoder's (``model_name``) for older checkpoints."""
    from transformers import AutoTokenizer

    if (directory / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    logger.info("%s has no %s files; loading the %s of %s", directory, what, what, fallback)
    try:
        return AutoTokenizer.from_pretrained(fallback, use_fast=True, **hub_kwargs)
    except Exception as err:
        raise CheckpointError(
            f"{directory} has no {what} files and the {what} of its encoder {fallback!r} could not be loaded "
            f"({type(err).__name__}: {err}). Save the {what} into the checkpoint directory or make {fallback!r} "
            "available locally."
        ) from err


def warn_unused_layers(config: GLiNERConfig, state_dict: Dict[str, torch.Tensor], source: str) -> None:
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
        logger.info("%s: the reference bi-encoder never applies its LSTM; it is kept unused.", source)
