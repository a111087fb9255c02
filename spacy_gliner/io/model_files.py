"""A GLiNER model with its tokenizer(s): create from an encoder, load, save, serialize."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union, cast

import torch
from torch import nn

from ..model.config import CONFIG_FILE, GLiNERConfig
from ..model.encoder import backbone_from_config
from ..model.families import UnsupportedArchitecture, build_model, family_of
from .errors import CheckpointError
from .hub import (
    hub_offline,
    pretrained_backbone,
    pretrained_tokenizer,
    read_config_dict,
    resolve_checkpoint_dir,
    resolve_encoder_config,
)
from .tokenizers import PromptTokenizer, add_special_tokens, check_special_tokens, load_tokenizer
from .weights import (
    load_weights_strict,
    read_state_dict,
    rnn_layers_in,
    save_state_dict,
    warn_unused_layers,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger("spacy_gliner")
PathLike = Union[str, Path]
LABELS_TOKENIZER_DIR = "labels_tokenizer"
DECODER_TOKENIZER_DIR = "decoder_tokenizer"  # label-decoder models: the decoder's tokenizer
T = TypeVar("T", bound="ModelFiles")


class ModelFiles:
    """A GLiNER torch model, its tokenizer(s) and configuration.

    ``ModelFiles(config)`` builds the encoder named by ``config.model_name`` with its pretrained
    weights (``pretrained_encoder=False``: random ones), adds the prompt tokens and creates new
    heads. ``from_pretrained`` loads a checkpoint directory or hub id as the ``gliner`` package
    writes it; ``save_pretrained`` writes one the reference loads.
    """

    def __init__(
        self,
        config: GLiNERConfig,
        *,
        pretrained_encoder: bool = True,
        cache_dir: Optional[PathLike] = None,
        local_files_only: bool = False,
        parts: Optional[tuple[nn.Module, Any, Any]] = None,
    ) -> None:
        if parts is None:
            hub = {"cache_dir": cache_dir, "local_files_only": hub_offline(local_files_only)}
            parts = _create(config, pretrained_encoder, hub)
        self.model, self.tokenizer, self.labels_tokenizer = parts
        self.config: GLiNERConfig = cast(GLiNERConfig, self.model.config)
        self.prompts = PromptTokenizer(self.tokenizer, self.config, self.labels_tokenizer)
        self.model.eval()

    @classmethod
    def from_pretrained(
        cls: type[T],
        name_or_path: PathLike,
        *,
        cache_dir: Optional[PathLike] = None,
        local_files_only: bool = False,
        revision: Optional[str] = None,
        token: Optional[str] = None,
        map_location: Union[str, torch.device] = "cpu",
        max_length: Optional[int] = None,
        max_width: Optional[int] = None,
        _attn_implementation: Optional[str] = None,
    ) -> T:
        """Load a checkpoint written by the ``gliner`` package (or by us): directory or hub id."""
        hub: dict[str, Any] = {
            "cache_dir": cache_dir,
            "local_files_only": local_files_only,
            "revision": revision,
            "token": token,
        }
        directory = resolve_checkpoint_dir(name_or_path, **hub)
        data = read_config_dict(directory)
        try:
            family_of(data)
            config = GLiNERConfig.from_dict(data)
        except UnsupportedArchitecture:
            raise
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{directory / CONFIG_FILE}: {err}") from err
        overrides = {
            "max_len": max_length,
            "max_width": max_width,
            "_attn_implementation": _attn_implementation,
        }
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        hub_kwargs = {"cache_dir": cache_dir, "local_files_only": hub_offline(local_files_only)}
        model, tokenizer, labels_tokenizer = _load(directory, config, hub_kwargs)
        model.to(map_location)
        return cls(config, parts=(model, tokenizer, labels_tokenizer))

    def save_pretrained(self, directory: PathLike, *, safe_serialization: bool = True) -> Path:
        """Write ``gliner_config.json``, weights and tokenizer(s): loadable by us and by ``gliner``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._sync_config()
        self.config.to_json_file(directory / CONFIG_FILE)
        save_state_dict(
            self.model, directory, safe_serialization, mode_like=directory / CONFIG_FILE
        )
        self.tokenizer.save_pretrained(str(directory))
        if self.labels_tokenizer is not None:
            self.labels_tokenizer.save_pretrained(str(directory / LABELS_TOKENIZER_DIR))
        if self.decoder_tokenizer is not None:
            self.decoder_tokenizer.save_pretrained(str(directory / DECODER_TOKENIZER_DIR))
        return directory

    @property
    def decoder_tokenizer(self) -> Any:
        """Label-decoder models: the decoder's tokenizer (``pad`` set to ``eos`` when it has
        none, as the reference does); ``None`` for every other model."""
        return getattr(self.model, "decoder_tokenizer", None)

    def to_bytes(self) -> dict[str, bytes]:
        """Checkpoint files as ``{relative path: bytes}`` (used by the spaCy component)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            files = (p for p in Path(tmp).rglob("*") if p.is_file())
            return {str(p.relative_to(tmp)): p.read_bytes() for p in files}

    @classmethod
    def from_bytes(
        cls: type[T], files: dict[str, bytes], map_location: Union[str, torch.device] = "cpu"
    ) -> T:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return cls.from_pretrained(tmp, local_files_only=True, map_location=map_location)

    def _sync_config(self) -> None:
        """Store the encoder configs so the checkpoint never needs ``model_name`` again."""
        layer: Any = self.model.token_rep_layer
        self.config.encoder_config = layer.bert_layer.model.config.to_dict()
        if hasattr(layer, "labels_encoder"):
            self.config.labels_encoder_config = layer.labels_encoder.model.config.to_dict()
        decoder = getattr(self.model, "decoder", None)
        if decoder is not None:
            lm_config = decoder.decoder_layer.model.config.to_dict()
            self.config.extra["labels_decoder_config"] = lm_config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self: T, device: Union[str, torch.device]) -> T:
        self.model.to(device)
        return self


def _load(
    directory: Path, config: GLiNERConfig, hub_kwargs: dict[str, Any]
) -> tuple[nn.Module, Any, Any]:
    """Model with strictly loaded weights, tokenizer, labels tokenizer of a checkpoint directory."""
    state_dict = read_state_dict(directory)
    stored_rnn = rnn_layers_in(state_dict)
    if stored_rnn != config.num_rnn_layers:
        logger.warning(
            "%s: gliner_config.json asks for %d LSTM layer(s) but the weights hold %d; following the weights.",
            directory,
            config.num_rnn_layers,
            stored_rnn,
        )
        config.num_rnn_layers = stored_rnn
    warn_unused_layers(config, state_dict, str(directory))
    tokenizer = load_tokenizer(directory, config.model_name, hub_kwargs)
    if not config.is_bi_encoder:
        if config.class_token_index == -1 or config.vocab_size == -1:
            add_special_tokens(tokenizer, config)  # legacy configs without the fields
        else:
            check_special_tokens(tokenizer, config, str(directory))
    labels_tokenizer = labels_cfg = None
    if config.is_bi_encoder:
        assert config.labels_encoder is not None  # is_bi_encoder means labels_encoder is set
        labels_dir = directory / LABELS_TOKENIZER_DIR
        labels_tokenizer = load_tokenizer(
            labels_dir, config.labels_encoder, hub_kwargs, "labels tokenizer"
        )
        labels_cfg = resolve_encoder_config(
            config.labels_encoder_config, config.labels_encoder, **hub_kwargs
        )
    text_cfg = resolve_encoder_config(
        config.encoder_config, config.model_name, config.vocab_size, **hub_kwargs
    )
    if config.vocab_size != -1:
        text_cfg.vocab_size = config.vocab_size
    model = assemble(config, text_cfg, labels_cfg)
    load_weights_strict(model, state_dict, str(directory))
    if config.extra.get("labels_decoder") is not None:
        model.decoder_tokenizer = _decoder_tokenizer(directory, config, hub_kwargs)
    return model, tokenizer, labels_tokenizer


def _decoder_tokenizer(directory: Path, config: GLiNERConfig, hub_kwargs: dict[str, Any]) -> Any:
    """The label decoder's tokenizer: saved in the checkpoint, else ``labels_decoder``'s
    (with ``add_prefix_space``, as the reference loads it); ``pad`` defaults to ``eos``."""
    from transformers import AutoTokenizer

    saved = directory / DECODER_TOKENIZER_DIR
    name = str(config.extra["labels_decoder"])
    try:
        if (saved / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(saved))
        else:
            tokenizer = AutoTokenizer.from_pretrained(name, add_prefix_space=True, **hub_kwargs)
    except Exception as err:  # tokenizers raises bare Exceptions on corrupt files
        raise CheckpointError(
            f"{directory}: the label decoder's tokenizer could not be loaded from {saved} or "
            f"{name!r} ({type(err).__name__}: {str(err)[:200]}). Save it into {saved}."
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def assemble(
    config: GLiNERConfig,
    text_cfg: Any,
    labels_cfg: Any = None,
    text_model: Optional[nn.Module] = None,
    labels_model: Optional[nn.Module] = None,
) -> nn.Module:
    """The family's model around the given (or freshly initialised) encoder(s)."""
    attn = config._attn_implementation
    if attn is not None:
        text_cfg._attn_implementation = attn
    text_model = text_model if text_model is not None else backbone_from_config(text_cfg, attn)
    if labels_cfg is not None and labels_model is None:
        labels_model = backbone_from_config(labels_cfg)
    return build_model(config, text_model, labels_model)


