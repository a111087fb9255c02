"""Bad input: odd documents, bad labels / thresholds / settings, broken checkpoints.

Odd documents must not crash and entities must land on token boundaries with ``doc.text`` unchanged.
Bad settings and broken checkpoints must raise a clear ``ValueError`` (``CheckpointError`` is one)
when the component is built or the checkpoint is loaded, never an error from deep inside torch.
The component loads its checkpoint on first use, so for checkpoint problems "load time" is both
``GLiNER.from_pretrained`` and the first ``nlp(doc)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc, Span

from spacy_gliner import GLiNER, GLiNERConfig
from spacy_gliner.io import CheckpointError

LABELS = ["person", "location"]


@pytest.fixture(scope="module")
def nlp_all(default_checkpoint):
    """Threshold 0: every span is a candidate, so decoding always produces entities."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 0.0}
    )
    return nlp


def _check_doc(nlp, text: str) -> Doc:
    doc = nlp(text)
    assert doc.text == text
    for group in (list(doc.ents), list(doc.spans["sc"])):
        for span in group:
            assert isinstance(span, Span) and 0 <= span.start < span.end <= len(doc)
            assert span.label_ in LABELS
            assert span.start_char == doc[span.start].idx
            assert span.end_char == doc[span.end - 1].idx + len(doc[span.end - 1].text)
            assert not span[0].is_space and not span[-1].is_space
    scores = doc.spans["sc"].attrs["scores"]
    assert len(scores) == len(doc.spans["sc"]) and all(0.0 <= s <= 1.0 for s in scores)
    return doc


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(directory: Path, **changes) -> Path:
    path = directory / "gliner_config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return directory


def _load_both(directory: Path, match, error=ValueError):
    """The error comes from GLiNER.from_pretrained and from the component's first use."""
    with pytest.raises(error, match=match):
        GLiNER.from_pretrained(directory)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(directory), "labels": LABELS})
    with pytest.raises(error, match=match):
        nlp("Obama was born in Hawaii.")


# --------------------------------------------------------------------------- odd documents
def test_empty_doc(nlp_all):
    doc = _check_doc(nlp_all, "")
    assert len(doc) == 0 and not doc.ents and len(doc.spans["sc"]) == 0
    assert doc._.gliner_windows == 0


def test_whitespace_only_doc(nlp_all):
    doc = _check_doc(nlp_all, "   \n\t  \n")
    assert not doc.ents and len(doc.spans["sc"]) == 0


def test_one_token_doc(nlp_all):
    doc = _check_doc(nlp_all, "Obama")
    assert [(e.start, e.end) for e in doc.ents] == [(0, 1)]


def test_one_token_doc_with_surrounding_whitespace(nlp_all):
    doc = _check_doc(nlp_all, "  Obama \n")
    assert [e.text for e in doc.ents] == ["Obama"]


def test_emoji_doc(nlp_all):
    doc = _check_doc(nlp_all, "obama 😀 was born in hawaii 👨‍👩‍👧 🇫🇷 !")
    assert doc.ents


def test_cjk_doc(nlp_all):
    doc = _check_doc(nlp_all, "奥巴马出生于夏威夷。 obama 出生 于 北京 ， 東京 と 서울")
    assert doc.ents


def test_combining_marks_doc(nlp_all):
    """A lone combining accent has zero sub-tokens under BERT's normaliser: no crash, no shift."""
    doc = _check_doc(nlp_all, "obama \u0301 was born in hawaii")
    assert doc.ents
    doc = _check_doc(nlp_all, "\u0301")
    doc = _check_doc(nlp_all, "\u0301 \u0301 \u0301 cafe\u0301 nai\u0308ve")


def test_zero_width_and_control_characters(nlp_all):
    _check_doc(nlp_all, "obama\u200b was \u200d born \ufeff in\u00a0hawaii \x00 .")


def test_very_long_single_token(nlp_all):
    """A token longer than the encoder's sub-token limit is truncated, not a crash."""
    _check_doc(nlp_all, "obama " + "x" * 3000 + " was born")


def test_docs_of_mixed_oddities_in_one_batch(nlp_all):
    texts = [
        "",
        "Obama",
        "   ",
        "obama \u0301 was born",
        "北京",
        "😀 😀",
        "Barack Obama visited Paris .",
    ]
    docs = list(nlp_all.pipe(texts, batch_size=4))
    assert [d.text for d in docs] == texts
    assert [bool(d.ents) for d in docs] == [False, True, False, True, True, True, True]


