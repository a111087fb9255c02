"""Relation extraction (``relations_layer`` set): parity with the reference package
(gliner==0.2.29, ``UniEncoderSpanRelexGLiNER`` and ``UniEncoderTokenRelexGLiNER``) on
checkpoints it saved itself.

* entities identical and relations identical (head, tail, relation label, in the reference's
  order), every score within 1e-5, flat / nested / multi-label, for every adjacency layer and
  ``"none"`` (all pairs); one ``threshold`` or separate adjacency / relation thresholds. The
  token-level reference repeats a relation once per label pair that forms its spans: we report
  each once (its first occurrence; span models never repeat one);
* batches, relation descriptions, entity-only inference, save / load in both directions;
* windows of long texts: relations are exactly those of each window run on its own;
* load-time errors for what is not built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ref_gliner = pytest.importorskip("gliner")

from spacy_gliner import GLiNER  # noqa: E402
from spacy_gliner.engine import EngineOptions, LabelSet  # noqa: E402
from spacy_gliner.engine.relations import RelationEngine  # noqa: E402
from spacy_gliner.model.families import UnsupportedArchitecture  # noqa: E402

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization"]
RELATIONS = ["born in", "works at", "located in"]
SENTENCES = [
    "Obama",
    "Barack Obama was born in Hawaii and works at Google in New York.",
    "John Smith founded a company in Paris, France in 1999.",
    "Google, Apple and Microsoft are companies; Mary works at Apple in London.",
    "The University of Paris is in France, not in London or New York.",
    "the the the city city city of of paris paris",
]
HEAD_SCALE = 0.12
LAYERS = ["dot", "mlp", "none", "attention", "bilinear", "gcn", "gat"]
TOKEN_LAYERS = ["dot", "mlp", "none", "gat"]
MODELS = [f"span_{layer}" for layer in LAYERS] + [f"token_{layer}" for layer in TOKEN_LAYERS]
REFERENCE_CLASS = {"span": "UniEncoderSpanRelexModel", "token": "UniEncoderTokenRelexModel"}
# Seeds whose random token-level heads form entities at the thresholds used here.
SEEDS = {"token_dot": 3, "token_none": 3, "token_gat": 3}
# (threshold, adjacency_threshold, relation_threshold)
THRESHOLDS = [(0.5, None, None), (0.4, 0.55, 0.6), (0.6, 0.3, 0.45), (0.45, 0.02, 0.5)]


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def _checkpoint(reference_checkpoint, name: str):
    """``span_<layer>`` / ``token_<layer>``: a relex checkpoint saved by the reference."""
    level, layer = name.split("_", 1)
    token = {"span_mode": "token_level"} if level == "token" else {}
    seed = SEEDS.get(name, 0)
    return reference_checkpoint(relations_layer=layer, head_scale=HEAD_SCALE, seed=seed, **token)


@pytest.fixture(scope="module", params=MODELS)
def pair(request, reference_checkpoint):
    """(checkpoint, reference model, our model) for one level and relations_layer."""
    ckpt = _checkpoint(reference_checkpoint, request.param)
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    return ckpt, ref, GLiNER.from_pretrained(ckpt)


def _entity_key(e: dict[str, Any]) -> tuple:
    return (e["start"], e["end"], e["label"])


def _relation_key(r: dict[str, Any]) -> tuple:
    head, tail = r["head"], r["tail"]
    return (
        (head["start"], head["end"], head["type"], head["entity_idx"]),
        r["relation"],
        (tail["start"], tail["end"], tail["type"], tail["entity_idx"]),
    )


def first_occurrences(relations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference's relations without its repeats (token-level models)."""
    seen: set[tuple] = set()
    out = []
    for relation in relations:
        if _relation_key(relation) not in seen:
            seen.add(_relation_key(relation))
            out.append(relation)
    return out


def assert_same(ref_out, our_out, where: str) -> tuple[int, int]:
    """Identical entities and relations (order included; the reference's repeats once), scores
    within TOL."""
    (ref_ents, ref_rels), (our_ents, our_rels) = ref_out, our_out
    ref_rels = first_occurrences(ref_rels)
    assert [_entity_key(e) for e in our_ents] == [_entity_key(e) for e in ref_ents], where
    assert [_relation_key(r) for r in our_rels] == [_relation_key(r) for r in ref_rels], where
    for ours, ref in [(our_ents, ref_ents), (our_rels, ref_rels)]:
        got, want = [x["score"] for x in ours], [x["score"] for x in ref]
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0, err_msg=where)
    return len(ref_ents), len(ref_rels)


