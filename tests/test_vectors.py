"""``return_vectors``: span and label vectors of entities, against the reference (gliner==0.2.29)
``inference(return_vectors=True, return_label_vectors=True)`` on checkpoints it saved itself,
span- and token-level, uni- and bi-encoder.

* ``GLiNER.inference``: the same entities, each ``vector`` / ``label_vector`` within 1e-5 of
  the reference's (float32, ``[hidden_size]``), flat and nested multi-label; for span models the
  score is ``sigmoid(vector . label_vector)`` (the vectors are the ones the scorer compares);
* the spaCy component: ``span._.gliner_vector`` / ``span._.gliner_label_vector`` on every span of
  ``doc.ents`` and ``doc.spans`` equal the reference's, survive a DocBin (``store_user_data``),
  and are absent (nothing stored) with the setting off (the default);
* long documents: each entity's vectors are those of the window that owns it, run alone; label
  groups: those of the pass that scored it;
* families without entity vectors are refused when the model loads.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np
import pytest

ref_gliner = pytest.importorskip("gliner")

import spacy  # noqa: E402
from spacy.tokens import Doc, DocBin  # noqa: E402

from spacy_gliner import GLiNER  # noqa: E402
from spacy_gliner.engine import Engine, EngineOptions, LabelSet  # noqa: E402
from spacy_gliner.engine.windows import owned_spans  # noqa: E402

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization"]
SENTENCES = [
    "Barack Obama was born in Hawaii.",
    "Google, Apple and Microsoft are companies; Google won.",
    "In 1999, John Smith founded a company in New York with $3.5 million.",
    "The University of Paris is in France, not in London or New York.",
    "John-Paul Smith_Jones met Mary-Ann at the University in Paris, France.",
]
CONFIGS: dict[str, dict[str, Any]] = {
    "span_uni": {},
    "span_bi": {"labels_encoder": "labels_bert"},
    "token_uni": {"span_mode": "token_level", "head_scale": 0.12},
    "token_bi": {"span_mode": "token_level", "head_scale": 0.12, "labels_encoder": "labels_bert"},
}


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def _ref_probs(ref, texts, labels) -> np.ndarray:
    """Every probability the reference computes for ``texts`` (flattened), one batch."""
    prepared = ref.prepare_batch(list(texts), list(labels))
    batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
    logits = ref.run_batch(batch)[0]
    return (1.0 / (1.0 + np.exp(-logits.double().numpy()))).ravel()


def _threshold(ref) -> float:
    """A threshold in a gap of the reference's probabilities wider than 4*TOL (float noise cannot
    move a value across it), the highest from the 0.8 quantile down that gives >= 12 entities."""
    values = np.unique(_ref_probs(ref, SENTENCES, LABELS))
    wide = np.flatnonzero(np.diff(values) > 4 * TOL)
    for quantile in (0.8, 0.7, 0.6, 0.5, 0.4, 0.3):
        i = wide[np.argmin(np.abs(wide - quantile * (len(values) - 1)))]
        t = float((values[i] + values[i + 1]) / 2)
        if sum(len(x) for x in ref.inference(SENTENCES, LABELS, threshold=t)) >= 12:
            return t
    raise AssertionError("no threshold gives enough entities: the heads are degenerate")


class Pair:
    def __init__(self, name: str, ckpt, ref, ours) -> None:
        self.name, self.ckpt, self.ref, self.ours = name, ckpt, ref, ours
        self.threshold = _threshold(ref)
        self.token = CONFIGS[name].get("span_mode") == "token_level"


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pair(request, reference_checkpoint) -> Pair:
    ckpt = reference_checkpoint(**dict(CONFIGS[request.param]))
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    return Pair(request.param, ckpt, ref, GLiNER.from_pretrained(ckpt))


def _key(ent: dict[str, Any]) -> tuple:
    return ent["start"], ent["end"], ent["label"]


def _ref_vectors(pair: Pair, **kwargs: Any) -> list[list[dict[str, Any]]]:
    return pair.ref.inference(
        SENTENCES, LABELS, threshold=pair.threshold, batch_size=1,
        return_vectors=True, return_label_vectors=True, **kwargs,
    )  # fmt: skip


def _close(ours: np.ndarray, ref: Any, where: str) -> None:
    ref = np.asarray(ref)
    assert ours.dtype == np.float32 and ours.shape == ref.shape, where
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0, err_msg=where)


@pytest.mark.parametrize(
    "flat_ner,multi_label", [(True, False), (False, True)], ids=["flat", "nested_multi"]
)
def test_inference_vectors_equal_the_reference(pair, flat_ner, multi_label):
    """Same entities; each vector and label vector within 1e-5 of the reference's, shape
    ``[hidden_size]``; span models: the score is the sigmoid of their dot product."""
    kwargs = {"flat_ner": flat_ner, "multi_label": multi_label}
    ref_out = _ref_vectors(pair, **kwargs)
    ours = pair.ours.inference(
        SENTENCES, LABELS, threshold=pair.threshold, batch_size=1,
        return_vectors=True, return_label_vectors=True, **kwargs,
    )  # fmt: skip
    hidden = pair.ours.config.hidden_size
    total = 0
    for text, r_ents, o_ents in zip(SENTENCES, ref_out, ours):
        assert [_key(e) for e in o_ents] == [_key(e) for e in r_ents], f"{pair.name} {text!r}"
        for r, o in zip(r_ents, o_ents):
            where = f"{pair.name} {text!r} {_key(o)}"
            assert o["vector"].shape == (hidden,), where
            _close(o["vector"], r["vector"], where)
            _close(o["label_vector"], r["label_vector"], where)
            if not pair.token:
                logit = float(np.dot(o["vector"].astype(np.float64), o["label_vector"]))
                assert abs(1.0 / (1.0 + np.exp(-logit)) - o["score"]) <= TOL, where
            total += 1
    assert total >= 12


def test_inference_without_vectors_has_none(pair):
    """Off by default; ``return_label_vectors`` alone adds only ``label_vector``."""
    plain = pair.ours.inference(SENTENCES, LABELS, threshold=pair.threshold)
    assert all(set(e) == {"start", "end", "text", "label", "score"} for r in plain for e in r)
    labels_only = pair.ours.inference(
        SENTENCES, LABELS, threshold=pair.threshold, return_label_vectors=True
    )
    assert all("vector" not in e and "label_vector" in e for r in labels_only for e in r)
    assert [[_key(e) for e in r] for r in labels_only] == [[_key(e) for e in r] for r in plain]


def _doc(nlp, text: str) -> Doc:
    matches = list(WORD_RE.finditer(text))
    spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
    return Doc(nlp.vocab, words=[m.group() for m in matches], spaces=spaces)


def _nlp(pair: Pair, **settings: Any):
    nlp = spacy.blank("en")
    config = {"model": str(pair.ckpt), "labels": LABELS, "threshold": pair.threshold}
    nlp.add_pipe("gliner", config={**config, "flat_ner": False, "multi_label": True, **settings})
    return nlp


def _check_doc(doc: Doc, nested: list[dict], flat: list[dict], where: str) -> int:
    """Every span of doc.spans["sc"] / doc.ents carries the reference entity's two vectors."""
    checked = 0
    for spans, ref in ((list(doc.spans["sc"]), nested), (list(doc.ents), flat)):
        by_key = {_key(e): e for e in ref}
        assert sorted((s.start_char, s.end_char, s.label_) for s in spans) == sorted(by_key), where
        for span in spans:
            r = by_key[(span.start_char, span.end_char, span.label_)]
            _close(span._.gliner_vector, r["vector"], f"{where} {span.text!r}")
            _close(span._.gliner_label_vector, r["label_vector"], f"{where} {span.text!r}")
            checked += 1
    return checked


