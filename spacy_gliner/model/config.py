"""``GLiNERConfig``: every field of the reference configuration, read and written as ``gliner_config.json``."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

# The span modes ``span_rep.py`` builds and the post-fusion schema tokens ``fusion.py`` knows
# (here so that reading a config needs no torch: the ONNX runtime reads configs too).
SPAN_MODES: tuple[str, ...] = (
    "markerV0",
    "marker",
    "markerV1",
    "markerV2",
    "query",
    "mlp",
    "cat",
    "conv_conv",
    "conv_max",
    "conv_mean",
    "conv_sum",
    "conv_share",
)
FUSION_TOKENS: tuple[str, ...] = ("l2l", "t2t", "l2t", "t2l")

CONFIG_FILE = "gliner_config.json"
TOKEN_LEVEL = "token_level"  # span_mode of token-level models (no span representation layer)
SUBTOKEN_POOLING = ("first", "last", "mean", "max")
# The reference dispatches on this saved model_type (and on fields only, for every other one).
STREAMING_MODEL_TYPE = "gliner_streaming_span"
REL_TOKEN = "<<REL>>"  # the reference's default relation prompt token
# Fields the reference writes but that our span model does not use; kept so they round-trip.
_PASSTHROUGH_DEFAULTS: dict[str, Any] = {
    "span_encoder_config": None,
    "token_loss_coef": 1.0,
    "span_loss_coef": 1.0,
    "represent_spans": False,
    "neg_spans_ratio": 1.0,
    "precomputed_prompts_mode": None,
    "id_to_classes": None,
    "labels_decoder": None,
    "relations_layer": None,
}
_INT_FIELDS = (
    "max_width",
    "hidden_size",
    "max_len",
    "max_types",
    "num_post_fusion_layers",
    "num_rnn_layers",
    "vocab_size",
    "class_token_index",
)


@dataclass
class GLiNERConfig:
    """Configuration of a GLiNER model, with the reference's field names and defaults
    (``span_mode == "token_level"``: a token-level model; every other value names a span head).

    ``documented_architecture`` is this package's own field. ``True`` (models created by
    spacy-gliner) applies ``post_fusion_schema`` in the uni-encoder and the LSTM in the
    bi-encoder, as GLiNER's documentation describes. ``False`` (anything read from a
    ``gliner_config.json`` that lacks the field, i.e. checkpoints from the reference package)
    keeps those layers unused, as the reference does, so scores match it exactly.
    """

    model_name: str = "microsoft/deberta-v3-small"
    labels_encoder: Optional[str] = None
    name: str = "gliner"
    max_width: int = 12
    hidden_size: int = 512
    dropout: float = 0.4
    fine_tune: bool = True
    subtoken_pooling: str = "first"
    span_mode: str = "markerV0"
    post_fusion_schema: str = ""
    num_post_fusion_layers: int = 1
    vocab_size: int = -1
    max_neg_type_ratio: int = 1
    max_types: int = 25
    max_len: int = 384
    words_splitter_type: str = "whitespace"
    num_rnn_layers: int = 1
    fuse_layers: bool = False
    embed_ent_token: bool = True
    class_token_index: int = -1
    encoder_config: Optional[dict[str, Any]] = None
    labels_encoder_config: Optional[dict[str, Any]] = None
    ent_token: str = "<<ENT>>"
    sep_token: str = "<<SEP>>"
    _attn_implementation: Optional[str] = None
    documented_architecture: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # --------------------------------------------------------------------------------------
    @property
    def has_rnn(self) -> bool:
        """Legacy name (gliner <= 0.2.22): whether the BiLSTM is used."""
        return self.num_rnn_layers > 0

    @property
    def is_token_level(self) -> bool:
        return self.span_mode == TOKEN_LEVEL

    @property
    def is_bi_encoder(self) -> bool:
        return bool(self.labels_encoder)

    @property
    def relations_layer(self) -> Optional[str]:
        """Relation-extraction models: the adjacency layer (``"none"``: every entity pair)."""
        return self.extra.get("relations_layer")

    @property
    def is_relex(self) -> bool:
        return self.relations_layer is not None

    @property
    def rel_token(self) -> str:
        """The relation prompt token of relation-extraction models."""
        return str(self.extra.get("rel_token", REL_TOKEN))

    @property
    def rel_token_index(self) -> int:
        return int(self.extra.get("rel_token_index", -1))

    @property
    def embed_rel_token(self) -> bool:
        """Relation vectors from the ``<<REL>>`` token itself (else from the token after it)."""
        return bool(self.extra.get("embed_rel_token", True))

    @property
    def fusion_schema(self) -> list:
        return [part for part in self.post_fusion_schema.split("-") if part]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value cannot work."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"GLiNERConfig.{name} must be an integer, got {value!r}.")
        for name in (
            "span_mode",
            "subtoken_pooling",
            "post_fusion_schema",
            "ent_token",
            "sep_token",
            "model_name",
        ):
            if not isinstance(getattr(self, name), str):
                raise ValueError(
                    f"GLiNERConfig.{name} must be a string, got {getattr(self, name)!r}."
                )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"GLiNERConfig.dropout must be a number, got {self.dropout!r}.")
        if self.span_mode not in (*SPAN_MODES, TOKEN_LEVEL):
            raise ValueError(
                f"Unknown span_mode {self.span_mode!r}. Use one of: {', '.join(SPAN_MODES)} "
                f"(span-level models) or {TOKEN_LEVEL!r} (token-level models)."
            )
        if self.subtoken_pooling not in SUBTOKEN_POOLING:
            raise ValueError(
                f"Unknown subtoken_pooling {self.subtoken_pooling!r}. Use one of: {', '.join(SUBTOKEN_POOLING)}."
            )
        bad = [part for part in self.fusion_schema if part not in FUSION_TOKENS]
        if bad:
            raise ValueError(
                f"Unknown post_fusion_schema token(s) {bad} in {self.post_fusion_schema!r}. "
                f"Use '-'-separated tokens from: {', '.join(FUSION_TOKENS)} (e.g. 'l2l-l2t-t2t')."
            )
        for name in ("max_width", "hidden_size", "max_len", "max_types", "num_post_fusion_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GLiNERConfig.{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.num_rnn_layers < 0:
            raise ValueError(
                f"GLiNERConfig.num_rnn_layers must be >= 0, got {self.num_rnn_layers!r}."
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GLiNERConfig.dropout must be in [0, 1), got {self.dropout!r}.")
        if self.num_rnn_layers and self.hidden_size % 2:
            raise ValueError("GLiNERConfig.hidden_size must be even when the BiLSTM is used.")

    # --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GLiNERConfig:
        """Build from a ``gliner_config.json`` dict (any GLiNER version; unknown keys are kept)."""
        if not isinstance(data, dict):
            raise ValueError(
                f"A GLiNER configuration must be a JSON object, got {type(data).__name__}."
            )
        data = copy.deepcopy(dict(data))
        model_type = data.pop("model_type", None)
        known = {f.name for f in fields(cls)} - {"extra"}
        if "num_rnn_layers" not in data and "has_rnn" in data:
            # gliner <= 0.2.22 wrote a boolean; 0.2.23+ ignores it, we honour it.
            data["num_rnn_layers"] = 1 if data["has_rnn"] else 0
        data.pop("has_rnn", None)
        # A config without our marker was written by the reference package.
        data.setdefault("documented_architecture", False)
        for key in ("encoder_config", "labels_encoder_config"):
            value = data.get(key)
            if value is not None and not isinstance(value, dict):
                if not hasattr(value, "to_dict"):
                    raise ValueError(
                        f"GLiNERConfig.{key} must be a dict (a transformers config), got {value!r}."
                    )
                data[key] = value.to_dict()
        extra = {k: v for k, v in data.items() if k not in known}
        if model_type == STREAMING_MODEL_TYPE:  # the one saved model_type the reference obeys
            extra["model_type"] = model_type
        kwargs = {k: v for k, v in data.items() if k in known}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``gliner_config.json`` content, loadable by the reference package."""
        data = asdict(self)
        extra = data.pop("extra")
        data.pop("_attn_implementation")  # the reference does not serialize it either
        out = dict(_PASSTHROUGH_DEFAULTS)
        out.update(extra)
        out.update(data)
        out["model_type"] = extra.get("model_type")  # None unless streaming (see from_dict)
        return out

    @classmethod
    def from_json_file(cls, path: Union[str, Path]) -> GLiNERConfig:
        with open(path, encoding="utf8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err

    def to_json_file(self, path: Union[str, Path]) -> None:
        with open(path, "w", encoding="utf8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    def copy(self, **changes: Any) -> GLiNERConfig:
        data = copy.deepcopy(self)
        for key, value in changes.items():
            if not hasattr(data, key):
                raise ValueError(f"GLiNERConfig has no field {key!r}.")
            setattr(data, key, value)
        data.validate()
        return data
