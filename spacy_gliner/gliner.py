"""``GLiNER``: the torch model with its tokenizer(s); create, load, save, predict on plain text."""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .checkpoint import (
    LABELS_TOKENIZER_DIR,
    CheckpointError,
    hub_offline,
    load_tokenizer,
    load_weights_strict,
    read_state_dict,
    resolve_checkpoint_dir,
    rnn_layers_in,
    save_state_dict,
    warn_unused_layers,
)
from .config import CONFIG_FILE, GLiNERConfig
from .modeling.encoder import build_backbone, hf_config_from_dict, resolve_encoder_config
from .modeling.model import GLiNERModel
from .tokenization import PromptTokenizer, add_special_tokens, check_special_tokens

logger = logging.getLogger("spacy_gliner")
WORD_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")
PathLike = Union[str, Path]


class GLiNER:
    """A span-level GLiNER model: ``GLiNER(config)`` (fresh heads) or ``GLiNER.from_pretrained(...)``.

    ``GLiNER(config)`` builds the encoder named by ``config.model_name`` with its pretrained weights
    (``pretrained_encoder=False`` for random ones), adds the prompt tokens and creates new heads.
    """

    def __init__(
        self,
        config: GLiNERConfig,
        *,
        pretrained_encoder: bool = True,
        cache_dir: Optional[PathLike] = None,
        local_files_only: bool = False,
        _parts: Optional[tuple] = None,
    ) -> None:
        if _parts is None:
            _parts = _create(
                config, pretrained_encoder, {"cache_dir": cache_dir, "local_files_only": hub_offline(local_files_only)}
            )
        self.model, self.tokenizer, self.labels_tokenizer = _parts
        self.config: GLiNERConfig = self.model.config
        self.prompts = PromptTokenizer(self.tokenizer, self.config, self.labels_tokenizer)
        self.model.eval()

    # ------------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
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
    ) -> "GLiNER":
        """Load a checkpoint written by the ``gliner`` package (or by us) from a directory or hub id."""
        hub = {"cache_dir": cache_dir, "local_files_only": local_files_only, "revision": revision, "token": token}
        directory = resolve_checkpoint_dir(name_or_path, **hub)
        config = GLiNERConfig.from_json_file(directory / CONFIG_FILE)
        if max_length is not None:
            config.max_len = max_length
        if max_width is not None:
            config.max_width = max_width
        if _attn_implementation is not None:
            config._attn_implementation = _attn_implementation
        state_dict = read_state_dict(directory)
        stored_rnn = rnn_layers_in(state_dict)
        if stored_rnn != config.num_rnn_layers:
            logger.warning(
                "%s: gliner_config.json asks for %d LSTM layer(s) but the weights hold %d; following the weights.",
                directory, config.num_rnn_layers, stored_rnn,
            )
            config.num_rnn_layers = stored_rnn
        warn_unused_layers(config, state_dict, str(directory))
        hub_kwargs = {"cache_dir": cache_dir, "local_files_only": hub_offline(local_files_only)}
        tokenizer = load_tokenizer(directory, config.model_name, hub_kwargs)
        if config.class_token_index == -1 or config.vocab_size == -1:
            if not config.is_bi_encoder:
                add_special_tokens(tokenizer, config)  # legacy configs without the fields
        elif not config.is_bi_encoder:
            check_special_tokens(tokenizer, config, str(directory))
        labels_tokenizer = None
        if config.is_bi_encoder:
            labels_dir = directory / LABELS_TOKENIZER_DIR
            labels_tokenizer = load_tokenizer(labels_dir, config.labels_encoder, hub_kwargs, "labels tokenizer")
        text_cfg = resolve_encoder_config(config.encoder_config, config.model_name, config.vocab_size, **hub_kwargs)
        if config.vocab_size != -1:
            text_cfg.vocab_size = config.vocab_size
        labels_cfg = None
        if config.is_bi_encoder:
            labels_cfg = resolve_encoder_config(config.labels_encoder_config, config.labels_encoder, **hub_kwargs)
        model = _assemble(config, text_cfg, labels_cfg)
        load_weights_strict(model, state_dict, str(directory))
        model.to(map_location)
        return cls(config, _parts=(model, tokenizer, labels_tokenizer))

    def save_pretrained(self, directory: PathLike, *, safe_serialization: bool = True) -> Path:
        """Write ``gliner_config.json``, weights and tokenizer(s): loadable by us and by ``gliner``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._sync_config()
        self.config.to_json_file(directory / CONFIG_FILE)
        save_state_dict(self.model, directory, safe_serialization)
        self.tokenizer.save_pretrained(str(directory))
        if self.labels_tokenizer is not None:
            self.labels_tokenizer.save_pretrained(str(directory / LABELS_TOKENIZER_DIR))
        return directory

    def to_bytes(self) -> Dict[str, bytes]:
        """Checkpoint files as ``{relative path: bytes}`` (used by the spaCy component)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}

    @classmethod
    def from_bytes(cls, files: Dict[str, bytes], map_location: Union[str, torch.device] = "cpu") -> "GLiNER":
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return cls.from_pretrained(tmp, local_files_only=True, map_location=map_location)

    def _sync_config(self) -> None:
        """Store the encoder configs so the checkpoint never needs ``model_name`` again."""
        layer = self.model.token_rep_layer
        self.config.encoder_config = layer.bert_layer.model.config.to_dict()
        if hasattr(layer, "labels_encoder"):
            self.config.labels_encoder_config = layer.labels_encoder.model.config.to_dict()

    # ------------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: Union[str, torch.device]) -> "GLiNER":
        self.model.to(device)
        return self

    # ------------------------------------------------------------------------ plain-text API
    def predict_entities(
        self,
        text: str,
        labels: Union[Sequence[str], Dict[str, str]],
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
    ) -> List[Dict[str, Any]]:
        """Entities in ``text`` as ``{"start", "end", "text", "label", "score"}`` dicts (char offsets)."""
        return self.inference([text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)[0]

    def inference(
        self,
        texts: Sequence[str],
        labels: Union[Sequence[str], Dict[str, str]],
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
    ) -> List[List[Dict[str, Any]]]:
        """Like the reference's ``inference``, but long texts are windowed instead of truncated."""
        from .inference import LabelSet, predict_words

        if isinstance(texts, str):
            texts = [texts]  # as the reference does; iterating a str would score single characters
        label_set = LabelSet.from_labels(labels)
        # Like the reference, anything that is not a string is skipped and gets no entities.
        splits = [
            [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(t)] if isinstance(t, str) else []
            for t in texts
        ]
        results = predict_words(
            self, [[w for w, _, _ in s] for s in splits], label_set, threshold=threshold,
            flat_ner=flat_ner, multi_label=multi_label, batch_size=batch_size,
        )
        output = []
        for text, split, result in zip(texts, splits, results):
            ents = []
            for start, end, label, score in result:
                a, b = split[start][1], split[end][2]
                ents.append({"start": a, "end": b, "text": text[a:b], "label": label_set.names[label], "score": score})
            output.append(ents)
        return output


def _assemble(config: GLiNERConfig, text_cfg, labels_cfg=None, text_model=None, labels_model=None) -> GLiNERModel:
    if config._attn_implementation is not None:
        text_cfg._attn_implementation = config._attn_implementation
    text_model = text_model if text_model is not None else build_backbone(text_cfg)
    if labels_cfg is not None and labels_model is None:
        labels_model = build_backbone(labels_cfg)
    return GLiNERModel(config, text_model, labels_model)


def _create(config: GLiNERConfig, pretrained_encoder: bool, hub_kwargs: Dict[str, Any]):
    """A fresh model: encoder(s) from ``model_name`` / ``labels_encoder``, new heads."""
    from transformers import AutoTokenizer

    config = config.copy()
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model_name, use_fast=True, **hub_kwargs)
    except Exception as err:
        raise CheckpointError(f"Could not load the tokenizer of encoder {config.model_name!r}: {err}") from err
    if not config.is_bi_encoder:
        add_special_tokens(tokenizer, config)
    text_cfg = resolve_encoder_config(
        config.encoder_config if not pretrained_encoder else None, config.model_name, **hub_kwargs
    )
    text_model = build_backbone(text_cfg, config.model_name if pretrained_encoder else None, **(hub_kwargs if pretrained_encoder else {}))
    if not config.is_bi_encoder:
        text_model.resize_token_embeddings(len(tokenizer))
    labels_tokenizer = labels_model = None
    if config.is_bi_encoder:
        try:
            labels_tokenizer = AutoTokenizer.from_pretrained(config.labels_encoder, use_fast=True, **hub_kwargs)
        except Exception as err:
            raise CheckpointError(
                f"Could not load the tokenizer of labels encoder {config.labels_encoder!r}: {err}"
            ) from err
        labels_cfg = resolve_encoder_config(
            config.labels_encoder_config if not pretrained_encoder else None, config.labels_encoder, **hub_kwargs
        )
        labels_model = build_backbone(
            labels_cfg, config.labels_encoder if pretrained_encoder else None, **(hub_kwargs if pretrained_encoder else {})
        )
    model = _assemble(config, text_model.config, None, text_model, labels_model)
    return model, tokenizer, labels_tokenizer


__all__ = ["GLiNER", "GLiNERConfig", "hf_config_from_dict"]
