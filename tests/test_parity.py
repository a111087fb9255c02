"""Parity with the reference package (gliner==0.2.29) on checkpoints it saved itself.

For every configuration the reference writes a checkpoint (random heads on a tiny random encoder),
``spacy_gliner.GLiNER.from_pretrained`` loads it, and both score the same sentences:

* (a) the full span probability arrays (every valid (start, width, class) cell) agree within 1e-5,
  one text per batch and in identically composed multi-text batches;
* (b) decoded char-offset spans are identical and scores agree within 1e-5 under flat, nested and
  multi-label decoding (``inference(..., batch_size=1)`` on both sides);
* the spaCy component gives the same spans and scores on a ``Doc`` of the same words.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

ref_gliner = pytest.importorskip("gliner")

from spacy.tokens import Doc  # noqa: E402

from spacy_gliner import GLiNER  # noqa: E402
from spacy_gliner.engine import Engine, EngineOptions, LabelSet  # noqa: E402

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization", "sports team"]

# 24 sentences, 1..42 words: punctuation, digits, casing, repeated words, hyphen/underscore words.
# No word here yields zero sub-tokens (see test_zero_subtoken_word_deviation for that case).
SENTENCES = [
    "Obama",
    "Paris .",
    "Barack Obama was born in Hawaii.",
    "BARACK OBAMA visited PARIS and LONDON in 2009!",
    "Dr. Smith's e-mail: j_doe@x.com (call 555-0199).",
    "the the the city city city of of paris paris",
    "Google, Apple and Microsoft are companies; Google won.",
    "In 1999, John Smith founded a company in New York with $3.5 million.",
    "Mary wrote a novel about the war, the army and the king.",
    "apple apple apple apple",
    "The University of Paris is in France, not in London or New York.",
    "Who won the cup? The team of the city won the game 3-1 against London.",
    "king queen king queen king queen king queen",
    "A doctor, a player, an author and a president visited the river house on 12/05/2021 at 10:30.",
    "France's capital: Paris; England's capital: London; USA's: Washington?",
    "new york new york new york is a city in the state of new york",
    "The band released the album, the song and the film in 2010, 2011, and 2012 respectively.",
    "x",
    "!!! ??? ...",
    "John-Paul Smith_Jones met Mary-Ann at the University in Paris, France.",
    "The president of France visited the queen and the king of England in London on Monday, "
    "and then the president visited Google and Apple in New York before the cup game.",
    "Barack Obama , the former president , was born in Hawaii and lives in the city of "
    "Washington with Michelle ; he wrote a book , won a prize and visited Paris , London and "
    "New York in 2009 and 2010 .",
    "microsoft MICROSOFT Microsoft mIcRoSoFt",
    "cancer is a disease ; the drug was founded by a doctor at the university .",
]

# name -> (encoder, reference GLiNERConfig settings). Defaults: hidden 32, max_width 4, dropout 0,
# markerV0, 1 LSTM layer, first-subtoken pooling (helpers.write_reference_checkpoint).
SPAN_MODES = [
    "markerV0",
    "marker",
    "markerV1",
    "markerV2",
    "query",
    "mlp",
    "cat",
    "conv_conv",
    "conv_max",
    "conv_mean",
    "conv_sum",
    "conv_share",
]
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"span_{m}": ("bert", {"span_mode": m}) for m in SPAN_MODES},
    "rnn0": ("bert", {"num_rnn_layers": 0}),
    "rnn2": ("bert", {"num_rnn_layers": 2}),
    **{f"pool_{p}": ("bert", {"subtoken_pooling": p}) for p in ("last", "mean", "max")},
    "embed_ent_token_false": ("bert", {"embed_ent_token": False}),
    "fuse_layers": ("bert", {"fuse_layers": True}),
    "hidden48": ("bert", {"hidden_size": 48}),
    "bi_encoder": ("bert", {"labels_encoder": "labels_bert"}),
    "bi_encoder_fusion": (
        "bert",
        {"labels_encoder": "labels_bert", "post_fusion_schema": "l2l-l2t-t2t"},
    ),
    "bi_encoder_fuse_hidden48": (
        "bert",
        {"labels_encoder": "labels_bert", "fuse_layers": True, "hidden_size": 48},
    ),
    "bi_encoder_mean_rnn2": (
        "bert",
        {"labels_encoder": "labels_bert", "subtoken_pooling": "mean", "num_rnn_layers": 2},
    ),
    # knowledgator gliner-bi-*-v2.0: ModernBERT text encoder, BERT labels encoder, both projected.
    "bi_encoder_v2_modernbert": (
        "modernbert",
        {"labels_encoder": "labels_bert", "hidden_size": 48},
    ),
    "uni_fusion": ("bert", {"post_fusion_schema": "l2l-l2t-t2t"}),
    "deberta": ("deberta", {}),
    "deberta_spm": ("deberta_spm", {}),
    "deberta_spm_last_rnn0": (
        "deberta_spm",
        {"subtoken_pooling": "last", "num_rnn_layers": 0, "span_mode": "conv_conv"},
    ),
    "deberta_mean_hidden48": (
        "deberta",
        {"subtoken_pooling": "mean", "hidden_size": 48, "span_mode": "markerV1"},
    ),
}
# (`span_markerV0` and `pool_first` would be the same checkpoint: markerV0/first are the defaults.)


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


class Pair:
    """A reference model and ours, loaded from the same reference checkpoint."""

    def __init__(self, name: str, ckpt, ref, ours, ref_probs: list[np.ndarray]) -> None:
        self.name, self.ckpt, self.ref, self.ours, self.ref_probs = name, ckpt, ref, ours, ref_probs
        self.threshold = _threshold(ref_probs)


def _valid(n: int, k: int) -> np.ndarray:
    """[n, K] bool: spans (start, start+w) that end inside the text."""
    return (np.arange(n)[:, None] + np.arange(k)[None, :]) < n


def _threshold(probs: Sequence[np.ndarray], quantile: float = 0.8) -> float:
    """A threshold near ``quantile`` of the reference probabilities, in a gap wider than 2*TOL so
    float noise cannot move a cell across it."""
    values = np.unique(np.concatenate([p[~np.isnan(p)] for p in probs]))
    gaps = np.diff(values)
    wide = np.flatnonzero(gaps > 4 * TOL)
    assert wide.size, "no usable gap for a threshold"
    i = wide[
        np.argmin(np.abs(wide - quantile * (len(values) - 1)))
    ]  # the wide gap nearest the quantile
    return float((values[i] + values[i + 1]) / 2)


def _ref_logits(ref, texts: Sequence[str], labels: Sequence[str]) -> list[np.ndarray]:
    """Reference logits via its own prepare_batch / collate_batch / run_batch, one batch of ``texts``."""
    prepared = ref.prepare_batch(list(texts), list(labels))
    batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
    out = ref.run_batch(batch)
    logits = out[0]
    assert logits.dim() == 4 and logits.shape[2] == ref.config.max_width
    return [logits[i, : len(tokens)].float().numpy() for i, tokens in enumerate(prepared["tokens"])]


def _ref_probs(ref, texts, labels) -> list[np.ndarray]:
    """Reference probabilities [n, K, C] per text; only valid (start, width) cells kept (others NaN)."""
    out = []
    for logits in _ref_logits(ref, texts, labels):
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        probs[~_valid(*probs.shape[:2])] = np.nan
        out.append(probs)
    return out


def _our_probs(ours, texts, labels) -> list[np.ndarray]:
    predictor = Engine(ours, EngineOptions(batch_size=len(texts)))
    return predictor.span_probabilities([_words(t) for t in texts], [list(labels)] * len(texts))


def _assert_probs_close(ref_probs: np.ndarray, our_probs: np.ndarray, where: str) -> None:
    assert our_probs.shape == ref_probs.shape, where
    valid = ~np.isnan(ref_probs)
    assert valid.any(), where
    diff = np.abs(our_probs[valid] - ref_probs[valid])
    assert diff.max() <= TOL, f"{where}: max |p_ours - p_ref| = {diff.max():.3g}"


def _load_ours(ckpt, name: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = GLiNER.from_pretrained(ckpt)
    fusion_warnings = [w for w in caught if "post_fusion_schema" in str(w.message)]
    return ours, fusion_warnings


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pair(request, reference_checkpoint) -> Pair:
    name = request.param
    encoder, settings = CONFIGS[name]
    ckpt = reference_checkpoint(encoder=encoder, **settings)
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    ours, fusion_warnings = _load_ours(ckpt, name)
    uni_fusion = bool(settings.get("post_fusion_schema")) and not settings.get("labels_encoder")
    assert bool(fusion_warnings) == uni_fusion, [str(w.message) for w in fusion_warnings]
    ref_probs = [_ref_probs(ref, [t], LABELS)[0] for t in SENTENCES]
    return Pair(name, ckpt, ref, ours, ref_probs)


def test_checkpoint_is_what_the_config_says(pair):
    """Guard: the reference really built the requested architecture (else parity would be vacuous)."""
    _, settings = CONFIGS[pair.name]
    keys = set(pair.ref.model.state_dict())
    cfg = pair.ours.config
    assert set(pair.ours.model.state_dict()) == keys
    assert cfg.span_mode == settings.get("span_mode", "markerV0")
    assert cfg.subtoken_pooling == settings.get("subtoken_pooling", "first")
    assert cfg.hidden_size == settings.get("hidden_size", 32)
    assert cfg.embed_ent_token == settings.get("embed_ent_token", True)
    assert cfg.fuse_layers == settings.get("fuse_layers", False)
    assert cfg.is_bi_encoder == bool(settings.get("labels_encoder"))
    rnn_layers = {
        int(m.group(1)) for k in keys if (m := re.match(r"rnn\.lstm\.weight_ih_l(\d+)$", k))
    }
    assert len(rnn_layers) == settings.get("num_rnn_layers", 1)
    assert any(k.startswith("cross_fuser.") for k in keys) == bool(
        settings.get("post_fusion_schema")
    )
    assert any(k.startswith("token_rep_layer.projection.") for k in keys) == (cfg.hidden_size != 32)
    assert any("layers_fuser" in k for k in keys) == cfg.fuse_layers
    if pair.name.startswith("deberta"):
        assert type(pair.ours.model.token_rep_layer.bert_layer.model).__name__ == "DebertaV2Model"
    if pair.name.endswith("modernbert"):
        assert type(pair.ours.model.token_rep_layer.bert_layer.model).__name__ == "ModernBertModel"


def test_span_probabilities_one_text_per_batch(pair):
    """(a) every valid (start, width, class) probability within 1e-5, batch size 1 on both sides."""
    for text, ref_probs in zip(SENTENCES, pair.ref_probs):
        ours = _our_probs(pair.ours, [text], LABELS)[0]
        _assert_probs_close(ref_probs, ours, f"{pair.name}: {text!r}")


def test_span_probabilities_same_batches(pair):
    """(a) identically composed multi-text batches (padding in words and sub-tokens) also agree.

    markerV1/markerV2/fuse_layers depend on batch padding in the reference; with the same batch
    composition on both sides they must still match."""
    for i in range(0, len(SENTENCES), 6):
        texts = SENTENCES[i : i + 6]
        ref = _ref_probs(pair.ref, texts, LABELS)
        ours = _our_probs(pair.ours, texts, LABELS)
        for text, r, o in zip(texts, ref, ours):
            _assert_probs_close(r, o, f"{pair.name} (batch of {len(texts)}): {text!r}")


BATCH_DEPENDENT = (
    "span_markerV1",
    "span_markerV2",
    "fuse_layers",
    "bi_encoder_fuse_hidden48",
    "deberta_mean_hidden48",
)


def _production_probs(ours, texts, batch_size: int) -> list[np.ndarray]:
    """Every valid cell through the component's own path (``Engine.__call__``: cached sub-token
    ids, length-sorted batches, decoding arrays) with threshold 0, as [n, K, C] arrays."""
    words = [_words(t) for t in texts]
    results = Engine(ours, EngineOptions(batch_size=batch_size))(
        words, LabelSet.from_labels(LABELS), thresholds=0.0
    )
    out = []
    for w, result in zip(words, results):
        probs = np.full((len(w), ours.config.max_width, len(LABELS)), np.nan)
        for start, end, label, score in result.candidates:
            probs[start, end - start, label] = score
        out.append(probs)
    return out


def test_span_probabilities_production_path(pair):
    """(a) through ``Engine.__call__`` (what the spaCy component runs): one text per batch, and
    length-sorted batches of 8 for the span modes that do not depend on batch padding."""
    sizes = [1] if pair.name in BATCH_DEPENDENT else [1, 8]
    for size in sizes:
        for text, ref, ours in zip(
            SENTENCES, pair.ref_probs, _production_probs(pair.ours, SENTENCES, size)
        ):
            assert np.array_equal(np.isnan(ref), np.isnan(ours)), (
                f"{pair.name}: cells differ for {text!r}"
            )
            _assert_probs_close(ref, ours, f"{pair.name} (Engine, batch {size}): {text!r}")


def test_probabilities_are_not_degenerate(pair):
    """The random heads must give spread-out scores, or threshold decoding would be trivial."""
    values = np.concatenate([p[~np.isnan(p)] for p in pair.ref_probs])
    assert values.std() > 1e-3
    assert 0.0 < pair.threshold < 1.0


def _ents(output: list[dict[str, Any]]) -> tuple[list[tuple[int, int, str, str]], list[float]]:
    return [(e["start"], e["end"], e["label"], e["text"]) for e in output], [
        e["score"] for e in output
    ]


@pytest.mark.parametrize(
    "flat_ner,multi_label",
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["flat", "nested", "flat_multi", "nested_multi"],
)
def test_decoded_spans(pair, flat_ner, multi_label):
    """(b) same (start, end, label) spans and scores within 1e-5 under every decoding mode."""
    t = pair.threshold
    ref_out = pair.ref.inference(
        SENTENCES, LABELS, threshold=t, flat_ner=flat_ner, multi_label=multi_label, batch_size=1
    )
    our_out = pair.ours.inference(
        SENTENCES, LABELS, threshold=t, flat_ner=flat_ner, multi_label=multi_label, batch_size=1
    )
    total = 0
    for text, r, o in zip(SENTENCES, ref_out, our_out):
        (r_spans, r_scores), (o_spans, o_scores) = _ents(r), _ents(o)
        assert o_spans == r_spans, f"{pair.name} {text!r}"
        np.testing.assert_allclose(o_scores, r_scores, atol=TOL, rtol=0, err_msg=text)
        total += len(r_spans)
    assert total >= 10, f"threshold {t} selects too few spans ({total}) to test decoding"


def _doc(nlp, text: str) -> Doc:
    """A Doc of the reference's words, spaced so that ``doc.text == text``."""
    matches = list(WORD_RE.finditer(text))
    words = [m.group() for m in matches]
    spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
    doc = Doc(nlp.vocab, words=words, spaces=spaces)
    # The regex never leaves non-space characters between words, so the Doc text is the input text
    # up to whitespace runs; our sentences use single spaces.
    assert doc.text == text.rstrip()
    return doc


