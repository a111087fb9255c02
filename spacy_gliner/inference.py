"""Batched inference over word lists: windows x label groups -> sorted batches -> owned scores -> spans.

No spaCy here: the component turns Docs into word lists and spans back into Docs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .modeling.decoding import Candidate, greedy_select
from .windows import Window, owned_cells, plan_label_groups, plan_windows


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
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Duplicate GLiNER labels {dupes}: give each label once.")
        prompts = [p for _, p in items]
        dupes = sorted({p for p in prompts if prompts.count(p) > 1})
        if dupes:
            raise ValueError(f"Several labels share the prompt(s) {dupes}: each label needs its own prompt text.")
        return cls(tuple(names), tuple(prompts))

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class WordsResult:
    """Scored candidate spans of one text (word indices, label index) and how the text was run."""

    candidates: List[Candidate] = field(default_factory=list)
    num_windows: int = 0
    num_label_groups: int = 0

    def decode(self, flat_ner: bool = True, multi_label: bool = False) -> List[Tuple[int, int, int, float]]:
        """(first word, last word inclusive, label index, score) spans under the given decoding."""
        return [tuple(c) for c in greedy_select(self.candidates, flat_ner, multi_label)]


@dataclass
class _Task:
    text: int
    window: int
    group: int
    length: int


class Predictor:
    """Runs a ``GLiNER`` over many texts: plans windows and label groups, batches, decodes once."""

    def __init__(
        self,
        gliner,
        *,
        batch_size: int = 8,
        window_overlap: Optional[int] = None,
        max_labels_per_pass: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        from .tokenization import max_sequence_tokens

        self.gliner = gliner
        cfg = gliner.config
        self.batch_size = max(1, int(batch_size))
        self.max_width = cfg.max_width
        self.overlap = max(cfg.max_width, int(window_overlap if window_overlap is not None else 2 * cfg.max_width))
        self.max_labels = int(max_labels_per_pass or cfg.max_types)
        self.max_tokens = max_sequence_tokens(gliner.tokenizer, gliner.model.token_rep_layer.bert_layer.model.config)
        self.dtype = dtype
        self._label_cache: Dict[Tuple[str, ...], torch.Tensor] = {}

    # ------------------------------------------------------------------ planning
    def _groups(self, labels: LabelSet) -> Tuple[List[List[int]], int]:
        prompts = self.gliner.prompts
        specials = prompts.num_special
        if self.gliner.config.is_bi_encoder:
            return [list(range(len(labels)))], 0
        counts = [int(prompts.word_token_counts([p]).sum()) for p in labels.prompts]
        spare = (self.max_tokens - specials) // 2
        groups = plan_label_groups(counts, self.max_labels, spare)
        longest = max(sum(counts[i] + 1 for i in g) + 1 for g in groups)
        return groups, longest

    def plan(
        self, word_lists: Sequence[Sequence[str]], prompt_tokens: int, sentence_starts: Optional[Sequence[Sequence[int]]]
    ) -> Tuple[List[List[Window]], List[np.ndarray]]:
        budget = self.max_tokens - self.gliner.prompts.num_special - prompt_tokens
        max_words = self.gliner.config.max_len
        windows, counts = [], []
        for i, words in enumerate(word_lists):
            c = self.gliner.prompts.word_token_counts(words)
            counts.append(c)
            sents = sentence_starts[i] if sentence_starts is not None else None
            windows.append(plan_windows(c, budget, max_words, self.overlap, sents))
        return windows, counts

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        *,
        thresholds: Union[float, Sequence[float]] = 0.5,
        sentence_starts: Optional[Sequence[Sequence[int]]] = None,
    ) -> List[WordsResult]:
        thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
        groups, prompt_tokens = self._groups(labels)
        windows, counts = self.plan(word_lists, prompt_tokens, sentence_starts)
        results = [WordsResult(num_windows=len(w), num_label_groups=len(groups) if w else 0) for w in windows]
        tasks = [
            _Task(t, j, g, int(counts[t][win.start : win.end].sum()) + win.end - win.start)
            for t, wins in enumerate(windows)
            for j, win in enumerate(wins)
            for g in range(len(groups))
        ]
        tasks.sort(key=lambda task: task.length)
        found: List[List[Candidate]] = [[] for _ in word_lists]
        for b in range(0, len(tasks), self.batch_size):
            batch = tasks[b : b + self.batch_size]
            probs = self._run(
                [word_lists[t.text][windows[t.text][t.window].start : windows[t.text][t.window].end] for t in batch],
                [[labels.prompts[i] for i in groups[t.group]] for t in batch],
            )
            for task, p in zip(batch, probs):
                wins = windows[task.text]
                win = wins[task.window]
                own = owned_cells(wins, task.window, len(word_lists[task.text]), self.max_width)
                cls_index = groups[task.group]
                keep = (p > thresholds[cls_index][None, None, :]) & own[:, :, None]
                s, k, c = np.nonzero(keep)
                found[task.text].extend(
                    Candidate(int(a) + win.start, int(a + w) + win.start, cls_index[int(l)], float(p[a, w, l]))
                    for a, w, l in zip(s, k, c)
                )
        for result, cands in zip(results, found):
            cands.sort(key=lambda c: (c.start, c.end, c.label))  # the reference's enumeration order
            result.candidates = cands
        return results

    @torch.inference_mode()
    def _run(self, word_lists: List[Sequence[str]], label_lists: List[List[str]]) -> List[np.ndarray]:
        """Probabilities [n_words, K, C] for each (words, labels) pair of one batch."""
        gliner = self.gliner
        device = gliner.device
        inputs = {k: v.to(device) for k, v in gliner.prompts.encode(word_lists, label_lists).items()}
        if gliner.config.is_bi_encoder:
            inputs["labels_embeddings"], inputs["labels_mask"] = self._label_embeddings(label_lists, device)
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits, _, _ = gliner.model(**inputs)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        return [probs[i, : len(w), :, : len(l)] for i, (w, l) in enumerate(zip(word_lists, label_lists))]

    def _label_embeddings(self, label_lists: List[List[str]], device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Bi-encoder: label vectors per label set, computed once and cached."""
        rows = []
        for labels in label_lists:
            key = tuple(labels)
            if key not in self._label_cache:
                enc = {k: v.to(device) for k, v in self.gliner.prompts.encode_labels(labels).items()}
                self._label_cache[key] = self.gliner.model.encode_labels(**enc)
            rows.append(self._label_cache[key])
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