def test_doc_built_from_words_with_space_tokens(nlp_all):
    doc = Doc(
        nlp_all.vocab,
        words=["Obama", "\n\n", "was", " ", "born"],
        spaces=[True, False, True, False, False],
    )
    doc = nlp_all(doc)
    assert all(not e[0].is_space and not e[-1].is_space for e in doc.ents)


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "labels,match",
    [
        ([""], "non-empty"),
        (["person", "   "], "non-empty"),
        (["person", "person"], "Duplicate"),
        ({"PER": "person", "HUM": "person"}, "share the prompt"),
        ({"PER": ""}, "non-empty"),
        ([1, 2], "str"),
        (["person", None], "str"),
        ([["person"]], "str"),
        ("person", "(?i)list"),
        ({"PER": 1}, None),
    ],
    ids=[
        "empty",
        "blank",
        "duplicate",
        "duplicate_prompt",
        "empty_prompt",
        "ints",
        "none",
        "nested",
        "bare_str",
        "dict_int",
    ],
)
def test_bad_labels(labels, match):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=match):
        nlp.add_pipe("gliner", config={"labels": labels})


def test_bad_labels_via_methods(default_checkpoint):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner", config={"model": str(default_checkpoint), "labels": LABELS})
    with pytest.raises(ValueError, match="non-empty"):
        pipe.add_label("")
    with pytest.raises(ValueError):
        pipe.set_labels(["a", "a"])
    with pytest.raises(ValueError):
        pipe.set_labels([3])
    assert pipe.labels == tuple(LABELS)  # the active label set is unchanged


def test_rejected_labels_do_not_poison_the_saved_config():
    pipe = spacy.blank("en").add_pipe("gliner", config={"labels": LABELS})
    with pytest.raises(ValueError):
        pipe.add_label("")
    assert pipe.cfg["labels"] in (LABELS, {name: name for name in LABELS})
    other = spacy.blank("en").add_pipe("gliner", config={"labels": ["x"]})
    other.from_bytes(pipe.to_bytes())
    assert other.labels == tuple(LABELS)


def test_no_labels_is_a_clear_error_at_use(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(default_checkpoint)})
    with pytest.raises(ValueError, match="no labels"):
        nlp("Obama was born in Hawaii.")


def test_labels_are_case_sensitive_and_kept():
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner", config={"labels": ["Person", "person"]})
    assert pipe.labels == ("Person", "person")


def test_bad_labels_in_gliner_inference(default_checkpoint):
    model = GLiNER.from_pretrained(default_checkpoint)
    for labels in ([""], ["a", "a"], [None], 5):
        with pytest.raises(ValueError):
            model.inference(["Obama was born in Hawaii."], labels)


# --------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize(
    "threshold,match",
    [
        (-0.1, r"\[0, 1\]"),
        (1.5, r"\[0, 1\]"),
        ({"person": 2.0}, r"\[0, 1\]"),
        ({"default": -1.0}, r"\[0, 1\]"),
        ({"person": 0.3, "animal": 0.5}, "unknown labels"),
        ("high", "float"),
        (None, "float"),
    ],
    ids=[
        "negative",
        "above_one",
        "dict_above_one",
        "dict_default_negative",
        "dict_unknown_label",
        "string",
        "none",
    ],
)
def test_bad_threshold(threshold, match):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=match):
        nlp.add_pipe("gliner", config={"labels": LABELS, "threshold": threshold})


def test_nan_threshold_direct():
    from spacy_gliner.component.pipe import GLiNERPipe
    from spacy_gliner.component.registry import build_gliner_model

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GLiNERPipe(
            spacy.blank("en").vocab, build_gliner_model(), labels=LABELS, threshold=float("nan")
        )


def test_threshold_bounds_are_allowed(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 1.0}
    )
    assert not nlp("Barack Obama was born in Hawaii.").ents  # strict > threshold


# --------------------------------------------------------------------------- other settings
@pytest.mark.parametrize("ents", ["bogus", "", "OVERWRITE"])
def test_bad_ents_mode(ents):
    with pytest.raises(ValueError, match="ents must be one of"):
        spacy.blank("en").add_pipe("gliner", config={"labels": LABELS, "ents": ents})