def test_component_vectors_and_docbin(pair):
    """``return_vectors = true``: every span of doc.spans (nested, multi-label) and doc.ents has
    the reference's vectors, also after a DocBin round trip with user data and a pickle."""
    nlp = _nlp(pair, return_vectors=True)
    nested = _ref_vectors(pair, flat_ner=False, multi_label=True)
    flat = _ref_vectors(pair)
    docs = [nlp(_doc(nlp, text)) for text in SENTENCES]
    assert sum(_check_doc(d, n, f, pair.name) for d, n, f in zip(docs, nested, flat)) >= 12
    stored = DocBin(store_user_data=True, docs=docs).to_bytes()
    back = list(DocBin().from_bytes(stored).get_docs(nlp.vocab))
    for doc, n, f in zip(back, nested, flat):
        _check_doc(doc, n, f, f"{pair.name} (DocBin)")
    for doc, n, f in zip(docs, nested, flat):  # as nlp.pipe(n_process=N) sends Docs back
        _check_doc(pickle.loads(pickle.dumps(doc)), n, f, f"{pair.name} (pickle)")


def test_component_vectors_off_by_default(default_checkpoint):
    """The default stores nothing: no vector entries in user_data, the extensions read None."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 0.0}
    )
    assert nlp.get_pipe("gliner").cfg["return_vectors"] is False
    doc = nlp(_doc(nlp, SENTENCES[0]))
    assert doc.ents
    assert all(s._.gliner_vector is None and s._.gliner_label_vector is None for s in doc.ents)
    assert not any(isinstance(k, tuple) and "vector" in str(k[0]) for k in doc.user_data)


def test_long_document_vectors_come_from_the_owning_window(pair):
    """Windows of 12 words: each entity's vectors equal those of its owning window run alone."""
    words = [w for text in SENTENCES for w in _words(text)]
    labels = LabelSet.from_labels(LABELS)
    engine = Engine(pair.ours, EngineOptions(window_words=12, window_overlap=4))
    windows = engine.plan_windows([words], labels)[0]
    assert len(windows) > 3
    result = engine([words], labels, thresholds=pair.threshold, vectors=True)[0]
    decoded = result.decode(False, True)
    assert len(decoded) >= 8
    alone = Engine(pair.ours)
    for (start, end, label, score), (vector, label_vector) in zip(
        decoded, result.vectors_of(decoded)
    ):
        owners = [
            w for w, win in enumerate(windows)
            if win.start <= start and end < win.end
            and owned_spans(windows, w, len(words), np.array([start]), np.array([end]))[0]
        ]  # fmt: skip
        assert len(owners) == 1, (start, end)
        win = windows[owners[0]]
        single = alone(
            [words[win.start : win.end]], labels, thresholds=pair.threshold, vectors=True
        )[0]
        local = (start - win.start, end - win.start, label, score)
        ((span_ref, label_ref),) = single.vectors_of([local])
        _close(vector, span_ref, f"{pair.name} {words[start : end + 1]}")
        _close(label_vector, label_ref, f"{pair.name} {words[start : end + 1]}")