def test_checkpoint_is_a_relation_model(pair):
    """Guard: the reference built its relex model; ours loads every weight strictly."""
    _, ref, ours = pair
    level = "token" if ours.config.is_token_level else "span"
    assert type(ref.model).__name__ == REFERENCE_CLASS[level]
    assert set(ours.model.state_dict()) == set(ref.model.state_dict())
    assert ours.config.is_relex
    if level == "span":  # span models never repeat a relation
        for text in SENTENCES:
            _, rels = ref.predict_relations(text, LABELS, RELATIONS, threshold=0.4)
            assert first_occurrences(rels) == rels


@pytest.mark.parametrize(
    "flat_ner,multi_label",
    [(True, False), (False, False), (False, True)],
    ids=["flat", "nested", "nested_multi"],
)
@pytest.mark.parametrize("thresholds", THRESHOLDS, ids=["one", "adj_high", "adj_low", "adj_lowest"])
def test_entities_and_relations(pair, flat_ner, multi_label, thresholds):
    _, ref, ours = pair
    threshold, adjacency, relation = thresholds
    kwargs = {
        "threshold": threshold,
        "adjacency_threshold": adjacency,
        "relation_threshold": relation,
        "flat_ner": flat_ner,
        "multi_label": multi_label,
    }
    for text in SENTENCES:
        got = ours.predict_relations(text, LABELS, RELATIONS, **kwargs)
        assert_same(_reference(ref, text, kwargs, got), got, f"{text!r} {kwargs}")


def _reference(ref, text: str, kwargs: dict[str, Any], ours) -> tuple:
    """The reference's ``predict_relations``. Its attention and GAT adjacency layers fail on a
    text without entities (torch's attention returns no weights for zero keys): ours then finds
    no entities and no relations, which is what the reference's other layers give."""
    try:
        return ref.predict_relations(text, LABELS, RELATIONS, **kwargs)
    except AttributeError as err:
        assert "'NoneType' object has no attribute 'dim'" in str(err)
        assert ours == ([], [])
        return ours


def test_entities_and_relations_are_found(pair):
    """Guard on the fixtures: every model finds entities and relations at some thresholds."""
    _, _, ours = pair
    kwargs = dict(zip(["threshold", "adjacency_threshold", "relation_threshold"], THRESHOLDS[3]))
    found = [ours.predict_relations(text, LABELS, RELATIONS, **kwargs) for text in SENTENCES]
    assert sum(len(ents) for ents, _ in found) >= 10
    assert sum(len(rels) for _, rels in found) >= 3


@pytest.mark.parametrize("name", ["span_mlp", "token_mlp"])
def test_relations_are_discriminative(reference_checkpoint, name):
    """Guard on the fixtures: with the MLP adjacency layer the thresholds change the relations
    found (some but not all pairs and types pass)."""
    ckpt = _checkpoint(reference_checkpoint, name)
    ours = GLiNER.from_pretrained(ckpt)
    counts = {
        t: sum(len(ours.predict_relations(s, LABELS, RELATIONS, threshold=t)[1]) for s in SENTENCES)
        for t in (0.3, 0.5)
    }
    assert counts[0.3] > counts[0.5] > 0


