"""Dropout for CPU training without torch's per-element Bernoulli sampler.

On CPU, ``torch.nn.functional.dropout`` draws one Bernoulli sample per element through a slow
sampler (encoder dropouts plus the span head's ``[B, W, K, 4D]`` hidden layer). Here each
element gets 16 random bits instead (64-bit draws cut into four 16-bit lanes) and is dropped when
they fall below ``round(p * 65536)``: the same independent, scaled dropout, with a drop
probability within 1/131072 of ``p``. On other devices, and in evaluation, the modules are
exactly ``torch.nn.Dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LANES = 4  # 16-bit lanes per 64-bit draw
_INT64_MIN = -(2**63)


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """Float32 tensor of ``shape``: 0.0 (dropped, probability ~``p``, independently) or 1.0.

    Built with float arithmetic only (``clamp(lane - threshold + 1, 0, 1)`` on integer-valued lanes):
    on CPU, bool-tensor kernels (comparisons, ``masked_fill``, ``where``) are several times slower.
    Off the CPU, torch's own Bernoulli sampler is fast and is used.
    """
    if torch.device(device).type != "cpu":
        return torch.empty(shape, device=device).bernoulli_(1.0 - p)
    numel = 1
    for n in shape:
        numel *= int(n)
    draws = torch.empty((numel + _LANES - 1) // _LANES, dtype=torch.int64, device=device)
    draws.random_(_INT64_MIN, None)  # full 64-bit range: every 16-bit lane is uniform
    lanes = draws.view(torch.int16)[:numel].view(shape)
    threshold = round(p * 65536) - 32768  # lane < threshold: dropped
    return lanes.float().sub_(threshold - 1).clamp_(0.0, 1.0)


def _fast(x: Tensor, p: float, training: bool) -> bool:
    return training and 0.0 < p < 1.0 and x.device.type == "cpu" and x.is_floating_point()


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same attribute, no weights) that samples its mask from random bits on CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if not _fast(x, self.p, self.training):
            return F.dropout(x, self.p, self.training, self.inplace)
        return x * keep_mask(x.shape, self.p, x.device).mul_(1.0 / (1.0 - self.p)).to(x.dtype)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Swap every plain ``nn.Dropout`` inside ``module`` (a Hugging Face encoder included) for
    :class:`FastDropout`; weights and state-dict keys are unchanged."""
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(parent, name, fast)
    return module
