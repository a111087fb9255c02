"""Token-level GLiNER (``span_mode == "token_level"``): parity with the reference package
(gliner==0.2.29) on checkpoints it saved itself, uni- and bi-encoder.

* per-word start / end / inside probabilities within 1e-5 (one text per batch, and batches);
* decoded char-offset spans identical and scores within 1e-5 under flat / nested / multi-label
  decoding (the reference's ``inference`` against ours);
* the spaCy component gives the same spans and scores, also after ``to_disk`` / ``spacy.load``;
* windows, label groups and per-label thresholds agree with the single-window, single-group runs
  they are made of.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

ref_gliner = pytest.importorskip("gliner")

import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from spacy_gliner import GLiNER  # noqa: E402
from spacy_gliner.engine import Engine, EngineOptions, LabelSet  # noqa: E402
from spacy_gliner.engine.windows import owned_spans  # noqa: E402
from spacy_gliner.model.families import family_of  # noqa: E402

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization", "sports team"]
SENTENCES = [
    "Obama",
    "Barack Obama was born in Hawaii.",
    "BARACK OBAMA visited PARIS and LONDON in 2009!",
    "Google, Apple and Microsoft are companies; Google won.",
    "In 1999, John Smith founded a company in New York with $3.5 million.",
    "The University of Paris is in France, not in London or New York.",
    "Who won the cup? The team of the city won the game 3-1 against London.",
    "John-Paul Smith_Jones met Mary-Ann at the University in Paris, France.",
    "the the the city city city of of paris paris",
    "The president of France visited the queen and the king of England in London on Monday, "
    "and then the president visited Google and Apple in New York before the cup game.",
]
# Perturbation of the reference's random heads: wide enough for spread-out start / end / inside
# probabilities, small enough that they do not saturate.
HEAD_SCALE = 0.12
CONFIGS: dict[str, dict[str, Any]] = {
    "uni": {},
    "uni_mean_rnn0_hidden48": {"subtoken_pooling": "mean", "num_rnn_layers": 0, "hidden_size": 48},
    "bi_fusion": {"labels_encoder": "labels_bert", "post_fusion_schema": "l2l-l2t-t2t"},
}


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


class Pair:
    """A reference token-level model and ours, loaded from the same reference checkpoint."""

    def __init__(self, name: str, ckpt, ref, ours) -> None:
        self.name, self.ckpt, self.ref, self.ours = name, ckpt, ref, ours
        self.ref_probs = [_ref_probs(ref, [t], LABELS)[0] for t in SENTENCES]
        self.threshold = _spans_threshold(ref, self.ref_probs)


def _ref_probs(ref, texts, labels) -> list[np.ndarray]:
    """Reference probabilities ``[n_words, C, 3]`` per text, one batch of ``texts``."""
    prepared = ref.prepare_batch(list(texts), list(labels))
    batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
    logits = ref.run_batch(batch)[0]
    assert logits.dim() == 4 and logits.shape[-1] == 3
    probs = 1.0 / (1.0 + np.exp(-logits.double().numpy()))
    return [probs[i, : len(tokens)] for i, tokens in enumerate(prepared["tokens"])]


def _threshold(probs, quantile: float = 0.7) -> float:
    """A threshold near ``quantile`` of all start / end / inside probabilities, in a gap wider
    than 4*TOL so float noise cannot move a value across it."""
    values = np.unique(np.concatenate([p.ravel() for p in probs]))
    wide = np.flatnonzero(np.diff(values) > 4 * TOL)
    assert wide.size, "no usable gap for a threshold"
    i = wide[np.argmin(np.abs(wide - quantile * (len(values) - 1)))]
    return float((values[i] + values[i + 1]) / 2)


def _spans_threshold(ref, probs) -> float:
    """The highest gap-safe threshold (from the 0.7 quantile down) at which the reference's flat
    decoding finds at least 20 spans in ``SENTENCES``."""
    for quantile in (0.7, 0.6, 0.5, 0.4, 0.3, 0.2):
        t = _threshold(probs, quantile)
        if sum(len(x) for x in ref.inference(SENTENCES, LABELS, threshold=t)) >= 20:
            return t
    raise AssertionError("no threshold gives enough spans: the heads are degenerate")


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pair(request, reference_checkpoint) -> Pair:
    settings = CONFIGS[request.param]
    ckpt = reference_checkpoint(span_mode="token_level", head_scale=HEAD_SCALE, **settings)
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    return Pair(request.param, ckpt, ref, GLiNER.from_pretrained(ckpt))


def test_checkpoint_is_a_token_level_model(pair):
    """Guard: the reference built a token model; ours loads every one of its weights (strictly)."""
    settings = CONFIGS[pair.name]
    bi = bool(settings.get("labels_encoder"))
    assert type(pair.ref.model).__name__ == (
        "BiEncoderTokenModel" if bi else "UniEncoderTokenModel"
    )
    assert set(pair.ours.model.state_dict()) == set(pair.ref.model.state_dict())
    assert family_of(pair.ours.config.to_dict()).output == "token"
    assert pair.ours.config.is_bi_encoder == bi


def _assert_close(ref: np.ndarray, ours: np.ndarray, where: str) -> None:
    assert ours.shape == ref.shape, where
    diff = np.abs(ours - ref).max()
    assert diff <= TOL, f"{where}: max |p_ours - p_ref| = {diff:.3g}"


def test_token_probabilities(pair):
    """Start / end / inside probabilities of every word and label within 1e-5: one text per batch
    and identically composed batches of several texts."""
    for text, ref in zip(SENTENCES, pair.ref_probs):
        ours = Engine(pair.ours).span_probabilities([_words(text)], [LABELS])[0]
        _assert_close(ref, ours, f"{pair.name}: {text!r}")
    texts = SENTENCES[:5]
    engine = Engine(pair.ours, EngineOptions(batch_size=len(texts)))
    ours = engine.span_probabilities([_words(t) for t in texts], [LABELS] * len(texts))
    for text, r, o in zip(texts, _ref_probs(pair.ref, texts, LABELS), ours):
        _assert_close(r, o, f"{pair.name} (batch): {text!r}")
    values = np.concatenate([p.ravel() for p in pair.ref_probs])
    assert values.std() > 0.02 and 0.0 < pair.threshold < 1.0  # not degenerate


def _ents(output) -> tuple[list[tuple[int, int, str]], list[float]]:
    return [(e["start"], e["end"], e["label"]) for e in output], [e["score"] for e in output]


@pytest.mark.parametrize(
    "flat_ner,multi_label",
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["flat", "nested", "flat_multi", "nested_multi"],
)
def test_decoded_spans(pair, flat_ner, multi_label):
    """Same spans, scores within 1e-5, under every decoding mode (``inference`` on both sides)."""
    kwargs = {"threshold": pair.threshold, "flat_ner": flat_ner, "multi_label": multi_label}
    ref_out = pair.ref.inference(SENTENCES, LABELS, batch_size=1, **kwargs)
    our_out = pair.ours.inference(SENTENCES, LABELS, batch_size=1, **kwargs)
    total = 0
    for text, r, o in zip(SENTENCES, ref_out, our_out):
        (r_spans, r_scores), (o_spans, o_scores) = _ents(r), _ents(o)
        assert o_spans == r_spans, f"{pair.name} {text!r}"
        np.testing.assert_allclose(o_scores, r_scores, atol=TOL, rtol=0, err_msg=text)
        total += len(r_spans)
    assert total >= 10, f"threshold {pair.threshold} selects too few spans ({total})"
    widths = [e["end"] - e["start"] for r in ref_out for e in r]
    assert max(widths) > min(widths)  # spans of several widths, not only single words


def _doc(nlp, text: str) -> Doc:
    matches = list(WORD_RE.finditer(text))
    spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
    return Doc(nlp.vocab, words=[m.group() for m in matches], spaces=spaces)


def _annotations(nlp) -> list[tuple]:
    out = []
    for text in SENTENCES:
        doc = nlp(_doc(nlp, text))
        group = doc.spans["sc"]
        spans = [(s.start_char, s.end_char, s.label_) for s in group]
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        out.append((spans, list(group.attrs["scores"]), ents))
    return out


def test_spacy_component_and_round_trip(pair, tmp_path):
    """``nlp.add_pipe("gliner")``: doc.spans (nested, multi-label) and doc.ents (flat) as the
    reference, scores within 1e-5; ``to_disk`` / ``spacy.load`` gives identical output."""
    nlp = spacy.blank("en")
    config = {"model": str(pair.ckpt), "labels": LABELS, "threshold": pair.threshold}
    nlp.add_pipe("gliner", config={**config, "flat_ner": False, "multi_label": True})
    t = pair.threshold
    nested = pair.ref.inference(SENTENCES, LABELS, threshold=t, flat_ner=False, multi_label=True)
    flat = pair.ref.inference(SENTENCES, LABELS, threshold=t)
    got = _annotations(nlp)
    for text, (spans, scores, ents), ref_nested, ref_flat in zip(SENTENCES, got, nested, flat):
        assert spans == _ents(ref_nested)[0], f"{pair.name} {text!r}"
        np.testing.assert_allclose(scores, _ents(ref_nested)[1], atol=TOL, rtol=0, err_msg=text)
        assert ents == _ents(ref_flat)[0], f"{pair.name} {text!r}"
    nlp.to_disk(tmp_path / "pipeline")
    assert _annotations(spacy.load(tmp_path / "pipeline")) == got


def _candidates(engine: Engine, words, labels: LabelSet, thresholds) -> set[tuple]:
    result = engine([words], labels, thresholds=thresholds)[0]
    return {(s, e, labels.names[c], round(p, 5)) for s, e, c, p in result.candidates}


def _close_sets(a: set[tuple], b: set[tuple], where: str) -> None:
    """Same spans; scores (rounded to 1e-5 in the tuples) within 1e-5."""
    assert {x[:3] for x in a} == {x[:3] for x in b}, where
    by_span = {x[:3]: x[3] for x in b}
    assert all(abs(x[3] - by_span[x[:3]]) <= 2 * TOL for x in a), where


def test_windows_agree_with_their_single_window_runs(pair):
    """A long text cut into windows: the spans kept from each window are exactly the spans that
    the window's words alone (one window) give and that the window owns (``owned_spans``)."""
    words = [w for text in SENTENCES[1:7] for w in _words(text)]  # ~70 words
    labels = LabelSet.from_labels(LABELS)
    options = EngineOptions(batch_size=1, window_words=24, window_overlap=8)
    windowed = Engine(pair.ours, options)
    windows = windowed.plan_windows([words], labels)[0]
    assert len(windows) >= 3
    single = Engine(pair.ours, EngineOptions(batch_size=1))
    expected: set[tuple] = set()
    for i, win in enumerate(windows):
        window_words = words[win.start : win.end]
        for s, e, label, p in _candidates(single, window_words, labels, pair.threshold):
            s, e = s + win.start, e + win.start
            if owned_spans(windows, i, len(words), np.array([s]), np.array([e]))[0]:
                expected.add((s, e, label, p))
    got = _candidates(windowed, words, labels, pair.threshold)
    assert len(got) >= 10
    _close_sets(got, expected, pair.name)


