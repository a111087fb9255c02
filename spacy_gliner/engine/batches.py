"""Encoder work units of a call: (text, window, label group) tasks cut into padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..io.tokenizers import TextTokens
from .windows import Window, plan_windows


class Task(NamedTuple):
    text: int
    window: int
    group: int
    length: int  # sub-tokens of the encoder input, specials and prompt included


def plan_text_windows(
    tokens: Sequence[TextTokens],
    token_budget: int,
    max_words: int,
    overlap: int,
    sentence_starts: Sequence[Sequence[int]] | None = None,
) -> list[list[Window]]:
    """The windows of each text for a per-window budget of ``token_budget`` word sub-tokens."""
    windows = []
    for i, text in enumerate(tokens):
        sents = sentence_starts[i] if sentence_starts is not None else None
        windows.append(plan_windows(text.counts, token_budget, max_words, overlap, sents))
    return windows


def make_tasks(
    tokens: Sequence[TextTokens],
    windows: Sequence[Sequence[Window]],
    prompt_lengths: Sequence[int],
    fixed: int,
) -> list[Task]:
    """One task per (text, window, label group); ``fixed`` counts the tokenizer's special ids."""
    tasks = []
    for t, wins in enumerate(windows):
        offsets = tokens[t].offsets
        for j, win in enumerate(wins):
            text_tokens = int(offsets[win.end] - offsets[win.start])
            for g, prompt in enumerate(prompt_lengths):
                tasks.append(Task(t, j, g, fixed + prompt + text_tokens))
    return tasks


def make_batches(tasks: Sequence[Task], max_rows: int, max_tokens: int) -> list[list[Task]]:
    """Tasks sorted by length (ties by text, window, group), cut into batches of at most
    ``max_rows`` rows and ``max_tokens`` padded sub-tokens (a single longer task is its own batch).
    Every task lands in exactly one batch."""
    ordered = sorted(tasks, key=lambda t: (t.length, t.text, t.window, t.group))
    batches: list[list[Task]] = []
    current: list[Task] = []
    for task in ordered:
        full = len(current) >= max_rows or task.length * (len(current) + 1) > max_tokens
        if current and full:
            batches.append(current)
            current = []
        current.append(task)
    if current:
        batches.append(current)
    return batches


def threshold_table(table: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-slot thresholds ``[groups, largest group]`` (+inf on padding slots)."""
    return np.where(table >= 0, thresholds[np.clip(table, 0, None)], np.inf)
