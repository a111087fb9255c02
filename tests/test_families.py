"""Model families: the bi-encoder v2 shape (ModernBERT text encoder + BERT labels encoder), which
architecture a checkpoint is (the reference's own dispatch), and clear errors for the ones that
are not built.

Span-probability and decoding parity of the v2 checkpoint through ``GLiNER.from_pretrained`` and
``nlp.add_pipe("gliner")`` is in tests/test_parity.py (config ``bi_encoder_v2_modernbert``); this
file covers saving, loading, training and dispatch.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import helpers
import numpy as np
import pytest
import torch

ref_gliner = pytest.importorskip("gliner")

import spacy  # noqa: E402
from gliner import config as ref_config  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from spacy_gliner import GLiNER, GLiNERConfig, read_config  # noqa: E402
from spacy_gliner.engine import Engine, EngineOptions  # noqa: E402
from spacy_gliner.io import CheckpointError  # noqa: E402
from spacy_gliner.io.tokenizers import max_sequence_tokens  # noqa: E402
from spacy_gliner.model.families import (  # noqa: E402
    FAMILIES,
    UnsupportedArchitecture,
    architecture_of,
)

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization"]
TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris in 2009.",
    "Google and Apple are companies in New York; Mary works at Google.",
    "king queen king queen king queen",
    "Obama",
]
V2 = {"labels_encoder": "labels_bert", "hidden_size": 48}


def _probs(gliner, texts=TEXTS) -> list[np.ndarray]:
    engine = Engine(gliner, EngineOptions(batch_size=1))
    return [engine.span_probabilities([WORD_RE.findall(t)], [LABELS])[0] for t in texts]


def _ref_probs(ref, texts=TEXTS) -> list[np.ndarray]:
    out = []
    for text in texts:
        prepared = ref.prepare_batch([text], LABELS)
        batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
        out.append(torch.sigmoid(ref.run_batch(batch)[0][0].float()).numpy())
    return out


def _close(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    """Equal within TOL on every valid (start, width, class) cell."""
    for x, y in zip(a, b):
        n, k = x.shape[:2]
        valid = (np.arange(n)[:, None] + np.arange(k)[None, :]) < n
        assert x.shape == y.shape
        assert np.abs(x[valid] - y[valid]).max() <= TOL


def _load_ref(directory: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Resizing embeddings is not supported for bi-encoder"
        ref = ref_gliner.GLiNER.from_pretrained(str(directory), local_files_only=True)
    ref.eval()
    return ref


def _annotations(nlp) -> list:
    out = []
    for text in TEXTS:
        matches = list(WORD_RE.finditer(text))
        spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
        doc = nlp(Doc(nlp.vocab, words=[m.group() for m in matches], spaces=spaces))
        group = doc.spans["sc"]
        out.append(([(s.start, s.end, s.label_) for s in group], list(group.attrs["scores"])))
    return out


def _offline(monkeypatch) -> None:
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True, raising=False)


# ------------------------------------------------------------------------ bi-encoder v2 (ModernBERT)
@pytest.fixture()
def private_v2(tmp_path, modernbert_dir, labels_bert_dir) -> dict[str, Path]:
    """A v2 reference checkpoint whose encoder directories this test may delete."""
    text = Path(shutil.copytree(modernbert_dir, tmp_path / "text_enc"))
    labels = Path(shutil.copytree(labels_bert_dir, tmp_path / "labels_enc"))
    ckpt = helpers.write_reference_checkpoint(
        text, tmp_path / "ckpt", seed=5, labels_encoder=str(labels), hidden_size=48
    )
    return {"ckpt": ckpt, "text": text, "labels": labels}


def test_v2_checkpoint_is_modernbert_text_and_bert_labels(reference_checkpoint):
    ours = GLiNER.from_pretrained(reference_checkpoint(encoder="modernbert", **V2))
    layer = ours.model.token_rep_layer
    assert type(layer.bert_layer.model).__name__ == "ModernBertModel"
    assert type(layer.labels_encoder.model).__name__ == "BertModel"
    assert ours.config.is_bi_encoder and ours.labels_tokenizer is not None
    # rotary positions: the window is the tokenizer limit, capped at max_position_embeddings
    text_config = layer.bert_layer.model.config
    assert max_sequence_tokens(ours.tokenizer, text_config) == 512
    unlimited = SimpleNamespace(model_max_length=int(1e30))  # a tokenizer that names no limit
    assert max_sequence_tokens(unlimited, text_config) == text_config.max_position_embeddings
    text_config = copy.copy(text_config)
    text_config.max_position_embeddings = 256
    assert max_sequence_tokens(ours.tokenizer, text_config) == 256


def test_v2_nlp_to_disk_spacy_load_offline(private_v2, tmp_path, monkeypatch):
    """add_pipe -> to_disk -> delete checkpoint and both encoders -> offline spacy.load: the same
    spans and scores; the saved model directory loads in the reference with the same scores."""
    nlp = spacy.blank("en")
    config = {"model": str(private_v2["ckpt"]), "labels": LABELS, "multi_label": True}
    nlp.add_pipe("gliner", config={**config, "threshold": 0.5, "flat_ner": False})
    before = _annotations(nlp)
    probs = _probs(nlp.get_pipe("gliner").gliner)
    assert sum(len(spans) for spans, _ in before) > 0
    nlp.to_disk(tmp_path / "pipeline")
    for path in private_v2.values():
        shutil.rmtree(path)
    _offline(monkeypatch)
    nlp2 = spacy.load(tmp_path / "pipeline")
    assert _annotations(nlp2) == before
    for a, b in zip(_probs(nlp2.get_pipe("gliner").gliner), probs):
        np.testing.assert_array_equal(a, b)
    _close(_ref_probs(_load_ref(tmp_path / "pipeline" / "gliner" / "model")), probs)


def test_v2_save_pretrained_loads_in_reference(reference_checkpoint, tmp_path):
    ours = GLiNER.from_pretrained(reference_checkpoint(encoder="modernbert", **V2))
    out = ours.save_pretrained(tmp_path / "ours")
    ref = _load_ref(out)
    _close(_ref_probs(ref), _probs(ours))
    ref_sd, our_sd = ref.model.state_dict(), ours.model.state_dict()
    assert set(ref_sd) == set(our_sd)
    assert all(torch.equal(ref_sd[k], our_sd[k]) for k in our_sd)


def test_v2_checkpoint_without_stored_encoder_configs_or_labels_tokenizer(
    reference_checkpoint, tmp_path
):
    """A checkpoint that stores neither encoder config nor the labels tokenizer takes them from
    model_name / labels_encoder, as the reference does: the same scores."""
    ckpt = Path(shutil.copytree(reference_checkpoint(encoder="modernbert", **V2), tmp_path / "c"))
    shutil.rmtree(ckpt / "labels_tokenizer")
    config = json.loads((ckpt / "gliner_config.json").read_text())
    config.update(encoder_config=None, labels_encoder_config=None)
    (ckpt / "gliner_config.json").write_text(json.dumps(config))
    ours = GLiNER.from_pretrained(ckpt)
    assert type(ours.model.token_rep_layer.bert_layer.model).__name__ == "ModernBertModel"
    _close(_ref_probs(_load_ref(ckpt)), _probs(ours))


def test_fresh_v2_model_created_by_us_scores_the_same_in_reference(
    modernbert_dir, labels_bert_dir, tmp_path
):
    """GLiNER(GLiNERConfig(model_name=ModernBERT, labels_encoder=BERT)) (no LSTM, no fusion: the
    same math in both packages) -> save_pretrained -> the reference gives the same scores."""
    config = GLiNERConfig(
        model_name=str(modernbert_dir),
        labels_encoder=str(labels_bert_dir),
        hidden_size=48,
        max_width=4,
        dropout=0.0,
        num_rnn_layers=0,
    )
    ours = GLiNER(config)
    _close(_ref_probs(_load_ref(ours.save_pretrained(tmp_path / "fresh"))), _probs(ours))


def test_v2_training_lowers_the_loss(modernbert_dir, labels_bert_dir):
    from spacy_gliner.component.registry import encoder_loader

    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner", config={"others_lr": 3e-4, "encoder_lr": 1e-4})
    examples = helpers.make_examples(
        nlp,
        [
            ("barack obama was born in hawaii .", [(0, 2, "person"), (5, 6, "location")]),
            ("john smith works for google in london .", [(0, 2, "person"), (6, 7, "location")]),
        ],
    )
    loader = encoder_loader(
        str(modernbert_dir), labels_encoder=str(labels_bert_dir), hidden_size=32, max_width=4,
        dropout=0.0, num_rnn_layers=0,
    )  # fmt: skip
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader)
    first, last = helpers.first_and_last_loss(nlp, examples, steps=15)
    assert last < first * 0.7


# ------------------------------------------------------------------------------------ dispatch
# The reference's model classes and the architecture names ``architecture_of`` gives them.
REFERENCE_CLASSES = {
    "StreamingSpanGLiNER": "streaming span-level",
    "UniEncoderSpanRelexGLiNER": "span-level relation extraction",
    "UniEncoderTokenRelexGLiNER": "token-level relation extraction",
    "UniEncoderSpanDecoderGLiNER": "span-level label decoder",
    "UniEncoderTokenDecoderGLiNER": "token-level label decoder",
    "BiEncoderSpanGLiNER": "span-level bi-encoder",
    "BiEncoderTokenGLiNER": "token-level bi-encoder",
    "UniEncoderSpanGLiNER": "span-level uni-encoder",
    "UniEncoderTokenGLiNER": "token-level uni-encoder",
}
TOKEN = {"span_mode": "token_level"}
BOTH = {"labels_encoder": "bge", "labels_decoder": "gpt2"}
# Configurations written by the reference's own config classes, including field combinations
# whose winner only the reference's order decides.
SAVED_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "streaming": ("StreamingSpanConfig", {}),
    "relex_span": ("UniEncoderSpanRelexConfig", {"relations_layer": "biaffine"}),
    "relex_token": ("UniEncoderTokenRelexConfig", {"relations_layer": "biaffine"}),
    "decoder_span": ("UniEncoderSpanDecoderConfig", {"labels_decoder": "gpt2"}),
    "decoder_token": ("UniEncoderTokenDecoderConfig", {"labels_decoder": "gpt2"}),
    "bi_span": ("BiEncoderSpanConfig", {"labels_encoder": "bge"}),
    "bi_token": ("BiEncoderTokenConfig", {"labels_encoder": "bge"}),
    "uni_span": ("UniEncoderSpanConfig", {}),
    "uni_token": ("UniEncoderTokenConfig", {}),
    "legacy_bi_token": ("GLiNERConfig", {"labels_encoder": "bge", **TOKEN}),
    "legacy_relex_token": ("GLiNERConfig", {"relations_layer": "biaffine", **TOKEN}),
    "legacy_relex_over_all": ("GLiNERConfig", {"relations_layer": "biaffine", **BOTH}),
    "legacy_decoder_over_encoder": ("GLiNERConfig", {**BOTH, **TOKEN}),
    "legacy_uni_token": ("GLiNERConfig", TOKEN),
    "legacy_empty_labels_decoder": ("GLiNERConfig", {"labels_decoder": ""}),  # set, if empty
}
# Relex families are built, but not with relations_layer "biaffine" (no such reference layer);
# label decoders are built, but not from a config without labels_decoder_config.
UNSUPPORTED = ["streaming", "relex_span", "relex_token", "decoder_span", "decoder_token"]


def _saved_config(name: str, directory: Path, model_name: str = "enc") -> dict[str, Any]:
    """``gliner_config.json`` as the reference's config class writes it, in ``directory``."""
    cls_name, fields = SAVED_CONFIGS[name]
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ref_config, cls_name)(model_name=model_name, **fields).to_json_file(
            str(directory / "gliner_config.json")
        )
    return json.loads((directory / "gliner_config.json").read_text())


