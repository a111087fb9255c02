"""The inference engine: word lists x labels -> scored candidate spans per text.

One :class:`Engine` per loaded model, reused across calls and safe to call from several
threads: everything a call computes lives in that call (a :class:`_Call` passed as an argument);
the engine itself only holds settings fixed at construction and two caches (label plans,
bi-encoder label vectors) whose entries are pure functions of their keys.

A call: tokenize every text once -> plan windows (``windows.plan_windows``) and label groups ->
sort the (window, label group) tasks by length into padded batches -> per batch, assemble the
encoder input from the cached ids, run the model without autograd, keep the candidates above
threshold that the window owns (span cells; for token-level models, the spans formed from start /
end / inside scores: ``token_spans.py``) -> per text, one array of candidates in enumeration order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from ..io.tokenizers import Row, TextTokens, max_sequence_tokens
from ..model.families import family_of
from ..model.marker_scores import Workspace
from .batches import Task, make_batches, make_tasks, plan_text_windows, threshold_table
from .dtypes import ScoringModel, check_dtype
from .label_vectors import LabelVectors, pad_rows
from .labels import LabelPlan, LabelSet, check_prompt_text, group_table, plan_label_groups
from .results import WordsResult
from .score import candidates_function, collect_results
from .token_spans import SPAN_LISTS, listed_candidates
from .torch_context import attention_backends, eval_mode
from .vectors import check_vectors, vector_batch
from .windows import Window

logger = logging.getLogger("spacy_gliner")

# Bi-encoders: labels per pass when ``max_labels_per_pass`` is not set (bounds the logits).
BI_ENCODER_LABELS_PER_PASS = 256
# Default padded sub-tokens per encoder call, in full encoder windows: CPU (bounds activation
# memory on long documents) and GPU (fewer, larger calls: GPU inference is per-call bound).
CPU_BATCH_WINDOWS = 4
GPU_BATCH_WINDOWS = 32
# A call that runs longer logs its progress (INFO) this often.
PROGRESS_SECONDS = 10.0
MAX_CACHED_PLANS = 16
# The process that imported the engine. A call from a forked child (``nlp.pipe(n_process=N)`` on
# Linux, ``multiprocessing`` with fork) runs torch with one intra-op thread: GNU OpenMP's thread
# pool does not survive ``fork``, and a child that uses it after the parent did waits forever.
_PARENT_PID = os.getpid()
_forked_child_ready = False
_PLANS_LOCK = threading.Lock()  # module-level: engines stay picklable


@dataclass(frozen=True)
class EngineOptions:
    """How an engine batches and windows (validated by :class:`Engine`).

    ``batch_size``: most rows (window x label group) per encoder call; its default here is the
    default of the component and of ``GLiNER.inference`` (on a GPU, 64-128 run faster).
    ``max_batch_tokens``: most padded sub-tokens per call (default 4 encoder windows on CPU, which
    also bounds the activation memory of long documents; 32 on a GPU). ``window_overlap``:
    words shared by consecutive windows (default ``2 * max_width``, never below ``max_width``).
    ``window_words``: most words per window (default and upper bound: ``max_len``).
    ``max_labels_per_pass``: labels per prompt (default ``max_types``; bi-encoders 256).
    ``max_tokens``: the encoder's sub-token window (default: what the tokenizer and the encoder's
    position embeddings allow). ``dtype``: autocast dtype (``torch.float16`` / ``torch.bfloat16``),
    ``torch.qint8`` for dynamic int8 on CPU (``model/int8.py``: the engine runs its own int8 copy
    of the model), or None for the weights' own (see ``engine_dtype``).
    """

    batch_size: int = 32  # bench/defaults_sweep.py; bench/README.md "Defaults"
    window_overlap: int | None = None
    window_words: int | None = None
    max_labels_per_pass: int | None = None
    max_batch_tokens: int | None = None
    max_tokens: int | None = None
    dtype: torch.dtype | None = None


class _Call(NamedTuple):
    """Everything one call computes, passed to the steps that need it."""

    tokens: list[TextTokens]
    windows: list[list[Window]]
    plan: LabelPlan
    labels: LabelSet
    thresholds: np.ndarray  # [groups, largest group]
    workspace: Optional[Workspace] = None  # buffers this call reuses across its batches
    vectors: bool = False  # span and label vectors of the candidates (``vectors.py``)


class Engine:
    """Runs a loaded GLiNER (``.model``, ``.prompts``, ``.config``, ``.device``) over texts."""

    def __init__(self, gliner: Any, options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        cfg = gliner.config
        self.gliner = gliner
        self.options = options
        self.max_width = cfg.max_width
        self.is_bi_encoder = bool(cfg.is_bi_encoder)
        # "span" ([B, W, K, C] logits), "token" ([B, W, C, 3]) or "token_spans" (listed spans
        # with their label logits, ``list_spans``): how a batch becomes candidates.
        self.output = family_of(cfg.to_dict()).output
        lists = self.output == SPAN_LISTS
        self._candidates = None if lists else candidates_function(self.output, cfg.max_width)
        self.batch_size = _positive("batch_size", options.batch_size)
        overlap = options.window_overlap
        self.overlap = max(
            cfg.max_width, int(overlap if overlap is not None else 2 * cfg.max_width)
        )
        words = options.window_words
        self.window_words = int(cfg.max_len if words is None else min(int(words), cfg.max_len))
        if self.window_words <= self.overlap:
            raise ValueError(
                f"gliner: window_words ({self.window_words}) must be larger than the window overlap "
                f"({self.overlap} words: window_overlap, at least max_width {cfg.max_width}); raise "
                "window_words or lower window_overlap."
            )
        default_labels = BI_ENCODER_LABELS_PER_PASS if self.is_bi_encoder else int(cfg.max_types)
        self.max_labels = int(options.max_labels_per_pass or default_labels)
        encoder_config = gliner.model.token_rep_layer.bert_layer.model.config
        self.max_tokens = int(
            options.max_tokens or max_sequence_tokens(gliner.tokenizer, encoder_config)
        )
        windows = CPU_BATCH_WINDOWS if gliner.device.type == "cpu" else GPU_BATCH_WINDOWS
        self.max_batch_tokens = int(options.max_batch_tokens or windows * self.max_tokens)
        check_dtype(options.dtype, gliner.device)
        int8 = options.dtype == torch.qint8
        self.autocast_dtype = None if int8 else options.dtype
        self._scoring = ScoringModel(gliner.model, options.dtype)
        self.label_vectors = (
            LabelVectors(gliner.model, gliner.prompts) if self.is_bi_encoder else None
        )
        self._plans: dict[LabelSet, LabelPlan] = {}

    def clear_cache(self) -> None:
        """Forget cached label vectors (and rebuild the int8 copy): call after changing the
        model's weights."""
        if self.label_vectors is not None:
            self.label_vectors.clear()
        self._scoring.rebuild()

    @property
    def model(self) -> torch.nn.Module:
        """The module the engine runs: the GLiNER's own, or (int8) the engine's int8 copy."""
        return self._scoring.get()

    # ------------------------------------------------------------------ labels
    def label_plan(self, labels: LabelSet) -> LabelPlan:
        """The label groups of ``labels`` and their prompt ids (cached per label set)."""
        with _PLANS_LOCK:
            plan = self._plans.get(labels)
        if plan is not None:
            return plan
        prompts = self.gliner.prompts
        check_prompt_text(labels.prompts, prompts.reserved_tokens())
        n = len(labels)
        if self.is_bi_encoder:
            step = self.max_labels
            groups = [list(range(i, min(n, i + step))) for i in range(0, n, step)]
        else:
            counts = prompts.word_token_counts(list(labels.prompts))
            spare = (self.max_tokens - len(prompts.prefix) - len(prompts.suffix)) // 2
            groups = plan_label_groups(counts.tolist(), self.max_labels, spare)
        prompt_ids = prompts.prompt_ids([[labels.prompts[i] for i in g] for g in groups])
        longest = max(len(p) for p in prompt_ids)
        plan = LabelPlan(groups, prompt_ids, longest, group_table(groups))
        with _PLANS_LOCK:
            if len(self._plans) >= MAX_CACHED_PLANS:
                self._plans.clear()
            self._plans[labels] = plan
        return plan

    def plan_windows(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        sentence_starts: Sequence[Sequence[int]] | None = None,
    ) -> list[list[Window]]:
        """The windows each text would run in with ``labels``."""
        tokens = self.gliner.prompts.tokenize_words(word_lists)
        return self._windows(tokens, self.label_plan(labels), sentence_starts)

    def _windows(self, tokens, plan: LabelPlan, sentence_starts) -> list[list[Window]]:
        prompts = self.gliner.prompts
        budget = self.max_tokens - len(prompts.prefix) - len(prompts.suffix) - plan.longest_prompt
        return plan_text_windows(tokens, budget, self.window_words, self.overlap, sentence_starts)

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        *,
        thresholds: float | Sequence[float] = 0.5,
        sentence_starts: Sequence[Sequence[int]] | None = None,
        vectors: bool = False,
    ) -> list[WordsResult]:
        """Candidates above threshold for each word list (empty lists give empty results).
        ``vectors``: each candidate also gets its span and label vectors (``vectors.py``;
        ``WordsResult.span_vectors`` / ``label_vectors``)."""
        if len(labels) == 0:
            raise ValueError("GLiNER needs at least one label.")
        if vectors:
            check_vectors(self.gliner.config)
        per_label = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
        if not word_lists:
            return []
        _single_thread_after_fork()
        plan = self.label_plan(labels)
        tokens = self.gliner.prompts.tokenize_words(word_lists)
        windows = self._windows(tokens, plan, sentence_starts)
        table = threshold_table(plan.table, per_label)
        call = _Call(tokens, windows, plan, labels, table, vectors=vectors)
        fixed = len(self.gliner.prompts.prefix) + len(self.gliner.prompts.suffix)
        tasks = make_tasks(tokens, windows, [len(p) for p in plan.prompt_ids], fixed)
        found, truncated = self._run_tasks(call, tasks)
        return collect_results(
            windows,
            [len(w) for w in word_lists],
            found,
            truncated,
            len(plan.groups),
            self.max_width,
            self.output,
        )

    def _run_tasks(self, call: _Call, tasks: list[Task]) -> tuple[list, np.ndarray]:
        truncated = np.zeros(len(call.tokens), dtype=np.int64)
        batches = make_batches(tasks, self.batch_size, self.max_batch_tokens)
        call = call._replace(workspace=_workspace(call.windows, batches))
        found = []
        start = last_log = time.perf_counter()
        rows = 0
        with eval_mode(self.gliner.model):
            for batch in batches:
                found.append(self._run_batch(call, batch, truncated))
                rows += len(batch)
                now = time.perf_counter()
                if now - last_log >= PROGRESS_SECONDS:
                    logger.info(
                        "GLiNER: %d of %d windows x label groups scored (%.0f%%), %.0f s",
                        rows,
                        len(tasks),
                        100.0 * rows / len(tasks),
                        now - start,
                    )
                    last_log = now
        logger.debug(
            "GLiNER: %d texts, %d windows, %d label group(s), %d encoder batches in %.2f s",
            len(call.tokens),
            sum(len(w) for w in call.windows),
            len(call.plan.groups),
            len(batches),
            time.perf_counter() - start,
        )
        return found, truncated

    @torch.inference_mode()
    def _run_batch(self, call: _Call, batch: list[Task], truncated: np.ndarray) -> tuple:
        """(text, start, end, label, score) arrays of the owned cells above threshold."""
        rows = [self._row(call, t) for t in batch]
        inputs, cut = self.gliner.prompts.assemble(rows, self.max_tokens)
        for task, n in zip(batch, cut):
            truncated[task.text] += n
        groups = [call.plan.groups[t.group] for t in batch]
        if call.vectors:
            return vector_batch(self, call, batch, inputs, groups)
        where = (batch, call.windows, call.tokens, call.plan.table, call.thresholds)
        if self._candidates is None:
            limits = torch.from_numpy(call.thresholds[[t.group for t in batch]])
            lists = self._run_model(inputs, groups, call.labels, threshold=limits.float())
            return listed_candidates(lists.span_idx, lists.span_mask, lists.span_logits, *where)
        probs = self._probabilities(inputs, groups, call.labels, call.workspace)
        return self._candidates(probs, *where)

    def _row(self, call: _Call, task: Task) -> Row:
        window = call.windows[task.text][task.window]
        return Row(
            call.tokens[task.text], window.start, window.end, call.plan.prompt_ids[task.group]
        )

    def _probabilities(
        self,
        inputs: dict,
        groups: Sequence[Sequence[int]],
        labels: LabelSet,
        workspace: Optional[Workspace] = None,
    ) -> torch.Tensor:
        """Sigmoid scores (float32) of one batch of encoder inputs: ``[B, W, K, C]`` (span
        models) or ``[B, W, C, 3]`` (token models)."""
        logits, _, _ = self._run_model(inputs, groups, labels, workspace=workspace)
        return torch.sigmoid(logits.float())

    def _run_model(
        self, inputs: dict, groups: Sequence[Sequence[int]], labels: LabelSet, **kwargs: Any
    ) -> Any:
        """The model on one batch (``list_spans`` when ``threshold`` is given, else its
        forward), on the engine's device, with bi-encoder label vectors, dtype and attention."""
        device = self.gliner.device
        inputs = self.device_inputs(inputs, groups, labels)
        dtype = self.autocast_dtype
        with (
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
            attention_backends(device),
        ):
            model: Any = self.model
            return (
                model.list_spans(**inputs, **kwargs)
                if "threshold" in kwargs
                else model(**inputs, **kwargs)
            )

    def device_inputs(
        self, inputs: dict, groups: Sequence[Sequence[int]], labels: LabelSet
    ) -> dict:
        """Encoder inputs on the model's device, with bi-encoders' cached label vectors."""
        device = self.gliner.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if self.label_vectors is not None:
            prompts = [tuple(labels.prompts[i] for i in g) for g in groups]
            inputs["labels_embeddings"], inputs["labels_mask"] = self.label_vectors.rows(
                prompts, device
            )
        return inputs

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


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"gliner: {name} must be a positive integer, got {value!r}.")
    return value


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
