"""The ``gliner`` component with ``runtime: "onnxruntime"`` (``component/onnx_pipe.py``) against
the torch component on the same checkpoint: the same Docs (``doc.ents``, ``doc.spans`` and
their scores within 1e-4; a cell within 1e-4 of the threshold may differ, as in
``test_onnx.py``), flat and nested, long Docs in windows, labels in groups, per-Doc labels;
saving and loading (offline, from the pipeline's own copy of the export); a process where
importing torch or transformers fails; and the errors that say what to do instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import spacy
from onnx_helpers import LABELS, LONG, NO_TORCH, TEXTS, TOL, assert_same_results, gap_threshold
from spacy.training import Example

from spacy_gliner import GLiNER
from spacy_gliner.export.onnx import export_onnx
from spacy_gliner.io import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*TEXTS, LONG]
# name -> reference config of the checkpoint (span-level markerV0 + LSTM; token-level).
CONFIGS = {"markerV0": {}, "token_level": {"span_mode": "token_level"}}


@pytest.fixture(scope="module")
def exported(reference_checkpoint, tmp_path_factory):
    """``exported(name)``: (checkpoint directory, its ONNX export directory, a threshold in a gap
    of the torch scores of ``DOCS``' words), built once per name; markerV0 also gets int8."""
    cache: dict[str, tuple[Path, Path, float]] = {}

    def build(name: str) -> tuple[Path, Path, float]:
        if name not in cache:
            checkpoint = reference_checkpoint("bert", head_scale=0.15, **CONFIGS[name])
            ours = GLiNER.from_pretrained(checkpoint)
            out = tmp_path_factory.mktemp(f"onnx_pipe_{name}")
            export_onnx(ours, out, int8=name == "markerV0")
            # Token models need start, end and every inside score above it: a lower quantile.
            quantile = 0.5 if name == "token_level" else 0.9
            texts = [*TEXTS, " ".join(LONG.split()[:80])]
            threshold = gap_threshold(ours, texts, quantile, split=_spacy_words)
            cache[name] = (checkpoint, out, threshold)
        return cache[name]

    return build


def _spacy_words(text: str) -> list[str]:
    """The component's words of ``text``: the non-space tokens of a blank English pipeline."""
    return [t.text for t in spacy.blank("en").make_doc(text) if not t.is_space]


def _nlp(model: str | Path, runtime: str = "torch", **config) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(model), "runtime": runtime, **config})
    return nlp


def _spans(doc) -> dict[str, list[tuple[int, int, str]]]:
    return {
        "ents": [(e.start, e.end, e.label_) for e in doc.ents],
        "spans": [(s.start, s.end, s.label_) for s in doc.spans["sc"]],
    }


def _assert_same_docs(torch_nlp, onnx_nlp, texts, threshold, labels=None) -> list[int]:
    """Both pipelines' results (``predict``) agree as ``assert_same_results`` says, and their
    Docs (``nlp.pipe``, two Docs per batch) have the same ``doc.ents`` and ``doc.spans`` for every
    Doc with identical candidates and no near-tied scores (others may decode a tie either way);
    ``doc.spans`` scores within TOL. Returns the indices of the Docs compared."""
    docs = {}
    for key, nlp in (("torch", torch_nlp), ("onnx", onnx_nlp)):
        made = [nlp.make_doc(t) for t in texts]
        for doc, doc_labels in zip(made, labels or [None] * len(made)):
            doc._.gliner_labels = doc_labels
        results = nlp.get_pipe("gliner").predict(made)
        docs[key] = (results, list(nlp.pipe(made, batch_size=2)))
    compared = assert_same_results(docs["torch"][0], docs["onnx"][0], False, threshold)
    for i in compared:
        a, b = docs["torch"][1][i], docs["onnx"][1][i]
        assert _spans(a) == _spans(b)
        np.testing.assert_allclose(
            a.spans["sc"].attrs["scores"], b.spans["sc"].attrs["scores"], atol=TOL, rtol=0
        )
    return compared


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("flat_ner", [True, False])
def test_component_matches_torch(exported, name, flat_ner):
    """Same Docs as the torch component: short Docs and a long one in windows, with all labels
    in one prompt and with labels in groups of two (``max_labels_per_pass``) and batches of two
    rows; entities are found, and Docs were compared."""
    checkpoint, directory, threshold = exported(name)
    for options in ({}, {"max_labels_per_pass": 2, "batch_size": 2}):
        config = {"labels": LABELS, "threshold": threshold, "flat_ner": flat_ner, **options}
        torch_nlp = _nlp(checkpoint, **config)
        onnx_nlp = _nlp(directory, "onnxruntime", **config)
        compared = _assert_same_docs(torch_nlp, onnx_nlp, DOCS, threshold)
        long_doc = onnx_nlp(LONG)
        assert long_doc._.gliner_windows > 1
        groups = 2 if options else 1
        assert long_doc._.gliner_label_groups == groups
        assert len(long_doc.ents) > 0
        assert compared, "no Doc's decoding was compared"