def test_label_groups_and_per_label_thresholds(pair):
    """Many labels run in groups: each group's spans are those of its labels run alone; a
    threshold per label gives, for each label, the spans of a run at that label's threshold."""
    many = [f"{w} {i}" for i, w in enumerate(["person", "city", "team", "company", "king"] * 3)]
    words = _words(SENTENCES[5])
    engine = Engine(pair.ours, EngineOptions(batch_size=2, max_labels_per_pass=4))
    labels = LabelSet.from_labels(many)
    groups = engine.label_plan(labels).groups
    assert len(groups) == 4
    t = pair.threshold
    got = _candidates(engine, words, labels, t)
    expected: set[tuple] = set()
    for group in groups:
        alone = LabelSet.from_labels([many[i] for i in group])
        expected |= _candidates(Engine(pair.ours), words, alone, t)
    assert len(got) >= 5
    _close_sets(got, expected, pair.name)
    four = LabelSet.from_labels(LABELS)
    per_label = [t - 0.1, t, t + 0.02, t - 0.05]
    got = _candidates(Engine(pair.ours), words, four, per_label)
    expected = set()
    for name, t in zip(LABELS, per_label):
        expected |= {x for x in _candidates(Engine(pair.ours), words, four, t) if x[2] == name}
    assert len({x[2] for x in got}) >= 2
    _close_sets(got, expected, pair.name)