@pytest.mark.parametrize(
    "flat_ner,multi_label", [(True, False), (False, True)], ids=["flat", "nested_multi"]
)
def test_spacy_component(pair, flat_ner, multi_label):
    """``nlp.add_pipe("gliner", ...)`` on a Doc of the same words: same spans and scores as reference."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(pair.ckpt),
            "labels": LABELS,
            "threshold": pair.threshold,
            "flat_ner": flat_ner,
            "multi_label": multi_label,
            "batch_size": 1,
        },
    )
    ref_out = pair.ref.inference(
        SENTENCES,
        LABELS,
        threshold=pair.threshold,
        flat_ner=flat_ner,
        multi_label=multi_label,
        batch_size=1,
    )
    ref_flat = pair.ref.inference(SENTENCES, LABELS, threshold=pair.threshold, batch_size=1)
    for text, ref_ents, ref_flat_ents in zip(SENTENCES, ref_out, ref_flat):
        doc = nlp(_doc(nlp, text))
        assert doc.text == text.rstrip()
        group = doc.spans["sc"]
        got = [(s.start_char, s.end_char, s.label_) for s in group]
        assert got == [(e["start"], e["end"], e["label"]) for e in ref_ents], (
            f"{pair.name} {text!r}"
        )
        np.testing.assert_allclose(
            group.attrs["scores"], [e["score"] for e in ref_ents], atol=TOL, rtol=0, err_msg=text
        )
        # doc.ents are always the flat decoding
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e["start"], e["end"], e["label"]) for e in ref_flat_ents
        ]


def test_spacy_component_pipe_batches(default_checkpoint):
    """``nlp.pipe`` batches several docs (sorted by length, padded): same spans, scores within 1e-5."""
    import spacy

    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    probs = [_ref_probs(ref, [t], LABELS)[0] for t in SENTENCES]
    t = _threshold(probs, 0.85)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(default_checkpoint),
            "labels": LABELS,
            "threshold": t,
            "batch_size": 5,
        },
    )
    docs = list(nlp.pipe((_doc(nlp, s) for s in SENTENCES), batch_size=10))
    ref_out = ref.inference(SENTENCES, LABELS, threshold=t, batch_size=1)
    n = 0
    for doc, ref_ents in zip(docs, ref_out):
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e["start"], e["end"], e["label"]) for e in ref_ents
        ]
        np.testing.assert_allclose(
            doc.spans["sc"].attrs["scores"], [e["score"] for e in ref_ents], atol=TOL, rtol=0
        )
        n += len(ref_ents)
    assert n >= 5


def test_label_descriptions_and_case_sensitive_labels(default_checkpoint):
    """``{name: description}`` labels put the description in the prompt and report the name;
    labels are case-sensitive (``Person`` and ``person`` are two prompts) as in the reference."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    ours = GLiNER.from_pretrained(default_checkpoint)
    labels = {"PER": "person", "LOC": "location", "Person": "Person"}
    probs = [_ref_probs(ref, [t], list(labels.values()))[0] for t in SENTENCES]
    t = _threshold(probs, 0.8)
    ref_out = ref.inference(SENTENCES, labels, threshold=t, batch_size=1)
    our_out = ours.inference(SENTENCES, labels, threshold=t, batch_size=1)
    assert sum(len(r) for r in ref_out) >= 5
    for r, o in zip(ref_out, our_out):
        assert _ents(o)[0] == _ents(r)[0]
        np.testing.assert_allclose(_ents(o)[1], _ents(r)[1], atol=TOL, rtol=0)


