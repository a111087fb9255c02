"""Labels per Doc: ``doc._.gliner_labels`` at inference and in training, ``doc._.gliner_negatives``.

A Doc with its own labels must be annotated exactly as a component configured with those labels
annotates it, also when Docs with different label sets share one ``nlp.pipe`` batch (gliner #382
crashes there). In training, the Doc's labels / negatives become its prompt as the reference's
``ner_labels`` / ``ner_negatives`` do. Both survive a DocBin round trip.
"""

from __future__ import annotations

import random

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from spacy_gliner.training.step import Text, make_rows

TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris.",
    "Aspirin and ibuprofen were given to Mary Smith in London.",
    "Google and Apple opened offices in New York.",
]
OWN = [["person", "location"], {"drug": "chemical", "person": "person"}, None]


def _spans(doc: Doc) -> list[tuple[int, int, str, float]]:
    return [
        (s.start, s.end, s.label_, round(float(score), 6))
        for s, score in zip(doc.spans["sc"], doc.spans["sc"].attrs["scores"])
    ]


@pytest.fixture(scope="module")
def make(default_checkpoint):
    def build(labels):
        nlp = spacy.blank("en")
        config = {"model": str(default_checkpoint), "labels": labels, "threshold": 0.2}
        nlp.add_pipe("gliner", config=config)
        return nlp

    return build


def test_docs_with_their_own_labels_share_a_batch(make):
    configured = ["organization", "location"]
    nlp = make(configured)
    docs = [nlp.make_doc(t) for t in TEXTS]
    for doc, own in zip(docs, OWN):
        doc._.gliner_labels = own
    out = list(nlp.pipe(docs, batch_size=8))
    for doc, own in zip(out, OWN):
        alone = make(own if own is not None else configured)(doc.text)
        assert _spans(doc) == _spans(alone)
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [
            (e.start, e.end, e.label_) for e in alone.ents
        ]
    assert any(_spans(doc) for doc in out)


def test_per_label_thresholds_apply_to_a_docs_own_labels(make):
    nlp = make(["location"])
    nlp.get_pipe("gliner").cfg["threshold"] = {"location": 0.2, "default": 1.0}
    doc = nlp.make_doc(TEXTS[0])
    doc._.gliner_labels = ["person", "location"]
    labels = {s.label_ for s in nlp(doc).spans["sc"]}
    assert "person" not in labels  # the default (1.0) applies to the Doc's extra label


def test_bad_doc_labels_are_a_clear_error_naming_them(make):
    nlp = make(["person"])
    doc = nlp.make_doc(TEXTS[0])
    doc._.gliner_labels = ["person", ""]
    with pytest.raises(ValueError, match="gliner_labels"):
        nlp(doc)


def test_doc_labels_survive_a_docbin(make, tmp_path):
    nlp = make(["person"])
    doc = nlp.make_doc(TEXTS[1])
    doc._.gliner_labels = {"drug": "chemical"}
    doc._.gliner_negatives = ["disease"]
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "d.spacy")
    back = next(DocBin().from_disk(tmp_path / "d.spacy").get_docs(nlp.vocab))
    assert back._.gliner_labels == {"drug": "chemical"}
    assert list(back._.gliner_negatives) == ["disease"]  # msgpack gives a tuple


def test_training_texts_use_their_own_labels_and_negatives(make):
    gliner = make(["person"]).get_pipe("gliner").gliner
    words = TEXTS[0].split()
    texts = [
        Text(words, [(0, 1, "person")], None, None, ["location", "organization"]),
        Text(words, [(0, 1, "person")], None, ["city", "person"], None),
        Text(words, [(0, 1, "person")]),
    ]
    for seed in range(5):
        rows = make_rows(gliner, texts, ["person", "disease"], 25, 0, random.Random(seed))
        negatives, fixed, sampled = rows.label_sets
        assert sorted(negatives) == ["location", "organization", "person"]
        assert fixed == ["city", "person"]  # as given, in order
        assert sampled == ["person"]  # max_neg_type_ratio 0: no sampled negatives