@pytest.mark.parametrize("flat_ner,multi_label", [(True, False), (False, False), (True, True)])
def test_span_forming_and_ties_match_the_reference_decoder(flat_ner, multi_label):
    """Synthetic logits from a few values (many equal span scores, probabilities equal to the
    threshold): our span forming and greedy decoding give the reference ``TokenDecoder``'s spans
    in its order, with its tie-breaking ((start, label, end) enumeration)."""
    import torch
    from gliner.decoding.decoder import TokenDecoder

    from spacy_gliner.engine.batches import Task
    from spacy_gliner.engine.score import collect_results
    from spacy_gliner.engine.token_spans import token_candidates
    from spacy_gliner.engine.windows import Window
    from spacy_gliner.io.tokenizers import TextTokens

    gen = torch.Generator().manual_seed(3)
    levels = torch.tensor([-2.0, 0.0, 0.5, 1.0, 3.0])  # sigmoid(0) == 0.5 == the threshold
    num_words, classes, threshold = 9, 3, 0.5
    decoder = TokenDecoder(None)
    id_to_classes = {c + 1: f"label{c}" for c in range(classes)}
    for trial in range(30):
        logits = levels[torch.randint(0, len(levels), (1, num_words, classes, 3), generator=gen)]
        words = [f"w{i}" for i in range(num_words)]
        ref = decoder.decode(
            [words],
            id_to_classes,
            logits,
            flat_ner=flat_ner,
            threshold=threshold,
            multi_label=multi_label,
        )[0]
        tokens = [TextTokens(np.zeros(num_words, np.int64), np.arange(num_words + 1))]
        found = token_candidates(
            torch.sigmoid(logits),
            [Task(0, 0, 0, num_words)],
            [[Window(0, num_words)]],
            tokens,
            np.arange(classes)[None, :],
            np.full((1, classes), threshold),
        )
        result = collect_results(
            [[Window(0, num_words)]], [num_words], [found], np.zeros(1, np.int64), 1, 4, "token"
        )[0]
        ours = result.decode(flat_ner, multi_label)
        expected = [(s.start, s.end, s.class_index, s.score) for s in ref]
        assert [x[:3] for x in ours] == [x[:3] for x in expected], trial
        np.testing.assert_allclose([x[3] for x in ours], [x[3] for x in expected], rtol=0, atol=0)


