"""Between spaCy Docs and GLiNER's word lists: words, sentence starts, spans."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from spacy.tokens import Doc, Span, SpanGroup

from ..engine.decode import Decoded
from ..engine.results import WordsResult
from .vectors import store_vectors

if TYPE_CHECKING:
    from ..training.targets import Span as GoldSpan

GENERATED_EXTENSION = "gliner_generated_label"


def register_span_extension() -> None:
    """Register ``span._.gliner_generated_label`` (default None): label-decoder models' generated
    type name. spaCy stores Span extension values by character offsets, so a ``doc.ents`` span
    and a ``doc.spans`` span with the same boundaries share it (the name depends only on the
    boundaries); kept in a DocBin made with ``store_user_data=True``."""
    if not Span.has_extension(GENERATED_EXTENSION):
        Span.set_extension(GENERATED_EXTENSION, default=None)


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


def check_no_overlap(spans: list[GoldSpan], text: str) -> None:
    """Raise if flat training spans overlap (nested data needs ``flat_ner = false``)."""
    ordered = sorted(spans)
    for (s1, e1, l1), (s2, e2, l2) in itertools.pairwise(ordered):
        if s2 <= e1:
            raise ValueError(
                f"Overlapping training spans ({s1}-{e1} {l1!r}, {s2}-{e2} {l2!r}) in {text[:60]!r} "
                "while flat_ner = true: set flat_ner = false for nested data, or remove the overlap."
            )


def annotate(
    doc: Doc,
    result: WordsResult,
    names: Sequence[str],
    spans_key: Optional[str],
    ents: str,
    flat_ner: bool,
    multi_label: bool,
    generated: Optional[dict[tuple[int, int], str]] = None,
    use_generated: bool = False,
    vectors: bool = False,
) -> None:
    """Write one result into ``doc``: ``doc.spans[spans_key]`` (with ``attrs["scores"]``) under
    the configured decoding, and ``doc.ents`` from the flat decoding (``overwrite`` / ``merge``:
    existing entities win / ``none``). ``generated`` (label-decoder models: the generated name
    of each (first word, last word)) goes to ``span._.gliner_generated_label`` and
    ``attrs["generated_labels"]`` (parallel to ``scores``); with ``use_generated`` it is the
    span's label too (stripped; the prompt label when it is empty). ``vectors``: each span gets
    its span and label vectors (``result`` from an engine call with vectors; ``vectors.py``)."""
    token_index = word_tokens(doc)
    doc._.gliner_windows = result.num_windows
    doc._.gliner_label_groups = result.num_label_groups
    names_of = generated if generated is not None else {}

    def span(item: Decoded) -> Span:
        start, end, label, _ = item
        name = names_of.get((start, end))
        chosen = (name or "").strip() if use_generated else ""
        made = Span(doc, token_index[start], token_index[end] + 1, label=chosen or names[label])
        if generated is not None:
            made._.set(GENERATED_EXTENSION, name)
        return made

    def spans(decoded: list[Decoded]) -> list[Span]:
        made = [span(s) for s in decoded]
        if vectors:
            store_vectors(made, result.vectors_of(decoded))
        return made

    if spans_key is not None:
        chosen = result.decode(flat_ner, multi_label)
        attrs: dict = {"scores": [float(s[3]) for s in chosen]}
        if generated is not None:
            attrs["generated_labels"] = [names_of.get((s[0], s[1])) for s in chosen]
        doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=spans(chosen), attrs=attrs)
    if ents != "none":
        write_ents(doc, spans(result.decode(True, False)), ents)


def write_ents(doc: Doc, flat: list[Span], ents: str) -> None:
    """``doc.ents`` from flat spans: ``overwrite``, or ``merge`` (existing entities win)."""
    if ents == "overwrite":
        doc.set_ents(flat, default="outside")
        return
    taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
    extra = [s for s in flat if not taken.intersection(range(s.start, s.end))]
    doc.ents = sorted([*doc.ents, *extra], key=lambda s: s.start)
