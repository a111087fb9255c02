"""The Hugging Face backbone(s): text encoder, optional layer fusion, projection, labels encoder."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig
from transformers.models.auto import CONFIG_MAPPING

from .fusion import LayersFuser


def hf_config_from_dict(data: Dict[str, Any], default_type: str = "deberta-v2") -> PretrainedConfig:
    """Rebuild a transformers config from the dict stored in ``gliner_config.json``."""
    data = dict(data)
    model_type = data.pop("model_type", None) or default_type
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"Encoder model_type {model_type!r} is not known to the installed transformers version."
        )
    return CONFIG_MAPPING[model_type](**data)


def build_backbone(hf_config: PretrainedConfig, pretrained: Optional[str] = None, **hub_kwargs: Any) -> nn.Module:
    """A bare encoder: pretrained weights from ``pretrained`` or random init from ``hf_config``."""
    if hf_config.model_type in ("t5", "mt5", "umt5"):
        from transformers import T5EncoderModel

        cls: Any = T5EncoderModel
    else:
        cls = AutoModel
    if pretrained is not None:
        return cls.from_pretrained(pretrained, config=hf_config, **hub_kwargs)
    if cls is AutoModel:
        return AutoModel.from_config(hf_config)
    return cls(hf_config)


class TransformerLayer(nn.Module):
    """Holds the HF model as ``.model`` (and ``.layers_fuser``), matching checkpoint key names."""

    def __init__(self, model: nn.Module, fuse_layers: bool) -> None:
        super().__init__()
        self.model = model
        self.fuse_layers = fuse_layers
        if fuse_layers:
            cfg = model.config
            self.layers_fuser = LayersFuser(cfg.num_hidden_layers, cfg.hidden_size)

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model")

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


def resolve_encoder_config(
    stored: Optional[Dict[str, Any]], model_name: str, vocab_size: int = -1, **hub_kwargs: Any
) -> PretrainedConfig:
    """The backbone config: from ``gliner_config.json`` if stored there, else from ``model_name``."""
    if stored is not None:
        return hf_config_from_dict(stored)
    try:
        hf_config = AutoConfig.from_pretrained(model_name, **hub_kwargs)
    except Exception as err:  # OSError / HTTP errors from transformers and huggingface_hub
        from ..checkpoint import CheckpointError

        raise CheckpointError(
            f"The configuration stores no encoder_config and the encoder {model_name!r} could not be loaded "
            f"({type(err).__name__}: {str(err)[:200]}). Make {model_name!r} available locally (or in the "
            "Hugging Face cache), or load a checkpoint that stores encoder_config."
        ) from err
    if vocab_size != -1:
        hf_config.vocab_size = vocab_size
    return hf_config
