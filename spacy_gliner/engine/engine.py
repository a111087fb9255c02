"""The torch inference engine: word lists x labels -> scored candidate spans per text.

One :class:`Engine` per loaded model, reused across calls and safe to call from several
threads: everything a call computes lives in that call (``core.Call``, passed as an argument);
the engine itself only holds settings fixed at construction and two caches (label plans,
bi-encoder label vectors) whose entries are pure functions of their keys.

Planning, batching and collecting are :class:`~spacy_gliner.engine.core.EngineCore` (no torch);
:class:`TorchRuntime` runs the model on each batch without autograd and keeps the candidates
above threshold that the window owns (span cells; for token-level models, the spans formed from
start / end / inside scores: ``token_spans.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np
import torch

from ..io.tokenizers import max_sequence_tokens
from ..model.families import family_of
from ..model.marker_scores import Workspace
from .batches import Task
from .core import (
    BI_ENCODER_LABELS_PER_PASS,
    CPU_BATCH_WINDOWS,
    GPU_BATCH_WINDOWS,
    Call,
    EngineCore,
    EngineOptions,
)
from .dtypes import ScoringModel, check_dtype
from .label_vectors import LabelVectors, pad_rows
from .labels import LabelSet
from .score import candidates_function, listed_candidates
from .token_spans import SPAN_LISTS
from .torch_context import attention_backends, eval_mode
from .vectors import check_vectors, vector_batch
from .windows import Window

__all__ = [
    "BI_ENCODER_LABELS_PER_PASS",
    "CPU_BATCH_WINDOWS",
    "GPU_BATCH_WINDOWS",
    "Engine",
    "EngineOptions",
    "TorchRuntime",
    "predict_words",
]

# The process that imported the engine. A call from a forked child (``nlp.pipe(n_process=N)`` on
# Linux, ``multiprocessing`` with fork) runs torch with one intra-op thread: GNU OpenMP's thread
# pool does not survive ``fork``, and a child that uses it after the parent did waits forever.
_PARENT_PID = os.getpid()
_forked_child_ready = False


class TorchRuntime:
    """The engine's runtime for a loaded torch GLiNER (``.model``, ``.prompts``, ``.device``):
    the model (or its int8 copy) under the engine's autocast dtype, bi-encoder label vectors,
    and candidate extraction on the device's tensors."""

    def __init__(self, gliner: Any, options: EngineOptions, output: str) -> None:
        cfg = gliner.config
        self.gliner = gliner
        self.device = gliner.device
        check_dtype(options.dtype, gliner.device)
        int8 = options.dtype == torch.qint8
        self.autocast_dtype = None if int8 else options.dtype
        self.scoring = ScoringModel(gliner.model, options.dtype)
        self.label_vectors = (
            LabelVectors(gliner.model, gliner.prompts) if cfg.is_bi_encoder else None
        )
        self.output, self.max_width = output, cfg.max_width
        # Token-level models that list spans (``list_spans``) have no cell-wise candidate step.
        lists = output == SPAN_LISTS
        self._candidates = None if lists else candidates_function(output, cfg.max_width)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with eval_mode(self.gliner.model), torch.inference_mode():
            yield

    def call_state(
        self, windows: Sequence[Sequence[Window]], batches: Sequence[Sequence[Task]]
    ) -> Optional[Workspace]:
        return _workspace(windows, batches)

    def batch_candidates(
        self,
        inputs: dict[str, np.ndarray],
        groups: Sequence[Sequence[int]],
        call: Call,
        batch: Sequence[Task],
    ) -> tuple[np.ndarray, ...]:
        """Owned candidates above threshold of one batch (with vectors when the call asks)."""
        tensors = self.device_inputs(inputs, groups, call.labels)
        if call.vectors:
            return vector_batch(self, call, batch, tensors, groups)
        where = (batch, call.windows, call.tokens, call.plan.table, call.thresholds)
        if self._candidates is None:  # token-level models that list spans (SPAN_LISTS)
            limits = torch.from_numpy(call.thresholds[[t.group for t in batch]]).float()
            lists = self.run_model(tensors, threshold=limits.to(self.device))
            return listed_candidates(lists.span_idx, lists.span_mask, lists.span_logits, *where)
        logits, _, _ = self.run_model(tensors, workspace=call.state)
        return self._candidates(torch.sigmoid(logits.float()), *where)

    def run_model(self, tensors: dict[str, torch.Tensor], **kwargs: Any) -> Any:
        """The model (or its int8 copy) on one batch under the engine's autocast dtype and
        attention backends: ``list_spans`` when ``threshold`` is given, else ``forward``."""
        dtype = self.autocast_dtype
        with (
            torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None),
            attention_backends(self.device),
        ):
            model: Any = self.scoring.get()
            return (
                model.list_spans(**tensors, **kwargs)
                if "threshold" in kwargs
                else model(**tensors, **kwargs)
            )

    def device_inputs(
        self, inputs: dict[str, np.ndarray], groups: Sequence[Sequence[int]], labels: LabelSet
    ) -> dict[str, torch.Tensor]:
        """Encoder inputs on the model's device, with bi-encoders' cached label vectors."""
        device = self.device
        tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
        if self.label_vectors is not None:
            prompts = [tuple(labels.prompts[i] for i in g) for g in groups]
            tensors["labels_embeddings"], tensors["labels_mask"] = self.label_vectors.rows(
                prompts, device
            )
        return tensors