@pytest.mark.parametrize(
    "key,value", [("batch_size", 0), ("dtype", "float8"), ("spans_key", ""), ("window_overlap", -1)]
)
def test_bad_component_settings(key, value):
    with pytest.raises(ValueError):
        spacy.blank("en").add_pipe("gliner", config={"labels": LABELS, key: value})


def _gold_doc(nlp) -> Doc:
    doc = nlp.make_doc("Barack Obama was born in Hawaii and lives in Paris .")
    doc.ents = [Span(doc, 0, 2, label="GOLD_PER"), Span(doc, 9, 10, label="GOLD_LOC")]
    return doc


def test_ents_merge_keeps_existing_entities(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(default_checkpoint),
            "labels": LABELS,
            "threshold": 0.0,
            "ents": "merge",
        },
    )
    doc = nlp(_gold_doc(nlp))
    ents = [(e.start, e.end, e.label_) for e in doc.ents]
    assert (0, 2, "GOLD_PER") in ents and (9, 10, "GOLD_LOC") in ents
    assert any(label in LABELS for _, _, label in ents)  # new ones fill the gaps
    # new entities never overlap the kept ones
    taken = set(range(0, 2)) | {9}
    assert all(not taken.intersection(range(s, e)) for s, e, label in ents if label in LABELS)


def test_ents_none_leaves_entities_untouched(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(default_checkpoint),
            "labels": LABELS,
            "threshold": 0.0,
            "ents": "none",
        },
    )
    doc = _gold_doc(nlp)
    before = [(e.start, e.end, e.label_) for e in doc.ents]
    doc = nlp(doc)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == before
    assert len(doc.spans["sc"]) > 0


def test_ents_overwrite_replaces_entities(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 0.0}
    )
    doc = nlp(_gold_doc(nlp))
    assert doc.ents and all(e.label_ in LABELS for e in doc.ents)


def test_spans_key_none_writes_no_spans(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(default_checkpoint),
            "labels": LABELS,
            "threshold": 0.0,
            "spans_key": None,
        },
    )
    doc = nlp("Barack Obama was born in Hawaii.")
    assert len(doc.spans) == 0
    assert doc.ents


# --------------------------------------------------------------------------- broken checkpoints
def test_checkpoint_dir_missing(tmp_path):
    _load_both(tmp_path / "nowhere", "does not exist")