def test_batches_descriptions_and_entity_only_inference(pair):
    """Several texts per batch as the reference's ``inference``; relation types given as
    ``{label: description}`` read the descriptions; ``inference`` (entities only) on a relation
    model is the reference's ``predict_entities``. (In a batch, the token-level reference also
    forms spans in the padding after shorter texts; they never become entities, but they change
    the attention of the GAT adjacency layer, so that layer is compared one text at a time.)"""
    _, ref, ours = pair
    if ours.config.is_token_level and ours.config.relations_layer == "gat":
        pytest.skip("the token-level reference pairs spans in batch padding: see the docstring")
    ref_ents, ref_rels = ref.inference(SENTENCES, LABELS, relations=RELATIONS, batch_size=4)
    got = ours.extract_relations(SENTENCES, LABELS, RELATIONS, batch_size=4)
    for text, want, out in zip(SENTENCES, zip(ref_ents, ref_rels), got):
        assert_same(want, out, text)
    descriptions = {f"rel{i}": description for i, description in enumerate(RELATIONS)}
    renamed = ours.extract_relations(SENTENCES, LABELS, descriptions)
    for plain, named in zip(got, renamed):
        assert [descriptions[r["relation"]] for r in named[1]] == [r["relation"] for r in plain[1]]
    for text in SENTENCES:
        want_ents = ref.predict_entities(text, LABELS, threshold=0.5)
        got_ents = ours.predict_entities(text, LABELS, threshold=0.5)
        assert_same((want_ents, []), (got_ents, []), text)
        assert ours.predict_relations(text, LABELS, [])[1] == []


def test_saved_checkpoint_loads_in_the_reference(pair, tmp_path):
    """A relex model saved by spacy-gliner loads in the reference with the same outputs."""
    _, _, ours = pair
    ours.save_pretrained(tmp_path / "ckpt")
    ref = ref_gliner.GLiNER.from_pretrained(str(tmp_path / "ckpt"), local_files_only=True)
    ref.eval()
    level = "token" if ours.config.is_token_level else "span"
    assert type(ref.model).__name__ == REFERENCE_CLASS[level]
    for text in SENTENCES[1:3]:
        want = ref.predict_relations(text, LABELS, RELATIONS, threshold=0.4, flat_ner=False)
        got = ours.predict_relations(text, LABELS, RELATIONS, threshold=0.4, flat_ner=False)
        assert_same(want, got, text)


@pytest.mark.parametrize("span_mode", ["markerV0", "token_level"])
def test_fresh_relation_model_loads_in_the_reference(bert_dir, tmp_path, span_mode):
    """``GLiNER(GLiNERConfig(..., relations_layer))``: new heads and the reference's relation
    prompt tokens; saved, the reference loads it as its relex model with the same outputs."""
    from spacy_gliner import GLiNERConfig

    data = {"model_name": str(bert_dir), "hidden_size": 32, "max_width": 4, "dropout": 0.0}
    config = GLiNERConfig.from_dict({**data, "span_mode": span_mode, "relations_layer": "mlp"})
    ours = GLiNER(config)
    assert ours.config.is_relex and ours.config.rel_token_index == len(ours.tokenizer) - 1
    ref = ref_gliner.GLiNER.from_pretrained(
        str(ours.save_pretrained(tmp_path)), local_files_only=True
    )
    ref.eval()
    level = "token" if span_mode == "token_level" else "span"
    assert type(ref.model).__name__ == REFERENCE_CLASS[level]
    kwargs = {"threshold": 0.3, "adjacency_threshold": 0.0, "relation_threshold": 0.0}
    found = 0
    for text in SENTENCES[1:3]:
        want = ref.predict_relations(text, LABELS, RELATIONS, **kwargs)
        found += assert_same(want, ours.predict_relations(text, LABELS, RELATIONS, **kwargs), text)[
            1
        ]
    assert found > 0


def _candidates(result, shift: int = 0) -> dict[tuple, float]:
    return {
        (*(h + shift), *(t + shift), int(label)): float(score)
        for h, t, label, score in zip(result.heads, result.tails, result.labels, result.scores)
    }