class Engine(EngineCore):
    """Runs a loaded GLiNER (``.model``, ``.prompts``, ``.config``, ``.device``) over texts:
    an :class:`~spacy_gliner.engine.core.EngineCore` whose runtime is :class:`TorchRuntime`."""

    def __init__(self, gliner: Any, options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        cfg = gliner.config
        output = family_of(cfg.to_dict()).output
        encoder_config = gliner.model.token_rep_layer.bert_layer.model.config
        runtime = TorchRuntime(gliner, options, output)
        super().__init__(
            cfg,
            gliner.prompts,
            runtime,
            options,
            max_tokens=max_sequence_tokens(gliner.tokenizer, encoder_config),
            output=output,
            on_cpu=gliner.device.type == "cpu",
        )
        self.gliner = gliner
        self.torch_runtime = runtime
        self.autocast_dtype = runtime.autocast_dtype
        self.label_vectors = runtime.label_vectors

    def clear_cache(self) -> None:
        """Forget cached label vectors (and rebuild the int8 copy): call after changing the
        model's weights."""
        if self.label_vectors is not None:
            self.label_vectors.clear()
        self.torch_runtime.scoring.rebuild()

    @property
    def model(self) -> torch.nn.Module:
        """The module the engine runs: the GLiNER's own, or (int8) the engine's int8 copy."""
        return self.torch_runtime.scoring.get()

    def _before_call(self) -> None:
        _single_thread_after_fork()

    def _check_vectors(self) -> None:
        check_vectors(self.gliner.config)

    # ------------------------------------------------------------------ reference-shaped scores
    @torch.inference_mode()
    def span_probabilities(
        self, word_lists: Sequence[Sequence[str]], label_lists: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Probabilities of each (words, labels) pair, all in one batch with no windows: the
        reference's ``run_batch`` view (used by parity tests and benchmarks). Span models:
        ``[n_words, K, C]``; token models: ``[n_words, C, 3]`` (start, end, inside)."""
        gliner = self.gliner
        device = gliner.device
        inputs = {
            k: v.to(device) for k, v in gliner.prompts.encode(word_lists, label_lists).items()
        }
        if self.label_vectors is not None:
            rows = [self.label_vectors.group(tuple(labels), device) for labels in label_lists]
            inputs["labels_embeddings"], inputs["labels_mask"] = pad_rows(rows, device)
        dtype = self.autocast_dtype
        with (
            eval_mode(self.model),
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        ):
            logits, _, _ = self.model(**inputs)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        pairs = enumerate(zip(word_lists, label_lists))
        if self.output != "span":  # token logits (token_spans: those that list the spans)
            return [probs[i, : len(w), : len(lab)] for i, (w, lab) in pairs]
        return [probs[i, : len(w), :, : len(lab)] for i, (w, lab) in pairs]


def _workspace(
    windows: Sequence[Sequence[Window]], batches: Sequence[Sequence[Task]]
) -> Optional[Workspace]:
    """Reusable buffers for a call over long texts (several batches, a text with several
    windows), sized for its largest batch (rows x words); None for short-text calls, whose
    buffers are few and small."""
    if len(batches) < 2 or all(len(w) < 2 for w in windows):
        return None

    def words(task: Task) -> int:
        window = windows[task.text][task.window]
        return window.end - window.start

    return Workspace(max(len(b) * max(map(words, b)) for b in batches))


def _single_thread_after_fork() -> None:
    """In a forked child process, one torch intra-op thread (see ``_PARENT_PID``); each worker
    process is then one single-threaded worker. The parent process is never changed."""
    global _forked_child_ready
    if _forked_child_ready or os.getpid() == _PARENT_PID:
        return
    torch.set_num_threads(1)
    _forked_child_ready = True


def predict_words(
    gliner: Any,
    word_lists: Sequence[Sequence[str]],
    labels: LabelSet,
    *,
    threshold: float | Sequence[float] = 0.5,
    flat_ner: bool = True,
    multi_label: bool = False,
    engine: Engine | None = None,
) -> list[list[tuple[int, int, int, float]]]:
    """Decoded spans per word list."""
    engine = engine if engine is not None else Engine(gliner)
    results = engine(word_lists, labels, thresholds=threshold)
    return [r.decode(flat_ner, multi_label) for r in results]
