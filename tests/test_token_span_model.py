"""Token-level models with span representations (``represent_spans``, uni- and bi-encoder):
parity with the reference package (gliner==0.2.29, ``UniEncoderTokenModel`` /
``BiEncoderTokenModel`` with ``represent_spans``) on checkpoints it saved itself:

* identical entities, scores within 1e-5, through ``GLiNER.inference`` and
  ``nlp.add_pipe("gliner")``, flat and nested, at the thresholds of a grid where the reference
  returns entities (random heads: other weights per transformers version);
* texts of different lengths: the reference lists spans over padding words, decodes them with
  the others and then fails mapping them to text; ours equal its decoding of its spans minus
  those;
* ``multi_label``: the reference reports a span found for two labels twice; we report it once;
* save / load both ways, ``nlp.to_disk`` / ``spacy.load``; training refused with a clear error.
"""

from __future__ import annotations

import pytest

ref_gliner = pytest.importorskip("gliner")

from decoder_helpers import (  # noqa: E402
    HEAD_SCALE,
    assert_same,
    entity_key,
    without_padding_spans,
)

from spacy_gliner import GLiNER  # noqa: E402

LABELS = ["person", "location", "organization"]
# Same word counts: no padding words (see test_padding_words_are_not_spans for those).
TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris , France with John Smith today .",
    "Mary works at Apple in New York and wrote a novel about the war today .",
    "The city of London is the capital of the country and John Smith lives there .",
    "Google was founded in the state of New York by a player of the team .",
]
UNEVEN = ["The city of London", "Google", *TEXTS[:2]]
GRID = (0.3, 0.35, 0.4, 0.45, 0.5)
MODELS = {
    "uni": {},
    "uni_seed1": {"seed": 1},
    "bi": {"labels_encoder": "labels_bert", "seed": 1},
}


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request, reference_checkpoint):
    """(name, checkpoint, reference model, our model)."""
    fields = {"span_mode": "token_level", "represent_spans": True, "head_scale": HEAD_SCALE}
    ckpt = reference_checkpoint(**fields, **MODELS[request.param])
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    return request.param, ckpt, ref, GLiNER.from_pretrained(ckpt)


def _runs(ref, texts, **kwargs):
    """The reference's output, or None where it fails (spans over padding words)."""
    try:
        return ref.inference(texts, LABELS, **kwargs)
    except IndexError:
        return None


@pytest.fixture(scope="module")
def working(pair) -> list[float]:
    """The grid thresholds at which the reference returns entities for TEXTS (nested)."""
    _, _, ref, _ = pair
    found = [t for t in GRID if any(_runs(ref, TEXTS, threshold=t, flat_ner=False))]
    assert found, "fixture guard: the reference finds entities at some threshold"
    return found


def test_checkpoint_represents_spans(pair):
    """Guard: the reference built a token model with a span layer; ours loads every weight."""
    name, _, ref, ours = pair
    kind = "BiEncoderTokenModel" if name == "bi" else "UniEncoderTokenModel"
    assert type(ref.model).__name__ == kind and ref.config.represent_spans
    assert any(k.startswith("span_rep_layer.") for k in ref.model.state_dict())
    assert set(ours.model.state_dict()) == set(ref.model.state_dict())


@pytest.mark.parametrize("flat_ner", [True, False], ids=["flat", "nested"])
def test_batch_parity(pair, working, flat_ner):
    name, _, ref, ours = pair
    for threshold in working:
        kwargs = {"threshold": threshold, "flat_ner": flat_ner}
        want = ref.inference(TEXTS, LABELS, **kwargs)
        assert_same(want, ours.inference(TEXTS, LABELS, **kwargs), f"{name} {kwargs}")


def test_single_text_parity(pair, working):
    name, _, ref, ours = pair
    for text in TEXTS:
        want = ref.predict_entities(text, LABELS, threshold=working[0])
        got = ours.predict_entities(text, LABELS, threshold=working[0])
        assert_same([want], [got], f"{name}: {text}")


def test_padding_words_are_not_spans(pair, working):
    """Texts of different lengths: ours are the reference's decoding of its spans minus the
    spans over padding words (which make it fail)."""
    name, ckpt, plain, ours = pair
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    ref.decode_batch = without_padding_spans(ref.decode_batch)
    padded = False
    for threshold in working:
        for flat_ner in (True, False):
            kwargs = {"threshold": threshold, "flat_ner": flat_ner}
            want = ref.inference(UNEVEN, LABELS, **kwargs)
            assert_same(want, ours.inference(UNEVEN, LABELS, **kwargs), f"{name} {kwargs}")
            padded |= _runs(plain, UNEVEN, **kwargs) is None
    if not padded:
        pytest.skip("compared, but no span over padding words at these thresholds")


