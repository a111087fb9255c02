"""Dynamic int8 inference on CPU: a copy of a model whose ``nn.Linear`` layers multiply in int8.

Weights are quantized once, symmetric int8 per output channel (``w ~= w_scale[o] * wq[i, o]``).
Activations are quantized per call **per row** (per token), asymmetric over the row's own range
(``x ~= s[r] * (q[r, i] - z[r])``, ``q`` int8): a few tokens with large activations (special
tokens, prompt markers) then cost the other tokens no precision, which one scale per tensor
(torch's ``quantized::linear_dynamic``, and the reference's int8) cannot avoid. The products
``q @ wq`` accumulate exactly in int32 (``torch._int_mm``); the zero point is removed with the
weights' column sums, then rows and columns are rescaled in float32.

Activations use 256 levels on x86 CPUs with VNNI (``vpdpbusd`` sums u8 x s8 products in int32)
and 128 elsewhere (without VNNI, int8 kernels add pairs of products in int16, which full-range
activations can saturate): ``full_range_activations``.

``int_matmul`` runs ``torch._int_mm`` (a private torch operator, CPU kernels since torch 2.2)
when this torch has it and it runs on CPU (``int_mm_available``, checked once); otherwise it
multiplies the same integers in float32, which gives the same sums (every product and partial
sum is an integer below 2**24 for the widths of these encoders) without the speed-up.

The copy shares every other tensor (embeddings, LayerNorms, the LSTM, ...) with the float model,
which is never modified: building a copy costs the int8 weights only (a quarter of the Linear
weights). The copy is for inference only (no gradients flow through integer layers).

Layers kept in float32 (``float32_linears``):

* Linear layers whose weights a forward reads as tensors instead of calling them (factored
  first layers of two-input MLPs): what a module class names in ``READS_WEIGHTS`` (markerV0's
  ``out_project``, the token scorer's ``out_mlp.0``, the relation layers' pair MLPs) and the
  projections inside ``nn.MultiheadAttention`` (the fusion layers);
* the labels encoder of a bi-encoder (its label vectors are computed once per label set by the
  float model and cached: quantizing it saves no time);
* ``KEEP_FLOAT32``: the encoder's attention value projections, where int8 costs accuracy.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from itertools import chain

import torch
from torch import nn

logger = logging.getLogger("spacy_gliner")

# Linear layers kept in float32 because int8 loses accuracy there (regular expressions searched in
# module names): the attention value projections (BERT ``attention.self.value``, DeBERTa
# ``value_proj``), whose error reaches the output linearly (query / key errors are damped by the
# softmax). Measured on the demo project's trained MiniLM GLiNER: README, "int8 on CPU".
KEEP_FLOAT32: tuple[str, ...] = (r"\.attention\.self\.value(_proj)?$",)
# The bi-encoder labels tower: its vectors are cached per label set, computed by the float model.
LABELS_TOWER = ("token_rep_layer.labels_encoder", "token_rep_layer.labels_projection")


class Int8Linear(nn.Module):
    """``y = x @ w.T + b`` with int8 weights (per output channel) and int8 activations (per row,
    asymmetric); input ``[..., in_features]`` of any float dtype, output float32
    ``[..., out_features]``."""

    def __init__(self, linear: nn.Linear, levels: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
        qweight = (weight / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        self.register_buffer("qweight", qweight.t().contiguous())  # [in, out]
        self.register_buffer("weight_scale", scale)  # [out]
        self.register_buffer("column_sums", qweight.float().sum(dim=1))  # [out]
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias)
        self.levels = int(levels)  # activation levels per row: 256 or 128

    qweight: torch.Tensor
    weight_scale: torch.Tensor
    column_sums: torch.Tensor
    bias: torch.Tensor | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        low = rows.amin(dim=1, keepdim=True).clamp_(max=0.0)
        high = rows.amax(dim=1, keepdim=True).clamp_(min=0.0)
        scale = ((high - low) / (self.levels - 1)).clamp_(min=1e-12)
        zero = (-low / scale).round_() - self.levels // 2  # x ~= scale * (q - zero)
        q = (rows / scale).round_().add_(zero).clamp_(-(self.levels // 2), self.levels // 2 - 1)
        acc = int_matmul(q.to(torch.int8), self.qweight).float()
        out = acc.sub_(zero * self.column_sums).mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)


def int_matmul(a: torch.Tensor, b: torch.Tensor, use_int_mm: bool | None = None) -> torch.Tensor:
    """``a @ b`` of int8 matrices ``[n, k] x [k, m]`` as int32 ``[n, m]``; ``torch._int_mm`` when
    ``use_int_mm`` (default: ``int_mm_available()``), else the same integers in float32."""
    if use_int_mm is None:
        use_int_mm = int_mm_available()
    if use_int_mm and a.shape[0] > 0:
        return torch._int_mm(a, b)
    return (a.float() @ b.float()).round_().to(torch.int32)


@functools.lru_cache(maxsize=1)
def int_mm_available() -> bool:
    """Whether ``torch._int_mm`` exists and multiplies int8 matrices on CPU (checked once, on a
    small product compared with the float result); False logs a warning."""
    probe = getattr(torch, "_int_mm", None)
    ok = False
    if probe is not None:
        a = torch.arange(-40, 40, dtype=torch.int8).reshape(5, 16)
        b = torch.arange(-64, 64, dtype=torch.int8).reshape(16, 8)
        try:
            ok = torch.equal(probe(a, b), (a.long() @ b.long()).to(torch.int32))
        except (RuntimeError, NotImplementedError):
            ok = False
    if not ok:
        logger.warning(
            "gliner: this torch build (%s) has no CPU int8 matrix product (torch._int_mm); "
            "dtype int8 multiplies in float32 (same results, no speed-up).",
            torch.__version__,
        )
    return ok


@functools.lru_cache(maxsize=1)
def full_range_activations() -> bool:
    """Whether this CPU has VNNI (x86 ``avx512_vnni`` / ``avx_vnni``, read from /proc/cpuinfo),
    so 8-bit activations cannot saturate; False when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni"})


