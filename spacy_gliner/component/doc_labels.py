"""Labels per Doc: ``doc._.gliner_labels`` and ``doc._.gliner_negatives``.

``doc._.gliner_labels`` (a list of label names, or a ``{label: prompt}`` dict) replaces the
component's configured labels for that Doc, at inference and in training (there it is the
example's prompt as it is, like the reference's ``ner_labels``). A name that is one of the
component's labels keeps its configured prompt; any other name is its own prompt.
``doc._.gliner_negatives`` (training only; names as above) are the example's negative labels
instead of the in-batch sample (the reference's ``ner_negatives``). Both are stored in a DocBin
made with ``store_user_data=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from spacy.tokens import Doc

from ..engine import LabelSet

DOC_EXTENSIONS = ("gliner_labels", "gliner_negatives", "gliner_windows", "gliner_label_groups")


def register_doc_extensions() -> None:
    """Register the component's ``Doc`` extensions (default None) if they are not registered yet;
    call it before reading DocBins that carry them when no gliner component exists yet."""
    for ext in DOC_EXTENSIONS:
        if not Doc.has_extension(ext):
            Doc.set_extension(ext, default=None)


def doc_label_set(doc: Doc, configured: LabelSet) -> LabelSet:
    """The labels ``doc`` is annotated with: ``doc._.gliner_labels`` when set, else ``configured``.
    Raises ``ValueError`` naming the Doc's labels when they are not a valid label set."""
    given = doc._.get("gliner_labels") if Doc.has_extension("gliner_labels") else None
    if given is None:
        return configured
    try:
        return LabelSet.from_labels(_with_prompts(given, configured))
    except ValueError as err:
        raise ValueError(
            f"doc._.gliner_labels {given!r} is not a valid label set: {err} Set it to a list of "
            "label names or a {label: prompt} dict, or to None for the configured labels."
        ) from err


def doc_prompts(doc: Doc, ext: str, configured: LabelSet) -> Optional[list[str]]:
    """The prompts of ``doc._.<ext>`` (``gliner_labels`` / ``gliner_negatives``), or None."""
    given = doc._.get(ext) if Doc.has_extension(ext) else None
    if given is None:
        return None
    return list(LabelSet.from_labels(_with_prompts(given, configured)).prompts)


def group_by_label_set(label_sets: Sequence[LabelSet]) -> list[tuple[LabelSet, list[int]]]:
    """Each distinct label set with the indices that use it, in first-seen order."""
    groups: dict[LabelSet, list[int]] = {}
    for i, labels in enumerate(label_sets):
        groups.setdefault(labels, []).append(i)
    return list(groups.items())


def _with_prompts(given: Any, configured: LabelSet) -> Any:
    if isinstance(given, (Mapping, str)) or not isinstance(given, Sequence):
        return given  # LabelSet.from_labels takes these or explains what it takes
    if not all(isinstance(name, str) for name in given):
        return list(given)
    prompt_of = dict(zip(configured.names, configured.prompts))
    return {name: prompt_of.get(name, name) for name in given}