def test_multi_label_reports_each_span_once(pair, working):
    name, _, ref, ours = pair
    for threshold in working:
        kwargs = {"threshold": threshold, "flat_ner": False, "multi_label": True}
        want = ref.inference(TEXTS, LABELS, **kwargs)
        once = [list({entity_key(e): e for e in text}.values()) for text in want]
        assert_same(once, ours.inference(TEXTS, LABELS, **kwargs), f"{name} {threshold}")


def test_spacy_component(pair, working):
    """doc.spans (nested) and doc.ents (flat) hold the reference's entities and scores."""
    spacy = pytest.importorskip("spacy")
    name, ckpt, ref, _ = pair
    threshold = working[0]
    nlp = spacy.blank("en")
    settings = {"model": str(ckpt), "labels": LABELS, "flat_ner": False, "threshold": threshold}
    nlp.add_pipe("gliner", config=settings)
    docs = list(nlp.pipe(TEXTS))
    nested = ref.inference(TEXTS, LABELS, threshold=threshold, flat_ner=False)
    flat = ref.inference(TEXTS, LABELS, threshold=threshold, flat_ner=True)
    for doc, want_nested, want_flat in zip(docs, nested, flat):
        group = doc.spans["sc"]
        got = [(s.start_char, s.end_char, s.label_) for s in group]
        assert got == [(e["start"], e["end"], e["label"]) for e in want_nested], name
        scores = [e["score"] for e in want_nested]
        assert group.attrs["scores"] == pytest.approx(scores, abs=1e-5)
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        assert ents == [(e["start"], e["end"], e["label"]) for e in want_flat], name


def test_save_load_and_pipeline_round_trip(pair, working, tmp_path):
    spacy = pytest.importorskip("spacy")
    name, ckpt, ref, ours = pair
    threshold = working[0]
    want = ref.inference(TEXTS, LABELS, threshold=threshold, flat_ner=False)
    ours.save_pretrained(tmp_path / "ours")
    again = GLiNER.from_pretrained(tmp_path / "ours")
    theirs = ref_gliner.GLiNER.from_pretrained(str(tmp_path / "ours"), local_files_only=True)
    got = again.inference(TEXTS, LABELS, threshold=threshold, flat_ner=False)
    assert_same(want, got, name)
    assert_same(want, theirs.inference(TEXTS, LABELS, threshold=threshold, flat_ner=False), name)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(ckpt), "labels": LABELS, "threshold": threshold})
    nlp.initialize()
    before = [[(e.text, e.label_) for e in d.ents] for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    after = [
        [(e.text, e.label_) for e in d.ents] for d in spacy.load(tmp_path / "pipeline").pipe(TEXTS)
    ]
    assert after == before and any(before)


def test_long_text_windows(pair, working):
    """A text longer than a window: every window lists its own spans; entities come back."""
    spacy = pytest.importorskip("spacy")
    _, ckpt, _, _ = pair
    nlp = spacy.blank("en")
    config = {"model": str(ckpt), "labels": LABELS, "window_words": 12, "threshold": working[0]}
    nlp.add_pipe("gliner", config=config)
    doc = nlp(" ".join(TEXTS))
    assert doc._.gliner_windows > 1 and len(doc.spans["sc"]) > 0


def test_training_is_refused(pair):
    spacy = pytest.importorskip("spacy")
    from helpers import make_examples

    _, ckpt, _, _ = pair
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(ckpt), "labels": LABELS})
    nlp.initialize()
    examples = make_examples(nlp, [("Barack Obama visited Paris .", [(0, 2, "person")])])
    with pytest.raises(ValueError, match="represent_spans"):
        nlp.update(examples)


def test_per_label_thresholds_equal_to_one_threshold(pair, working):
    """One threshold per label (each listing and deciding its own label's spans), all equal:
    the results of the single threshold."""
    from spacy_gliner.engine import Engine, LabelSet

    _, _, _, ours = pair
    engine, labels = Engine(ours), LabelSet.from_labels(LABELS)
    words = [t.split() for t in TEXTS]
    for threshold in working:
        one = engine(words, labels, thresholds=threshold)
        each = engine(words, labels, thresholds=[threshold] * len(LABELS))
        assert [r.decode(False) for r in each] == [r.decode(False) for r in one]
        assert any(r.decode(False) for r in one)