@pytest.mark.parametrize("name", ["span_mlp", "token_mlp"])
def test_windows_find_relations_within_each_window(reference_checkpoint, name):
    """A long text in small windows: its relation candidates are the union of those of each
    window run as a text of its own (the highest score where windows overlap); the decoded
    relations point at decoded entities of the text."""
    ckpt = _checkpoint(reference_checkpoint, name)
    ours = GLiNER.from_pretrained(ckpt)
    words = _words(" ".join(SENTENCES[1:5]))
    engine = ours.engine(EngineOptions(window_words=16, window_overlap=6))
    relex = RelationEngine(engine)
    labels, relations = LabelSet.from_labels(LABELS), LabelSet.from_labels(RELATIONS)
    kwargs: dict[str, Any] = {
        "thresholds": 0.4,
        "adjacency_threshold": 0.5,
        "relation_threshold": 0.4,
    }
    result = relex([words], labels, relations, **kwargs)[0]
    windows = engine.plan_windows([words], labels)[0]
    assert len(windows) >= 3
    union: dict[tuple, float] = {}
    for window in windows:
        alone = relex([words[window.start : window.end]], labels, relations, **kwargs)[0]
        for key, score in _candidates(alone, window.start).items():
            union[key] = max(score, union.get(key, score))
    found = _candidates(result)
    assert found.keys() == union.keys() and len(found) >= 5
    for key, score in found.items():
        assert abs(score - union[key]) <= TOL
    entities, decoded = result.decode(True, False)
    assert decoded
    for rel in decoded:
        head, tail = entities[rel.head], entities[rel.tail]
        # token-level: a span formed under two labels pairs with itself, as in the reference
        assert (head[0], head[1]) != (tail[0], tail[1]) or name.startswith("token")
        assert any(
            w.start <= min(head[0], tail[0]) and max(head[1], tail[1]) < w.end for w in windows
        )


def test_relations_need_a_relation_model(default_checkpoint):
    ours = GLiNER.from_pretrained(default_checkpoint)
    with pytest.raises(ValueError, match="relation-extraction GLiNER checkpoint"):
        ours.predict_relations("Barack Obama was born in Hawaii.", LABELS, RELATIONS)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"relations_layer": "biaffine"}, "relations_layer 'biaffine' is none of"),
        ({"relations_layer": "dot", "triples_layer": "DistMult"}, "triples_layer 'DistMult'"),
    ],
)
def test_what_is_not_built_fails_at_load(reference_checkpoint, tmp_path, changes, message):
    import json
    import shutil

    ckpt = reference_checkpoint(relations_layer="dot", head_scale=HEAD_SCALE)
    copy = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    config = json.loads((copy / "gliner_config.json").read_text())
    config.update(changes)
    (copy / "gliner_config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match=re.escape(message)):
        GLiNER.from_pretrained(copy)


# ------------------------------------------------------------------------------ spaCy component
def _doc(nlp, text: str):
    from spacy.tokens import Doc

    matches = list(WORD_RE.finditer(text))
    spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
    return Doc(nlp.vocab, words=[m.group() for m in matches], spaces=spaces)


def _doc_relations(doc) -> list[tuple]:
    """``doc._.rel`` as (head chars, head label, relation, tail chars, tail label), scores."""
    ents = list(doc.ents)
    keys = [
        (
            (ents[r["dep"]].start_char, ents[r["dep"]].end_char, ents[r["dep"]].label_),
            r["relation"],
            (ents[r["dest"]].start_char, ents[r["dest"]].end_char, ents[r["dest"]].label_),
        )
        for r in doc._.rel
    ]
    return list(zip(keys, [r["score"] for r in doc._.rel]))


def _reference_relations(ref, text: str, **kwargs: Any) -> list[tuple]:
    _, rels = ref.predict_relations(text, LABELS, RELATIONS, **kwargs)
    rels = first_occurrences(rels)
    return [
        (
            (
                (r["head"]["start"], r["head"]["end"], r["head"]["type"]),
                r["relation"],
                (r["tail"]["start"], r["tail"]["end"], r["tail"]["type"]),
            ),
            r["score"],
        )
        for r in rels
    ]


def _assert_doc(doc, ref, text: str, **kwargs: Any) -> int:
    ents, _ = ref.predict_relations(text, LABELS, RELATIONS, **kwargs)
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
        _entity_key(e) for e in ents
    ]
    got, want = _doc_relations(doc), _reference_relations(ref, text, **kwargs)
    assert [k for k, _ in got] == [k for k, _ in want], text
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=TOL, rtol=0)
    return len(want)


