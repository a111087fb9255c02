"""Bi-encoder label vectors, computed once per label group and shared by every call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

# Labels sent through the labels encoder at once.
LABEL_ENCODER_CHUNK = 128
MAX_CACHED_GROUPS = 64
_LOCK = threading.Lock()  # module-level: the cache stays picklable


class LabelVectors:
    """Thread-safe cache ``prompts -> [C, D]`` label vectors of one bi-encoder model.

    The vectors depend on the labels encoder's weights: whoever changes those weights (a training
    step) calls :meth:`clear`. Two threads missing the same entry both compute it; the values are
    identical, so either may be kept.
    """

    def __init__(self, model: Any, prompt_tokenizer: Any) -> None:
        self._model = model
        self._prompts = prompt_tokenizer
        self._cache: dict[tuple[tuple[str, ...], torch.device], torch.Tensor] = {}

    def clear(self) -> None:
        with _LOCK:
            self._cache.clear()

    def group(self, prompts: tuple[str, ...], device: torch.device) -> torch.Tensor:
        """Vectors ``[len(prompts), D]`` (before the prompt MLP) on ``device``."""
        key = (prompts, device)
        with _LOCK:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        parts = []
        for i in range(0, len(prompts), LABEL_ENCODER_CHUNK):
            chunk = list(prompts[i : i + LABEL_ENCODER_CHUNK])
            enc = {k: v.to(device) for k, v in self._prompts.encode_labels(chunk).items()}
            parts.append(self._model.encode_labels(**enc))
        vectors = torch.cat(parts) if len(parts) > 1 else parts[0]
        with _LOCK:
            if len(self._cache) >= MAX_CACHED_GROUPS:
                self._cache.clear()
            self._cache[key] = vectors
        return vectors

    def rows(
        self, row_prompts: Sequence[tuple[str, ...]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Label vectors ``[B, C, D]`` (zero-padded) and a bool mask ``[B, C]`` for batch rows."""
        return pad_rows([self.group(p, device) for p in row_prompts], device)


def pad_rows(
    rows: Sequence[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack label-vector rows ``[C_i, D]`` into ``[B, C, D]`` (zero-padded) and a mask ``[B, C]``."""
    width = max(r.size(0) for r in rows)
    embeds = rows[0].new_zeros(len(rows), width, rows[0].size(-1))
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, r in enumerate(rows):
        embeds[i, : r.size(0)] = r
        mask[i, : r.size(0)] = True
    return embeds, mask
