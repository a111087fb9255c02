"""The engine's precisions: the ``dtype`` settings, where each runs, and the module that runs.

float16 / bfloat16 run the model's own weights under ``torch.autocast``; int8 runs a dynamic
int8 copy of the model (``model/int8.py``) that the engine builds once and owns.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import torch
from torch import nn

from ..model.int8 import int8_copy

# EngineOptions.dtype of each ``dtype`` setting (None: the weights' own, float32).
DTYPES: dict[str, Optional[torch.dtype]] = {
    "float32": None,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.qint8,
}


def engine_dtype(name: str) -> Optional[torch.dtype]:
    """``EngineOptions.dtype`` of a ``dtype`` setting: "float32" (the default), "float16",
    "bfloat16" or "int8". Raises ``ValueError`` naming the known ones."""
    if name not in DTYPES:
        raise ValueError(f"gliner: dtype must be one of {tuple(DTYPES)}, got {name!r}.")
    return DTYPES[name]


def check_dtype(dtype: Optional[torch.dtype], device: torch.device) -> None:
    """A dtype the engine knows, on a device that has kernels for it."""
    if dtype not in DTYPES.values():
        raise ValueError(
            f"gliner: EngineOptions.dtype must be one of {list(DTYPES.values())} (settings "
            f"{tuple(DTYPES)}), got {dtype!r}."
        )
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError(
            "gliner: dtype float16 runs on a GPU only (its CPU kernels are missing or slow): "
            "on CPU use float32 (the default), bfloat16 or int8, or set device to a GPU."
        )
    if dtype == torch.qint8 and device.type != "cpu":
        raise ValueError(
            f"gliner: dtype int8 runs on CPU only (torch's dynamic int8 kernels are CPU "
            f"kernels), but the model is on {device}. On a GPU use float16 or bfloat16; for "
            "int8 set device to 'cpu'."
        )


_BUILD_LOCK = threading.Lock()  # module-level: a ScoringModel stays picklable


class ScoringModel:
    """The module an engine with ``dtype`` runs: the float model itself, or for int8 its int8 copy
    (the float model is never changed), built once. Pickled without the copy, which is rebuilt
    from the float model on first use (quantized weights do not pass through multiprocessing's
    pickler, e.g. ``nlp.pipe(n_process=2)`` under spawn)."""

    def __init__(self, model: nn.Module, dtype: Optional[torch.dtype]) -> None:
        self.float_model = model
        self.dtype = dtype
        self._module: Optional[nn.Module] = self._build()

    def _build(self) -> nn.Module:
        model = self.float_model
        return int8_copy(model) if self.dtype == torch.qint8 else model

    def get(self) -> nn.Module:
        module = self._module
        if module is None:
            with _BUILD_LOCK:
                if self._module is None:
                    self._module = self._build()
                module = self._module
        return module

    def rebuild(self) -> None:
        """Follow changed float weights (int8: a new copy)."""
        if self.dtype == torch.qint8:
            self._module = self._build()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_module": None}