def test_checkpoint_without_config(default_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    (ckpt / "gliner_config.json").unlink()
    _load_both(ckpt, "gliner_config.json", CheckpointError)


def test_checkpoint_without_weights(default_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    (ckpt / "pytorch_model.bin").unlink()
    _load_both(ckpt, "holds no weights", CheckpointError)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_checkpoint_with_corrupt_weights(default_checkpoint, tmp_path, name):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    (ckpt / "pytorch_model.bin").unlink()
    (ckpt / name).write_bytes(b"this is not a weights file")
    _load_both(ckpt, "Could not read the weights file", CheckpointError)


def test_checkpoint_weights_not_a_state_dict(default_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    torch.save([torch.zeros(2)], ckpt / "pytorch_model.bin")
    _load_both(ckpt, "state dict", CheckpointError)


@pytest.mark.parametrize(
    "content,match", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_checkpoint_with_unreadable_config(default_checkpoint, tmp_path, content, match):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    (ckpt / "gliner_config.json").write_text(content)
    _load_both(ckpt, match)


def test_checkpoint_without_tokenizer_and_unreachable_model_name(
    default_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    for f in ckpt.iterdir():
        if f.name not in ("gliner_config.json", "pytorch_model.bin"):
            f.unlink()
    _edit_config(ckpt, model_name=str(tmp_path / "deleted-encoder"))
    _load_both(ckpt, "tokenizer", CheckpointError)
    _edit_config(ckpt, model_name="someorg/not-a-real-encoder")
    _load_both(ckpt, "not-a-real-encoder", CheckpointError)


def test_checkpoint_without_tokenizer_and_encoder_config_unreachable(
    default_checkpoint, tmp_path, monkeypatch
):
    """Tokenizer present, but no encoder_config and model_name unreachable: needs the encoder's config."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    _edit_config(ckpt, encoder_config=None, model_name=str(tmp_path / "deleted-encoder"))
    _load_both(ckpt, "encoder_config", CheckpointError)


def test_checkpoint_tokenizer_without_prompt_tokens(default_checkpoint, bert_dir, tmp_path):
    """No tokenizer files: the encoder's own tokenizer lacks <<ENT>> while the config names its id
    (the reference 0.2.29 raises here too)."""
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    for f in ckpt.iterdir():
        if f.name not in ("gliner_config.json", "pytorch_model.bin"):
            f.unlink()
    _edit_config(ckpt, model_name=str(bert_dir))
    _load_both(ckpt, "class_token_index")


def test_foreign_weights_other_span_mode(default_checkpoint, reference_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")  # config says markerV0
    shutil.copy(
        reference_checkpoint(span_mode="conv_share") / "pytorch_model.bin",
        ckpt / "pytorch_model.bin",
    )
    _load_both(ckpt, r"project_start.*conv_weigth|missing.*unexpected", CheckpointError)
    with pytest.raises(CheckpointError) as info:
        GLiNER.from_pretrained(ckpt)
    assert "span_rep_layer.span_rep_layer.project_start.0.weight" in str(info.value)
    assert "span_rep_layer.span_rep_layer.conv_weigth" in str(info.value)


def test_foreign_weights_extra_and_missing_keys(default_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    state["some_other_head.weight"] = torch.zeros(3)
    del state["prompt_rep_layer.3.bias"]
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as info:
        GLiNER.from_pretrained(ckpt)
    assert "some_other_head.weight" in str(info.value) and "prompt_rep_layer.3.bias" in str(
        info.value
    )


def test_foreign_weights_wrong_shape(default_checkpoint, tmp_path):
    ckpt = _copy(default_checkpoint, tmp_path / "ckpt")
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    state["prompt_rep_layer.0.weight"] = torch.zeros(5, 5)
    torch.save(state, ckpt / "pytorch_model.bin")
    _load_both(ckpt, r"prompt_rep_layer\.0\.weight has shape \(5, 5\)", CheckpointError)


def test_config_hidden_size_disagrees_with_weights(default_checkpoint, tmp_path):
    ckpt = _edit_config(_copy(default_checkpoint, tmp_path / "ckpt"), hidden_size=48)
    _load_both(ckpt, "projection|shape", CheckpointError)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"span_mode": "markerV9"}, "Unknown span_mode"),
        ({"span_mode": "token_level"}, r"missing \['scorer\."),  # a span model's weights
        ({"post_fusion_schema": "l2l-x2y"}, "Unknown post_fusion_schema"),
        ({"subtoken_pooling": "median"}, "Unknown subtoken_pooling"),
        ({"max_width": 0}, "max_width"),
        ({"max_width": "four"}, "max_width"),
        (
            {"hidden_size": None, "num_rnn_layers": 1},
            None,
        ),  # missing -> default 512: weights mismatch
        ({"encoder_config": {"model_type": "no-such-architecture"}}, "no-such-architecture"),
        ({"encoder_config": "deberta"}, "encoder_config"),
    ],
    ids=[
        "span_mode",
        "token_level",
        "fusion_token",
        "pooling",
        "max_width_zero",
        "max_width_str",
        "hidden_missing",
        "encoder_type",
        "encoder_config_str",
    ],
)
def test_bad_config_values(default_checkpoint, tmp_path, changes, match):
    ckpt = _edit_config(_copy(default_checkpoint, tmp_path / "ckpt"), **changes)
    _load_both(ckpt, match)


def test_bad_gliner_config_objects():
    with pytest.raises(ValueError, match="span_mode"):
        GLiNERConfig(span_mode="nope")
    with pytest.raises(ValueError, match="post_fusion_schema"):
        GLiNERConfig(post_fusion_schema="l2l-foo")
    with pytest.raises(ValueError, match="hidden_size"):
        GLiNERConfig(hidden_size=31)  # odd with the BiLSTM
    with pytest.raises(ValueError, match="no field"):
        GLiNERConfig().copy(spam=1)


def test_float16_on_cpu_is_a_clear_error(default_checkpoint):
    """With device cpu the error comes when the component is built; with the default device
    (CPU here) when the model loads, never from inside torch."""
    nlp = spacy.blank("en")
    config = {"model": str(default_checkpoint), "labels": ["person"], "dtype": "float16"}
    with pytest.raises(ValueError, match="float16 runs on a GPU only"):
        nlp.add_pipe("gliner", config={**config, "device": "cpu"})
    nlp.add_pipe("gliner", config=config)
    if torch.cuda.is_available():
        pytest.skip("the default device is a GPU here")
    with pytest.raises(ValueError, match="float16 runs on a GPU only"):
        nlp.initialize()
