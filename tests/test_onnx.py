"""The ONNX Runtime backend: export (``spacy_gliner.export.onnx``), the torch-free runtime
(``spacy_gliner.OnnxGLiNER``) against our torch fp32 engine, and its tokenizer.

Parity here is ONNX fp32 vs our torch fp32 on the same reference checkpoints (the torch path is
pinned to the reference package by ``test_parity.py``): the same candidates (start, end, label)
above threshold and scores within 1e-4, through the engine's windows, label groups and batches;
the same decoded entities, flat and nested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from onnx_helpers import (
    LABELS,
    LONG,
    NO_TORCH,
    TEXTS,
    TOL,
    assert_same_results,
    gap_threshold,
    words_of,
)

from spacy_gliner import GLiNER, GLiNERConfig, OnnxGLiNER
from spacy_gliner.engine import EngineOptions, LabelSet
from spacy_gliner.export.onnx import UnsupportedExport, export_onnx
from spacy_gliner.io import CheckpointError
from spacy_gliner.io.fast_tokenizer import JsonTokenizer, tokenizer_settings
from spacy_gliner.io.onnx_files import read_export
from spacy_gliner.io.tokenizers import PromptTokenizer, Row

ROOT = Path(__file__).resolve().parent.parent
# name -> (encoder, reference config): several span modes, no LSTM, fusion, pooling, DeBERTa
# (WordPiece and SentencePiece tokenizers), token-level.
CONFIGS = {
    "markerV0": ("bert", {}),
    "marker_rnn0": ("bert", {"span_mode": "marker", "num_rnn_layers": 0}),
    "query": ("bert", {"span_mode": "query"}),
    "conv_sum_mean": ("bert", {"span_mode": "conv_sum", "subtoken_pooling": "mean"}),
    "conv_share_max": ("bert", {"span_mode": "conv_share", "subtoken_pooling": "max"}),
    # A reference checkpoint leaves its fuser unused; a model made here applies it ("ours").
    "uni_fusion_applied": ("ours", {"post_fusion_schema": "l2l-l2t-t2t"}),
    "deberta": ("deberta", {}),
    "deberta_spm_last": ("deberta_spm", {"subtoken_pooling": "last", "span_mode": "markerV1"}),
    "token_level": ("bert", {"span_mode": "token_level"}),
}


@pytest.fixture(scope="module")
def exported(reference_checkpoint, bert_dir, tmp_path_factory):
    """``exported(name)``: (torch GLiNER, ONNX export directory), built once per name."""
    cache: dict[str, tuple[GLiNER, Path]] = {}

    def build(name: str) -> tuple[GLiNER, Path]:
        if name not in cache:
            encoder, config = CONFIGS[name]
            if encoder == "ours":
                fresh = GLiNERConfig(
                    model_name=str(bert_dir), hidden_size=32, max_width=4, **config
                )
                ours = GLiNER(fresh)
            else:  # wider heads than the default: scores spread over (0, 1), few near-ties
                ckpt = reference_checkpoint(encoder, head_scale=0.15, **config)
                ours = GLiNER.from_pretrained(ckpt)
            out = tmp_path_factory.mktemp(f"onnx_{name}")
            export_onnx(ours, out, int8=name == "markerV0")
            cache[name] = (ours, out)
        return cache[name]

    return build


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_matches_torch(exported, name):
    """Same candidates and decoded spans as torch fp32 (scores within 1e-4): short texts in one
    batch, a long text in several windows; then labels in groups of two and batches of two rows
    (candidates and scores only: the tiny random model scores the first label of each group
    almost identically, a tie float noise may break either way in decoding)."""
    ours, directory = exported(name)
    onnx = OnnxGLiNER.from_pretrained(directory, threads=1)
    words = [words_of(t) for t in [*TEXTS, LONG]]
    # Token models need start, end and every inside score above it: a lower quantile.
    quantile = 0.5 if name == "token_level" else 0.9
    threshold = gap_threshold(ours, [*TEXTS, " ".join(LONG.split()[:80])], quantile)
    labels = LabelSet.from_labels(LABELS)
    grouped = EngineOptions(max_labels_per_pass=2, batch_size=2)
    for options, decode in ((EngineOptions(), True), (grouped, False)):
        want = ours.engine(options)(words, labels, thresholds=threshold)
        got = onnx.engine(options)(words, labels, thresholds=threshold)
        assert want[-1].num_windows > 1
        assert sum(len(r) for r in want) > 0
        compared = assert_same_results(want, got, decode, threshold)
        assert compared or not decode  # decodings were compared on some texts


def test_entities_api_matches_torch(exported):
    ours, directory = exported("markerV0")
    onnx = OnnxGLiNER.from_pretrained(directory)
    threshold = gap_threshold(ours, TEXTS)
    for flat in (True, False):
        want = ours.inference(TEXTS, LABELS, threshold=threshold, flat_ner=flat)
        got = onnx.inference(TEXTS, LABELS, threshold=threshold, flat_ner=flat)
        assert [[(e["start"], e["end"], e["label"]) for e in t] for t in want] == [
            [(e["start"], e["end"], e["label"]) for e in t] for t in got
        ]
    first = onnx.inference(TEXTS[:1], LABELS, threshold=threshold)[0]
    assert onnx.predict_entities(TEXTS[0], LABELS, threshold=threshold) == first
    odd = ["", "   ", None, 7]  # as GLiNER: no words, no entities
    assert onnx.inference(odd, LABELS) == ours.inference(odd, LABELS) == [[], [], [], []]
    with pytest.raises(ValueError, match="Duplicate"):
        onnx.inference(TEXTS, ["person", "person"])


@pytest.mark.parametrize("encoder", ["bert", "deberta_spm"])
def test_json_tokenizer_builds_the_same_ids(reference_checkpoint, tmp_path, encoder):
    """``tokenizer.json`` read by the tokenizers library gives the transformers tokenizer's ids:
    specials, per-word ids, prompts and assembled encoder inputs."""
    ours = GLiNER.from_pretrained(reference_checkpoint(encoder))
    path = tmp_path / "tokenizer.json"
    ours.tokenizer.backend_tokenizer.save(str(path))
    plain = PromptTokenizer(
        JsonTokenizer.from_file(path, tokenizer_settings(ours.tokenizer)), ours.config
    )
    hf = ours.prompts
    for a, b in ((plain.prefix, hf.prefix), (plain.suffix, hf.suffix)):
        np.testing.assert_array_equal(a, b)
    assert (plain.num_special, plain.pad_id, plain.left_pad) == (
        hf.num_special,
        hf.pad_id,
        hf.left_pad,
    )
    assert sorted(plain.reserved_tokens()) == sorted(hf.reserved_tokens())
    words = [words_of(t) for t in [*TEXTS, "naïve café Zürich — ½ 東京", LONG]]
    for a, b in zip(plain.tokenize_words(words), hf.tokenize_words(words)):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.offsets, b.offsets)
    groups = [LABELS, ["sports team", "e-mail address"]]
    prompts = plain.prompt_ids(groups)
    for a, b in zip(prompts, hf.prompt_ids(groups)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain.word_token_counts(LABELS), hf.word_token_counts(LABELS))
    tokens = plain.tokenize_words(words)
    rows = [Row(t, 0, len(w), prompts[0]) for t, w in zip(tokens, words)]
    got, cut = plain.assemble_arrays(rows, 64)
    want, want_cut = hf.assemble_arrays(rows, 64)
    assert cut == want_cut
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


BLOCKER = NO_TORCH + textwrap.dedent(
    """
    import json, sys
    from spacy_gliner import OnnxGLiNER

    model = OnnxGLiNER.from_pretrained(sys.argv[1])
    texts, labels, threshold = json.loads(sys.argv[2])
    flat = model.inference(texts, labels, threshold=threshold)
    nested = model.inference(texts, labels, threshold=threshold, flat_ner=False)
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "transformers"))
    print(json.dumps({"flat": flat, "nested": nested, "loaded": loaded}))
    """
)


def test_runs_without_torch(exported):
    """In a process where importing torch or transformers fails, an export loads and predicts
    the torch fp32 entities (scores within 1e-4)."""
    ours, directory = exported("markerV0")
    texts = [*TEXTS, LONG]
    threshold = gap_threshold(ours, TEXTS)
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    args = json.dumps([texts, LABELS, threshold])
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(directory), args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    for key, flat in (("flat", True), ("nested", False)):
        want = ours.inference(texts, LABELS, threshold=threshold, flat_ner=flat)
        assert sum(len(t) for t in want) > 0
        for a, b in zip(want, out[key]):
            assert [(e["start"], e["end"], e["label"]) for e in a] == [
                (e["start"], e["end"], e["label"]) for e in b
            ]
            np.testing.assert_allclose(
                [e["score"] for e in a], [e["score"] for e in b], atol=TOL, rtol=0
            )


def test_int8_export_runs(exported):
    """``model_int8.onnx`` loads and finds entities; its agreement is reported, not gated (a
    random tiny model is no measure of int8 accuracy; bench/precision_rows.py measures it)."""
    ours, directory = exported("markerV0")
    int8 = OnnxGLiNER.from_pretrained(directory, int8=True)
    threshold = gap_threshold(ours, TEXTS)
    got = int8.inference([*TEXTS, LONG], LABELS, threshold=threshold)
    want = ours.inference([*TEXTS, LONG], LABELS, threshold=threshold)
    assert sum(len(t) for t in got) > 0
    same = sum(
        {(e["start"], e["end"], e["label"]) for e in a}
        == {(e["start"], e["end"], e["label"]) for e in b}
        for a, b in zip(want, got)
    )
    print(f"int8: {same} of {len(want)} texts with the fp32 entities")


def test_unsupported_architectures_raise(reference_checkpoint, tmp_path):
    ours = GLiNER.from_pretrained(reference_checkpoint("bert", labels_encoder="labels_bert"))
    with pytest.raises(UnsupportedExport, match="span-level bi-encoder"):
        export_onnx(ours, tmp_path / "bi")
    assert not (tmp_path / "bi" / "model.onnx").exists()


def test_missing_export_says_how_to_make_one(default_checkpoint, exported, tmp_path):
    with pytest.raises(CheckpointError, match="--onnx"):
        OnnxGLiNER.from_pretrained(default_checkpoint)
    _, directory = exported("query")
    with pytest.raises(CheckpointError, match="--int8"):
        read_export(directory, int8=True)


def test_cli_export_onnx(default_checkpoint, tmp_path, capsys):
    from spacy_gliner.cli.main import main

    out = tmp_path / "exported"
    assert main(["export", str(default_checkpoint), str(out), "--onnx", "--int8"]) == 0
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json", "gliner_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert OnnxGLiNER.from_pretrained(out, int8=True).predict_entities("Obama", LABELS) == []
    assert main(["export", str(default_checkpoint), str(tmp_path / "x"), "--int8"]) == 2
    assert "use it with --onnx" in capsys.readouterr().err


def test_int8_export_leaves_logging_alone(default_checkpoint, tmp_path):
    """Importing onnxruntime's quantizer calls ``logging.basicConfig(level=INFO)``; an export in a
    fresh process keeps the root logger as it was (no handler, WARNING), and prints nothing
    through it (not the quantizer's advice to pre-process, which cannot run on these graphs)."""
    script = textwrap.dedent(
        """
        import logging, sys
        from spacy_gliner.cli.main import main
        code = main(["export", sys.argv[1], sys.argv[2], "--onnx", "--int8"])
        root = logging.getLogger()
        print("ROOT", code, len(root.handlers), logging.getLevelName(root.level))
        """
    )
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(default_checkpoint), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ROOT 0 0 WARNING"
    assert ":root:" not in proc.stderr and "[INFO]" not in proc.stderr, proc.stderr[-3000:]
