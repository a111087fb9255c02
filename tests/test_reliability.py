"""Issue cases: bad devices, labels with prompt tokens, corrupt tokenizer files, a component
called on a string, partial training annotations, unsupported architectures, the model block."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_gliner import GLiNER
from spacy_gliner.component.examples import example_text
from spacy_gliner.io import CheckpointError
from spacy_gliner.model.families import UnsupportedArchitecture
from spacy_gliner.training.targets import span_targets


def _nlp(checkpoint, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(checkpoint), "labels": ["person"], **config})
    return nlp


@pytest.mark.parametrize("device", ["tpu0", "gpu:x", "cuda:zero"])
def test_unknown_device_fails_when_the_pipe_is_added(default_checkpoint, device):
    with pytest.raises(ValueError, match="not a torch device"):
        _nlp(default_checkpoint, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_fails_when_the_pipe_is_added(default_checkpoint):
    with pytest.raises(ValueError, match="needs CUDA"):
        _nlp(default_checkpoint, device="cuda")


@pytest.mark.parametrize("label", ["person <<ENT>> location", "x <<SEP>>", "[FLERT] date"])
def test_labels_with_prompt_tokens_fail_when_the_pipe_is_added(default_checkpoint, label):
    with pytest.raises(ValueError, match="prompt token"):
        _nlp(default_checkpoint, labels=[label, "date"])


def test_labels_with_tokenizer_special_tokens_fail_when_the_model_loads(default_checkpoint):
    nlp = _nlp(default_checkpoint, labels=["[CLS] person", "date"])
    with pytest.raises(ValueError, match="reserved token"):
        nlp.initialize()
    model = GLiNER.from_pretrained(default_checkpoint)
    with pytest.raises(ValueError, match="reserved token"):
        model.predict_entities("Barack Obama visited Paris .", ["[SEP] place"])


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_corrupt_tokenizer_file_names_the_directory(default_checkpoint, tmp_path, name):
    ckpt = Path(shutil.copytree(default_checkpoint, tmp_path / "ckpt"))
    (ckpt / name).write_text('{"model": {1: 2}')
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        GLiNER.from_pretrained(ckpt)
    assert str(ckpt) in str(caught.value)


def test_component_called_on_a_string_is_a_clear_error(default_checkpoint):
    nlp = _nlp(default_checkpoint)
    with pytest.raises(TypeError, match="takes a spaCy Doc, got str"):
        nlp.get_pipe("gliner")("Barack Obama")


def test_unsupported_architecture_is_named(default_checkpoint, tmp_path):
    for changes, name in [
        (
            {"span_mode": "token_level", "represent_spans": True, "span_encoder_config": {}},
            r"token-level uni-encoder with span representations \(represent_spans\)",
        ),
        ({"span_mode": "token_level", "relations_layer": "biaffine"}, "token-level relation"),
        ({"relations_layer": "biaffine"}, "span-level relation extraction"),
        ({"labels_decoder": "gpt2"}, "span-level label decoder"),
        ({"model_type": "gliner_streaming_span"}, "streaming span-level"),
    ]:
        ckpt = Path(shutil.copytree(default_checkpoint, tmp_path / re.sub(r"\W+", "_", name)))
        config = json.loads((ckpt / "gliner_config.json").read_text())
        config.update(changes)
        (ckpt / "gliner_config.json").write_text(json.dumps(config))
        with pytest.raises(UnsupportedArchitecture, match=name) as info:
            GLiNER.from_pretrained(ckpt)
        built = str(info.value).split("spacy-gliner builds:")[1]
        assert "token-level uni-encoder" in built and "token-level bi-encoder" in built


def test_missing_iob_and_unannotated_regions_are_left_out_of_the_loss():
    nlp = spacy.blank("en")
    words = ["barack", "obama", "met", "john", "smith", "in", "paris", "today"]
    ref = Doc(nlp.vocab, words=words, ents=["B-person", "I-person", "O", "", "", "O", "O", "O"])
    text = example_text(Example(Doc(nlp.vocab, words=words), ref), {"person": "person"}, "sc", True)
    assert text.spans == [(0, 1, "person")]
    assert text.unknown == [False, False, False, True, True, False, False, False]
    targets, mask = span_targets(
        [text.spans], [["person"]], [len(words)], 4, unknown=[text.unknown]
    )
    assert targets[0, 0, 1, 0] == 1.0 and mask[0, 0, 1]
    assert not mask[0, 3, 0] and not mask[0, 4, 0]  # the unannotated words themselves
    assert not mask[0, 2, 1] and not mask[0, 1, 3]  # spans reaching into them
    assert mask[0, 5, 2] and mask[0, 2, 0]  # spans clear of them still count as negatives
    # A region marked in doc.spans["gliner_unannotated"] works the same way.
    ref2 = Doc(nlp.vocab, words=words, ents=["B-person", "I-person"] + ["O"] * 6)
    ref2.spans["gliner_unannotated"] = [Span(ref2, 6, 8)]
    text2 = example_text(
        Example(Doc(nlp.vocab, words=words), ref2), {"person": "person"}, "sc", True
    )
    assert text2.unknown == [False] * 6 + [True, True]


def test_model_block_in_the_config(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": {"checkpoint": str(default_checkpoint)}, "labels": ["person"]}
    )
    block = nlp.config["components"]["gliner"]["model"]
    assert block == {
        "@architectures": "spacy_gliner.GLiNERModel.v1",
        "checkpoint": str(default_checkpoint),
    }
    assert nlp("Barack Obama visited Paris .").spans["sc"] is not None
    default = spacy.blank("en")
    default.add_pipe("gliner", config={"labels": ["person"]})
    assert (
        default.config["components"]["gliner"]["model"]["@architectures"]
        == "spacy_gliner.GLiNERModel.v1"
    )


def test_unreachable_hub_id_fails_at_initialize_with_one_short_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": "no-such-org/no-such-gliner",
            "labels": ["person"],
            "cache_dir": str(tmp_path),
        },
    )
    with pytest.raises(CheckpointError, match="not in the local cache") as caught:
        nlp.initialize()
    error = caught.value
    assert "\n" not in str(error)
    assert error.__cause__ is not None  # the hub client's error is kept ...
    assert (
        error.__cause__.__cause__ is None and error.__cause__.__context__ is None
    )  # ... without its chain


@pytest.mark.parametrize(
    "config,match",
    [
        ({"window_overlap": 500}, "window_words"),  # overlap beyond the checkpoint's max_len
        (
            {"labels": ["person " * 400]},
            "sub-tokens",
        ),  # a label prompt longer than the encoder window
    ],
    ids=["overlap_beyond_max_len", "overlong_label"],
)
def test_model_dependent_settings_fail_at_initialize(default_checkpoint, config, match):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": ["person"], **config}
    )
    with pytest.raises(ValueError, match=match):
        nlp.initialize()