def test_zero_subtoken_word_deviation(default_checkpoint):
    """Documented deviation: a word with zero sub-tokens (a lone combining accent under BERT's
    accent-stripping normaliser) keeps its slot in our word map; gliner 0.2.29 shifts later words
    one slot left. So only the shapes are compared on that text; without the accent both agree."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    ours = GLiNER.from_pretrained(default_checkpoint)
    text = "obama \u0301 was born in hawaii"
    words = _words(text)
    assert words == ["obama", "\u0301", "was", "born", "in", "hawaii"]
    assert ours.prompts.word_token_counts(words).tolist()[1] == 0
    ref_p = _ref_probs(ref, [text], LABELS)[0]
    our_p = _our_probs(ours, [text], LABELS)[0]
    # Ours: every word has its own vector (the accent's is zero); reference: "was" took slot 1.
    # The LSTM mixes all positions, so only the shapes agree in general.
    assert our_p.shape == ref_p.shape
    # Remove the accent and ours equals the reference on the remaining words' sentence.
    clean = "obama was born in hawaii"
    _assert_probs_close(
        _ref_probs(ref, [clean], LABELS)[0], _our_probs(ours, [clean], LABELS)[0], clean
    )
    # Our word-id mapping: word i of the text maps to slot i (no shift).
    enc = ours.prompts.encode([words], [LABELS])
    slots = sorted(set(enc["words_mask"][0].tolist()) - {0})
    assert slots == [1, 3, 4, 5, 6]  # slot 2 (the accent) has no sub-token


def test_threshold_compares_in_float32(default_checkpoint):
    """The reference keeps ``probs > threshold`` with float32 probabilities, so the threshold is
    rounded to float32 first: a span whose probability equals float32(threshold) is rejected even
    when the double threshold is slightly below it."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    ours = GLiNER.from_pretrained(default_checkpoint)
    text, labels = "Barack Obama was born in Hawaii .", ["person"]
    ref_probs = torch.sigmoid(
        torch.from_numpy(_ref_logits(ref, [text], labels)[0])
    ).numpy()  # float32, as decoded
    ref_probs[~_valid(*ref_probs.shape[:2])] = np.nan
    for model, probs in ((ref, ref_probs), (ours, _our_probs(ours, [text], labels)[0])):
        top = np.float32(np.nanmax(probs))
        t = (
            float(top) - float(np.spacing(top)) / 4
        )  # a double below top that rounds to top in float32
        assert np.float32(t) == top and t < float(top)
        out = model.inference([text], labels, threshold=t, batch_size=1)[0]
        assert out == [], f"{type(model).__name__} kept a span with p == float32(threshold): {out}"


