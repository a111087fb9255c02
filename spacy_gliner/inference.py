"""Batched inference over word lists: windows x label groups -> sorted batches -> owned scores -> spans.

No spaCy here: the component turns Docs into word lists and spans back into Docs.

One call of :class:`Predictor`:

1. every text is tokenized once (all texts in one tokenizer call); label prompts once per label set;
2. texts longer than the encoder window are cut into overlapping windows (``windows.plan_windows``),
   labels that do not fit one prompt into groups (``windows.plan_label_groups``);
3. the (window, label group) tasks of all texts are sorted by sub-token length and batched under a
   row limit and a padded-token budget, so batches mix texts and carry little padding;
4. per batch, the encoder input is assembled from the cached sub-token ids (no re-tokenizing), the
   model runs without autograd, and the cells above threshold that the window *owns* are kept as
   arrays (start, end, label, score) - never as a full score grid per document;
5. each text's candidates are decoded once over the whole text (greedy, as the reference).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .memory import glibc_malloc, release_free_memory
from .modeling.decoding import Candidate, greedy_select
from .windows import Window, owned_cells, plan_label_groups, plan_windows, unscored_spans

logger = logging.getLogger("spacy_gliner")

# Bi-encoders: labels per pass when ``max_labels_per_pass`` is not set (bounds the [B, W, K, C] logits).
BI_ENCODER_LABELS_PER_PASS = 256
# Labels sent through the labels encoder at once.
LABEL_ENCODER_CHUNK = 128
# Default padded sub-tokens per encoder call, in full encoder windows: CPU (bounds activation memory
# on long documents) and GPU (fewer, larger calls: GPU inference is bound by per-call overhead).
CPU_BATCH_WINDOWS = 4
GPU_BATCH_WINDOWS = 32
# A call that runs longer logs its progress (INFO) this often.
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class LabelSet:
    """Output label names and the prompt text the model reads for each."""

    names: Tuple[str, ...]
    prompts: Tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Union[Sequence[str], Mapping[str, str]]) -> "LabelSet":
        """A list of names (each is its own prompt) or a ``{name: prompt}`` mapping."""
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, (Mapping, list, tuple)):
            raise ValueError(f"GLiNER labels must be a list of strings or a {{label: prompt}} dict, got {labels!r}.")
        if isinstance(labels, Mapping):
            items = list(labels.items())
        else:
            items = [(label, label) for label in labels]
        problems = [repr(n) for n, p in items if not isinstance(n, str) or not isinstance(p, str) or not n.strip() or not p.strip()]
        if problems:
            raise ValueError(
                f"GLiNER labels must be non-empty strings (label names and prompts); got {', '.join(problems)}."
            )
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Duplicate GLiNER labels {dupes}: give each label once.")
        prompts = [p for _, p in items]
        if len(set(prompts)) != len(prompts):
            dupes = sorted({p for p in prompts if prompts.count(p) > 1})
            raise ValueError(f"Several labels share the prompt(s) {dupes}: each label needs its own prompt text.")
        return cls(tuple(names), tuple(prompts))

    def __len__(self) -> int:
        return len(self.names)


_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float32)


class WordsResult:
    """Scored candidate spans of one text and how the text was run.

    Candidates are the cells above their label's threshold, one score per (start, end, label)
    (from the window that owns the cell), held as arrays in the reference's enumeration order
    (start, end, label). ``num_windows`` / ``num_label_groups`` say how the text was split;
    ``unscored_spans`` counts spans of up to ``max_width`` words that no window could hold and
    ``truncated_words`` the words that fell past the encoder's sub-token limit (both 0 unless the
    sub-token budget is tiny or a single word is longer than the encoder window).
    """

    def __init__(
        self,
        candidates: Optional[Sequence[Candidate]] = None,
        num_windows: int = 0,
        num_label_groups: int = 0,
        *,
        arrays: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None,
        unscored_spans: int = 0,
        truncated_words: int = 0,
    ) -> None:
        if arrays is None:
            cands = list(candidates or ())
            arrays = (
                np.array([c.start for c in cands], dtype=np.int64),
                np.array([c.end for c in cands], dtype=np.int64),
                np.array([c.label for c in cands], dtype=np.int64),
                np.array([c.score for c in cands], dtype=np.float64),
            )
        self.starts, self.ends, self.labels, self.scores = arrays
        self.num_windows = num_windows
        self.num_label_groups = num_label_groups
        self.unscored_spans = unscored_spans
        self.truncated_words = truncated_words
        self._decoded: Dict[Tuple[bool, bool], List[Tuple[int, int, int, float]]] = {}

    @property
    def candidates(self) -> List[Candidate]:
        return [
            Candidate(s, e, l, p)
            for s, e, l, p in zip(self.starts.tolist(), self.ends.tolist(), self.labels.tolist(), self.scores.tolist())
        ]

    def __len__(self) -> int:
        return len(self.scores)

    def decode(self, flat_ner: bool = True, multi_label: bool = False) -> List[Tuple[int, int, int, float]]:
        """(first word, last word inclusive, label index, score) spans under the given decoding."""
        key = (bool(flat_ner), bool(multi_label))
        if key not in self._decoded:
            self._decoded[key] = decode_arrays(self.starts, self.ends, self.labels, self.scores, *key)
        return list(self._decoded[key])


def decode_arrays(
    starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, scores: np.ndarray, flat_ner: bool, multi_label: bool
) -> List[Tuple[int, int, int, float]]:
    """The reference's greedy decoding over candidates given in enumeration order (start, end, label).

    Same result as :func:`~spacy_gliner.modeling.decoding.greedy_select`; the flat modes run over a
    word-coverage bitmap (only the best label of each cell can win without ``multi_label``).
    """
    if len(scores) == 0:
        return []
    order = np.argsort(-scores, kind="stable")  # ties keep the enumeration order
    if not flat_ner:
        cands = [
            Candidate(s, e, l, p)
            for s, e, l, p in zip(starts.tolist(), ends.tolist(), labels.tolist(), scores.tolist())
        ]
        return [tuple(c) for c in greedy_select(cands, False, multi_label)]
    if not multi_label:
        # Identical boundaries conflict: only a cell's first candidate in score order can be accepted.
        cell = starts[order] * (int(ends.max()) + 1) + ends[order]
        _, first = np.unique(cell, return_index=True)
        order = order[np.sort(first)]
    covered = bytearray(int(ends.max()) + 2)
    accepted: List[int] = []
    cells = set()
    s_list, e_list = starts[order].tolist(), ends[order].tolist()
    for i, s, e in zip(order.tolist(), s_list, e_list):
        if multi_label and (s, e) in cells:
            accepted.append(i)  # same boundaries as an accepted span: never overlaps anything else
            continue
        if covered.find(1, s, e + 1) != -1:
            continue
        covered[s : e + 1] = b"\x01" * (e + 1 - s)
        cells.add((s, e))
        accepted.append(i)
    accepted.sort(key=lambda i: int(starts[i]))  # stable: acceptance order within a start
    return [(int(starts[i]), int(ends[i]), int(labels[i]), float(scores[i])) for i in accepted]


class _TextTokens(NamedTuple):
    """Sub-token ids of one text's words: ``ids[offsets[w]:offsets[w + 1]]`` belong to word w."""

    ids: np.ndarray
    offsets: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


