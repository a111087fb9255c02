"""Batching must not change results: encoder inputs, decoding, batch composition, pipe, n_process."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from helpers import WORDS

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet, WordsResult
from spacy_gliner.engine.decode import Candidate, decode_arrays, greedy_select

LABELS = ["person", "location", "organization"]
TOL = 1e-5


def _words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice([*WORDS, ".", ",", "Paris", "OBAMA", "e-mail"]) for _ in range(n)]


def _texts() -> list[list[str]]:
    lengths = [1, 3, 7, 12, 2, 25, 40, 5, 9, 60, 17, 800, 4, 33, 1200, 11]
    return [_words(n, seed=i) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def ours(default_checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(default_checkpoint)


def _gap_threshold(scores: np.ndarray, quantile: float = 0.9) -> float:
    """A threshold near ``quantile`` of the scores with no score within 4*TOL of it."""
    values = np.unique(scores)
    i = int(quantile * (len(values) - 1))
    while i + 1 < len(values) and values[i + 1] - values[i] <= 8 * TOL:
        i += 1
    assert i + 1 < len(values)
    return float((values[i] + values[i + 1]) / 2)


def _assert_same(a: WordsResult, b: WordsResult) -> None:
    assert np.array_equal(a.starts, b.starts) and np.array_equal(a.ends, b.ends)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=TOL, rtol=0)
    assert a.num_windows == b.num_windows and a.num_label_groups == b.num_label_groups


# ------------------------------------------------------------------------------------ encoder inputs
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"subtoken_pooling": "last"},
        {"subtoken_pooling": "mean"},
        {"encoder": "deberta"},
        {"labels_encoder": "labels_bert"},
    ],
    ids=["first", "last", "mean", "deberta", "bi_encoder"],
)
def test_inputs_from_cached_ids_equal_the_tokenizer(reference_checkpoint, settings):
    """Windows are assembled from per-word ids tokenized once; the result is what tokenizing the
    window's words with the prompt would give (including words with zero sub-tokens)."""
    from spacy_gliner.io.tokenizers import Row

    model = GLiNER.from_pretrained(reference_checkpoint(**settings))
    labels = LabelSet.from_labels({"PER": "person", "ORG": "sports team", "X": "e-mail address"})
    texts = [_words(50, seed=1), ["obama", "\u0301", "was", "born"], _words(3, seed=2)]
    tokens = model.prompts.tokenize_words(texts)
    (prompt,) = model.prompts.prompt_ids([list(labels.prompts)])
    rows = [
        Row(tokens[0], 10, 37, prompt),
        Row(tokens[1], 0, 4, prompt),
        Row(tokens[2], 1, 3, prompt),
        Row(tokens[0], 0, 50, prompt),
    ]
    inputs, cut = model.prompts.assemble(rows, 512)
    expected = model.prompts.encode(
        [texts[0][10:37], texts[1], texts[2][1:3], texts[0]], [list(labels.prompts)] * 4
    )
    assert cut == [0, 0, 0, 0]
    for key in ("input_ids", "attention_mask", "words_mask", "text_lengths"):
        assert torch.equal(inputs[key], expected[key]), key


# ------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "flat_ner,multi_label", [(True, False), (True, True), (False, False), (False, True)]
)
def test_array_decoding_equals_greedy_select(seed, flat_ner, multi_label):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    starts = rng.integers(0, 60, size=n)
    ends = starts + rng.integers(0, 5, size=n)
    labels = rng.integers(0, 4, size=n)
    scores = rng.choice(np.linspace(0.5, 1.0, 30), size=n).astype(np.float32)  # many ties
    cells = {}
    for s, e, lab, p in zip(starts, ends, labels, scores):
        cells[(int(s), int(e), int(lab))] = p
    keys = sorted(cells)
    s, e, lab = (np.array(x, dtype=np.int64) for x in zip(*keys))
    p = np.array([cells[k] for k in keys], dtype=np.float32)
    expected = [
        tuple(c)
        for c in greedy_select(
            [Candidate(*k, float(cells[k])) for k in keys], flat_ner, multi_label
        )
    ]
    assert decode_arrays(s, e, lab, p, flat_ner, multi_label) == expected


