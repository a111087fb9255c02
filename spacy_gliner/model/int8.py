"""Dynamic int8 inference on CPU: a copy of a model whose ``nn.Linear`` layers run torch's
quantized kernels (FBGEMM / oneDNN ``quantized::linear_dynamic``).

Weights are quantized once, symmetric int8 per output channel; activations are quantized per call
over their own range, and every product accumulates in int32. Activations get all 8 bits on x86
CPUs with VNNI (``vpdpbusd`` sums u8 x s8 products in int32); elsewhere 7 bits (torch's default:
FBGEMM's AVX2 kernels add pairs of products in int16, which 8-bit activations can saturate).
The copy shares every other tensor (embeddings, LayerNorms, the LSTM, ...) with the float model,
which is never modified: building a copy costs the int8 weights only (a quarter of the Linear
weights). The copy is for inference only (no gradients flow through quantized layers).

Layers kept in float32 (``float32_linears``):

* Linear layers whose weights a forward reads as tensors instead of calling them: markerV0's
  ``out_project`` (folded into the span terms and the label vectors, ``marker_scores.py``) and the
  projections inside ``nn.MultiheadAttention`` (the fusion layers);
* the labels encoder of a bi-encoder (its label vectors are computed once per label set by the
  float model and cached: quantizing it saves no time);
* ``KEEP_FLOAT32``: layers where int8 costs accuracy (the encoder's feed-forward blocks and
  attention value projections).
"""

from __future__ import annotations

import copy
import functools
import re
from itertools import chain

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from .span_rep import MarkerV0

# Linear layers kept in float32 because int8 loses accuracy there (regular expressions searched in
# module names): the encoder's feed-forward blocks (BERT / DeBERTa ``layer.N.intermediate.dense``
# and ``layer.N.output.dense``, ModernBERT ``mlp.Wi`` / ``mlp.Wo``, T5 ``DenseReluDense``), whose
# inputs have a few channels 15-25x larger than the rest (LayerNorm and GELU outliers) that one
# int8 scale per tensor cannot resolve, and the attention value projections (their error reaches
# the output linearly; query / key errors are damped by the softmax). Measured on a trained MiniLM
# GLiNER: README, "int8 on CPU".
KEEP_FLOAT32: tuple[str, ...] = (
    r"\.layer\.\d+\.(intermediate|output)\.dense$",
    r"\.attention\.self\.value(_proj)?$",
    r"\.mlp\.W[io]$",
    r"\.DenseReluDense\.",
)
# The bi-encoder labels tower: its vectors are cached per label set, computed by the float model.
LABELS_TOWER = ("token_rep_layer.labels_encoder", "token_rep_layer.labels_projection")


class Int8Linear(DynamicInt8Linear):
    """torch's dynamic int8 Linear, with the activation range chosen for this CPU
    (``full_range_activations``) instead of always 7 bits."""

    def __init__(self, in_features: int, out_features: int, reduce_range: bool) -> None:
        super().__init__(in_features, out_features, dtype=torch.qint8)
        self.reduce_range = reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, self.reduce_range).to(x.dtype)


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


def int8_available() -> bool:
    """Whether this torch build has a CPU engine for dynamic int8 (FBGEMM, oneDNN or QNNPACK)."""
    return any(e != "none" for e in torch.backends.quantized.supported_engines)


def float32_linears(model: nn.Module, keep: tuple[str, ...] = KEEP_FLOAT32) -> set[str]:
    """Names of the ``nn.Linear`` modules of ``model`` that stay float32 (see the module docs)."""
    kept: set[str] = set()
    for name, module in model.named_modules():
        direct: nn.Module | None = None
        if isinstance(module, nn.MultiheadAttention):
            direct = module
        elif isinstance(module, MarkerV0):
            direct = module.out_project
        if direct is not None:
            base = name if direct is module else f"{name}.out_project"
            kept.update(_join(base, sub) for sub, _ in direct.named_modules())
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(_under(name, p) for p in LABELS_TOWER) or any(re.search(p, name) for p in keep):
            kept.add(name)
    return kept


def int8_copy(model: nn.Module, keep: tuple[str, ...] = KEEP_FLOAT32) -> nn.Module:
    """A copy of ``model`` in evaluation mode whose ``nn.Linear`` layers (all but
    ``float32_linears(model, keep)``) are dynamic int8; ``model`` itself is left unchanged and
    shares its other parameters and buffers with the copy. Raises ``RuntimeError`` when torch
    has no quantized CPU engine, ``ValueError`` for a model on another device."""
    if not int8_available():
        raise RuntimeError(
            "gliner: dtype int8 needs torch's quantized CPU kernels, which this torch build "
            f"lacks (torch.backends.quantized.supported_engines = "
            f"{torch.backends.quantized.supported_engines}). Use dtype float32 or bfloat16."
        )
    devices = {t.device.type for t in chain(model.parameters(), model.buffers())}
    if devices - {"cpu"}:
        raise ValueError(
            f"gliner: dtype int8 runs on CPU only (torch's dynamic int8 kernels are CPU kernels); "
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
def quantize_linear(linear: nn.Linear) -> nn.Module:
    """``linear`` as a dynamic int8 layer: weights symmetric int8 per output channel."""
    weight = linear.weight.detach().float()
    scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    zeros = torch.zeros(weight.size(0), dtype=torch.long)
    qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
    layer = Int8Linear(linear.in_features, linear.out_features, not full_range_activations())
    bias = None if linear.bias is None else linear.bias.detach().float()
    layer.set_weight_bias(qweight, bias)
    return layer


def _join(base: str, sub: str) -> str:
    return f"{base}.{sub}" if base and sub else base or sub


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
