"""Label sets and how their prompts are cut into groups that fit the encoder beside the text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

LabelsArg = Union[Sequence[str], Mapping[str, str]]


@dataclass(frozen=True)
class LabelSet:
    """Output label names and the prompt text the model reads for each (same order, same length).

    Invariants: names are unique non-blank strings; prompts are unique non-blank strings.
    """

    names: tuple[str, ...]
    prompts: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: LabelsArg) -> LabelSet:
        """A list of names (each is its own prompt) or a ``{name: prompt}`` mapping."""
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, (Mapping, list, tuple)):
            raise ValueError(
                f"GLiNER labels must be a list of strings or a {{label: prompt}} dict, got {labels!r}."
            )
        if isinstance(labels, Mapping):
            items = list(labels.items())
        else:
            items = [(label, label) for label in labels]
        problems = [repr(n) for n, p in items if not _text(n) or not _text(p)]
        if problems:
            raise ValueError(
                "GLiNER labels must be non-empty strings (label names and prompts); "
                f"got {', '.join(problems)}."
            )
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Duplicate GLiNER labels {dupes}: give each label once.")
        prompts = [p for _, p in items]
        if len(set(prompts)) != len(prompts):
            dupes = sorted({p for p in prompts if prompts.count(p) > 1})
            raise ValueError(
                f"Several labels share the prompt(s) {dupes}: each label needs its own prompt text."
            )
        return cls(tuple(names), tuple(prompts))

    def __len__(self) -> int:
        return len(self.names)


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check_prompt_text(prompts: Sequence[str], reserved: Sequence[str]) -> None:
    """Raise ``ValueError`` if a prompt contains a reserved token (``<<ENT>>``, ``<<SEP>>``, the
    tokenizer's special tokens): the model would read it as prompt structure, not as text."""
    for prompt in prompts:
        found = [token for token in reserved if token and token in prompt]
        if found:
            raise ValueError(
                f"GLiNER label prompt {prompt!r} contains the reserved token(s) {found}, which the "
                "model reads as prompt structure (its labels would shift). Remove them from the label."
            )


class LabelPlan(NamedTuple):
    """How one label set runs: groups of label indices, each with its prompt's sub-token ids.

    ``table`` is ``[groups, largest group]`` holding the label index of each class slot (-1 =
    padding); ``longest_prompt`` is the sub-token count of the longest group prompt (0 for
    bi-encoders, whose labels are not in the text's prompt).
    """

    groups: list[list[int]]
    prompt_ids: list[np.ndarray]
    longest_prompt: int
    table: np.ndarray


def plan_label_groups(
    prompt_token_counts: Sequence[int], max_labels: int, max_prompt_tokens: int
) -> list[list[int]]:
    """Split label indices, in order, into groups of at most ``max_labels`` labels whose prompt
    fits ``max_prompt_tokens`` sub-tokens (each label costs its own tokens plus one ``<<ENT>>``,
    and the prompt ends with one ``<<SEP>>``). Every label lands in exactly one group."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 1  # <<SEP>>
    for i, count in enumerate(prompt_token_counts):
        cost = int(count) + 1
        if cost + 1 > max_prompt_tokens:
            raise ValueError(
                f"Label {i} needs {cost} sub-tokens in the prompt, more than the "
                f"{max_prompt_tokens} the encoder can spare beside the text. Shorten the label "
                "text or description."
            )
        if current and (len(current) >= max_labels or used + cost > max_prompt_tokens):
            groups.append(current)
            current, used = [], 1
        current.append(i)
        used += cost
    if current:
        groups.append(current)
    return groups


def group_table(groups: Sequence[Sequence[int]]) -> np.ndarray:
    """``[groups, largest group]`` label indices, -1 on padding slots."""
    table = np.full((len(groups), max(len(g) for g in groups)), -1, dtype=np.int64)
    for i, group in enumerate(groups):
        table[i, : len(group)] = group
    return table
