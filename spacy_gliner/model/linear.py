"""Linear layers for CPU inference: oneDNN's float32 matrix product where it is faster than MKL's.

torch's float32 ``F.linear`` on CPU calls MKL's ``sgemm``. On the narrow products of GLiNER
inference (a few hundred to a few thousand rows times hidden sizes of 384-2048), the oneDNN
(``mkldnn``) kernel that torch ships for ``torch.compile``'s CPU backend is 1.1-1.5x faster on the
AMD EPYC (AVX-512) of this project's machines; see ``bench/README.md``, "Linear layers".
``linear`` uses it when every condition of ``onednn_applies`` holds, else ``F.linear`` (the plain
path, which training, tracing, exports, GPUs and other dtypes always take). Both compute
``x @ weight.T + bias`` in float32; they differ by float rounding only
(``tests/test_linear.py`` pins them equal, and the parity suite runs through this path).

``torch.ops.mkldnn._linear_pointwise`` is a private torch operator: it is used only on x86-64,
torch >= 2.1, a torch built with oneDNN, and after a probe (once per process) found it equal to
``F.linear`` (``onednn_linear_available``); otherwise everything runs through ``F.linear``.
Setting the environment variable ``SPACY_GLINER_ONEDNN=0`` turns it off (read on each call).

Weights must be contiguous for oneDNN (a strided weight takes a slow reference kernel): a slice
of a weight is copied first when the product has at least ``COPY_ROWS`` rows, else the product
runs through ``F.linear``.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

ENV_SWITCH = "SPACY_GLINER_ONEDNN"
COPY_ROWS = 64  # rows of x from which copying a strided weight pays off


@functools.lru_cache(maxsize=1)
def onednn_linear_available() -> bool:
    """Whether oneDNN's linear operator can serve ``linear`` in this process: x86-64, torch >= 2.1
    built with oneDNN, and the operator's result on a probe equals ``F.linear``'s within 1e-5."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 1) or not torch.backends.mkldnn.is_available():
        return False
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None:
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 24, generator=gen)
    weight, bias = torch.randn(16, 24, generator=gen), torch.randn(16, generator=gen)
    try:
        with torch.no_grad():
            same = all(
                torch.allclose(op(x, weight, b, "none", [], ""), F.linear(x, weight, b), atol=1e-5)
                for b in (bias, None)
            )
    except (RuntimeError, NotImplementedError):
        return False
    return same


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight, ...)`` takes the oneDNN kernel: autograd off, not tracing,
    exporting or compiling, float32 CPU tensors, the switch not set to 0, the operator available."""
    if torch.is_grad_enabled() or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.device.type != "cpu" or weight.device.type != "cpu":
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    if torch.compiler.is_compiling() or os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    return onednn_linear_available()


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``x`` ``[..., in]``, ``weight`` ``[out, in]``, ``bias``
    ``[out]`` -> ``[..., out]``; through oneDNN when ``onednn_applies`` (module docs)."""
    if not onednn_applies(x, weight):
        return F.linear(x, weight, bias)
    if not weight.is_contiguous():
        if x.numel() < COPY_ROWS * x.size(-1):
            return F.linear(x, weight, bias)
        weight = weight.contiguous()
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class Linear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`linear` (same parameters, state-dict keys and values
    as ``nn.Linear``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_fast_linear(model: nn.Module) -> nn.Module:
    """Every module of ``model`` whose type is exactly ``nn.Linear`` (the encoder's included)
    becomes a :class:`Linear`, in place: the same object, parameters and hooks, only its forward
    changes. Subclasses of ``nn.Linear`` (e.g. ``nn.MultiheadAttention``'s) are left alone.
    Returns ``model``."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = Linear
    return model