def _reference_choice(data: dict[str, Any]) -> str:
    """The architecture the reference picks for ``data`` (no model is built)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "labels_encoder and labels_decoder are both set"
        config = ref_gliner.GLiNER._config_from_dict(data)
        return REFERENCE_CLASSES[ref_gliner.GLiNER._get_gliner_class(config).__name__]


def _model_types(data: dict[str, Any]) -> list[Any]:
    """The saved model_type, the reference's legacy resolver's (wrong for token-level: it compares
    with "token-level"), and wrong ones; a streaming config keeps its discriminating type."""
    if data.get("model_type") == "gliner_streaming_span":
        return ["gliner_streaming_span"]
    legacy = ref_config.GLiNERConfig(**{k: v for k, v in data.items() if k != "model_type"})
    return [data.get("model_type"), legacy.model_type, "gliner_uni_encoder_span", "gliner"]


@pytest.mark.parametrize("name", list(SAVED_CONFIGS))
def test_architecture_of_is_the_reference_choice(name, tmp_path):
    data = _saved_config(name, tmp_path)
    for model_type in _model_types(data):
        variant = {**data, "model_type": model_type}
        assert architecture_of(variant) == _reference_choice(variant), (name, model_type)


def test_dispatch_cases_cover_every_reference_class_and_a_wrong_legacy_type(tmp_path):
    chosen = {_reference_choice(_saved_config(n, tmp_path / n)) for n in SAVED_CONFIGS}
    assert chosen == set(REFERENCE_CLASSES.values())
    data = _saved_config("legacy_bi_token", tmp_path / "legacy")
    assert _model_types(data)[1] == "gliner_bi_encoder_span"  # the legacy resolver's mistake
    assert architecture_of({**data, "model_type": "gliner_bi_encoder_span"}) == (
        "token-level bi-encoder"
    )


def test_streaming_with_other_fields_is_still_streaming(tmp_path):
    data = _saved_config("streaming", tmp_path)
    data.update(relations_layer="biaffine", labels_encoder="bge", **TOKEN)
    assert architecture_of(data) == _reference_choice(data) == "streaming span-level"


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_architecture_fails_at_load(name, tmp_path, bert_dir):
    """GLiNER.from_pretrained and the spaCy component (initialize, or first use) raise
    UnsupportedArchitecture naming the architecture, before any weights are read (there are none)."""
    directory = tmp_path / name
    arch = _reference_choice(_saved_config(name, directory, str(bert_dir)))
    assert arch not in FAMILIES or name.startswith(("relex", "decoder"))
    match = re.escape(arch)
    with pytest.raises(UnsupportedArchitecture, match=match):
        GLiNER.from_pretrained(directory)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(directory), "labels": LABELS})
    with pytest.raises(UnsupportedArchitecture, match=match):
        nlp.initialize()
    with pytest.raises(UnsupportedArchitecture, match=match):
        nlp("Barack Obama visited Paris .")
    # a GLiNERConfig read from it keeps what makes it unsupported: no model is created from it
    try:
        config = read_config(directory)
    except CheckpointError:  # a GLiNERConfig that refuses span_mode "token_level" altogether
        assert name.endswith("token")
        return
    assert architecture_of(config.to_dict()) == arch
    with pytest.raises(UnsupportedArchitecture, match=match):
        GLiNER(config, pretrained_encoder=False)


def test_streaming_error_explains_why(tmp_path, bert_dir):
    _saved_config("streaming", tmp_path, str(bert_dir))
    with pytest.raises(UnsupportedArchitecture) as caught:
        GLiNER.from_pretrained(tmp_path)
    message = str(caught.value)
    assert "streaming span-level" in message
    assert "causal decoder" in message and "key-value cache" in message
    assert "span-level uni-encoder" in message  # what is supported instead
