"""Where a checkpoint or encoder lives: local directory or Hugging Face hub id (offline cache).

Every failure to find or fetch one raises :class:`CheckpointError` with a one-line reason; the
underlying exception is kept as ``__cause__``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

from transformers import AutoConfig, PretrainedConfig

from ..model.config import CONFIG_FILE, GLiNERConfig
from ..model.encoder import hf_config_from_dict
from .errors import CheckpointError

PathLike = Union[str, Path]


def hub_offline(local_files_only: bool = False) -> bool:
    """``local_files_only``, or ``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it only at import)."""
    return bool(local_files_only) or os.environ.get("HF_HUB_OFFLINE", "0") not in (
        "0",
        "",
        "false",
        "False",
    )


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
    if (
        path.exists()
        or str(name_or_path).startswith((".", "/", "~"))
        or str(name_or_path).count("/") > 1
    ):
        raise CheckpointError(f"GLiNER checkpoint directory {name_or_path} does not exist.")
    from huggingface_hub import snapshot_download

    offline = hub_offline(local_files_only)
    try:
        directory = snapshot_download(
            str(name_or_path),
            cache_dir=cache_dir,
            local_files_only=offline,
            revision=revision,
            token=token,
        )
    except Exception as err:  # huggingface_hub raises several error types here
        hint = "it is not in the local cache (offline mode)" if offline else "the download failed"
        raise CheckpointError(
            f"Could not get GLiNER checkpoint {name_or_path!r} from the Hugging Face hub: {hint} "
            f"({type(err).__name__}: {first_line(err)}). Pass a local checkpoint directory "
            "instead, or set cache_dir to where it was downloaded."
        ) from shallow(err)
    return Path(directory)


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    text = str(err).strip().splitlines()
    return text[0][:limit] if text else ""


def shallow(err: BaseException) -> BaseException:
    """``err`` without its own chain: kept as ``__cause__`` of our error, the traceback then
    shows one underlying exception instead of the hub client's four-deep chain."""
    err.__cause__ = None
    err.__context__ = None
    err.__suppress_context__ = True
    return err


def read_config_dict(directory: Path) -> dict[str, Any]:
    """The raw ``gliner_config.json`` of a checkpoint directory."""
    path = directory / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def read_config(
    name_or_path: PathLike,
    *,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    revision: Optional[str] = None,
    token: Optional[str] = None,
) -> GLiNERConfig:
    """``gliner_config.json`` of a checkpoint directory or hub id as a ``GLiNERConfig``."""
    directory = resolve_checkpoint_dir(
        name_or_path,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        revision=revision,
        token=token,
    )
    try:
        return GLiNERConfig.from_dict(read_config_dict(directory))
    except (TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{directory / CONFIG_FILE}: {err}") from err


def resolve_encoder_config(
    stored: Optional[dict[str, Any]], model_name: str, vocab_size: int = -1, **hub_kwargs: Any
) -> PretrainedConfig:
    """The backbone config: from ``gliner_config.json`` if stored there, else from ``model_name``."""
    if stored is not None:
        return hf_config_from_dict(stored)
    try:
        hf_config = AutoConfig.from_pretrained(model_name, **hub_kwargs)
    except Exception as err:  # OSError / HTTP errors from transformers and huggingface_hub
        raise CheckpointError(
            f"The configuration stores no encoder_config and the encoder {model_name!r} could not "
            f"be loaded ({type(err).__name__}: {first_line(err)}). Make {model_name!r} available "
            "locally (or in the Hugging Face cache), or load a checkpoint that stores encoder_config."
        ) from shallow(err)
    if vocab_size != -1:
        hf_config.vocab_size = vocab_size
    return hf_config


def pretrained_backbone(name: str, hf_config: PretrainedConfig, **hub_kwargs: Any) -> Any:
    """A bare encoder with the pretrained weights of ``name`` (T5 family: its encoder only)."""
    from transformers import AutoModel, T5EncoderModel

    cls: Any = T5EncoderModel if hf_config.model_type in ("t5", "mt5", "umt5") else AutoModel
    try:
        return cls.from_pretrained(name, config=hf_config, **hub_kwargs)
    except Exception as err:
        raise CheckpointError(
            f"Could not load the pretrained encoder {name!r} ({type(err).__name__}: "
            f"{str(err)[:200]}). Pass a local encoder directory or make it available in the cache."
        ) from shallow(err)


def pretrained_tokenizer(name: str, what: str, **hub_kwargs: Any) -> Any:
    """The fast tokenizer of encoder ``name``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, use_fast=True, **hub_kwargs)
    except Exception as err:
        raise CheckpointError(
            f"Could not load the tokenizer of {what} {name!r} ({type(err).__name__}: {str(err)[:200]})."
        ) from shallow(err)
