"""Model families: which GLiNER architecture a configuration describes, and how it is built.

The reference (gliner 0.2.29, ``GLiNER._get_gliner_class``) picks one of nine model classes from
the checkpoint's fields, in this order: ``model_type == "gliner_streaming_span"``, then
``relations_layer``, ``labels_decoder``, ``labels_encoder`` and ``span_mode == "token_level"``.
The fields decide, never the saved ``model_type`` alone (the reference's own legacy resolver can
write a wrong one). A family plugs in here: a builder from (config, text encoder, labels encoder)
to an ``nn.Module`` whose ``forward`` returns ``(logits, word_mask, label_mask)``, plus the name of
the output kind the engine decodes (``"span"``: logits ``[B, W, K, C]``; ``"token"``: logits
``[B, W, C, 3]``, per word and label the start, end and inside logits). Relation-extraction
families (``relations_layer`` set) add ``extract`` (``relex_model.RelexOutput``) and a ``check``
that refuses layers they do not build (an unknown ``relations_layer``, any ``triples_layer``).
Label-decoder families (``labels_decoder`` set) add ``generate`` (``span_decoder_model``,
``token_decoder_model``), which ``engine/label_decoder.py`` runs.

Token-level checkpoints with ``represent_spans``, and token-level label decoders (which always
have it), output ``"token_spans"``: the token logits list spans, whose own label logits decide
the entities (``token_span_model.TokenSpanModel.list_spans``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .config import STREAMING_MODEL_TYPE, GLiNERConfig


class UnsupportedArchitecture(ValueError):
    """The configuration describes a GLiNER architecture this version does not build."""


@dataclass(frozen=True)
class Family:
    """``check``: why a configuration of this family cannot be built ("" when it can)."""

    name: str
    output: str
    build: Callable[[GLiNERConfig, nn.Module, nn.Module | None], nn.Module]
    check: Callable[[Mapping[str, Any]], str] = lambda data: ""


def architecture_of(data: Mapping[str, Any]) -> str:
    """The architecture a ``gliner_config.json`` dict describes: the reference's choice, in its
    order (a field counts when it is present and not null, as the reference tests it)."""
    token = data.get("span_mode") == "token_level"
    level = "token-level" if token else "span-level"
    if data.get("model_type") == STREAMING_MODEL_TYPE:
        return "streaming span-level"
    if data.get("relations_layer") is not None:
        return f"{level} relation extraction"
    if data.get("labels_decoder") is not None:
        return f"{level} label decoder"
    encoders = "bi-encoder" if data.get("labels_encoder") is not None else "uni-encoder"
    if token and data.get("represent_spans"):
        return f"{level} {encoders} with span representations (represent_spans)"
    return f"{level} {encoders}"


def _span_model(config: GLiNERConfig, text: nn.Module, labels: nn.Module | None) -> nn.Module:
    from .span_model import GLiNERModel

    return GLiNERModel(config, text, labels)


def _token_model(config: GLiNERConfig, text: nn.Module, labels: nn.Module | None) -> nn.Module:
    from .token_model import TokenModel

    return TokenModel(config, text, labels)


def _relex_model(config: GLiNERConfig, text: nn.Module, labels: nn.Module | None) -> nn.Module:
    from .relex_model import SpanRelexModel

    return SpanRelexModel(config, text, labels)


def _token_relex_model(
    config: GLiNERConfig, text: nn.Module, labels: nn.Module | None
) -> nn.Module:
    from .token_relex_model import TokenRelexModel

    return TokenRelexModel(config, text, labels)


def _span_decoder_model(
    config: GLiNERConfig, text: nn.Module, labels: nn.Module | None
) -> nn.Module:
    from .span_decoder_model import SpanDecoderModel

    return SpanDecoderModel(config, text, labels)


def _token_decoder_model(
    config: GLiNERConfig, text: nn.Module, labels: nn.Module | None
) -> nn.Module:
    from .token_decoder_model import TokenDecoderModel

    return TokenDecoderModel(config, text, labels)


def _token_span_model(config: GLiNERConfig, text: nn.Module, labels: nn.Module | None) -> nn.Module:
    from .token_span_model import TokenSpanModel

    return TokenSpanModel(config, text, labels)


def _span_encoder_problem(data: Mapping[str, Any]) -> str:
    if data.get("span_encoder_config") is not None:
        return (
            "Its span_encoder_config (a context encoder over the words before the span "
            "representations) is not implemented; spacy-gliner builds token-level models that "
            "represent spans with span_encoder_config null."
        )
    return ""


def _token_decoder_problem(data: Mapping[str, Any]) -> str:
    return _span_encoder_problem(data) or _decoder_problem(data)


def _decoder_problem(data: Mapping[str, Any]) -> str:
    mode = data.get("decoder_mode")
    if mode not in (None, "span"):
        return (
            f"Its decoder_mode {mode!r} is not built: spacy-gliner generates labels per span "
            "(decoder_mode 'span'; null generates none); the reference's own inference fails "
            "with 'prompt'."
        )
    if not isinstance(data.get("labels_decoder_config"), dict):
        return (
            "Its gliner_config.json has no labels_decoder_config (the decoder's transformers "
            "config), which spacy-gliner needs to build the decoder."
        )
    return ""


def _relex_problem(data: Mapping[str, Any]) -> str:
    from .relation_layers import ADJACENCY_MODES, ALL_PAIRS

    layer = data.get("relations_layer")
    if str(layer).lower() not in (*ADJACENCY_MODES, ALL_PAIRS):
        return (
            f"Its relations_layer {layer!r} is none of the reference's adjacency layers "
            f"({', '.join(ADJACENCY_MODES)}) or {ALL_PAIRS!r} (every entity pair)."
        )
    if data.get("triples_layer") is not None:
        return (
            f"Its triples_layer {data['triples_layer']!r} (knowledge-graph triple scoring) is not "
            "implemented; spacy-gliner scores relations with pair_rep_layer (triples_layer null)."
        )
    return ""


FAMILIES: dict[str, Family] = {
    "span-level uni-encoder": Family("span-level uni-encoder", "span", _span_model),
    "span-level bi-encoder": Family("span-level bi-encoder", "span", _span_model),
    "token-level uni-encoder": Family("token-level uni-encoder", "token", _token_model),
    "token-level bi-encoder": Family("token-level bi-encoder", "token", _token_model),
    "span-level relation extraction": Family(
        "span-level relation extraction", "span", _relex_model, _relex_problem
    ),
    "token-level relation extraction": Family(
        "token-level relation extraction", "token", _token_relex_model, _relex_problem
    ),
    "span-level label decoder": Family(
        "span-level label decoder", "span", _span_decoder_model, _decoder_problem
    ),
    # Its entity head is the represent_spans one (token_spans); LabelDecoderEngine adds names.
    "token-level label decoder": Family(
        "token-level label decoder", "token_spans", _token_decoder_model, _token_decoder_problem
    ),
    **{
        name: Family(name, "token_spans", _token_span_model, _span_encoder_problem)
        for name in (
            f"token-level {encoders} with span representations (represent_spans)"
            for encoders in ("uni-encoder", "bi-encoder")
        )
    },
}


# Why an architecture is not built (one sentence, ending the error), by the end of its name.
NOT_BUILT = {
    "streaming span-level": (
        "Streaming span models are a different network: a causal decoder (GPT-2 / Llama style) "
        "reads the label prompt and the text in one pass, a separate context encoder turns the "
        "decoder's label-token states into label vectors, and inference keeps a key-value cache "
        "across calls, so none of spacy-gliner's encoder, prompt or batching code applies."
    ),
}


def family_of(data: Mapping[str, Any]) -> Family:
    """The family that builds this configuration; ``UnsupportedArchitecture`` naming it if none."""
    arch = architecture_of(data)
    family = FAMILIES.get(arch)
    problem = family.check(data) if family is not None else ""
    if family is None or problem:
        supported = ", ".join(FAMILIES)
        why = problem or next((text for end, text in NOT_BUILT.items() if arch.endswith(end)), "")
        raise UnsupportedArchitecture(
            f"This checkpoint is a {arch} GLiNER model (from its gliner_config.json: model_type "
            f"{data.get('model_type')!r}, span_mode {data.get('span_mode')!r}, relations_layer "
            f"{data.get('relations_layer')!r}, labels_decoder {data.get('labels_decoder')!r}). "
            f"spacy-gliner builds: {supported}; load a checkpoint of one of those. {why}".rstrip()
        )
    return family


def build_model(
    config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
) -> nn.Module:
    """The torch model for ``config`` (raises ``UnsupportedArchitecture`` first)."""
    return family_of(config.to_dict()).build(config, text_model, labels_model)