def weights_read_by(module: nn.Module) -> tuple[str, ...]:
    """The submodules whose weights ``module``'s forward reads as tensors (its class's
    ``READS_WEIGHTS``; none by default)."""
    return tuple(getattr(type(module), "READS_WEIGHTS", ()))


def float32_linears(model: nn.Module, keep: tuple[str, ...] = KEEP_FLOAT32) -> set[str]:
    """Names of the ``nn.Linear`` modules of ``model`` that stay float32 (see the module docs)."""
    kept: set[str] = set()
    for name, module in model.named_modules():
        # Modules that read some of their Linear layers' weights as tensors name them in
        # READS_WEIGHTS (relative paths); nn.MultiheadAttention reads all of its own.
        direct = [""] if isinstance(module, nn.MultiheadAttention) else weights_read_by(module)
        for path in direct:
            base = _join(name, path)
            kept.update(_join(base, sub) for sub, _ in module.get_submodule(path).named_modules())
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(_under(name, p) for p in LABELS_TOWER) or any(re.search(p, name) for p in keep):
            kept.add(name)
    return kept


def int8_copy(model: nn.Module, keep: tuple[str, ...] = KEEP_FLOAT32) -> nn.Module:
    """A copy of ``model`` in evaluation mode whose ``nn.Linear`` layers (all but
    ``float32_linears(model, keep)``) are dynamic int8; ``model`` itself is left unchanged and
    shares its other parameters and buffers with the copy. Raises
    ``ValueError`` for a model on another device."""
    devices = {t.device.type for t in chain(model.parameters(), model.buffers())}
    if devices - {"cpu"}:
        raise ValueError(
            f"gliner: dtype int8 runs on CPU only (its int8 kernels are CPU kernels); "
            f"the model is on {sorted(devices - {'cpu'})}. Use dtype float16 or bfloat16 on a "
            "GPU, or device 'cpu'."
        )
    kept = float32_linears(model, keep)
    shared = {id(t): t for t in chain(model.parameters(), model.buffers())}
    clone = copy.deepcopy(model, shared)  # new modules, the same tensors
    clone.eval()
    for name, module in list(clone.named_modules()):
        if type(module) is nn.Linear and name not in kept:
            parent, _, child = name.rpartition(".")
            setattr(clone.get_submodule(parent), child, quantize_linear(module))
    return clone


@torch.no_grad()
def quantize_linear(linear: nn.Linear) -> Int8Linear:
    """``linear`` as an int8 layer (activation levels for this CPU: ``full_range_activations``)."""
    return Int8Linear(linear, 256 if full_range_activations() else 128)


def _join(base: str, sub: str) -> str:
    return f"{base}.{sub}" if base and sub else base or sub


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