def test_words_result_from_candidates_and_cached_decode():
    cands = [Candidate(0, 1, 0, 0.9), Candidate(1, 1, 1, 0.95), Candidate(3, 3, 0, 0.6)]
    result = WordsResult(cands, num_windows=1, num_label_groups=1)
    assert result.candidates == cands
    assert result.decode() == [(1, 1, 1, 0.95), (3, 3, 0, 0.6)]
    assert result.decode() == result.decode(True, False)
    assert WordsResult().decode() == []


# ------------------------------------------------------------------------------------ batching
def test_batch_composition_does_not_change_scores(ours):
    texts = _texts()
    labels = LabelSet.from_labels(LABELS)
    one = Engine(ours, EngineOptions(batch_size=1))(texts, labels, thresholds=0.0)
    for kwargs in (
        {"batch_size": 16},
        {"batch_size": 5, "max_batch_tokens": 700},
        {"batch_size": 64},
    ):
        other = Engine(ours, EngineOptions(**kwargs))(texts, labels, thresholds=0.0)
        for a, b in zip(one, other):
            _assert_same(a, b)


def test_batches_respect_row_and_token_limits(ours):
    shapes = []
    encoder = ours.model.token_rep_layer.bert_layer.model
    hook = encoder.register_forward_pre_hook(
        lambda m, args, kw: shapes.append(tuple((args[0] if args else kw["input_ids"]).shape)),
        with_kwargs=True,
    )
    try:
        predictor = Engine(ours, EngineOptions(batch_size=6, max_batch_tokens=1500))
        predictor(_texts(), LabelSet.from_labels(LABELS), thresholds=0.5)
    finally:
        hook.remove()
    assert shapes
    for rows, width in shapes:
        assert rows <= 6 and (rows == 1 or rows * width <= 1500) and width <= predictor.max_tokens
    # sorted by length: few padded tokens
    widths = [w for _, w in shapes]
    assert widths == sorted(widths)


def test_per_label_thresholds_and_empty_texts(ours):
    labels = LabelSet.from_labels(LABELS)
    texts = [[], _words(20, seed=3), []]
    predictor = Engine(ours)
    base = predictor(texts, labels, thresholds=0.0)
    assert base[0].num_windows == 0 and len(base[0]) == 0 and base[0].decode() == []
    cut = float(np.median(base[1].scores))
    mixed = predictor(texts, labels, thresholds=[cut, 1.0, 0.0])[1]
    keep = ((base[1].labels == 0) & (base[1].scores > cut)) | (base[1].labels == 2)
    assert np.array_equal(mixed.starts, base[1].starts[keep])
    assert np.array_equal(mixed.labels, base[1].labels[keep])
    assert predictor([], labels) == []


def test_training_mode_is_restored_and_ignored(ours):
    texts = _texts()[:5]
    labels = LabelSet.from_labels(LABELS)
    eval_result = Engine(ours)(texts, labels, thresholds=0.0)
    ours.model.train()
    try:
        train_result = Engine(ours)(texts, labels, thresholds=0.0)
        assert ours.model.training
    finally:
        ours.model.eval()
    for a, b in zip(eval_result, train_result):
        _assert_same(a, b)


# ------------------------------------------------------------------------------------ spaCy
def _nlp(checkpoint, threshold: float, **config):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(
        "gliner",
        config={"model": str(checkpoint), "labels": LABELS, "threshold": threshold, **config},
    )
    return nlp


def _doc_texts() -> list[str]:
    texts = [" ".join(w) for w in _texts()]
    texts.append(
        " . ".join(" ".join(_words(15, seed=100 + i)) for i in range(60))
    )  # ~960 words, 60 sentences
    texts.append("")
    return texts


def _spans(doc):
    return (
        [(s.start, s.end, s.label_) for s in doc.spans["sc"]],
        list(doc.spans["sc"].attrs["scores"]),
        [(e.start, e.end, e.label_) for e in doc.ents],
        doc._.gliner_windows,
        doc._.gliner_label_groups,
    )


@pytest.fixture(scope="module")
def component_threshold(ours):
    texts = [t.split() for t in _doc_texts()]
    results = Engine(ours)(texts, LabelSet.from_labels(LABELS), thresholds=0.0)
    return _gap_threshold(np.concatenate([r.scores for r in results]), 0.97)


