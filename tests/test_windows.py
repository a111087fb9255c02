"""Long documents and many labels: window planning, span ownership, label groups (tiny models)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from helpers import WORDS

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet
from spacy_gliner.engine.labels import plan_label_groups
from spacy_gliner.engine.windows import (
    Window,
    owned_cells,
    plan_windows,
    unscored_spans,
)

LABELS = ["person", "location"]


# ------------------------------------------------------------------------------------ pure planning
def _check_windows(
    windows: list[Window], counts: np.ndarray, budget: int, max_words: int, overlap: int
) -> None:
    n = len(counts)
    assert windows[0].start == 0 and windows[-1].end == n
    for w in windows:
        assert w.end - w.start <= max_words
        assert w.end - w.start == 1 or counts[w.start : w.end].sum() <= budget
    for a, b in itertools.pairwise(windows):
        assert a.start < b.start and a.end < b.end
        assert a.end - b.start >= min(overlap, a.end - a.start - 1)


@pytest.mark.parametrize("seed", range(6))
def test_plan_windows_respects_budget_words_and_overlap(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    counts = rng.integers(0, 5, size=n)
    budget, max_words, overlap = (
        int(rng.integers(40, 300)),
        int(rng.integers(30, 200)),
        int(rng.integers(4, 13)),
    )
    sents = (
        sorted(rng.choice(n, size=min(n, n // 15 + 1), replace=False).tolist())
        if seed % 2
        else None
    )
    windows = plan_windows(counts, budget, max_words, overlap, sents)
    _check_windows(windows, counts, budget, max_words, overlap)
    # every span of up to `overlap` words lies inside some window
    assert unscored_spans(windows, n, overlap) == 0


def test_plan_windows_fits_in_one_and_empty():
    assert plan_windows(np.ones(10, dtype=int), 10, 384, 4) == [Window(0, 10)]
    assert plan_windows(np.zeros(0, dtype=int), 10, 384, 4) == []
    assert len(plan_windows(np.ones(11, dtype=int), 10, 384, 4)) == 2
    assert len(plan_windows(np.ones(11, dtype=int), 100, 10, 4)) == 2  # max_len words


def test_plan_windows_prefers_sentence_boundaries():
    counts = np.ones(1000, dtype=int)
    sents = list(range(0, 1000, 37))
    windows = plan_windows(counts, 200, 384, 12, sents)
    for a, b in itertools.pairwise(windows):
        assert a.end in sents  # cut at a sentence start in the window's second half
        assert b.start in sents  # the next window starts at a sentence start ...
        assert a.end - b.start >= 12  # ... without giving up the overlap
    without = plan_windows(counts, 200, 384, 12)
    assert [w.end for w in without[:-1]] != [w.end for w in windows[:-1]]


def test_single_word_longer_than_budget_gets_its_own_window():
    counts = np.array([1, 1, 50, 1, 1])
    windows = plan_windows(counts, 10, 384, 2)
    assert (2, 3) in [(w.start, w.end) for w in windows]  # the long word alone
    assert all(counts[w.start : w.end].sum() <= 10 or w.end - w.start == 1 for w in windows)
    covered = {i for w in windows for i in range(w.start, w.end)}
    assert covered == set(range(5)) and windows[0].start == 0 and windows[-1].end == 5


@pytest.mark.parametrize("seed", range(5))
def test_every_cell_owned_exactly_once(seed):
    rng = np.random.default_rng(seed)
    n, K = int(rng.integers(50, 800)), int(rng.integers(1, 13))
    counts = rng.integers(1, 3, size=n)
    windows = plan_windows(counts, int(rng.integers(30, 120)), 384, K + int(rng.integers(0, 10)))
    times = np.zeros((n, K), dtype=int)
    for j, w in enumerate(windows):
        own = owned_cells(windows, j, n, K)
        assert own.shape == (w.end - w.start, K)
        times[w.start : w.end] += own
    valid = (np.arange(n)[:, None] + np.arange(K)[None, :]) < n
    assert (times[valid] == 1).all()
    assert (times[~valid] == 0).all()


def test_owner_is_the_window_where_the_span_is_most_central():
    windows = [Window(0, 100), Window(80, 180)]
    a = owned_cells(windows, 0, 180, 1)[:, 0]
    b = owned_cells(windows, 1, 180, 1)[:, 0]
    # word 85: 14 words from window 0's cut end, 5 from window 1's cut start -> window 0
    assert a[85] and not b[85 - 80]
    # word 95: 4 from window 0's end, 15 from window 1's start -> window 1
    assert not a[95] and b[95 - 80]


def test_label_groups_cover_every_label_once():
    rng = random.Random(0)
    counts = [rng.randint(1, 9) for _ in range(1000)]
    groups = plan_label_groups(counts, 25, 100)
    assert sorted(i for g in groups for i in g) == list(range(1000))
    assert [i for g in groups for i in g] == list(range(1000))  # order kept
    for g in groups:
        assert len(g) <= 25
        assert 1 + sum(counts[i] + 1 for i in g) <= 100
    with pytest.raises(ValueError, match="Shorten the label"):
        plan_label_groups([3, 200], 25, 100)


# ------------------------------------------------------------------------------------ with a model
@pytest.fixture(scope="module")
def ours(default_checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(default_checkpoint)


def _doc_words(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def _cells(result) -> dict:
    return {
        (s, e, lab): p
        for s, e, lab, p in zip(
            result.starts.tolist(),
            result.ends.tolist(),
            result.labels.tolist(),
            result.scores.tolist(),
        )
    }


@pytest.fixture(scope="module")
def long_doc(ours):
    """A 6,000-word document with a one-word entity planted at word 5,000, scored at threshold 0
    (every cell kept), plus the predictor that did it."""
    words = _doc_words(6000)
    words[5000] = "obama"
    predictor = Engine(ours, EngineOptions(batch_size=8))
    result = predictor([words], LabelSet.from_labels(LABELS), thresholds=0.0)[0]
    return words, predictor, result


def test_long_document_every_cell_scored_once(long_doc, ours):
    words, _predictor, result = long_doc
    n, K = len(words), ours.config.max_width
    assert result.num_windows > 10
    cells = list(zip(result.starts.tolist(), result.ends.tolist(), result.labels.tolist()))
    assert len(cells) == len(set(cells))  # one score per span and label
    expected = sum(min(K, n - s) for s in range(n)) * len(LABELS)
    assert len(cells) == expected
    assert result.unscored_spans == 0 and result.truncated_words == 0


def _owner(predictor, words, start, end):
    labels = LabelSet.from_labels(LABELS)
    windows = predictor.plan_windows([words], labels)[0]
    K = predictor.max_width
    for j, w in enumerate(windows):
        if (
            w.start <= start
            and end < w.end
            and owned_cells(windows, j, len(words), K)[start - w.start, end - start]
        ):
            return windows, j
    raise AssertionError("no owner")


def test_entity_at_word_5000_found_with_its_window_score(long_doc, ours):
    words, predictor, result = long_doc
    windows, j = _owner(predictor, words, 5000, 5000)
    win = windows[j]
    assert win.start > 384
    alone = Engine(ours, EngineOptions(batch_size=1))(
        [words[win.start : win.end]], LabelSet.from_labels(LABELS), thresholds=0.0
    )[0]
    assert alone.num_windows == 1
    doc_cells, win_cells = _cells(result), _cells(alone)
    for label in range(len(LABELS)):
        assert (
            abs(
                doc_cells[(5000, 5000, label)]
                - win_cells[(5000 - win.start, 5000 - win.start, label)]
            )
            <= 1e-5
        )
    # Found: under nested multi-label decoding a one-word span never conflicts, so it is selected
    # whenever it clears the threshold.
    score = doc_cells[(5000, 5000, 0)]
    above = Engine(ours, EngineOptions(batch_size=8))(
        [words], LabelSet.from_labels(LABELS), thresholds=score - 1e-4
    )[0]
    hits = [s for s in above.decode(flat_ner=False, multi_label=True) if s[:3] == (5000, 5000, 0)]
    assert len(hits) == 1 and abs(hits[0][3] - score) <= 1e-5


def test_span_straddling_a_window_cut_found_once(long_doc, ours):
    words, predictor, result = long_doc
    labels = LabelSet.from_labels(LABELS)
    windows = predictor.plan_windows([words], labels)[0]
    a, b = windows[3], windows[4]
    assert a.end > b.start  # overlapping
    # A two-word span across window 3's last word: only inside window 4 ...
    start = a.end - 1
    doc_cells = _cells(result)
    alone_b = Engine(ours, EngineOptions(batch_size=1))(
        [words[b.start : b.end]], labels, thresholds=0.0
    )[0]
    assert (
        abs(
            doc_cells[(start, start + 1, 1)]
            - _cells(alone_b)[(start - b.start, start + 1 - b.start, 1)]
        )
        <= 1e-5
    )
    # ... and a span inside the overlap is scored by both windows but reported once.
    mid = (b.start + a.end) // 2
    hits = [
        c
        for c in zip(result.starts.tolist(), result.ends.tolist(), result.labels.tolist())
        if c == (mid, mid + 1, 0)
    ]
    assert len(hits) == 1
    # Decoded once at a threshold just under its score (nested + multi-label: a lone 1-word span
    # cannot conflict).
    score = doc_cells[(mid, mid, 0)]
    above = Engine(ours, EngineOptions(batch_size=8))([words], labels, thresholds=score - 1e-4)[0]
    decoded = [s for s in above.decode(False, True) if s[:3] == (mid, mid, 0)]
    assert len(decoded) == 1
    flat = above.decode(True, False)
    assert all(
        x[1] < y[0] for x, y in itertools.pairwise(flat)
    )  # flat decoding: no overlaps anywhere


def test_long_label_prompts_shrink_windows_to_the_budget(ours):
    predictor = Engine(ours, EngineOptions(batch_size=4))
    long_labels = {f"l{i}": " ".join(_doc_words(60, seed=i)) for i in range(3)}
    labels = LabelSet.from_labels(long_labels)
    seen = []
    enc = ours.model.token_rep_layer.bert_layer.model
    handle = enc.register_forward_pre_hook(
        lambda m, args, kw: seen.append(tuple((args[0] if args else kw["input_ids"]).shape)),
        with_kwargs=True,
    )
    try:
        words = _doc_words(1500, seed=3)
        result = predictor([words], labels, thresholds=0.5)[0]
    finally:
        handle.remove()
    plan = predictor.label_plan(labels)
    assert plan.longest_prompt > 150
    assert all(t <= predictor.max_tokens for _, t in seen)
    windows = predictor.plan_windows([words], labels)
    counts = [ours.prompts.word_token_counts(words)]
    for w in windows[0]:
        assert counts[0][w.start : w.end].sum() + plan.longest_prompt + 2 <= predictor.max_tokens
    assert result.num_windows == len(windows[0]) > 3


def test_many_labels_are_grouped_and_all_scored(ours):
    labels = LabelSet.from_labels([f"{w} {i}" for i, w in enumerate(_doc_words(1000, seed=5))])
    predictor = Engine(ours, EngineOptions(batch_size=16))
    words = ["barack", "obama", "visited", "paris", "and", "london"]
    result = predictor([words], labels, thresholds=0.0)[0]
    plan = predictor.label_plan(labels)
    assert sorted(i for g in plan.groups for i in g) == list(range(1000))
    assert result.num_label_groups == len(plan.groups) >= 1000 // ours.config.max_types
    n, K = len(words), ours.config.max_width
    cells = sum(min(K, n - s) for s in range(n))
    assert len(result) == cells * 1000
    assert set(result.labels.tolist()) == set(range(1000))
    assert np.bincount(result.labels, minlength=1000).tolist() == [cells] * 1000


def test_grouping_bi_encoder_does_not_change_scores(reference_checkpoint):
    ckpt = reference_checkpoint(labels_encoder="labels_bert")
    model = GLiNER.from_pretrained(ckpt)
    labels = LabelSet.from_labels(["person", "location", "organization", "city", "date"])
    texts = [_doc_words(30, seed=s) for s in range(4)] + [_doc_words(900, seed=9)]
    whole = Engine(model, EngineOptions(batch_size=4))(texts, labels, thresholds=0.0)
    grouped_predictor = Engine(model, EngineOptions(batch_size=4, max_labels_per_pass=2))
    grouped = grouped_predictor(texts, labels, thresholds=0.0)
    assert len(grouped_predictor.label_plan(labels).groups) == 3
    for a, b in zip(whole, grouped):
        assert b.num_label_groups == 3 and a.num_label_groups == 1
        assert np.array_equal(a.starts, b.starts) and np.array_equal(a.ends, b.ends)
        assert np.array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)


def test_bi_encoder_label_vectors_cached_and_refreshed_after_training(reference_checkpoint):
    ckpt = reference_checkpoint(labels_encoder="labels_bert")
    model = GLiNER.from_pretrained(ckpt)
    predictor = Engine(model)
    labels = LabelSet.from_labels(["person", "location"])
    calls = []
    encoder = model.model.token_rep_layer.labels_encoder
    handle = encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        words = [_doc_words(20, seed=s) for s in range(3)]
        first = predictor(words, labels, thresholds=0.0)
        predictor(words, labels, thresholds=0.0)
        assert len(calls) == 1  # once per label set, not per batch or call
        with torch.no_grad():
            for p in encoder.parameters():
                p.add_(0.5)
        predictor.clear_cache()  # what a training step does after changing the weights
        again = predictor(words, labels, thresholds=0.0)
        assert len(calls) == 2
        assert not np.allclose(first[0].scores, again[0].scores)
    finally:
        handle.remove()


def test_tiny_budget_reports_unscored_spans(ours, caplog):
    predictor = Engine(
        ours, EngineOptions(max_tokens=8)
    )  # windows of 3 words: 4-word spans fit nowhere
    words = _doc_words(40, seed=2)
    with caplog.at_level("WARNING", logger="spacy_gliner"):
        result = predictor([words], LabelSet.from_labels(["person"]), thresholds=0.0)[0]
    assert result.num_windows > 5
    assert result.unscored_spans > 0
    assert "fit in no window" in caplog.text


def test_overlong_word_gets_a_window_of_its_own(ours):
    predictor = Engine(ours, EngineOptions(max_tokens=60))
    words = ["barack", "abcdefghij" * 9, "obama"]  # 90 sub-tokens in one word
    result = predictor([words], LabelSet.from_labels(["person"]), thresholds=0.0)[0]
    assert result.num_windows == 3
    assert sorted(zip(result.starts.tolist(), result.ends.tolist())) == [(0, 0), (1, 1), (2, 2)]
    assert result.unscored_spans == 3  # the spans across the long word, reported (and logged)


def test_truncation_matches_the_tokenizer(ours):
    """A window past the encoder limit is cut like the tokenizer's own truncation would cut it."""
    predictor = Engine(ours)
    words = _doc_words(700, seed=4)
    labels = LabelSet.from_labels(LABELS)
    plan = predictor.label_plan(labels)
    from spacy_gliner.io.tokenizers import Row

    tokens = ours.prompts.tokenize_words([words])
    inputs, (cut,) = ours.prompts.assemble(
        [Row(tokens[0], 0, 700, plan.prompt_ids[0])], predictor.max_tokens
    )
    expected = ours.prompts.encode([words], [list(labels.prompts)])
    assert inputs["input_ids"].shape[1] == predictor.max_tokens
    assert cut == 700 - (predictor.max_tokens - 2 - len(plan.prompt_ids[0]))
    for key in ("input_ids", "attention_mask", "words_mask", "text_lengths"):
        assert torch.equal(inputs[key], expected[key]), key


