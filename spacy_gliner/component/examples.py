"""Training Examples -> GLiNER word rows: gold spans, unannotated words, label collection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Optional

from spacy.tokens import Doc, Span
from spacy.training import Example

from ..engine import LabelSet
from ..training.step import Text
from .doc_labels import doc_prompts
from .docs import check_no_overlap, doc_words

# ``doc.spans[UNANNOTATED_KEY]``: regions of a reference Doc whose entities are unknown. Spans
# touching them (like tokens whose IOB is missing, "") are left out of the loss.
UNANNOTATED_KEY = "gliner_unannotated"


def gold_spans(doc: Doc, spans_key: Optional[str]) -> list[Span]:
    """The reference annotation: ``doc.spans[spans_key]`` when present, else ``doc.ents``."""
    if spans_key is not None and spans_key in doc.spans:
        return list(doc.spans[spans_key])
    return list(doc.ents)


def example_text(
    eg: Example, prompt_of: dict[str, str], spans_key: Optional[str], flat_ner: bool
) -> Text:
    """Words, gold (start, end, prompt) spans and unannotated word flags of one Example."""
    ref = eg.reference
    (words, token_index), _ = doc_words(ref)
    word_of = {tok: w for w, tok in enumerate(token_index)}
    spans = []
    for span in gold_spans(ref, spans_key):
        if span.label_ not in prompt_of:
            raise ValueError(
                f"Training span {span.text!r} has label {span.label_!r}, which is not among the "
                f"component's labels {sorted(prompt_of)}. Add it to labels in the config (or "
                "remove it from the data)."
            )
        inner = [word_of[i] for i in range(span.start, span.end) if i in word_of]
        if inner:
            spans.append((inner[0], inner[-1], prompt_of[span.label_]))
    if flat_ner and spans_key in ref.spans:
        check_no_overlap(spans, ref.text)
    configured = LabelSet(tuple(prompt_of), tuple(prompt_of.values()))
    return Text(
        words,
        spans,
        unannotated_words(ref, token_index, spans_key),
        doc_prompts(ref, "gliner_labels", configured),
        doc_prompts(ref, "gliner_negatives", configured),
    )


def training_texts(
    examples: Sequence[Example],
    labels: LabelSet,
    spans_key: Optional[str],
    flat_ner: bool,
    skip_bad: bool,
) -> list[Text]:
    """The training texts of ``examples`` (those that cannot be trained on left out when
    ``skip_bad``; otherwise they raise), with their own labels and negatives if they carry any."""
    prompt_of = dict(zip(labels.names, labels.prompts))
    if skip_bad:
        examples = [
            eg for eg in examples if example_problem(eg, prompt_of, spans_key, flat_ner) is None
        ]
    return [example_text(eg, prompt_of, spans_key, flat_ner) for eg in examples]


def unannotated_words(doc: Doc, token_index: Sequence[int], spans_key: Optional[str]) -> list[bool]:
    """Per word: True when its entity annotation is unknown. With ``doc.ents`` as the gold
    annotation, a token whose IOB is missing (""; spaCy's own ``ner`` ignores those) is unknown
    when the Doc has any entity annotation; ``doc.spans["gliner_unannotated"]`` marks regions."""
    unknown = [False] * len(token_index)
    uses_ents = not (spans_key is not None and spans_key in doc.spans)
    if uses_ents and doc.has_annotation("ENT_IOB"):
        unknown = [doc[i].ent_iob_ == "" for i in token_index]
    if UNANNOTATED_KEY in doc.spans:
        position = {tok: w for w, tok in enumerate(token_index)}
        for span in doc.spans[UNANNOTATED_KEY]:
            for tok in range(span.start, span.end):
                if tok in position:
                    unknown[position[tok]] = True
    return unknown


def collect_labels(
    get_examples: Callable[[], Iterable[Example]], spans_key: Optional[str]
) -> list[str]:
    """The labels of every gold span of the training examples, sorted."""
    found: dict[str, None] = {}
    for eg in get_examples():
        for span in gold_spans(eg.reference, spans_key):
            found[span.label_] = None
    return sorted(found)


def example_problem(
    eg: Example, prompt_of: dict[str, str], spans_key: Optional[str], flat_ner: bool
) -> Optional[str]:
    """Why an Example cannot be trained on, or None."""
    if not doc_words(eg.reference)[0][0]:
        return "the document has no words"
    try:
        example_text(eg, prompt_of, spans_key, flat_ner)
    except ValueError as err:
        return str(err)
    return None


def check_examples(
    examples: Iterable[Example],
    prompt_of: dict[str, str],
    spans_key: Optional[str],
    flat_ner: bool,
    skip: bool,
) -> int:
    """Check every training Example before training starts; return how many are bad. Raises
    ``ValueError`` naming the first bad one (its index and text start) unless ``skip``."""
    bad = 0
    for index, eg in enumerate(examples):
        problem = example_problem(eg, prompt_of, spans_key, flat_ner)
        if problem is None:
            continue
        if not skip:
            raise ValueError(
                f"Training example {index} ({eg.reference.text[:50]!r}) cannot be used: {problem} "
                "Fix or remove it, or set skip_bad_examples = true in [components.gliner] to skip "
                "such examples with a warning."
            )
        bad += 1
    return bad