def test_per_doc_labels_and_thresholds(exported):
    """``doc._.gliner_labels`` (names, or a {label: prompt} dict) and per-label thresholds give
    the torch component's Docs; every label written is one of the Doc's."""
    checkpoint, directory, threshold = exported("markerV0")
    per_label = {"default": threshold, "location": min(1.0, threshold + 0.01)}
    config = {"labels": LABELS, "threshold": per_label}
    labels = [None, ["person", "city"], {"org": "organization", "date": "date"}, None, ["date"]]
    torch_nlp, onnx_nlp = _nlp(checkpoint, **config), _nlp(directory, "onnxruntime", **config)
    assert _assert_same_docs(torch_nlp, onnx_nlp, DOCS, threshold, labels)
    for text, doc_labels in zip(DOCS, labels):
        doc = onnx_nlp.make_doc(text)
        doc._.gliner_labels = doc_labels
        written = {e.label_ for e in onnx_nlp(doc).ents}
        assert written <= set(doc_labels or LABELS)


def test_labels_and_evaluate(exported):
    """``add_label`` / ``set_labels`` take effect, and ``nlp.evaluate`` scores the onnxruntime
    Docs as the torch ones (against the torch Docs: both perfect)."""
    checkpoint, directory, threshold = exported("markerV0")
    torch_nlp = _nlp(checkpoint, labels=LABELS, threshold=threshold)
    onnx_nlp = _nlp(directory, "onnxruntime", labels=LABELS[:2], threshold=threshold)
    pipe = onnx_nlp.get_pipe("gliner")
    assert pipe.add_label("organization") == 1 and pipe.add_label("person") == 0
    pipe.set_labels({name: name for name in LABELS})
    assert pipe.labels == tuple(LABELS)
    with pytest.raises(ValueError, match="Duplicate"):
        pipe.set_labels(["person", "person"])
    assert pipe.labels == tuple(LABELS)
    gold = list(torch_nlp.pipe(TEXTS))
    examples = [Example(onnx_nlp.make_doc(d.text), d) for d in gold]
    torch_scores = torch_nlp.evaluate([Example(torch_nlp.make_doc(d.text), d) for d in gold])
    onnx_scores = onnx_nlp.evaluate(examples)
    assert torch_scores["ents_f"] == onnx_scores["ents_f"] == 1.0
    assert onnx_scores["spans_sc_f"] == 1.0


def test_save_load_runs_from_its_own_copy(exported, tmp_path):
    """``nlp.to_disk`` + ``spacy.load`` (and ``to_bytes`` / ``from_bytes``) give the same Docs
    after the export directory the pipeline was built from is deleted; labels added after
    construction are kept."""
    _, directory, threshold = exported("markerV0")
    source = tmp_path / "export"
    shutil.copytree(directory, source)
    nlp = _nlp(source, "onnxruntime", labels=LABELS[:3], threshold=threshold, flat_ner=False)
    nlp.get_pipe("gliner").add_label("date")
    want = [_spans(d) for d in nlp.pipe(DOCS)]
    data = nlp.to_bytes()
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(source)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("gliner").labels == tuple(LABELS)
    assert [_spans(d) for d in loaded.pipe(DOCS)] == want
    loaded.to_disk(tmp_path / "pipeline")  # saving where it was loaded from keeps the copy
    loaded.to_disk(tmp_path / "again")
    assert [_spans(d) for d in spacy.load(tmp_path / "again").pipe(DOCS)] == want
    blank = _nlp(source, "onnxruntime", labels=LABELS[:1])
    blank.from_bytes(data)
    assert [_spans(d) for d in blank.pipe(DOCS)] == want
    int8 = spacy.load(tmp_path / "pipeline", config={"components": {"gliner": {"dtype": "int8"}}})
    assert sum(len(d.ents) for d in int8.pipe(DOCS)) > 0


