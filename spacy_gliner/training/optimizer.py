"""Apply spaCy's thinc optimizer to torch parameters, with per-parameter lr scale and weight decay.

spaCy's training loop owns one thinc ``Optimizer`` (its schedule, hyper-parameters and Adam moments).
thinc applies it one parameter at a time through single-threaded numpy kernels. When the optimizer is plain
Adam (no RAdam, no L2 added to the gradient, no per-parameter clipping), :func:`apply_optimizer`
runs the *same update* with torch's fused multi-threaded Adam kernel, on the optimizer's own state:
the moments stay in ``optimizer.mom1`` / ``mom2`` (shared memory), ``nr_update`` and the averages
are kept exactly as thinc keeps them. CUDA parameters take the same kernel with their moments as
tensors on the GPU (thinc's own path would need cupy). Anything else (other optimizers, other
dtypes) goes through ``optimizer(...)`` parameter by parameter.

thinc's Adam step is ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; torch's is
``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps')``: identical with
``eps' = eps / sqrt(1 - b2^t)``. Decoupled weight decay ``w *= 1 - lr * scale * decay`` comes first
in both paths (as AdamW).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy
import torch

Named = Sequence[tuple[str, torch.nn.Parameter]]


def apply_optimizer(
    optimizer: Any,
    shim_id: int,
    params: Named,
    lr_scales: Mapping[str, float],
    weight_decay: Mapping[str, float],
) -> None:
    """One optimizer step for every parameter with a gradient; gradients are cleared."""
    params = [(n, p) for n, p in params if p.grad is not None]
    plain_adam = _plain_adam(optimizer)
    fused = [
        (n, p)
        for n, p in params
        if plain_adam and p.dtype == torch.float32 and p.device.type in ("cpu", "cuda")
    ]
    if fused:
        _fused_adam(optimizer, shim_id, fused, lr_scales, weight_decay)
    fused_ids = {id(p) for _, p in fused}
    for name, param in params:
        if id(param) not in fused_ids:
            _thinc_update(
                optimizer,
                shim_id,
                name,
                param,
                lr_scales.get(name, 1.0),
                weight_decay.get(name, 0.0),
            )
        param.grad = None


# The fused path writes into thinc's optimizer state (mom1, mom2, nr_update, averages) and calls
# torch's private ``_fused_adamw_``: both are checked, and anything else takes thinc's own path.
_THINC_STATE = ("mom1", "mom2", "nr_update", "averages", "learn_rate", "b1", "b2", "eps")


def _plain_adam(optimizer: Any) -> bool:
    """Adam whose whole update the fused kernel reproduces (no RAdam, L2 or per-parameter clipping)."""
    return (
        hasattr(torch, "_fused_adamw_")
        and all(hasattr(optimizer, name) for name in _THINC_STATE)
        and not getattr(optimizer, "use_radam", True)
        and getattr(optimizer, "b1", 0.0) > 0.0
        and getattr(optimizer, "b2", 0.0) > 0.0
        and not getattr(optimizer, "grad_clip", 1.0)
        and not getattr(optimizer, "L2", 1.0)
    )


def _learn_rate(optimizer: Any) -> float:
    lr = optimizer.learn_rate
    return float(lr) if isinstance(lr, (int, float)) else 1.0


def _decay(param: torch.Tensor, optimizer: Any, scale: float, decay: float) -> None:
    if decay:
        with torch.no_grad():
            param.mul_(1.0 - _learn_rate(optimizer) * scale * decay)


def _thinc_update(
    optimizer: Any, shim_id: int, name: str, param: torch.Tensor, scale: float, decay: float
) -> None:
    from thinc.util import torch2xp, xp2torch

    _decay(param, optimizer, scale, decay)
    assert param.grad is not None  # callers pass only parameters with a gradient
    new, _ = optimizer((shim_id, name), torch2xp(param.data), torch2xp(param.grad), lr_scale=scale)
    if _data_ptr(new) != param.data_ptr():  # thinc's Adam updates in place: nothing to copy
        with torch.no_grad():
            param.copy_(xp2torch(new, device=param.device))


def _fused_adam(optimizer: Any, shim_id: int, params: Named, lr_scales, weight_decay) -> None:
    lr = _learn_rate(optimizer)
    b1, b2, eps = float(optimizer.b1), float(optimizer.b2), float(optimizer.eps)
    groups: dict[tuple[float, float, int, torch.device], list[tuple]] = defaultdict(list)
    for name, param in params:
        key = (shim_id, name)
        optimizer.nr_update[key] += 1
        m1, m2 = _moment(optimizer.mom1, key, param), _moment(optimizer.mom2, key, param)
        group = (
            lr_scales.get(name, 1.0),
            weight_decay.get(name, 0.0),
            optimizer.nr_update[key],
            param.device,
        )
        groups[group].append((key, param, m1, m2))
    for (scale, decay, step, device), items in groups.items():
        weights = [p.data for _, p, _, _ in items]
        grads = [p.grad for _, p, _, _ in items]
        steps = [torch.tensor(float(step), device=device) for _ in items]
        torch._fused_adamw_(
            weights,
            grads,
            [m for _, _, m, _ in items],
            [v for _, _, _, v in items],
            [],
            steps,
            lr=lr * scale,
            beta1=b1,
            beta2=b2,
            weight_decay=decay,
            eps=eps / (1.0 - b2**step) ** 0.5,
            amsgrad=False,
            maximize=False,
        )
        if optimizer.averages is not None:
            for key, param, _, _ in items:
                _update_average(optimizer.averages, key, param.data, step)


def _moment(store: dict[Any, Any], key: Any, param: torch.Tensor) -> torch.Tensor:
    """The optimizer's moment for ``key`` as a tensor shaped like ``param``: on CPU a view of the numpy
    array thinc keeps (memory shared with the thinc optimizer); on a GPU a tensor on that device."""
    current = store.get(key)
    if param.device.type == "cpu":
        if not isinstance(current, numpy.ndarray) or current.size != param.numel():
            current = store[key] = numpy.zeros(param.numel(), dtype="float32")
        return torch.from_numpy(current).view(param.shape)
    if (
        not isinstance(current, torch.Tensor)
        or current.shape != param.shape
        or current.device != param.device
    ):
        current = store[key] = torch.zeros_like(param, memory_format=torch.contiguous_format)
    return current


def _update_average(averages: dict[Any, Any], key: Any, weights: torch.Tensor, step: int) -> None:
    """thinc's parameter average: ``ema -= (1 - decay) * (ema - w)``, ``decay = min((1 + t) / (10 + t), 0.9999)``."""
    if weights.device.type == "cpu":
        from thinc.api import NumpyOps

        ops = NumpyOps()
        if key not in averages:
            averages[key] = ops.alloc(tuple(weights.shape), dtype="float32")
        ops.update_averages(averages[key], weights.numpy(), step)
        return
    if not isinstance(averages.get(key), torch.Tensor):
        averages[key] = torch.zeros_like(weights)
    decay = min((1.0 + step) / (10.0 + step), 0.9999)
    averages[key].sub_((1.0 - decay) * (averages[key] - weights))


def _data_ptr(array: Any):
    """Address of a numpy / cupy array's data (None if unknown)."""
    if hasattr(array, "__array_interface__"):
        return array.__array_interface__["data"][0]
    data = getattr(array, "data", None)
    return getattr(data, "ptr", None)


def optimizer_step(
    module: torch.nn.Module,
    optimizer: Any,
    shim_id: int,
    lr_scales: Mapping[str, float],
    weight_decay: Mapping[str, float],
    grad_clip: float = 0.0,
    grad_scaler: Any = None,
) -> None:
    """Clip (global norm ``grad_clip``, 0 = off) and apply ``optimizer`` to every parameter of
    ``module`` that has a gradient, then clear the gradients. With a grad scaler that found an
    inf/NaN gradient the step is skipped (gradients cleared) and the scaler updated."""
    params = [(n, p) for n, p in module.named_parameters() if p.grad is not None]
    if grad_scaler is not None and getattr(grad_scaler, "found_inf", False):
        for _, param in params:
            param.grad = None
    else:
        if grad_clip:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], grad_clip)
        apply_optimizer(optimizer, shim_id, params, lr_scales, weight_decay)
    if grad_scaler is not None and hasattr(grad_scaler, "update"):
        grad_scaler.update()
