"""The runtime-independent engine: label plans, windows, batches and results (no torch).

:class:`EngineCore` turns word lists x labels into scored candidates per text and leaves one
step to a :class:`Runtime`: given a batch's encoder inputs (numpy arrays), its probabilities,
and the candidates above threshold that each row's window owns. The torch engine
(``engine.py``) and the ONNX Runtime engine (``onnx_runtime.py``) are an ``EngineCore`` with their
own runtime, so windows, label groups, batching, ownership and decoding are the same code.

A call: tokenize every text once -> plan windows (``windows.plan_windows``) and label groups ->
sort the (window, label group) tasks by length into padded batches -> per batch, assemble the
encoder input from the cached ids, let the runtime score it and keep the owned candidates above
threshold -> per text, one array of candidates in enumeration order (``collect_results``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ..io.tokenizers import PromptTokenizer, Row, TextTokens
from ..model.config import GLiNERConfig
from .batches import Task, make_batches, make_tasks, plan_text_windows, threshold_table
from .collect import collect_results
from .labels import LabelPlan, LabelSet, check_prompt_text, group_table, plan_label_groups
from .results import WordsResult
from .windows import Window

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("spacy_gliner")

# Bi-encoders: labels per pass when ``max_labels_per_pass`` is not set (bounds the logits).
BI_ENCODER_LABELS_PER_PASS = 256
# Default padded sub-tokens per encoder call, in full encoder windows: CPU (bounds activation
# memory on long documents) and GPU (fewer, larger calls: GPU inference is per-call bound).
CPU_BATCH_WINDOWS = 4
GPU_BATCH_WINDOWS = 32
# Default rows (window x label group) per encoder call: CPU (bench/README.md "Defaults") and GPU
# (per-call bound: 128 rows ran 1.7x the words/s of 32 on an H200, bench/README.md "bench_gpu.py").
CPU_BATCH_ROWS = 32
GPU_BATCH_ROWS = 128
# A call that runs longer logs its progress (INFO) this often.
PROGRESS_SECONDS = 10.0
MAX_CACHED_PLANS = 16
_PLANS_LOCK = threading.Lock()  # module-level: engines stay picklable


@dataclass(frozen=True)
class EngineOptions:
    """How an engine batches and windows (validated by :class:`EngineCore`).

    ``batch_size``: most rows (window x label group) per encoder call (default, also the
    component's and ``GLiNER.inference``'s: 32 on CPU, 128 on a GPU).
    ``max_batch_tokens``: most padded sub-tokens per call (default 4 encoder windows on CPU, which
    also bounds the activation memory of long documents; 32 on a GPU). ``window_overlap``:
    words shared by consecutive windows (default ``2 * max_width``, never below ``max_width``).
    ``window_words``: most words per window (default and upper bound: ``max_len``).
    ``max_labels_per_pass``: labels per prompt (default ``max_types``; bi-encoders 256).
    ``max_tokens``: the encoder's sub-token window (default: what the tokenizer and the encoder's
    position embeddings allow). ``dtype`` (torch engine only): autocast dtype
    (``torch.float16`` / ``torch.bfloat16``), ``torch.qint8`` for dynamic int8 on CPU
    (``model/int8.py``: the engine runs its own int8 copy of the model), or None for the
    weights' own (see ``engine_dtype``).
    """

    batch_size: int | None = None  # CPU_BATCH_ROWS / GPU_BATCH_ROWS
    window_overlap: int | None = None
    window_words: int | None = None
    max_labels_per_pass: int | None = None
    max_batch_tokens: int | None = None
    max_tokens: int | None = None
    dtype: torch.dtype | None = None


class Runtime(Protocol):
    """What runs the network for an :class:`EngineCore`. Holds no per-call state: what a call
    needs across its batches comes from :meth:`call_state` and is passed back in."""

    def running(self) -> AbstractContextManager[Any]:
        """The context a whole call runs in (e.g. torch's inference mode)."""

    def call_state(
        self, windows: Sequence[Sequence[Window]], batches: Sequence[Sequence[Task]]
    ) -> Any:
        """Per-call state shared by the call's batches (reusable buffers), or None."""

    def batch_candidates(
        self,
        inputs: dict[str, np.ndarray],
        groups: Sequence[Sequence[int]],
        call: Call,
        batch: Sequence[Task],
    ) -> tuple[np.ndarray, ...]:
        """(text, start, end, label, score) of the owned candidates above threshold of one
        batch of encoder inputs (numpy); ``groups``: each row's label indices. A call with
        ``call.vectors`` also returns span and label vectors ``[N, D]`` (two more columns)."""


class Call(NamedTuple):
    """Everything one call computes, passed to the steps that need it."""

    tokens: list[TextTokens]
    windows: list[list[Window]]
    plan: LabelPlan
    labels: LabelSet
    thresholds: np.ndarray  # [groups, largest group]
    state: Any = None  # the runtime's per-call state
    vectors: bool = False  # span and label vectors of the candidates (torch runtime only)


class EngineCore:
    """Windows, label groups, batches and results for one model's settings and ``runtime``.

    Re-entrant: per-call state lives in a :class:`Call`; the engine holds settings fixed at
    construction and a cache of label plans (pure functions of their label sets).
    """

    def __init__(
        self,
        config: GLiNERConfig,
        prompts: PromptTokenizer,
        runtime: Runtime,
        options: EngineOptions,
        *,
        max_tokens: int,
        output: str,
        on_cpu: bool = True,
    ) -> None:
        self.config, self.prompts, self.runtime = config, prompts, runtime
        self.options = options
        self.max_width = config.max_width
        self.is_bi_encoder = bool(config.is_bi_encoder)
        # "span" ([B, W, K, C] probabilities) or "token" ([B, W, C, 3]).
        self.output = output
        rows = options.batch_size
        default_rows = CPU_BATCH_ROWS if on_cpu else GPU_BATCH_ROWS
        self.batch_size = default_rows if rows is None else _positive("batch_size", rows)
        overlap = options.window_overlap
        self.overlap = max(
            config.max_width, int(overlap if overlap is not None else 2 * config.max_width)
        )
        words = options.window_words
        self.window_words = int(
            config.max_len if words is None else min(int(words), config.max_len)
        )
        if self.window_words <= self.overlap:
            raise ValueError(
                f"gliner: window_words ({self.window_words}) must be larger than the window overlap "
                f"({self.overlap} words: window_overlap, at least max_width {config.max_width}); "
                "raise window_words or lower window_overlap."
            )
        default_labels = BI_ENCODER_LABELS_PER_PASS if self.is_bi_encoder else int(config.max_types)
        self.max_labels = int(options.max_labels_per_pass or default_labels)
        self.max_tokens = int(options.max_tokens or max_tokens)
        windows = CPU_BATCH_WINDOWS if on_cpu else GPU_BATCH_WINDOWS
        self.max_batch_tokens = int(options.max_batch_tokens or windows * self.max_tokens)
        self._plans: dict[LabelSet, LabelPlan] = {}

    # ------------------------------------------------------------------ labels
    def label_plan(self, labels: LabelSet) -> LabelPlan:
        """The label groups of ``labels`` and their prompt ids (cached per label set)."""
        with _PLANS_LOCK:
            plan = self._plans.get(labels)
        if plan is not None:
            return plan
        prompts = self.prompts
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
        tokens = self.prompts.tokenize_words(word_lists)
        return self._windows(tokens, self.label_plan(labels), sentence_starts)

    def _windows(self, tokens, plan: LabelPlan, sentence_starts) -> list[list[Window]]:
        prompts = self.prompts
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
        ``vectors``: each candidate also gets its span and label vectors
        (``WordsResult.span_vectors`` / ``label_vectors``; runtimes that cannot raise)."""
        if len(labels) == 0:
            raise ValueError("GLiNER needs at least one label.")
        if vectors:
            self._check_vectors()
        per_label = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
        if not word_lists:
            return []
        self._before_call()
        plan = self.label_plan(labels)
        tokens = self.prompts.tokenize_words(word_lists)
        windows = self._windows(tokens, plan, sentence_starts)
        table = threshold_table(plan.table, per_label)
        call = Call(tokens, windows, plan, labels, table, vectors=vectors)
        fixed = len(self.prompts.prefix) + len(self.prompts.suffix)
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

    def _before_call(self) -> None:
        """Hook run at the start of every call with texts (the torch engine's fork guard)."""

    def _check_vectors(self) -> None:
        """Raise ``ValueError`` unless this engine can return vectors (the torch engine can)."""
        raise ValueError(
            "gliner: span and label vectors (return_vectors) need the torch runtime; unset "
            "return_vectors or run the model with torch."
        )

    def _run_tasks(self, call: Call, tasks: list[Task]) -> tuple[list, np.ndarray]:
        truncated = np.zeros(len(call.tokens), dtype=np.int64)
        batches = make_batches(tasks, self.batch_size, self.max_batch_tokens)
        call = call._replace(state=self.runtime.call_state(call.windows, batches))
        found = []
        start = last_log = time.perf_counter()
        rows = 0
        with self.runtime.running():
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

    def _run_batch(
        self, call: Call, batch: list[Task], truncated: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """(text, start, end, label, score) arrays of the owned cells above threshold."""
        rows = [self._row(call, t) for t in batch]
        inputs, cut = self.prompts.assemble_arrays(rows, self.max_tokens)
        for task, n in zip(batch, cut):
            truncated[task.text] += n
        groups = [call.plan.groups[t.group] for t in batch]
        return self.runtime.batch_candidates(inputs, groups, call, batch)

    def _row(self, call: Call, task: Task) -> Row:
        window = call.windows[task.text][task.window]
        return Row(
            call.tokens[task.text], window.start, window.end, call.plan.prompt_ids[task.group]
        )


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"gliner: {name} must be a positive integer, got {value!r}.")
    return value
