"""The Hugging Face backbone(s): text encoder, optional layer fusion, projection, labels encoder.

No hub access here: configs arrive as dicts or objects (``io`` resolves and downloads them)."""

from __future__ import annotations

import copy
from typing import Any, Optional, cast

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig
from transformers.models.auto import CONFIG_MAPPING

from .fusion import LayersFuser


def hf_config_from_dict(data: dict[str, Any], default_type: str = "deberta-v2") -> PretrainedConfig:
    """Rebuild a transformers config from the dict stored in ``gliner_config.json``."""
    data = dict(data)
    model_type = data.pop("model_type", None) or default_type
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"Encoder model_type {model_type!r} is not known to the installed transformers version."
        )
    return CONFIG_MAPPING[model_type](**data)


def backbone_from_config(
    hf_config: PretrainedConfig, attn_implementation: str | None = None
) -> nn.Module:
    """A bare encoder with random weights from ``hf_config`` (T5 family: its encoder only).

    Attention: ``attn_implementation`` when given, else scaled-dot-product attention ("sdpa")
    where the architecture has it and transformers' default otherwise. The choice is explicit so
    a model built here computes the same floats whichever way its config was obtained (before
    transformers 4.53 ``from_config`` chose "eager" or "sdpa" depending on the config object).
    """
    if hf_config.model_type in ("t5", "mt5", "umt5"):
        from transformers import T5Config, T5EncoderModel

        return T5EncoderModel(cast(T5Config, hf_config))
    if attn_implementation is not None:
        return AutoModel.from_config(hf_config, attn_implementation=attn_implementation)
    try:  # on a copy: a refused request can leave "sdpa" set on the config (transformers 5)
        return AutoModel.from_config(copy.deepcopy(hf_config), attn_implementation="sdpa")
    except (ValueError, ImportError):  # the architecture has no sdpa attention
        return AutoModel.from_config(hf_config)


class TransformerLayer(nn.Module):
    """Holds the HF model as ``.model`` (and ``.layers_fuser``), matching checkpoint key names."""

    def __init__(self, model: nn.Module, fuse_layers: bool) -> None:
        super().__init__()
        self.model = model
        self.fuse_layers = fuse_layers
        if fuse_layers:
            cfg: Any = model.config  # a transformers config: attributes vary by model
            self.layers_fuser = LayersFuser(cfg.num_hidden_layers, cfg.hidden_size)

    @property
    def hidden_size(self) -> int:
        cfg: Any = self.model.config
        return getattr(cfg, "hidden_size", None) or cfg.d_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            output_hidden_states=self.fuse_layers,
            return_dict=True,
        )
        if self.fuse_layers:
            return self.layers_fuser(out.hidden_states)  # [B, T, H]
        return out[0]  # [B, T, H]


class TokenRepLayer(nn.Module):
    """``token_rep_layer``: text encoder (+ projection to ``hidden_size``), labels encoder if any."""

    def __init__(
        self,
        text_model: nn.Module,
        hidden_size: int,
        fuse_layers: bool,
        labels_model: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.bert_layer = TransformerLayer(text_model, fuse_layers)
        if self.bert_layer.hidden_size != hidden_size:
            self.projection = nn.Linear(self.bert_layer.hidden_size, hidden_size)
        if labels_model is not None:
            self.labels_encoder = TransformerLayer(labels_model, fuse_layers)
            if self.labels_encoder.hidden_size != hidden_size:
                self.labels_projection = nn.Linear(self.labels_encoder.hidden_size, hidden_size)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert_layer(input_ids, attention_mask)  # [B, T, H]
        if hasattr(self, "projection"):
            hidden = self.projection(hidden)
        return hidden  # [B, T, D]

    def encode_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled label embeddings ``[N, D]`` (bi-encoder only)."""
        hidden = self.labels_encoder(input_ids, attention_mask)  # [N, T, H]
        if hasattr(self, "labels_projection"):
            hidden = self.labels_projection(hidden)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [N, D]