MANY_LABELS = [
    f"{w} {i}" for i, w in enumerate(["person", "city", "team", "company", "king", "river"] * 5)
]  # 30


def _many_label_probs(ref, ours, text, **predictor_kwargs):
    ref_p = _ref_probs(ref, [text], MANY_LABELS)[0]
    words = _words(text)
    result = Engine(ours, EngineOptions(batch_size=1, **predictor_kwargs))(
        [words], LabelSet.from_labels(MANY_LABELS), thresholds=0.0
    )[0]
    ours_p = np.full(ref_p.shape, np.nan)
    for start, end, label, score in result.candidates:
        ours_p[start, end - start, label] = score
    return ref_p, ours_p


def test_more_labels_than_max_types_with_one_pass(default_checkpoint):
    """30 labels > max_types (25): scored in one prompt, as the reference does, when the pass limit allows."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    ours = GLiNER.from_pretrained(default_checkpoint)
    assert ours.config.max_types < len(MANY_LABELS)
    for text in SENTENCES[2:6]:
        ref_p, ours_p = _many_label_probs(ref, ours, text, max_labels_per_pass=64)
        _assert_probs_close(ref_p, ours_p, text)


def test_more_labels_than_max_types_run_in_groups_by_default(default_checkpoint):
    """Documented behaviour: more than max_types labels run in groups (max_labels_per_pass raises it)."""
    from spacy_gliner.engine import Engine, EngineOptions, LabelSet

    ours = GLiNER.from_pretrained(default_checkpoint)
    labels = LabelSet.from_labels(MANY_LABELS)
    groups, _ = (Engine(ours).label_plan(labels).groups, None)
    assert len(groups) == -(-len(MANY_LABELS) // ours.config.max_types)
    assert sorted(i for g in groups for i in g) == list(range(len(MANY_LABELS)))
    single = (
        Engine(ours, EngineOptions(max_labels_per_pass=len(MANY_LABELS))).label_plan(labels).groups
    )
    assert len(single) == 1


def test_inference_accepts_a_bare_string_and_skips_non_strings(default_checkpoint):
    """Reference ``inference``: a ``str`` is one text; non-strings and empty texts give ``[]``."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    ours = GLiNER.from_pretrained(default_checkpoint)
    text = "Barack Obama was born in Hawaii ."
    t = _threshold([_ref_probs(ref, [text], LABELS)[0]], 0.5)
    r = ref.inference(text, LABELS, threshold=t)
    o = ours.inference(text, LABELS, threshold=t)
    assert len(o) == 1 and _ents(o[0])[0] == _ents(r[0])[0] and r[0]
    texts = ["", None, text, "   ", 42]
    r = ref.inference(texts, LABELS, threshold=t, batch_size=1)
    o = ours.inference(texts, LABELS, threshold=t, batch_size=1)
    assert [_ents(x)[0] for x in o] == [_ents(x)[0] for x in r]
    assert [len(x) for x in o][:2] == [0, 0]
