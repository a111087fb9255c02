"""Span and label vectors of the candidates (``return_vectors``; off by default).

When a call asks for vectors, each batch runs the model in two steps (``encode``, then the
family's ``head``: the same computations ``forward`` makes, so scores are those of a call
without vectors) and keeps, for every owned candidate above threshold, the two vectors the
scorer compares, from the window that owns it (the reference's ``return_vectors`` /
``return_label_vectors`` meaning, gliner 0.2.29 ``_attach_entity_vectors``):

* span-level models: the span vector ``span_rep_layer`` makes ``[D]`` and the projected label
  vector (``prompt_rep_layer``) ``[D]``; the span's logit for that label is their dot product;
* token-level models: the mean of the span's word vectors ``[D]`` and the label vector the
  scorer reads ``[D]``.

``D`` is the model's ``hidden_size``; vectors are float32. A call without vectors never comes
here (the engine's fast path is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..model.families import family_of
from .batches import Task
from .score import candidates_function
from .torch_context import attention_backends

# The families whose entity candidates can carry vectors (their models define ``head`` and
# ``entity_vectors``).
VECTOR_FAMILIES = (
    "span-level uni-encoder",
    "span-level bi-encoder",
    "token-level uni-encoder",
    "token-level bi-encoder",
)


def check_vectors(config: Any) -> None:
    """Raise ``ValueError`` unless entity vectors can be returned for this model's family."""
    family = family_of(config.to_dict()).name
    if family not in VECTOR_FAMILIES:
        raise ValueError(
            f"gliner: return_vectors is available for {', '.join(VECTOR_FAMILIES)} models; this "
            f"checkpoint is a {family} model. Unset return_vectors (or load an entity model)."
        )


def vector_batch(
    runtime: Any,
    call: Any,
    batch: Sequence[Task],
    inputs: dict[str, torch.Tensor],
    groups: Sequence[Sequence[int]],
) -> tuple[np.ndarray, ...]:
    """The torch runtime's ``batch_candidates`` for a call with vectors: :func:`vector_candidates`
    of the batch's ``inputs`` (on the runtime's device), under its autocast and attention
    contexts."""
    device = runtime.device
    context = (call.windows, call.tokens, call.plan.table, call.thresholds)
    dtype = runtime.autocast_dtype
    with (
        torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        attention_backends(device),
    ):
        candidates = candidates_function(runtime.output, runtime.max_width)
        return vector_candidates(
            runtime.scoring.get(), inputs, call.state, batch, groups, candidates, context
        )


def vector_candidates(
    model: Any,
    inputs: dict[str, torch.Tensor],
    workspace: Any,
    batch: Sequence[Task],
    groups: Sequence[Sequence[int]],
    candidates: Callable[..., tuple[np.ndarray, ...]],
    context: tuple,
) -> tuple[np.ndarray, ...]:
    """Owned candidates above threshold of one batch, as the engine's fast path finds them
    (``candidates`` with ``context`` = (windows, tokens, label table, thresholds)), plus two
    columns: span vectors ``[N, D]`` and label vectors ``[N, D]`` (float32), row for row.
    Runs under the caller's autocast and attention contexts, without autograd."""
    windows = context[0]
    words, word_mask, prompts, _ = model.encode(**inputs)
    probs = torch.sigmoid(model.head(words, word_mask, prompts, workspace).float())
    parts = []
    for row, task in enumerate(batch):
        found = candidates(probs[row : row + 1], [task], *context)
        if not len(found[0]):
            continue
        offset = windows[task.text][task.window].start
        spans = np.stack([found[1] - offset, found[2] - offset], axis=-1)
        column_of = {label: i for i, label in enumerate(groups[row])}
        columns = np.array([column_of[int(label)] for label in found[3]], dtype=np.int64)
        span_vectors, label_vectors = model.entity_vectors(
            words,
            word_mask,
            prompts,
            row,
            torch.from_numpy(spans).to(words.device),
            torch.from_numpy(columns).to(words.device),
        )
        parts.append((*found, _numpy(span_vectors), _numpy(label_vectors)))
    if not parts:
        index = np.zeros(0, dtype=np.int64)
        empty = np.zeros((0, words.size(-1)), dtype=np.float32)
        return (index, index, index, index, np.zeros(0, dtype=np.float32), empty, empty)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy()