def test_relation_model_refuses_vectors(reference_checkpoint):
    """A family without entity vectors (relation extraction) is refused when the model loads."""
    ckpt = reference_checkpoint(relations_layer="dot")
    nlp = spacy.blank("en")
    config = {"model": str(ckpt), "labels": LABELS, "return_vectors": True}
    pipe = nlp.add_pipe("gliner", config=config)
    with pytest.raises(ValueError, match="return_vectors"):
        _ = pipe.gliner
    with pytest.raises(ValueError, match="return_vectors"):
        GLiNER.from_pretrained(ckpt).inference(SENTENCES[:1], LABELS, return_vectors=True)


def _top_threshold(results, count: int) -> float:
    """A threshold under about ``count`` candidate scores, in a gap wider than 4*TOL."""
    values = np.unique(np.concatenate([r.scores for r in results]))[::-1]
    gaps = np.flatnonzero(-np.diff(values) > 4 * TOL)
    i = gaps[np.argmin(np.abs(gaps - count))]
    return float((values[i] + values[i + 1]) / 2)


def test_label_groups_give_the_vectors_of_their_own_pass(pair):
    """One label per pass (``max_labels_per_pass = 1``): each entity's vectors are those of a run
    with its label alone (a uni-encoder reads the labels with the text, so its vectors belong
    to the pass that scored the span)."""
    words = [_words(text) for text in SENTENCES]
    labels = LabelSet.from_labels(LABELS)
    grouped = Engine(pair.ours, EngineOptions(max_labels_per_pass=1))
    threshold = _top_threshold(grouped(words, labels, thresholds=0.0), 15)
    results = grouped(words, labels, thresholds=threshold, vectors=True)
    assert results[0].num_label_groups == len(LABELS)
    checked = 0
    for label, name in enumerate(LABELS):
        alone = Engine(pair.ours)(
            words, LabelSet.from_labels([name]), thresholds=threshold, vectors=True
        )
        for result, single in zip(results, alone):
            mine = [d for d in result.decode(False, True) if d[2] == label]
            local = [(s, e, 0, p) for s, e, _, p in mine]
            for (vector, label_vector), (span_ref, label_ref) in zip(
                result.vectors_of(mine), single.vectors_of(local)
            ):
                _close(vector, span_ref, f"{pair.name} {name}")
                _close(label_vector, label_ref, f"{pair.name} {name}")
                checked += 1
    assert checked >= 8
