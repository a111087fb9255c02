"""Torch contexts an inference call runs in (no state kept between calls)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Evaluation semantics for the call. A model in evaluation mode (the component's state
    outside ``update``) is left untouched, so concurrent calls never write module state."""
    if not module.training:
        yield
        return
    module.eval()
    try:
        yield
    finally:
        module.train()


def attention_backends(device: torch.device) -> Any:
    """On CUDA, scaled-dot-product attention without the cuDNN backend, which builds an
    execution plan for every new (batch, length) shape (inference batches come in many)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        return contextlib.nullcontext()
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(backends)
