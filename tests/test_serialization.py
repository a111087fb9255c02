"""Saving and loading: spaCy to_disk/to_bytes, reference <-> ours checkpoints, GLiNERConfig, hub ids.

Everything runs offline: hub ids are resolved from a hand-made Hugging Face cache directory.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

ref_gliner = pytest.importorskip("gliner")

import spacy  # noqa: E402
from helpers import write_reference_checkpoint  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from spacy_gliner import GLiNER, GLiNERConfig, read_config  # noqa: E402
from spacy_gliner.engine import Engine, EngineOptions  # noqa: E402
from spacy_gliner.io import CheckpointError  # noqa: E402

TOL = 1e-5
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
LABELS = ["person", "location", "organization"]
TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris in 2009.",
    "Google and Apple are companies in New York; Mary works at Google.",
    "the king and the queen of France lived in a house near the river",
    "Obama",
]


def _probs(gliner, texts: list[str] = TEXTS, labels=LABELS) -> list[np.ndarray]:
    """Our probabilities [n, K, C] per text, one text per batch."""
    predictor = Engine(gliner, EngineOptions(batch_size=1))
    return [predictor.span_probabilities([WORD_RE.findall(t)], [list(labels)])[0] for t in texts]


def _ref_probs(ref, texts: list[str] = TEXTS, labels=LABELS) -> list[np.ndarray]:
    out = []
    for text in texts:
        prepared = ref.prepare_batch([text], list(labels))
        batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
        logits = ref.run_batch(batch)[0][0].float()
        out.append(torch.sigmoid(logits).numpy())
    return out


def _close(a: list[np.ndarray], b: list[np.ndarray], tol: float = TOL) -> None:
    """Equal on every valid (start, width) cell."""
    for x, y in zip(a, b):
        n, k = x.shape[:2]
        valid = (np.arange(n)[:, None] + np.arange(k)[None, :]) < n
        assert x.shape == y.shape
        assert np.abs(x[valid] - y[valid]).max() <= tol


def _identical(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _offline(monkeypatch) -> None:
    """HF_HUB_OFFLINE=1 as set before the process started (huggingface_hub/transformers cache it)."""
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True, raising=False)


def _doc(nlp, text: str) -> Doc:
    matches = list(WORD_RE.finditer(text))
    spaces = [m.end() < len(text) and text[m.end()].isspace() for m in matches]
    return Doc(nlp.vocab, words=[m.group() for m in matches], spaces=spaces)


def _annotations(nlp, texts=TEXTS):
    docs = [nlp(_doc(nlp, t)) for t in texts]
    return [
        (
            [(e.start, e.end, e.label_) for e in d.ents],
            [(s.start, s.end, s.label_) for s in d.spans["sc"]],
            list(d.spans["sc"].attrs["scores"]),
        )
        for d in docs
    ]


@pytest.fixture()
def private_checkpoints(tmp_path, bert_dir, labels_bert_dir):
    """Reference checkpoints whose encoder directories belong to this test (so it may delete them)."""
    enc = tmp_path / "enc"
    labels_enc = tmp_path / "labels_enc"
    shutil.copytree(bert_dir, enc)
    shutil.copytree(labels_bert_dir, labels_enc)
    uni = write_reference_checkpoint(enc, tmp_path / "uni", seed=3)
    bi = write_reference_checkpoint(enc, tmp_path / "bi", seed=4, labels_encoder=str(labels_enc))
    return {"uni": uni, "bi": bi, "enc": enc, "labels_enc": labels_enc}


def _threshold(gliner) -> float:
    values = np.concatenate([p.ravel() for p in _probs(gliner)])
    return float(np.quantile(values, 0.8))


# --------------------------------------------------------------------------- spaCy round trips
@pytest.mark.parametrize("kind", ["uni", "bi"])
def test_nlp_to_disk_spacy_load_offline(private_checkpoints, tmp_path, monkeypatch, kind):
    """to_disk -> delete checkpoint and encoders -> HF_HUB_OFFLINE=1 -> spacy.load: identical output."""
    ckpt = private_checkpoints[kind]
    threshold = _threshold(GLiNER.from_pretrained(ckpt))
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(ckpt), "labels": LABELS, "threshold": threshold})
    before = _annotations(nlp)
    probs_before = _probs(nlp.get_pipe("gliner").gliner)
    assert sum(len(a[1]) for a in before) > 0
    nlp.to_disk(tmp_path / "pipeline")
    for key in ("uni", "bi", "enc", "labels_enc"):
        shutil.rmtree(private_checkpoints[key])
    _offline(monkeypatch)
    nlp2 = spacy.load(tmp_path / "pipeline")
    assert _annotations(nlp2) == before
    _identical(_probs(nlp2.get_pipe("gliner").gliner), probs_before)


def _ents(doc) -> list:
    return [(e.start, e.end, e.label_) for e in doc.ents]


def test_nlp_to_disk_before_first_use_is_self_contained(private_checkpoints, tmp_path, monkeypatch):
    ckpt = private_checkpoints["uni"]
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(ckpt), "labels": LABELS, "threshold": 0.5})
    nlp.to_disk(tmp_path / "pipeline")  # the component has not loaded its weights yet
    expected = [_ents(nlp(_doc(nlp, t))) for t in TEXTS]
    shutil.rmtree(ckpt)
    shutil.rmtree(private_checkpoints["enc"])
    _offline(monkeypatch)
    nlp2 = spacy.load(tmp_path / "pipeline")
    assert [_ents(nlp2(_doc(nlp2, t))) for t in TEXTS] == expected
    assert any(expected)


def test_spacy_load_config_overrides_runtime_settings(default_checkpoint, tmp_path):
    """dtype, batch_size and device of a saved pipeline follow spacy.load's config; labels and
    threshold come back from the saved component."""
    import torch

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 0.45}
    )
    nlp.get_pipe("gliner").add_label("extra")
    nlp.to_disk(tmp_path / "pipeline")
    overrides = {"components": {"gliner": {"dtype": "bfloat16", "batch_size": 3, "device": "cpu"}}}
    pipe = spacy.load(tmp_path / "pipeline", config=overrides).get_pipe("gliner")
    assert (pipe.cfg["dtype"], pipe.cfg["batch_size"], pipe.cfg["device"]) == ("bfloat16", 3, "cpu")
    assert pipe.engine.options.dtype == torch.bfloat16 and pipe.engine.batch_size == 3
    assert pipe.labels == (*LABELS, "extra") and pipe.cfg["threshold"] == 0.45
    plain = spacy.load(tmp_path / "pipeline").get_pipe("gliner")
    assert plain.cfg["dtype"] == "float32" and plain.engine.options.dtype is None


def test_nlp_to_bytes_from_bytes(default_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": 0.45}
    )
    before = _annotations(nlp)
    data = nlp.to_bytes()
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("gliner", config={"labels": ["other"], "threshold": 0.9})
    nlp2.from_bytes(data)
    assert nlp2.get_pipe("gliner").labels == tuple(LABELS)
    assert _annotations(nlp2) == before
    # the component alone
    pipe3 = spacy.blank("en").add_pipe("gliner", config={"labels": ["x"]})
    pipe3.from_bytes(nlp.get_pipe("gliner").to_bytes())
    _identical(_probs(pipe3.gliner), _probs(nlp.get_pipe("gliner").gliner))


def test_gliner_to_bytes_from_bytes(default_checkpoint):
    ours = GLiNER.from_pretrained(default_checkpoint)
    files = ours.to_bytes()
    assert "gliner_config.json" in files and "model.safetensors" in files
    _identical(_probs(GLiNER.from_bytes(files)), _probs(ours))


# --------------------------------------------------------------------------- reference loads ours
@pytest.mark.parametrize(
    "settings",
    [{}, {"labels_encoder": "labels_bert"}, {"encoder": "deberta", "span_mode": "conv_share"}],
    ids=["uni", "bi", "deberta"],
)
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_reference_loads_our_save_pretrained(reference_checkpoint, tmp_path, settings, safe):
    ckpt = reference_checkpoint(**settings)
    ours = GLiNER.from_pretrained(ckpt)
    out = ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    assert (out / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    ref = ref_gliner.GLiNER.from_pretrained(str(out), local_files_only=True)
    _close(_ref_probs(ref), _probs(ours))
    # and ours reloads its own save bit-identically
    _identical(_probs(GLiNER.from_pretrained(out)), _probs(ours))
    # the reference's state dict is exactly ours (no silently skipped keys: it loads non-strictly)
    ref_sd, our_sd = ref.model.state_dict(), ours.model.state_dict()
    assert set(ref_sd) == set(our_sd)
    assert all(torch.equal(ref_sd[k], our_sd[k]) for k in our_sd)


def test_reference_loads_component_model_dir(default_checkpoint, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(default_checkpoint), "labels": LABELS})
    pipe = nlp.get_pipe("gliner")
    ours_probs = _probs(pipe.gliner)
    nlp.to_disk(tmp_path / "pipeline")
    model_dir = tmp_path / "pipeline" / "gliner" / "model"
    assert (model_dir / "gliner_config.json").exists()
    ref = ref_gliner.GLiNER.from_pretrained(str(model_dir), local_files_only=True)
    _close(_ref_probs(ref), ours_probs)


def test_fresh_model_saved_by_us_loads_in_reference(bert_dir, tmp_path):
    """A model created by us (markerV0 + LSTM: same math in both) scores the same in the reference."""
    ours = GLiNER(GLiNERConfig(model_name=str(bert_dir), hidden_size=32, max_width=4, dropout=0.0))
    out = ours.save_pretrained(tmp_path / "fresh")
    ref = ref_gliner.GLiNER.from_pretrained(str(out), local_files_only=True)
    _close(_ref_probs(ref), _probs(ours))


def test_reference_safetensors_with_shared_tensors(default_checkpoint, tmp_path):
    """The reference's safetensors writer stores aliased tensors once and names the others in the
    file metadata ({omitted: kept}); the loader must re-create them like the reference does."""
    ref = ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
    with torch.no_grad():  # tie two same-shaped head weights, as tied embeddings would be
        ref.model.prompt_rep_layer[
            0
        ].weight = ref.model.span_rep_layer.span_rep_layer.project_start[0].weight
    out = tmp_path / "tied"
    ref.save_pretrained(str(out), safe_serialization=True)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert "prompt_rep_layer.0.weight" not in set(f.keys())
        assert (
            f.metadata().get("prompt_rep_layer.0.weight")
            == "span_rep_layer.span_rep_layer.project_start.0.weight"
        )
    ours = GLiNER.from_pretrained(out)
    _close(
        _ref_probs(ref_gliner.GLiNER.from_pretrained(str(out), local_files_only=True)), _probs(ours)
    )


def test_checkpoint_with_position_ids_buffers(default_checkpoint, tmp_path):
    """Older transformers saved ``embeddings.position_ids`` (and DeBERTa/BERT may or may not): such
    buffers are not weights and must not make the strict loader fail."""
    ckpt = tmp_path / "old"
    shutil.copytree(default_checkpoint, ckpt)
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    state["token_rep_layer.bert_layer.model.embeddings.position_ids"] = torch.arange(512)[None]
    torch.save(state, ckpt / "pytorch_model.bin")
    _identical(
        _probs(GLiNER.from_pretrained(ckpt)), _probs(GLiNER.from_pretrained(default_checkpoint))
    )


# --------------------------------------------------------------------------- GLiNERConfig
def test_config_round_trip_of_reference_json(reference_checkpoint, tmp_path):
    for settings in ({}, {"labels_encoder": "labels_bert", "post_fusion_schema": "l2l-l2t-t2t"}):
        path = reference_checkpoint(**settings) / "gliner_config.json"
        original = json.loads(path.read_text())
        config = GLiNERConfig.from_json_file(path)
        assert config.documented_architecture is False  # reference checkpoints keep reference math
        config.to_json_file(tmp_path / "c.json")
        written = json.loads((tmp_path / "c.json").read_text())
        for key, value in original.items():
            assert written[key] == value, key
        assert GLiNERConfig.from_json_file(tmp_path / "c.json") == config


def test_config_legacy_has_rnn_and_unknown_fields(tmp_path):
    legacy = {
        "model_name": "microsoft/deberta-v3-large",
        "max_width": 12,
        "hidden_size": 768,
        "dropout": 0.4,
        "span_mode": "markerV0",
        "has_rnn": False,
        "lr_encoder": "1e-5",
        "num_steps": 30000,
        "shuffle_types": True,
        "random_drop": True,
        "max_types": 25,
        "max_len": 384,
        "model_type": None,
        "some_future_field": {"a": [1, 2]},
    }
    (tmp_path / "gliner_config.json").write_text(json.dumps(legacy))
    config = read_config(tmp_path)
    assert config.num_rnn_layers == 0 and not config.has_rnn
    assert (
        config.class_token_index == -1 and config.vocab_size == -1 and config.encoder_config is None
    )
    assert config.extra["lr_encoder"] == "1e-5" and config.extra["some_future_field"] == {
        "a": [1, 2]
    }
    out = config.to_dict()
    assert (
        out["num_rnn_layers"] == 0
        and out["shuffle_types"] is True
        and out["some_future_field"] == {"a": [1, 2]}
    )
    again = GLiNERConfig.from_dict(out)
    assert again.to_dict() == out  # idempotent (reference pass-through fields are filled in once)
    assert {k: v for k, v in again.extra.items() if k in config.extra} == config.extra
    assert GLiNERConfig.from_dict({**legacy, "has_rnn": True}).num_rnn_layers == 1
    # num_rnn_layers wins over has_rnn when both are present (0.2.23+ semantics)
    assert (
        GLiNERConfig.from_dict({**legacy, "has_rnn": True, "num_rnn_layers": 2}).num_rnn_layers == 2
    )


def test_config_from_pretrained_dir(default_checkpoint):
    config = read_config(default_checkpoint)
    original = json.loads((default_checkpoint / "gliner_config.json").read_text())
    assert config.span_mode == original["span_mode"] and config.max_width == 4
    assert config.class_token_index == original["class_token_index"]
    assert config.extra["transformers_version"] == original["transformers_version"]


def _legacy_checkpoint(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "gliner_config.json").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (dst / "gliner_config.json").write_text(json.dumps(data))
    return dst


def test_legacy_checkpoint_without_tokenizer_or_token_fields(default_checkpoint, tmp_path):
    """gliner <= 0.2.2 style: only gliner_config.json + weights, no class_token_index / vocab_size /
    encoder_config: tokenizer and encoder config come from model_name, prompt tokens are added."""
    legacy = _legacy_checkpoint(
        default_checkpoint,
        tmp_path / "legacy",
        class_token_index=None,
        vocab_size=None,
        encoder_config=None,
    )
    for f in legacy.iterdir():
        if f.name not in ("gliner_config.json", "pytorch_model.bin"):
            f.unlink()
    ours = GLiNER.from_pretrained(legacy)
    assert ours.config.class_token_index == read_config(default_checkpoint).class_token_index
    ref = ref_gliner.GLiNER.from_pretrained(str(legacy), local_files_only=True)
    _close(_ref_probs(ref), _probs(ours))
    _close(
        _ref_probs(
            ref_gliner.GLiNER.from_pretrained(str(default_checkpoint), local_files_only=True)
        ),
        _probs(ours),
    )


def test_legacy_has_rnn_false_checkpoint(reference_checkpoint, tmp_path):
    """0.2.3-0.2.22 config ``has_rnn: false`` (no num_rnn_layers) with weights without an LSTM: ours
    builds no LSTM (the reference would build a random one) and matches the no-LSTM model."""
    src = reference_checkpoint(num_rnn_layers=0)
    legacy = _legacy_checkpoint(src, tmp_path / "legacy", num_rnn_layers=None, has_rnn=False)
    ours = GLiNER.from_pretrained(legacy)
    assert ours.config.num_rnn_layers == 0 and not hasattr(ours.model, "rnn")
    _close(
        _ref_probs(ref_gliner.GLiNER.from_pretrained(str(src), local_files_only=True)), _probs(ours)
    )


def test_config_rnn_count_disagrees_with_weights(reference_checkpoint, tmp_path, caplog):
    src = reference_checkpoint(num_rnn_layers=2)
    bad = _legacy_checkpoint(src, tmp_path / "bad", num_rnn_layers=1)
    with caplog.at_level("WARNING", logger="spacy_gliner"):
        ours = GLiNER.from_pretrained(bad)
    assert ours.config.num_rnn_layers == 2 and "following the weights" in caplog.text
    _close(
        _ref_probs(ref_gliner.GLiNER.from_pretrained(str(src), local_files_only=True)), _probs(ours)
    )


# --------------------------------------------------------------------------- fresh models
def test_gliner_from_config_with_local_encoder(bert_dir):
    config = GLiNERConfig(
        model_name=str(bert_dir), hidden_size=48, max_width=4, span_mode="markerV1", dropout=0.0
    )
    model = GLiNER(config)
    assert config.class_token_index == -1  # the caller's config is not modified
    assert model.config.class_token_index == len(model.tokenizer) - 2
    assert model.tokenizer.convert_ids_to_tokens(model.config.class_token_index) == "<<ENT>>"
    # the encoder kept its pretrained weights (plus three new embedding rows)
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(str(bert_dir))
    ours = model.model.token_rep_layer.bert_layer.model
    assert torch.equal(
        ours.encoder.layer[0].attention.self.query.weight,
        pretrained.encoder.layer[0].attention.self.query.weight,
    )
    assert ours.embeddings.word_embeddings.weight.shape[0] == pretrained.config.vocab_size + 3
    words = [WORD_RE.findall(t) for t in TEXTS]
    batch = model.prompts.encode(words, [LABELS] * len(words))
    with torch.no_grad():
        logits, word_mask, label_mask = model.model(**batch)
    assert logits.shape == (len(words), max(map(len, words)), 4, len(LABELS))
    assert torch.isfinite(logits).all()
    assert word_mask.sum().item() == sum(map(len, words)) and label_mask.all()
    assert isinstance(model.inference(TEXTS, LABELS, threshold=0.0), list)


def test_gliner_from_config_bi_encoder(bert_dir, labels_bert_dir):
    model = GLiNER(
        GLiNERConfig(
            model_name=str(bert_dir),
            labels_encoder=str(labels_bert_dir),
            hidden_size=32,
            max_width=4,
        )
    )
    probs = _probs(model)
    assert [p.shape for p in probs] == [(len(WORD_RE.findall(t)), 4, len(LABELS)) for t in TEXTS]


def test_gliner_from_config_random_encoder(bert_dir):
    model = GLiNER(
        GLiNERConfig(model_name=str(bert_dir), hidden_size=32, max_width=4),
        pretrained_encoder=False,
    )
    assert _probs(model)[0].shape[1:] == (4, len(LABELS))


# --------------------------------------------------------------------------- hub ids, offline
def _fake_hub_cache(
    cache: Path,
    repo_id: str,
    checkpoint: Path,
    revision: str = "0123456789abcdef0123456789abcdef01234567",
):
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<rev>/<files>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    shutil.copytree(checkpoint, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "blobs").mkdir()
    return snapshot


def test_hub_id_from_cache_offline(default_checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "hf_cache"
    _fake_hub_cache(cache, "someorg/tiny-gliner", default_checkpoint)
    expected = _probs(GLiNER.from_pretrained(default_checkpoint))
    # local_files_only=True, no env
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _identical(
        _probs(
            GLiNER.from_pretrained("someorg/tiny-gliner", cache_dir=cache, local_files_only=True)
        ),
        expected,
    )
    # HF_HUB_OFFLINE=1 alone
    _offline(monkeypatch)
    _identical(_probs(GLiNER.from_pretrained("someorg/tiny-gliner", cache_dir=cache)), expected)
    assert read_config("someorg/tiny-gliner", cache_dir=cache).span_mode == "markerV0"
    # the spaCy component with a hub id
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": "someorg/tiny-gliner", "cache_dir": str(cache), "labels": LABELS}
    )
    nlp(_doc(nlp, TEXTS[0]))
    _identical(_probs(nlp.get_pipe("gliner").gliner), expected)
    # the HF_HOME-style default cache (HF_HUB_CACHE) without cache_dir
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _identical(_probs(GLiNER.from_pretrained("someorg/tiny-gliner")), expected)


def test_hub_id_not_in_cache_offline(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(CheckpointError, match="someorg/missing-model"):
        GLiNER.from_pretrained("someorg/missing-model", cache_dir=tmp_path / "empty")
    with pytest.raises(CheckpointError, match="does not exist"):
        GLiNER.from_pretrained(str(tmp_path / "no" / "such" / "dir"))


def test_saved_files_share_the_config_files_permissions(default_checkpoint, tmp_path):
    """safetensors writes through a 0600 temporary file; the saved weights get the mode of the
    other files (gliner_config.json, written normally under the process umask)."""
    import stat

    out = GLiNER.from_pretrained(default_checkpoint).save_pretrained(tmp_path / "ckpt")
    mode = lambda name: stat.S_IMODE((out / name).stat().st_mode)  # noqa: E731
    assert mode("model.safetensors") == mode("gliner_config.json")