def _create(
    config: GLiNERConfig, pretrained_encoder: bool, hub: dict[str, Any]
) -> tuple[nn.Module, Any, Any]:
    """A fresh model: encoder(s) from ``model_name`` / ``labels_encoder``, new heads."""
    config = config.copy()
    family_of(config.to_dict())
    tokenizer = pretrained_tokenizer(config.model_name, "encoder", **hub)
    if not config.is_bi_encoder:
        add_special_tokens(tokenizer, config)
    text_model = _encoder(config.model_name, config.encoder_config, pretrained_encoder, hub)
    if not config.is_bi_encoder:
        cast("PreTrainedModel", text_model).resize_token_embeddings(len(tokenizer))
    labels_tokenizer = labels_model = None
    if config.is_bi_encoder:
        name = str(config.labels_encoder)
        labels_tokenizer = pretrained_tokenizer(name, "labels encoder", **hub)
        labels_model = _encoder(name, config.labels_encoder_config, pretrained_encoder, hub)
    model = assemble(config, text_model.config, None, text_model, labels_model)
    return model, tokenizer, labels_tokenizer


def _encoder(name: str, stored: Optional[dict], pretrained: bool, hub: dict[str, Any]) -> nn.Module:
    hf_config = resolve_encoder_config(None if pretrained else stored, name, **hub)
    if pretrained:
        return pretrained_backbone(name, hf_config, **hub)
    return backbone_from_config(hf_config)