class _LabelPlan(NamedTuple):
    groups: List[List[int]]  # label indices per group
    prompt_ids: List[np.ndarray]  # uni-encoder prompt sub-token ids per group (empty for bi-encoders)
    longest_prompt: int  # sub-tokens of the longest group prompt
    table: np.ndarray  # [groups, max group size] label index, -1 = padding


class _Task(NamedTuple):
    text: int
    window: int
    group: int
    length: int  # sub-tokens of the encoder input


class Predictor:
    """Runs a ``GLiNER`` over many texts: plans windows and label groups, batches, decodes once.

    ``batch_size`` caps the rows (window x label group) per encoder call and ``max_batch_tokens``
    the padded sub-tokens per call (default: 4 full encoder windows on CPU, 32 on a GPU), which bounds
    activation memory whatever the document length. ``window_overlap`` (default ``2 * max_width``, never less than
    ``max_width``) is the number of words consecutive windows share; ``window_words`` caps the words
    per window (default and upper bound: the checkpoint's ``max_len``). ``max_labels_per_pass`` caps
    the labels per prompt (default: the checkpoint's ``max_types``; bi-encoders: 256).
    """

    def __init__(
        self,
        gliner,
        *,
        batch_size: int = 8,
        window_overlap: Optional[int] = None,
        window_words: Optional[int] = None,
        max_labels_per_pass: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
        max_batch_tokens: Optional[int] = None,
    ) -> None:
        from .tokenization import max_sequence_tokens

        self.gliner = gliner
        cfg = gliner.config
        self.batch_size = max(1, int(batch_size))
        self.max_width = cfg.max_width
        self.overlap = max(cfg.max_width, int(window_overlap if window_overlap is not None else 2 * cfg.max_width))
        self.window_words = int(cfg.max_len if window_words is None else min(int(window_words), cfg.max_len))
        if self.window_words <= self.overlap:
            raise ValueError(
                f"gliner: window_words ({self.window_words}) must be larger than the window overlap ({self.overlap} "
                f"words: window_overlap, at least max_width {cfg.max_width}); raise window_words or lower window_overlap."
            )
        self.is_bi_encoder = bool(cfg.is_bi_encoder)
        if max_labels_per_pass:
            self.max_labels = int(max_labels_per_pass)
        else:
            self.max_labels = BI_ENCODER_LABELS_PER_PASS if self.is_bi_encoder else int(cfg.max_types)
        self.max_tokens = max_sequence_tokens(gliner.tokenizer, gliner.model.token_rep_layer.bert_layer.model.config)
        windows = CPU_BATCH_WINDOWS if gliner.device.type == "cpu" else GPU_BATCH_WINDOWS
        self.max_batch_tokens = int(max_batch_tokens) if max_batch_tokens else windows * self.max_tokens
        if dtype == torch.float16 and gliner.device.type == "cpu":
            raise ValueError(
                "gliner: dtype float16 runs on a GPU only (its CPU kernels are missing or slow): on CPU use "
                "float32 (the default) or bfloat16, or set device to a GPU."
            )
        self.dtype = dtype
        self._label_plans: Dict[LabelSet, _LabelPlan] = {}
        self._label_cache: Dict[Tuple[str, ...], torch.Tensor] = {}
        self._label_cache_key: Optional[tuple] = None
        self._words: Sequence[Sequence[str]] = ()
        self._label_prompts: Tuple[str, ...] = ()
        tok = gliner.tokenizer
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._left_pad = getattr(tok, "padding_side", "right") == "left"
        self._prefix, self._suffix = self._special_tokens()
        self._fast_inputs = self._fast_inputs_agree()

    # ------------------------------------------------------------------ tokens
    def _special_tokens(self) -> Tuple[np.ndarray, np.ndarray]:
        """Sub-token ids the tokenizer puts before and after a text (e.g. [CLS] / [SEP])."""
        enc = self.gliner.tokenizer(["hello"], is_split_into_words=True)
        wid = enc.word_ids()
        ids = enc["input_ids"]
        inside = [i for i, w in enumerate(wid) if w is not None]
        if not inside:
            return np.zeros(0, dtype=np.int64), np.asarray(ids, dtype=np.int64)
        return np.asarray(ids[: inside[0]], dtype=np.int64), np.asarray(ids[inside[-1] + 1 :], dtype=np.int64)

    def _tokenize(self, word_lists: Sequence[Sequence[str]]) -> List[_TextTokens]:
        """Per-word sub-token ids of every text, in one tokenizer call."""
        out: List[Optional[_TextTokens]] = [None] * len(word_lists)
        todo = [i for i, w in enumerate(word_lists) if len(w)]
        empty = _TextTokens(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
        if todo:
            enc = self.gliner.tokenizer(
                [list(word_lists[i]) for i in todo], is_split_into_words=True, add_special_tokens=False, verbose=False
            )
            for row, i in enumerate(todo):
                ids = np.asarray(enc["input_ids"][row], dtype=np.int64)
                wid = np.asarray(enc.word_ids(row), dtype=np.int64)
                counts = np.bincount(wid, minlength=len(word_lists[i])) if len(wid) else np.zeros(len(word_lists[i]), np.int64)
                offsets = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                out[i] = _TextTokens(ids, offsets)
        return [t if t is not None else empty for t in out]

    def _label_plan(self, labels: LabelSet) -> _LabelPlan:
        plan = self._label_plans.get(labels)
        if plan is not None:
            return plan
        n = len(labels)
        if self.is_bi_encoder:
            groups = [list(range(i, min(n, i + self.max_labels))) for i in range(0, n, self.max_labels)]
            prompt_ids = [np.zeros(0, dtype=np.int64) for _ in groups]
            longest = 0
        else:
            counts = self.gliner.prompts.word_token_counts(list(labels.prompts))
            spare = (self.max_tokens - len(self._prefix) - len(self._suffix)) // 2
            groups = plan_label_groups(counts.tolist(), self.max_labels, spare)
            prompt_words_lists = [self.gliner.prompts.prompt_words([labels.prompts[i] for i in g]) for g in groups]
            enc = self.gliner.tokenizer(
                prompt_words_lists, is_split_into_words=True, add_special_tokens=False, verbose=False
            )
            prompt_ids = [np.asarray(ids, dtype=np.int64) for ids in enc["input_ids"]]
            longest = max(len(p) for p in prompt_ids)
        table = np.full((len(groups), max(len(g) for g in groups)), -1, dtype=np.int64)
        for i, g in enumerate(groups):
            table[i, : len(g)] = g
        plan = _LabelPlan(groups, prompt_ids, longest, table)
        if len(self._label_plans) >= 16:
            self._label_plans.clear()
        self._label_plans[labels] = plan
        return plan

    def _groups(self, labels: LabelSet) -> Tuple[List[List[int]], int]:
        """Label groups (label indices) and the sub-tokens of the longest group prompt."""
        plan = self._label_plan(labels)
        return plan.groups, plan.longest_prompt

    def _fast_inputs_agree(self) -> bool:
        """Whether encoder inputs assembled from cached per-word ids equal the tokenizer's own
        (true for WordPiece, SentencePiece and byte-level BPE with pre-split words); else every
        batch is tokenized afresh."""
        words = [["Hello", "world", "!"], ["Obama", "visited", "Paris-Nord", "in", "2009", "."], ["x"]]
        labels = LabelSet.from_labels(["person", "location", "sports team"])
        try:
            plan = self._label_plan(labels)
            tokens = self._tokenize(words)
            rows = [(tokens[i], 0, len(w), 0) for i, w in enumerate(words)]
            fast, _ = self._assemble(rows, plan)
            slow = self.gliner.prompts.encode(words, [[labels.prompts[i] for i in plan.groups[0]]] * len(words))
            return all(torch.equal(fast[k], slow[k]) for k in ("input_ids", "attention_mask", "words_mask", "text_lengths"))
        except Exception:  # pragma: no cover - exotic tokenizers
            return False
        finally:
            self._label_plans.clear()

    def _assemble(self, rows: Sequence[Tuple[_TextTokens, int, int, int]], plan: _LabelPlan) -> Tuple[Dict[str, torch.Tensor], int]:
        """Encoder inputs for rows (text tokens, first word, end word, label group); also the number
        of words that fell past the sub-token limit (they get zero vectors, as the reference's
        tokenizer truncation gives them)."""
        prefix, suffix = self._prefix, self._suffix
        pooling = self.gliner.config.subtoken_pooling
        limit = self.max_tokens - len(prefix) - len(suffix)
        seqs, masks, lengths = [], [], []
        truncated = 0
        for tokens, a, b, group in rows:
            prompt = plan.prompt_ids[group]
            lo, hi = int(tokens.offsets[a]), int(tokens.offsets[b])
            body = np.concatenate([prompt, tokens.ids[lo:hi]])
            base = len(prefix) + len(prompt)
            offsets = tokens.offsets[a : b + 1] - lo
            counts = np.diff(offsets)
            word_no = np.arange(1, b - a + 1, dtype=np.int64)
            if pooling == "first":
                pos, val = base + offsets[:-1][counts > 0], word_no[counts > 0]
            elif pooling == "last":
                pos, val = base + offsets[1:][counts > 0] - 1, word_no[counts > 0]
            else:
                pos, val = base + np.arange(hi - lo, dtype=np.int64), np.repeat(word_no, counts)
            if len(body) > limit:
                body = body[:limit]
                keep = pos < len(prefix) + limit
                truncated += int(len(np.unique(val[~keep])))
                pos, val = pos[keep], val[keep]
            seqs.append(np.concatenate([prefix, body, suffix]))
            masks.append((pos, val))
            lengths.append(b - a)
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        words_mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (seq, (pos, val)) in enumerate(zip(seqs, masks)):
            shift = width - len(seq) if self._left_pad else 0
            input_ids[r, shift : shift + len(seq)] = seq
            attention[r, shift : shift + len(seq)] = 1
            words_mask[r, pos + shift] = val
        inputs = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "words_mask": torch.from_numpy(words_mask),
            "text_lengths": torch.tensor(lengths, dtype=torch.long),
        }
        return inputs, truncated

    # ------------------------------------------------------------------ planning
    def plan(
        self,
        word_lists: Sequence[Sequence[str]],
        prompt_tokens: int,
        sentence_starts: Optional[Sequence[Sequence[int]]] = None,
        tokens: Optional[List[_TextTokens]] = None,
    ) -> Tuple[List[List[Window]], List[np.ndarray]]:
        """Windows of each text for a label prompt of ``prompt_tokens`` sub-tokens, and the
        sub-token count of each word."""
        budget = self.max_tokens - len(self._prefix) - len(self._suffix) - prompt_tokens
        max_words = self.window_words
        tokens = tokens if tokens is not None else self._tokenize(word_lists)
        windows, counts = [], []
        for i, t in enumerate(tokens):
            c = t.counts
            counts.append(c)
            sents = sentence_starts[i] if sentence_starts is not None else None
            windows.append(plan_windows(c, budget, max_words, self.overlap, sents))
        return windows, counts

    def _batches(self, tasks: List[_Task]) -> List[List[_Task]]:
        """Tasks sorted by length, cut into batches of at most ``batch_size`` rows and
        ``max_batch_tokens`` padded sub-tokens."""
        tasks = sorted(tasks, key=lambda t: (t.length, t.text, t.window, t.group))
        batches: List[List[_Task]] = []
        current: List[_Task] = []
        for task in tasks:
            if current and (len(current) >= self.batch_size or task.length * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(task)
        if current:
            batches.append(current)
        return batches

    @staticmethod
    def _max_rows(batches: List[List[_Task]], windows: List[List[Window]]) -> int:
        """The largest rows x words (the model's B * W) over the batches."""
        words = lambda t: windows[t.text][t.window].end - windows[t.text][t.window].start  # noqa: E731
        return max((len(b) * max(map(words, b)) for b in batches), default=0)

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        *,
        thresholds: Union[float, Sequence[float]] = 0.5,
        sentence_starts: Optional[Sequence[Sequence[int]]] = None,
    ) -> List[WordsResult]:
        num_labels = len(labels)
        thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (num_labels,))
        if not word_lists:
            return []
        if num_labels == 0:
            raise ValueError("GLiNER needs at least one label.")
        plan = self._label_plan(labels)
        tokens = self._tokenize(word_lists)
        windows, _ = self.plan(word_lists, plan.longest_prompt, sentence_starts, tokens)
        self._words, self._label_prompts = word_lists, labels.prompts
        num_groups = len(plan.groups)
        fixed = len(self._prefix) + len(self._suffix)
        tasks = []
        for t, wins in enumerate(windows):
            offsets = tokens[t].offsets
            for j, win in enumerate(wins):
                text_tokens = int(offsets[win.end] - offsets[win.start])
                for g in range(num_groups):
                    tasks.append(_Task(t, j, g, fixed + len(plan.prompt_ids[g]) + text_tokens))
        # Per-row threshold table: [groups, max group size] (+inf on padding classes).
        thr_table = np.where(plan.table >= 0, thresholds[np.clip(plan.table, 0, None)], np.inf)
        found: List[Tuple[np.ndarray, ...]] = []
        truncated = np.zeros(len(word_lists), dtype=np.int64)
        model = self.gliner.model
        was_training = model.training
        model.eval()
        try:
            batches = self._batches(tasks)
            # Long documents on CPU under glibc's malloc: keep its heap from growing with the number of
            # batches (bench/README.md). markerV0's span-term buffers ([rows x words, 4D]) are allocated
            # once and reused by every batch, and free heap pages go back to the OS (memory.py). Short
            # texts do neither: their heap does not grow, and the page faults after a trim cost 4-7%.
            long_run = len(batches) > 1 and any(len(w) > 1 for w in windows)
            tame_heap = long_run and self.gliner.device.type == "cpu" and glibc_malloc()
            with model.reusing_buffers(self._max_rows(batches, windows)) if tame_heap else contextlib.nullcontext():
                start = last_log = time.perf_counter()
                rows = 0
                for i, batch in enumerate(batches, 1):
                    found.append(self._run_batch(batch, tokens, windows, plan, thr_table, truncated))
                    if tame_heap:
                        release_free_memory()
                    rows += len(batch)
                    now = time.perf_counter()
                    if now - last_log >= PROGRESS_SECONDS:
                        logger.info(
                            "GLiNER: %d of %d windows x label groups scored (%.0f%%), %.0f s", rows, len(tasks),
                            100.0 * rows / len(tasks), now - start,
                        )
                        last_log = now
                logger.debug(
                    "GLiNER: %d texts, %d windows, %d label group(s), %d encoder batches in %.2f s", len(word_lists),
                    sum(len(w) for w in windows), num_groups, len(batches), time.perf_counter() - start,
                )
        finally:
            model.train(was_training)
            self._words, self._label_prompts = (), ()
        return self._collect(word_lists, windows, found, num_groups, truncated)

    def _collect(self, word_lists, windows, found, num_groups, truncated) -> List[WordsResult]:
        if found:
            text, start, end, label, score = (np.concatenate(parts) for parts in zip(*found))
        else:
            text = start = end = label = _EMPTY_I
            score = _EMPTY_F
        order = np.lexsort((label, end, start, text))  # the reference's enumeration order per text
        text, start, end, label, score = text[order], start[order], end[order], label[order], score[order]
        bounds = np.searchsorted(text, np.arange(len(word_lists) + 1))
        results = []
        for t, wins in enumerate(windows):
            a, b = bounds[t], bounds[t + 1]
            missing = unscored_spans(wins, len(word_lists[t]), self.max_width) if len(wins) > 1 else 0
            if missing or truncated[t]:
                logger.warning(
                    "GLiNER text %d: %d span(s) fit in no window and %d word(s) fell past the encoder's "
                    "sub-token limit (a word longer than the window, or a tiny token budget).",
                    t, missing, int(truncated[t]),
                )
            results.append(
                WordsResult(
                    num_windows=len(wins),
                    num_label_groups=num_groups if wins else 0,
                    arrays=(start[a:b].copy(), end[a:b].copy(), label[a:b].copy(), score[a:b].copy()),
                    unscored_spans=missing,
                    truncated_words=int(truncated[t]),
                )
            )
        return results

    @torch.inference_mode()
    def _run_batch(self, batch, tokens, windows, plan: _LabelPlan, thr_table, truncated) -> Tuple[np.ndarray, ...]:
        """Run one batch; return (text, start, end, label, score) of the owned cells above threshold."""
        gliner = self.gliner
        device = gliner.device
        rows = [(tokens[t.text], windows[t.text][t.window].start, windows[t.text][t.window].end, t.group) for t in batch]
        if self._fast_inputs:
            inputs, cut = self._assemble(rows, plan)
            if cut:
                for t, (tk, a, b, g) in zip(batch, rows):
                    truncated[t.text] += self._assemble([(tk, a, b, g)], plan)[1]
        else:
            inputs = self._encode_slow(batch, windows, plan)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if self.is_bi_encoder:
            inputs["labels_embeddings"], inputs["labels_mask"] = self._bi_labels(batch, plan, device)
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None), _attention_backends(device):
            logits, _, _ = gliner.model(**inputs)
        probs = torch.sigmoid(logits.float())  # [B, W, K, C]
        rows_n, num_words, width, num_classes = probs.shape
        lengths = np.array([b - a for _, a, b, _ in rows], dtype=np.int64)
        # Cells that are real spans of the window ...
        cell_ok = (np.arange(num_words)[:, None] + np.arange(width)[None, :])[None] < lengths[:, None, None]
        # ... and that this window owns (texts with several windows only).
        for r, t in enumerate(batch):
            wins = windows[t.text]
            if len(wins) > 1:
                cell_ok[r, : lengths[r]] &= owned_cells(wins, t.window, int(tokens[t.text].offsets.size - 1), self.max_width)
        groups = np.array([t.group for t in batch], dtype=np.int64)
        thr = thr_table[groups][:, :num_classes]
        if thr.shape[1] < num_classes:  # pragma: no cover - the model never returns more classes than asked
            thr = np.pad(thr, ((0, 0), (0, num_classes - thr.shape[1])), constant_values=np.inf)
        keep = probs > torch.from_numpy(thr).to(device=device, dtype=probs.dtype)[:, None, None, :]
        keep &= torch.from_numpy(cell_ok).to(device)[..., None]
        idx = keep.nonzero().cpu().numpy()  # [N, 4] (row, start, width, class), row-major
        score = probs[keep].cpu().numpy()
        r, s, k, c = idx.T if len(idx) else (_EMPTY_I,) * 4
        win_start = np.array([a for _, a, _, _ in rows], dtype=np.int64)
        texts = np.array([t.text for t in batch], dtype=np.int64)
        start = s + win_start[r]
        return texts[r], start, start + k, plan.table[groups[r], c], score

    def _encode_slow(self, batch, windows, plan: _LabelPlan) -> Dict[str, torch.Tensor]:
        """Fallback for tokenizers whose per-word ids depend on context: tokenize each batch."""
        words = [self._words[t.text][windows[t.text][t.window].start : windows[t.text][t.window].end] for t in batch]
        labels = [[self._label_prompts[i] for i in plan.groups[t.group]] for t in batch]
        return self.gliner.prompts.encode(words, labels)

    # ------------------------------------------------------------------ bi-encoder labels
    def _bi_labels(self, batch, plan: _LabelPlan, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Label vectors [B, C, D] + mask for the rows of a batch; computed once per label group."""
        rows = [self._group_embeddings(tuple(self._label_prompts[i] for i in plan.groups[t.group]), device) for t in batch]
        return _pad_rows(rows, device)

    def _group_embeddings(self, prompts: Tuple[str, ...], device) -> torch.Tensor:
        key = self._weights_key()
        if key != self._label_cache_key:
            self._label_cache.clear()
            self._label_cache_key = key
        cached = self._label_cache.get(prompts)
        if cached is None:
            parts = []
            for i in range(0, len(prompts), LABEL_ENCODER_CHUNK):
                chunk = list(prompts[i : i + LABEL_ENCODER_CHUNK])
                enc = {k: v.to(device) for k, v in self.gliner.prompts.encode_labels(chunk).items()}
                parts.append(self.gliner.model.encode_labels(**enc))
            cached = torch.cat(parts) if len(parts) > 1 else parts[0]
            if len(self._label_cache) >= 64:
                self._label_cache.clear()
            self._label_cache[prompts] = cached
        return cached

    def _weights_key(self) -> tuple:
        """Changes whenever the labels encoder's weights change (training), so cached label
        vectors are never stale: storage, in-place version and a sample of values per tensor."""
        params = [p for n, p in self.gliner.model.token_rep_layer.named_parameters() if n.startswith("labels_")]
        sample = torch.cat([p.detach().reshape(-1)[:4].float().cpu() for p in params]) if params else None
        return (
            tuple((p.data_ptr(), p._version) for p in params),
            None if sample is None else sample.numpy().tobytes(),
        )

    # ------------------------------------------------------------------ compatibility
    @torch.inference_mode()
    def _run(self, word_lists: List[Sequence[str]], label_lists: List[List[str]]) -> List[np.ndarray]:
        """Probabilities [n_words, K, C] for each (words, labels) pair run as one batch (no windows)."""
        gliner = self.gliner
        device = gliner.device
        inputs = {k: v.to(device) for k, v in gliner.prompts.encode(word_lists, label_lists).items()}
        if self.is_bi_encoder:
            rows = [self._group_embeddings(tuple(labels), device) for labels in label_lists]
            inputs["labels_embeddings"], inputs["labels_mask"] = _pad_rows(rows, device)
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits, _, _ = gliner.model(**inputs)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        return [probs[i, : len(w), :, : len(l)] for i, (w, l) in enumerate(zip(word_lists, label_lists))]


def _attention_backends(device: torch.device):
    """On CUDA, scaled-dot-product attention without the cuDNN backend, which builds an execution plan
    for every new (batch, length) shape (tens of ms each; inference batches come in many shapes)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no cuDNN attention backend either
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _pad_rows(rows: Sequence[torch.Tensor], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack label-vector rows [C_i, D] into [B, C, D] (zero-padded) plus a bool mask [B, C]."""
    width = max(r.size(0) for r in rows)
    embeds = rows[0].new_zeros(len(rows), width, rows[0].size(-1))
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, r in enumerate(rows):
        embeds[i, : r.size(0)] = r
        mask[i, : r.size(0)] = True
    return embeds, mask


def predict_words(gliner, word_lists, labels: LabelSet, *, threshold=0.5, flat_ner=True, multi_label=False, batch_size=8):
    """Decoded spans per word list: a one-call helper around :class:`Predictor`."""
    results = Predictor(gliner, batch_size=batch_size)(word_lists, labels, thresholds=threshold)
    return [r.decode(flat_ner, multi_label) for r in results]
