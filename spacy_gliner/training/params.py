"""Parameter groups: encoder vs. other layers, weight decay, freezing (as the reference trainer)."""

from __future__ import annotations

from typing import Optional

from torch import nn

ENCODER_KEY = "token_rep_layer"


def _module(model) -> nn.Module:
    """Accept an ``nn.Module`` or a wrapper holding one as ``.model`` (e.g. ``GLiNER``)."""
    return model if isinstance(model, nn.Module) else model.model


def is_encoder_param(name: str) -> bool:
    """Reference split: names containing ``token_rep_layer`` (backbone, projection, labels encoder)."""
    return ENCODER_KEY in name


def decay_param_names(model) -> set:
    """Names that get weight decay: all but ``nn.LayerNorm`` parameters and names containing "bias"."""
    module = _module(model)
    norm = {
        f"{mod_name}.{p_name}" if mod_name else p_name
        for mod_name, mod in module.named_modules()
        if isinstance(mod, nn.LayerNorm)
        for p_name, _ in mod.named_parameters(recurse=False)
    }
    return {
        name for name, _ in module.named_parameters() if name not in norm and "bias" not in name
    }


def optimizer_groups(
    model,
    lr: float,
    weight_decay: float,
    others_lr: Optional[float] = None,
    others_weight_decay: Optional[float] = None,
) -> list[dict]:
    """Torch parameter groups as the reference trainer: others+decay, others+no-decay, encoder+decay,
    encoder+no-decay (in that order; empty groups dropped; frozen parameters left out).

    ``others_lr`` / ``others_weight_decay`` default to ``lr`` / ``weight_decay``. Each group carries
    ``"name"``, ``"lr"`` and ``"weight_decay"``.
    """
    module = _module(model)
    others_lr = lr if others_lr is None else others_lr
    others_wd = weight_decay if others_weight_decay is None else others_weight_decay
    decay = decay_param_names(module)
    specs = [
        ("others_decay", False, True, others_lr, others_wd),
        ("others_no_decay", False, False, others_lr, 0.0),
        ("encoder_decay", True, True, lr, weight_decay),
        ("encoder_no_decay", True, False, lr, 0.0),
    ]
    groups = []
    for group_name, encoder, decayed, group_lr, group_wd in specs:
        params = [
            p
            for n, p in module.named_parameters()
            if p.requires_grad and is_encoder_param(n) == encoder and (n in decay) == decayed
        ]
        if params:
            groups.append(
                {"name": group_name, "params": params, "lr": group_lr, "weight_decay": group_wd}
            )
    return groups


def param_lr_scales(model, lr: float, others_lr: Optional[float] = None) -> dict[str, float]:
    """Per-parameter learning-rate multiplier relative to ``lr``: encoder 1.0, others ``others_lr / lr``."""
    others_lr = lr if others_lr is None else others_lr
    if lr == 0 and others_lr != 0:
        raise ValueError("param_lr_scales needs a non-zero base lr when others_lr is set.")
    others_scale = 1.0 if others_lr == lr else others_lr / lr
    return {
        n: 1.0 if is_encoder_param(n) else others_scale
        for n, _ in _module(model).named_parameters()
    }


def param_weight_decay(
    model, weight_decay: float, others_weight_decay: Optional[float] = None
) -> dict[str, float]:
    """Per-parameter weight decay: 0 for LayerNorm/bias, ``weight_decay`` (encoder) or
    ``others_weight_decay`` (everything else, default ``weight_decay``)."""
    others_wd = weight_decay if others_weight_decay is None else others_weight_decay
    decay = decay_param_names(model)
    return {
        n: (weight_decay if is_encoder_param(n) else others_wd) if n in decay else 0.0
        for n, _ in _module(model).named_parameters()
    }


def freeze_encoder(model, frozen: bool = True) -> int:
    """Set ``requires_grad = not frozen`` on every ``token_rep_layer`` parameter (the text encoder and,
    for bi-encoders, the labels encoder); returns the number of parameter tensors set."""
    count = 0
    for name, param in _module(model).named_parameters():
        if is_encoder_param(name):
            param.requires_grad_(not frozen)
            count += 1
    return count


__all__ = [
    "decay_param_names",
    "freeze_encoder",
    "is_encoder_param",
    "optimizer_groups",
    "param_lr_scales",
    "param_weight_decay",
]


def parameter_groups(
    module: nn.Module,
    fine_tune: bool,
    encoder_lr: Optional[float],
    others_lr: Optional[float],
    weight_decay: float,
    others_weight_decay: Optional[float],
) -> tuple[dict[str, float], dict[str, float]]:
    """Freeze the encoder unless ``fine_tune``; return per-parameter learning-rate scales
    (relative to ``encoder_lr``, the optimizer schedule's peak) and weight decays."""
    freeze_encoder(module, not fine_tune)
    if others_lr is not None and encoder_lr is None:
        raise ValueError(
            "gliner: others_lr needs encoder_lr (the peak of [training.optimizer.learn_rate])."
        )
    scales = param_lr_scales(module, encoder_lr, others_lr) if encoder_lr is not None else {}
    return scales, param_weight_decay(module, weight_decay, others_weight_decay)
