"""The thinc shim that holds the GLiNER torch module and applies spaCy's optimizer to it
(importing it imports no torch: the module arrives later)."""

from __future__ import annotations

from typing import Any

from thinc.shims import PyTorchShim


class GLiNERShim(PyTorchShim):
    """A PyTorchShim whose torch module arrives later (initialize / from_disk) and whose update
    scales the learning rate and weight decay per parameter (encoder vs. the other layers)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.lr_scales: dict[str, float] = {}
        self.weight_decay: dict[str, float] = {}
        self.grad_clip = 0.0

    def set_model(self, module: Any) -> None:
        self._model = module

    @property
    def has_model(self) -> bool:
        return self._model is not None

    def finish_update(self, optimizer: Any) -> None:
        if self._model is None:
            return
        from ..training.optimizer import optimizer_step

        # thinc's PyTorchShim keeps its grad scaler in a private attribute: used when present.
        scaler = getattr(self, "_grad_scaler", None)
        optimizer_step(
            self._model,
            optimizer,
            self.id,
            self.lr_scales,
            self.weight_decay,
            self.grad_clip,
            scaler,
        )