def test_command_line_on_a_saved_onnx_pipeline(exported, tmp_path, capsys):
    """``spacy-gliner annotate --model PIPELINE`` runs a saved ONNX pipeline (with the command
    line's threshold) and writes what ``nlp.pipe`` gives; ``spacy-gliner export`` says there are
    no torch weights in it and where its export files are."""
    from spacy_gliner.cli.main import main

    _, directory, threshold = exported("markerV0")
    _nlp(directory, "onnxruntime", labels=LABELS, threshold=0.99).to_disk(tmp_path / "pipeline")
    source = tmp_path / "in.txt"
    source.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["annotate", str(source), str(out), "--model", str(tmp_path / "pipeline")]
    assert main([*args, "--threshold", str(threshold), "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    nlp = spacy.load(tmp_path / "pipeline")
    nlp.get_pipe("gliner").cfg["threshold"] = threshold  # saved settings win over config
    want = [[(s.start_char, s.end_char, s.label_) for s in d.spans["sc"]] for d in nlp.pipe(DOCS)]
    assert [[(s["start"], s["end"], s["label"]) for s in row["spans"]] for row in rows] == want
    assert sum(len(w) for w in want) > 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "pipeline"), str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err
    assert "ONNX export" in err and str(tmp_path / "pipeline" / "gliner" / "onnx") in err


BLOCKER = NO_TORCH + textwrap.dedent(
    """
    import json, sys
    import spacy

    directory, saved, texts, labels, threshold = json.loads(sys.argv[1])
    nlp = spacy.blank("en")
    config = {"runtime": "onnxruntime", "model": directory, "labels": labels,
              "threshold": threshold}
    nlp.add_pipe("gliner", config=config)
    out = {}
    for key, pipeline in (("built", nlp), ("loaded", spacy.load(saved))):
        docs = list(pipeline.pipe(texts))
        out[key] = [[[e.start, e.end, e.label_] for e in doc.ents] for doc in docs]
    out["modules"] = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "transformers"))
    print(json.dumps(out))
    """
)


def test_runs_without_torch(exported, tmp_path):
    """In a process where importing torch or transformers fails, ``spacy.blank`` + ``add_pipe``
    and ``spacy.load`` of a saved pipeline annotate Docs as the component does here, which are
    the torch component's entities wherever a decoding is well defined (``_assert_same_docs``)."""
    checkpoint, directory, threshold = exported("markerV0")
    config = {"labels": LABELS, "threshold": threshold}
    onnx_nlp, torch_nlp = _nlp(directory, "onnxruntime", **config), _nlp(checkpoint, **config)
    onnx_nlp.to_disk(tmp_path / "saved")
    compared = _assert_same_docs(torch_nlp, onnx_nlp, DOCS, threshold)
    want = [[[e.start, e.end, e.label_] for e in doc.ents] for doc in onnx_nlp.pipe(DOCS)]
    assert sum(len(w) for w in want) > 0 and compared
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    args = json.dumps([str(directory), str(tmp_path / "saved"), DOCS, LABELS, threshold])
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    assert out["built"] == out["loaded"] == want


PROCESSES = """
import json, multiprocessing, sys
import spacy

if __name__ == "__main__":
    method, directory, texts, labels, threshold = json.loads(sys.argv[1])
    multiprocessing.set_start_method(method, force=True)
    nlp = spacy.blank("en")
    config = {"runtime": "onnxruntime", "model": directory, "labels": labels, "threshold": threshold}
    nlp.add_pipe("gliner", config=config)
    ents = lambda docs: [[[e.start, e.end, e.label_] for e in d.ents] for d in docs]
    one = ents(nlp.pipe(texts, batch_size=2))  # the parent has loaded the export
    two = ents(nlp.pipe(texts, batch_size=2, n_process=2))
    print(json.dumps({"one": one, "two": two}))
"""


def test_threads(exported):
    """First use from several threads at once gives the sequential Docs."""
    _, directory, threshold = exported("markerV0")
    config = {"labels": LABELS, "threshold": threshold, "flat_ner": False}
    want = [_spans(d) for d in _nlp(directory, "onnxruntime", **config).pipe(DOCS)]
    nlp = _nlp(directory, "onnxruntime", **config)
    with ThreadPoolExecutor(4) as pool:
        assert [_spans(d) for d in pool.map(nlp, DOCS * 2)] == want * 2


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_n_process_2(exported, tmp_path, method):
    """``nlp.pipe(n_process=2)`` after the parent has loaded the export gives the one-process
    Docs (under spawn the pipe is pickled without its session and loads the export in the
    child)."""
    _, directory, threshold = exported("markerV0")
    script = tmp_path / "processes.py"
    script.write_text(PROCESSES)
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "TOKENIZERS_PARALLELISM": "false"}
    args = json.dumps([method, str(directory), DOCS, LABELS, threshold])
    proc = subprocess.run(
        [sys.executable, str(script), args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["two"] == out["one"] and any(out["one"])


def test_int8(exported, tmp_path):
    """dtype int8 runs the export's model_int8.onnx and finds entities (its agreement with
    float32 is not gated on a tiny random model); an export without it says how to write it."""
    _, directory, threshold = exported("markerV0")
    nlp = _nlp(directory, "onnxruntime", labels=LABELS, threshold=threshold, dtype="int8")
    assert sum(len(doc.ents) for doc in nlp.pipe(DOCS)) > 0
    _, float_only, _ = exported("token_level")
    with pytest.raises(CheckpointError, match="--int8"):
        _nlp(float_only, "onnxruntime", labels=LABELS, dtype="int8")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"dtype": "float16"}, "model_int8.onnx"),
        ({"dtype": "bfloat16"}, "runtime 'onnxruntime'"),
        ({"device": "cuda"}, "CPU only"),
        ({"relations": ["works for"]}, "relation extraction"),
        ({"use_generated_labels": True}, "label-decoder"),
        ({"return_vectors": True}, "vectors"),
        ({"cache_dir": "/tmp"}, "cache_dir"),
        ({"runtime": "tensorflow"}, "runtime must be one of"),
    ],
)
def test_settings_it_cannot_run_raise_at_add_pipe(exported, config, match):
    _, directory, _ = exported("markerV0")
    settings = {"runtime": "onnxruntime", "model": str(directory), "labels": LABELS, **config}
    with pytest.raises(ValueError, match=match):
        spacy.blank("en").add_pipe("gliner", config=settings)