@pytest.mark.parametrize("name", ["span_mlp", "token_mlp"])
def test_spacy_component_relations_docbin_and_round_trip(reference_checkpoint, tmp_path, name):
    """``relations`` and thresholds as settings: ``doc.ents`` and ``doc._.rel`` (spacy-llm's
    dep / dest / relation, plus score) as the reference's flat ``predict_relations`` (each
    relation once); ``doc._.rel`` survives a DocBin with user data and ``to_disk`` /
    ``spacy.load``."""
    import spacy
    from spacy.tokens import DocBin

    ckpt = _checkpoint(reference_checkpoint, name)
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    settings = {"threshold": 0.4, "adjacency_threshold": 0.5, "relation_threshold": 0.45}
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={"model": str(ckpt), "labels": LABELS, "relations": RELATIONS, **settings},
    )
    docs = [nlp(_doc(nlp, text)) for text in SENTENCES]
    found = sum(_assert_doc(doc, ref, text, **settings) for doc, text in zip(docs, SENTENCES))
    assert found >= 3
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert [list(d._.rel) for d in restored] == [d._.rel for d in docs]  # msgpack: tuples
    nlp.to_disk(tmp_path / "pipeline")
    again = spacy.load(tmp_path / "pipeline")
    assert [again(_doc(again, t))._.rel for t in SENTENCES] == [d._.rel for d in docs]


def test_spacy_component_one_threshold_and_descriptions(reference_checkpoint):
    """One ``threshold`` serves entities, adjacency and relations; relation types given as
    ``{label: description}`` are prompted with the description and reported by label."""
    import spacy

    ckpt = reference_checkpoint(relations_layer="dot", head_scale=HEAD_SCALE)
    ref = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    ref.eval()
    described = {f"rel{i}": description for i, description in enumerate(RELATIONS)}
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={"model": str(ckpt), "labels": LABELS, "relations": described, "threshold": 0.55},
    )
    for text in SENTENCES:
        doc = nlp(_doc(nlp, text))
        want = _reference_relations(ref, text, threshold=0.55)
        named = [(k[0], described[k[1]], k[2]) for k, _ in _doc_relations(doc)]
        assert named == [k for k, _ in want], text


def test_spacy_component_relations_need_a_relation_model(default_checkpoint):
    import spacy

    nlp = spacy.blank("en")
    config = {"model": str(default_checkpoint), "labels": LABELS, "relations": RELATIONS}
    nlp.add_pipe("gliner", config=config)
    with pytest.raises(ValueError, match="not a relation-extraction GLiNER"):
        nlp("Barack Obama was born in Hawaii.")
    with pytest.raises(ValueError, match="relation_threshold must be a number"):
        spacy.blank("en").add_pipe("gliner", config={**config, "relation_threshold": 2})


def test_spacy_component_merge_threads_and_bad_relations(reference_checkpoint):
    """``ents = "merge"``: ``doc._.rel`` indexes the final ``doc.ents`` and keeps only relations
    whose entities are there; one ``nlp`` in several threads gives the sequential results; a
    relation type holding a prompt token is refused when the component is built."""
    from concurrent.futures import ThreadPoolExecutor

    import spacy
    from spacy.tokens import Span

    ckpt = _checkpoint(reference_checkpoint, "span_mlp")
    config = {"model": str(ckpt), "labels": LABELS, "relations": RELATIONS, "threshold": 0.4}
    plain = spacy.blank("en")
    plain.add_pipe("gliner", config=config)
    merged = spacy.blank("en")
    merged.add_pipe("gliner", config={**config, "ents": "merge"})
    for text in SENTENCES[1:]:
        want = plain(_doc(plain, text))
        doc = _doc(merged, text)
        doc.ents = [Span(doc, 0, 1, label="GIVEN")]  # wins over the model's entities there
        doc = merged(doc)
        spans = {(e.start, e.end) for e in doc.ents}
        final = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
        kept = [k for k, _ in _doc_relations(want) if k[0] in final and k[2] in final]
        assert [key for key, _ in _doc_relations(doc)] == kept
        assert all((doc.ents[r["dep"]].start, doc.ents[r["dep"]].end) in spans for r in doc._.rel)
    texts = [" ".join(SENTENCES[i:] + SENTENCES[:i]) for i in range(len(SENTENCES))]
    sequential = [plain(_doc(plain, t))._.rel for t in texts]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda t: plain(_doc(plain, t))._.rel, texts * 2))
    assert threaded == sequential * 2
    with pytest.raises(ValueError, match="prompt token"):
        spacy.blank("en").add_pipe("gliner", config={**config, "relations": ["a <<REL>> b"]})