def test_window_words_caps_windows_and_still_scores_every_cell(ours):
    """``window_words`` (for models trained on short texts): windows of at most that many words,
    still every cell of the document scored exactly once, each with its owning window's score."""
    words = _doc_words(400, seed=3)
    starts = list(range(0, 400, 17))  # sentence starts every 17 words
    predictor = Engine(ours, EngineOptions(batch_size=8, window_words=48))
    labels = LabelSet.from_labels(LABELS)
    windows = predictor.plan_windows([words], labels, [starts])
    assert len(windows[0]) > 8 and all(w.end - w.start <= 48 for w in windows[0])
    result = predictor([words], labels, thresholds=0.0, sentence_starts=[starts])[0]
    n, K = len(words), ours.config.max_width
    cells = _cells(result)
    assert len(cells) == sum(min(K, n - s) for s in range(n)) * len(LABELS)
    assert result.num_windows == len(windows[0]) and result.unscored_spans == 0
    # a cell's score is the one its owning window gives when run alone
    w = windows[0][3]
    alone = _cells(
        Engine(ours, EngineOptions(batch_size=8))([words[w.start : w.end]], labels, thresholds=0.0)[
            0
        ]
    )
    owned = owned_cells(windows[0], 3, n, K)
    for (s, e, lab), p in alone.items():
        if owned[s, e - s]:
            assert abs(cells[(s + w.start, e + w.start, lab)] - p) < 1e-5


def test_window_words_must_exceed_the_overlap(ours):
    with pytest.raises(ValueError, match="window_words"):
        Engine(ours, EngineOptions(window_words=ours.config.max_width))


def test_window_words_setting_of_the_component(default_checkpoint):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "window_words": 40}
    )
    doc = nlp(" ".join(_doc_words(200, seed=4)))
    assert doc._.gliner_windows >= 5
    with pytest.raises(ValueError, match="window_words"):
        spacy.blank("en").add_pipe(
            "gliner", config={"labels": LABELS, "window_words": 20, "window_overlap": 20}
        )