def test_pipe_equals_one_by_one(default_checkpoint, component_threshold):
    nlp = _nlp(default_checkpoint, component_threshold, batch_size=8)
    texts = _doc_texts()
    single = [_spans(nlp(t)) for t in texts]
    piped = [_spans(d) for d in nlp.pipe(texts, batch_size=7)]
    assert sum(len(s[0]) for s in single) > 20
    assert single[-2][3] > 1  # the long text ran in several windows ...
    assert single[-1][3] == 0  # ... and the empty one in none
    for a, b in zip(single, piped):
        assert a[0] == b[0] and a[2] == b[2] and a[3:] == b[3:]
        np.testing.assert_allclose(a[1], b[1], atol=TOL, rtol=0)


def test_n_process_2_equals_n_process_1(default_checkpoint, component_threshold):
    nlp = _nlp(default_checkpoint, component_threshold, batch_size=8)
    texts = _doc_texts()
    one = [_spans(d) for d in nlp.pipe(texts, batch_size=4, n_process=1)]
    two = [_spans(d) for d in nlp.pipe(texts, batch_size=4, n_process=2)]
    assert len(two) == len(texts)
    for a, b in zip(one, two):
        assert a[0] == b[0] and a[2] == b[2] and a[3:] == b[3:]
        np.testing.assert_allclose(a[1], b[1], atol=TOL, rtol=0)


def test_component_pickles(default_checkpoint, component_threshold):
    """spaCy multiprocessing under the spawn / forkserver start methods pickles the components:
    the loaded model, tokenizer and predictor must survive it and give the same results."""
    nlp = _nlp(default_checkpoint, component_threshold)
    text = _doc_texts()[5]
    before = _spans(nlp(text))
    clone = pickle.loads(pickle.dumps(nlp.get_pipe("gliner")))
    doc = clone(nlp.make_doc(text))
    assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == before[0]
    np.testing.assert_allclose(list(doc.spans["sc"].attrs["scores"]), before[1], atol=TOL, rtol=0)
    gliner = pickle.loads(pickle.dumps(GLiNER.from_pretrained(default_checkpoint)))
    assert gliner.predict_entities(text, ["person"], threshold=0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_reduced_precision_runs(ours, dtype):
    """bfloat16 runs on CPU too, close to float32 (float16 is GPU-only: test_bad_input, test_gpu)."""
    texts = _texts()[:6]
    labels = LabelSet.from_labels(LABELS)
    full = Engine(ours)(texts, labels, thresholds=0.0)
    low = Engine(ours, EngineOptions(dtype=dtype))(texts, labels, thresholds=0.0)
    for a, b in zip(full, low):
        assert np.array_equal(a.starts, b.starts) and np.array_equal(a.labels, b.labels)
        assert np.abs(a.scores - b.scores).max() < 0.05


def test_long_calls_log_progress(ours, monkeypatch, caplog):
    """A call that runs past ``PROGRESS_SECONDS`` logs how far it got (INFO); every call ends with a
    DEBUG summary."""
    import logging

    from spacy_gliner.engine import core

    monkeypatch.setattr(core, "PROGRESS_SECONDS", 0.0)
    predictor = Engine(ours, EngineOptions(batch_size=2))
    texts = [_words(12, seed=i) for i in range(5)]  # five tasks in three batches
    with caplog.at_level(logging.DEBUG, logger="spacy_gliner"):
        predictor(texts, LabelSet.from_labels(["person", "location"]), thresholds=0.5)
    progress = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert progress[0].startswith("GLiNER: 2 of 5 windows x label groups scored (40%)")
    assert progress[-1].startswith("GLiNER: 5 of 5 windows x label groups scored (100%)")
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("5 texts, 5 windows, 1 label group(s), 3 encoder batches" in m for m in summary)


def test_default_batch_size_is_32_rows_on_cpu(default_checkpoint):
    """Unset, ``batch_size`` is 32 rows on CPU (128 on a GPU: tests/test_gpu.py), for the engine
    and the component; a set value is kept."""
    gliner = GLiNER.from_pretrained(default_checkpoint)
    assert Engine(gliner).batch_size == 32
    assert Engine(gliner, EngineOptions(batch_size=5)).batch_size == 5
    nlp = _nlp(default_checkpoint, 0.5)
    assert nlp.get_pipe("gliner").cfg["batch_size"] is None
    assert nlp.get_pipe("gliner").engine.batch_size == 32
    assert _nlp(default_checkpoint, 0.5, batch_size=7).get_pipe("gliner").engine.batch_size == 7
