"""Span and label vectors on the entities (the ``return_vectors`` setting; off by default).

``span._.gliner_vector`` and ``span._.gliner_label_vector`` (numpy float32 ``[D]``, ``D`` the
model's ``hidden_size``; None on spans the component did not write, and when the setting is off)
are the two vectors the model's score of the span compares, as the reference's
``return_vectors`` / ``return_label_vectors`` give them (``spacy_gliner.engine.vectors``):

* span-level models: the span representation and the projected label vector (the span's logit
  for its label is their dot product);
* token-level models: the mean of the span's word vectors and the label vector the scorer reads.

Both come from the encoder pass that scored the span: in a long document, the window that owns
it. A uni-encoder reads the labels in the same pass as the text, so both vectors depend on the
span *and* its label: they are stored per (label, start_char, end_char) in ``doc.user_data``,
read by the extensions' getters, so every span of ``doc.ents`` and ``doc.spans`` (multi-label
spans included) gets its own. They are kept in a DocBin made with ``store_user_data=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from spacy.tokens import Span

VECTOR_EXTENSION = "gliner_vector"
LABEL_VECTOR_EXTENSION = "gliner_label_vector"


def _key(kind: str, span: Span) -> tuple[str, str, int, int]:
    return (kind, span.label_, span.start_char, span.end_char)


def span_vector(span: Span) -> Optional[np.ndarray]:
    """The span vector the component stored for ``span`` (its label and boundaries), or None."""
    data: dict[Any, Any] = span.doc.user_data
    return data.get(_key(VECTOR_EXTENSION, span))


def label_vector(span: Span) -> Optional[np.ndarray]:
    """The label vector the component stored for ``span`` (its label and boundaries), or None."""
    data: dict[Any, Any] = span.doc.user_data
    return data.get(_key(LABEL_VECTOR_EXTENSION, span))


def register_vector_extensions() -> None:
    """Register ``span._.gliner_vector`` and ``span._.gliner_label_vector`` (read-only)."""
    if not Span.has_extension(VECTOR_EXTENSION):
        Span.set_extension(VECTOR_EXTENSION, getter=span_vector)
    if not Span.has_extension(LABEL_VECTOR_EXTENSION):
        Span.set_extension(LABEL_VECTOR_EXTENSION, getter=label_vector)


def store_vectors(spans: Sequence[Span], pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Store (span vector, label vector) for each span, for the getters above."""
    for span, (vector, label) in zip(spans, pairs):
        data: dict[Any, Any] = span.doc.user_data
        data[_key(VECTOR_EXTENSION, span)] = vector
        data[_key(LABEL_VECTOR_EXTENSION, span)] = label
