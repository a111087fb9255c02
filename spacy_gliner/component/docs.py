"""Between spaCy Docs and GLiNER's word lists: words, sentence starts, spans."""

from __future__ import annotations

import itertools

from spacy.tokens import Doc

from ..training.targets import Span


def word_tokens(doc: Doc) -> list[int]:
    """Token indices of GLiNER's words: every token that is not whitespace."""
    return [t.i for t in doc if not t.is_space]


def doc_words(doc: Doc) -> tuple[tuple[list[str], list[int]], list[int]]:
    """GLiNER words (non-whitespace tokens) with their token indices, and the word indices where
    sentences start (empty when the Doc has no sentence boundaries)."""
    if not isinstance(doc, Doc):
        raise TypeError(
            f"The gliner component takes a spaCy Doc, got {type(doc).__name__}: call nlp(text) "
            "(or nlp.make_doc(text) first) instead of calling the component on a string."
        )
    index = word_tokens(doc)
    starts: list[int] = []
    if doc.has_annotation("SENT_START"):
        word_of = {tok: w for w, tok in enumerate(index)}
        starts = [word_of[s.start] for s in doc.sents if s.start in word_of]
    return ([doc[i].text for i in index], index), starts


def check_no_overlap(spans: list[Span], text: str) -> None:
    """Raise if flat training spans overlap (nested data needs ``flat_ner = false``)."""
    ordered = sorted(spans)
    for (s1, e1, l1), (s2, e2, l2) in itertools.pairwise(ordered):
        if s2 <= e1:
            raise ValueError(
                f"Overlapping training spans ({s1}-{e1} {l1!r}, {s2}-{e2} {l2!r}) in {text[:60]!r} "
                "while flat_ner = true: set flat_ner = false for nested data, or remove the overlap."
            )