def test_new_token_model_saved_by_us_loads_in_the_reference(bert_dir, tmp_path):
    """A token-level model created by spacy-gliner (fresh heads) and saved with
    ``save_pretrained`` is a token-level model for the reference, with the same probabilities."""
    from spacy_gliner import GLiNERConfig

    config = GLiNERConfig(
        model_name=str(bert_dir), span_mode="token_level", hidden_size=32, dropout=0.0
    )
    ours = GLiNER(config)
    ours.save_pretrained(tmp_path / "ckpt")
    ref = ref_gliner.GLiNER.from_pretrained(str(tmp_path / "ckpt"), local_files_only=True)
    ref.eval()
    assert type(ref.model).__name__ == "UniEncoderTokenModel"
    texts = SENTENCES[:4]
    mine = Engine(ours).span_probabilities([_words(t) for t in texts], [LABELS] * len(texts))
    for text, r, o in zip(texts, _ref_probs(ref, texts, LABELS), mine):
        _assert_close(r, o, f"saved by us: {text!r}")


def test_scorer_on_real_words_only_equals_the_full_scorer():
    """In inference the scorer computes only real words' cells (``word_mask``): the same logits
    as the full computation there, ``-inf`` on padding words."""
    import torch

    from spacy_gliner.model.token_model import TokenScorer

    torch.manual_seed(0)
    scorer = TokenScorer(16, 0.0).eval()
    words, labels = torch.randn(3, 7, 16), torch.randn(3, 4, 16)
    mask = torch.arange(7)[None, :] < torch.tensor([[7], [2], [5]])
    with torch.inference_mode():
        full, compact = scorer(words, labels), scorer(words, labels, mask)
    assert compact.shape == full.shape == (3, 7, 4, 3)
    assert torch.allclose(compact[mask], full[mask], atol=1e-6)
    assert torch.isneginf(compact[~mask]).all()