def test_model_errors_say_how_to_export(exported, default_checkpoint, tmp_path):
    """No model string (the torch model block), a torch checkpoint, a missing directory (found
    on initialize or first use: ``spacy.load`` makes the pipe before giving it its copy), and a
    pipeline saved by the torch runtime each say how to make an export."""
    with pytest.raises(ValueError, match="spacy-gliner export MODEL DIR --onnx"):
        spacy.blank("en").add_pipe("gliner", config={"runtime": "onnxruntime"})
    with pytest.raises(CheckpointError, match="spacy-gliner export MODEL DIR --onnx"):
        _nlp(default_checkpoint, "onnxruntime", labels=LABELS)
    missing = _nlp(tmp_path / "missing", "onnxruntime", labels=LABELS)
    with pytest.raises(CheckpointError, match="spacy-gliner export MODEL DIR --onnx"):
        missing.initialize()
    with pytest.raises(CheckpointError, match="spacy-gliner export MODEL DIR --onnx"):
        missing("Barack Obama")
    _nlp(default_checkpoint, labels=LABELS).to_disk(tmp_path / "torch_pipeline")
    onnx = {"components": {"gliner": {"runtime": "onnxruntime"}}}
    with pytest.raises(CheckpointError, match="spacy-gliner export MODEL DIR --onnx"):
        spacy.load(tmp_path / "torch_pipeline", config=onnx)  # model: the torch checkpoint
    _, directory, _ = exported("markerV0")
    onnx["components"]["gliner"]["model"] = str(directory)
    with pytest.raises(ValueError, match="spacy-gliner export PIPELINE DIR --onnx"):
        spacy.load(tmp_path / "torch_pipeline", config=onnx)


def test_training_raises(exported):
    """The runtime is inference only: ``initialize`` with annotated examples and ``update``
    raise saying to train with torch and export; ``initialize`` without examples loads."""
    _, directory, threshold = exported("markerV0")
    nlp = _nlp(directory, "onnxruntime", labels=LABELS, threshold=threshold)
    doc = nlp.make_doc("Barack Obama was born in Hawaii .")
    example = Example.from_dict(doc, {"entities": [(0, 12, "person")]})
    with pytest.raises(ValueError, match=r"inference only.*runtime 'torch'"):
        nlp.initialize(lambda: [example])
    with pytest.raises(ValueError, match=r"inference only.*spacy-gliner export"):
        nlp.get_pipe("gliner").update([example])
    nlp.initialize()
    assert nlp.get_pipe("gliner").is_trainable is False
    assert nlp("Barack Obama was born in Hawaii .").has_annotation("ENT_IOB")
