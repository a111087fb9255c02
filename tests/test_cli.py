"""The ``spacy-gliner`` command line: annotate (.txt / .jsonl / directory / DocBin output), init,
export, one-line errors with exit code 2, and resuming after SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
from helpers import WORDS

from spacy_gliner import GLiNER
from spacy_gliner.cli.main import main
from spacy_gliner.cli.models import portable_names

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["person", "location", "organization"]
THRESHOLD = 0.45
TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris in 2009.",
    "Google and Apple are companies in New York; Mary works at Google.",
    "",
    "the king and the queen of France lived in a house near the river",
    "Obama",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _annotate_args(source: Path, out: Path, model: Path, *extra: str) -> list[str]:
    labels = ",".join(LABELS)
    return [
        "annotate",
        str(source),
        str(out),
        "--model",
        str(model),
        "--labels",
        labels,
        "--threshold",
        str(THRESHOLD),
        *extra,
    ]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def _nlp(checkpoint: Path):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"model": str(checkpoint), "labels": LABELS, "threshold": THRESHOLD}
    )
    return nlp


def _expected(nlp, text: str) -> tuple[list[tuple], list[float]]:
    doc = nlp(text)
    group = doc.spans["sc"]
    return [(s.start_char, s.end_char, s.label_) for s in group], list(group.attrs["scores"])


def _assert_rows_match(rows: list[dict], nlp, texts: list[str]) -> None:
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == list(range(len(texts)))
    found = 0
    for row in rows:
        spans, scores = _expected(nlp, row["text"])
        assert [(s["start"], s["end"], s["label"]) for s in row["spans"]] == spans
        assert [s["score"] for s in row["spans"]] == pytest.approx(scores, abs=1e-5)
        found += len(spans)
    assert found > 0  # the comparison is not vacuous


def test_annotate_txt_jsonl_and_directory_match_nlp(default_checkpoint, tmp_path, capsys):
    nlp = _nlp(default_checkpoint)
    txt = tmp_path / "in" / "a.txt"
    txt.parent.mkdir()
    txt.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    jsonl = tmp_path / "in" / "b.jsonl"
    records = [{"body": t, "doc_id": f"d{i}", "tags": [i]} for i, t in enumerate(TEXTS[:2])]
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")

    out = tmp_path / "txt.jsonl"
    assert main(_annotate_args(txt, out, default_checkpoint, "--batch-size", "2")) == 0
    _assert_rows_match(_rows(out), nlp, TEXTS)
    assert "5 texts annotated" in capsys.readouterr().out

    out = tmp_path / "jsonl.jsonl"
    assert main(_annotate_args(jsonl, out, default_checkpoint, "--text-key", "body")) == 0
    rows = _rows(out)
    _assert_rows_match(rows, nlp, TEXTS[:2])
    assert [row["meta"] for row in rows] == [
        {"doc_id": "d0", "tags": [0]},
        {"doc_id": "d1", "tags": [1]},
    ]

    # A directory: its files in sorted order (a.txt, then b.jsonl), the output inside it skipped.
    out = tmp_path / "in" / "out.jsonl"
    args = _annotate_args(txt.parent, out, default_checkpoint, "--text-key", "body")
    assert main(args) == 0
    _assert_rows_match(_rows(out), nlp, TEXTS + TEXTS[:2])

    # DocBin output, then a DocBin as input.
    docbin = tmp_path / "out.spacy"
    assert main(_annotate_args(txt, docbin, default_checkpoint)) == 0
    docs = list(spacy.tokens.DocBin().from_disk(docbin).get_docs(nlp.vocab))
    assert [d.text for d in docs] == TEXTS
    assert [[(s.start_char, s.end_char, s.label_) for s in d.spans["sc"]] for d in docs] == [
        _expected(nlp, t)[0] for t in TEXTS
    ]
    out = tmp_path / "from_docbin.jsonl"
    assert main(_annotate_args(docbin, out, default_checkpoint)) == 0
    _assert_rows_match(_rows(out), nlp, TEXTS)


def test_init_load_annotate_and_export_round_trip(default_checkpoint, tmp_path, capsys):
    pipeline = tmp_path / "pipeline"
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps({"PER": "person", "LOC": "location"}))
    args = [
        "init",
        str(pipeline),
        "--model",
        str(default_checkpoint),
        "--labels-file",
        str(labels_file),
        "--threshold",
        "0.4",
    ]
    assert main(args) == 0
    loaded = spacy.load(pipeline)
    pipe = loaded.get_pipe("gliner")
    assert pipe.cfg["labels"] == {"PER": "person", "LOC": "location"}
    assert pipe.cfg["threshold"] == 0.4
    assert str(default_checkpoint) not in loaded.config.to_str()  # nothing points at this machine

    fresh = spacy.blank("en")
    fresh.add_pipe(
        "gliner",
        config={
            "model": str(default_checkpoint),
            "labels": {"PER": "person", "LOC": "location"},
            "threshold": 0.4,
        },
    )
    for text in TEXTS:
        assert _expected(loaded, text)[0] == _expected(fresh, text)[0]

    # --model may be the saved pipeline: its labels, overridden here by --labels / --threshold.
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(_annotate_args(source, out, pipeline)) == 0
    _assert_rows_match(_rows(out), _nlp(default_checkpoint), TEXTS)

    exported = tmp_path / "exported"
    capsys.readouterr()
    assert main(["export", str(pipeline), str(exported)]) == 0
    assert "warning: model_name is the local path" in capsys.readouterr().err
    ours = GLiNER.from_pretrained(exported, local_files_only=True)
    original = GLiNER.from_pretrained(default_checkpoint)
    for text in TEXTS:
        got = ours.predict_entities(text, LABELS, threshold=THRESHOLD)
        want = original.predict_entities(text, LABELS, threshold=THRESHOLD)
        assert [(e["start"], e["end"], e["label"]) for e in got] == [
            (e["start"], e["end"], e["label"]) for e in want
        ]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-6)


def test_export_points_model_name_at_the_encoder_hub_id():
    config = {
        "model_name": "/tmp/somewhere/enc",
        "encoder_config": {"_name_or_path": "org/encoder"},
    }
    notes = portable_names(config)
    assert config["model_name"] == "org/encoder" and len(notes) == 1
    config = {"model_name": "org/encoder", "encoder_config": {"_name_or_path": "/local/enc"}}
    assert portable_names(config) == [] and config["model_name"] == "org/encoder"


def test_bad_input_is_one_line_with_exit_code_2(default_checkpoint, tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("Obama\n")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "fine"}\n{"text": "broken"\n')
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"body": "x"}\n')
    existing = tmp_path / "existing.jsonl"
    existing.write_text('{"id": 0, "text": "other", "spans": []}\n')
    ckpt = str(default_checkpoint)
    cases = {
        "missing.txt: no such file": _annotate_args(
            tmp_path / "missing.txt", tmp_path / "o1.jsonl", default_checkpoint
        ),
        "bad.jsonl, line 2": _annotate_args(bad_json, tmp_path / "o2.jsonl", default_checkpoint),
        "no string field 'text'": _annotate_args(
            no_text, tmp_path / "o3.jsonl", default_checkpoint
        ),
        "pass --resume": _annotate_args(good, existing, default_checkpoint),
        "does not match input text 0": _annotate_args(
            good, existing, default_checkpoint, "--resume"
        ),
        "give --labels": ["annotate", str(good), str(tmp_path / "o4.jsonl"), "--model", ckpt],
        "not a Hugging Face hub id": _annotate_args(good, tmp_path / "o5.jsonl", tmp_path / "nope"),
        "not a saved spaCy pipeline": ["export", ckpt, str(tmp_path / "e")],
    }
    for expected, args in cases.items():
        assert main(args) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    # The installed entry point (as a real process): one line on stderr, exit code 2.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy_gliner",
            *_annotate_args(bad_json, tmp_path / "o6.jsonl", default_checkpoint),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("spacy-gliner annotate: error:") and proc.stderr.count("\n") == 1


def test_resume_cuts_a_partial_line_and_skips_done_texts(default_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    full = tmp_path / "full.jsonl"
    assert main(_annotate_args(source, full, default_checkpoint, "--batch-size", "2")) == 0
    lines = full.read_bytes().split(b"\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][:10])  # 3 rows + part of the 4th
    assert (
        main(_annotate_args(source, out, default_checkpoint, "--batch-size", "2", "--resume")) == 0
    )
    assert out.read_bytes() == full.read_bytes()
    # Resuming a finished output changes nothing.
    assert (
        main(_annotate_args(source, out, default_checkpoint, "--batch-size", "2", "--resume")) == 0
    )
    assert out.read_bytes() == full.read_bytes()


def _run_until_killed(args: list[str], out: Path, target: int) -> bool:
    """Start annotate; SIGKILL it once OUTPUT holds ``target`` bytes. False if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_gliner", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while proc.poll() is None:
            if out.exists() and out.stat().st_size >= target:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    return False


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(
    default_checkpoint, tmp_path, capsys
):
    rng = random.Random(1234)
    source = tmp_path / "texts.txt"
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(2000)]
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    reference = tmp_path / "reference.jsonl"
    assert main(_annotate_args(source, reference, default_checkpoint, "--batch-size", "8")) == 0
    full = reference.read_bytes()
    assert full.count(b"\n") == 2000

    out = tmp_path / "out.jsonl"
    args = _annotate_args(source, out, default_checkpoint, "--batch-size", "8")
    kills = 0
    for _ in range(3):
        size = out.stat().st_size if out.exists() else 0
        target = size + int(rng.uniform(0.05, 0.4) * (len(full) - size))
        kills += _run_until_killed(args + (["--resume"] if out.exists() else []), out, target)
        data = out.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        assert full.startswith(complete)  # whatever was written so far is right
    assert kills == 3
    # The last rerun in this process (same code as ``python -m spacy_gliner``; one start fewer).
    assert main([*args, "--resume"]) == 0
    assert "already in" in capsys.readouterr().out
    assert out.read_bytes().split(b"\n") == full.split(b"\n")
