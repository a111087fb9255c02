"""spaCy's own command-line tools on a gliner pipeline (apply, evaluate, benchmark speed,
find-threshold, package), run as subprocesses, and displaCy's colours for zero-shot labels.

The tiny random checkpoint scores every span near 0.47, so the gold entities are the pipeline's own
predictions at a threshold ``t`` on find-threshold's grid: at ``t`` the pipeline is exactly right
(ents_f = 1.0), at other thresholds it is not, which shows that each tool really runs the model
and that find-threshold's threshold reaches the component.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy
import pytest
import spacy
from spacy import displacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Corpus

from spacy_gliner.cli.main import main as gliner_cli
from spacy_gliner.component.colors import (
    GLINER_COLORS,
    PALETTE,
    displacy_options,
    label_color,
)

ROOT = Path(__file__).resolve().parent.parent
LABELS = "person,location"
N_TRIALS = 26  # find-threshold's grid: numpy.linspace(0, 1, 26), a step of 0.04
TEXTS = [
    "Barack Obama visited Paris in 2009.",
    "Mary lives in London.",
    "John Smith founded a company in New York.",
    "The queen of France lived near the river.",
    "Google and Apple are companies.",
    "Obama was born in Hawaii.",
    "The president of the country won the cup.",
    "Microsoft was founded in the city of Paris.",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _spacy(*args: str, cwd: Path) -> str:
    """Run ``python -m spacy ARGS``; returns stdout + stderr, fails the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def _ents(doc: Doc) -> list[tuple[int, int, str]]:
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]


@pytest.fixture(scope="module")
def tools(tmp_path_factory, default_checkpoint) -> dict:
    """``pipe``: ``spacy-gliner init`` with the default threshold 0.5; ``pipe_t``: the same at the
    grid threshold ``t``; ``dev.spacy``: the texts with ``pipe_t``'s predictions as gold
    (``doc.ents`` and ``doc.spans["sc"]``)."""
    tmp = tmp_path_factory.mktemp("spacy_tools")
    assert gliner_cli(["init", str(tmp / "pipe"), "--model", str(default_checkpoint),
                       "--labels", LABELS]) == 0  # fmt: skip
    nlp = spacy.load(tmp / "pipe")
    pipe = nlp.get_pipe("gliner")
    # The highest grid threshold at which the pipeline finds at least 3 entities.
    for grid_value in reversed(numpy.linspace(0, 1, N_TRIALS)):
        t = float(grid_value)
        pipe.cfg["threshold"] = t
        predicted = list(nlp.pipe(TEXTS))
        if sum(len(doc.ents) for doc in predicted) >= 3:
            break
    else:
        pytest.fail("the checkpoint finds nothing at any threshold")
    # repr round-trips the float exactly: pipe_t's threshold is the grid value itself.
    assert gliner_cli(["init", str(tmp / "pipe_t"), "--model", str(default_checkpoint),
                       "--labels", LABELS, "--threshold", repr(t)]) == 0  # fmt: skip
    blank = spacy.blank("en")
    gold = DocBin()
    for doc in predicted:
        ref = blank(doc.text)
        ref.ents = [Span(ref, e.start, e.end, e.label_) for e in doc.ents]
        ref.spans["sc"] = list(ref.ents)
        gold.add(ref)
    gold.to_disk(tmp / "dev.spacy")
    return {"dir": tmp, "t": t, "gold": [_ents(doc) for doc in predicted]}


def test_apply(tools):
    tmp = tools["dir"]
    _spacy("apply", "pipe_t", "dev.spacy", "applied.spacy", "--batch-size", "4", cwd=tmp)
    docs = list(DocBin().from_disk(tmp / "applied.spacy").get_docs(spacy.blank("en").vocab))
    assert [doc.text for doc in docs] == TEXTS
    assert [_ents(doc) for doc in docs] == tools["gold"]
    for doc in docs:  # the scored spans travel in the DocBin, one score per span
        group = doc.spans["sc"]
        assert len(group.attrs["scores"]) == len(group)
        assert all(score > tools["t"] for score in group.attrs["scores"])


def test_evaluate(tools):
    tmp = tools["dir"]
    out = _spacy("evaluate", "pipe_t", "dev.spacy", "--output", "scores.json", cwd=tmp)
    assert "NER F" in out
    scores = json.loads((tmp / "scores.json").read_text())
    assert scores["ents_f"] == 1.0
    assert scores["spans_sc_f"] == 1.0
    assert set(scores["ents_per_type"]) <= {"person", "location"}
    assert scores["speed"] > 0


def test_benchmark_speed(tools):
    out = _spacy("benchmark", "speed", "pipe_t", "dev.spacy", "--batches", "30",
                 "--batch-size", "4", "--warmup", "1", cwd=tools["dir"])  # fmt: skip
    assert re.search(r"Mean: [\d.]+ words/s", out), out


def test_find_threshold(tools):
    """find-threshold reloads the pipeline per trial and sets ``pipe.cfg["threshold"]``; the
    component reads it at every call, so the scores change with it and the best one is real."""
    tmp = tools["dir"]
    out = _spacy("find-threshold", "pipe", "dev.spacy", "gliner", "threshold", "ents_f",
                 "--n_trials", str(N_TRIALS), cwd=tmp)  # fmt: skip
    table = {
        float(threshold): float(score)
        for threshold, score in re.findall(r"^([\d.]+)\s+([\d.]+)\s*$", out, flags=re.M)
    }
    assert len(table) == N_TRIALS, out
    assert table[round(tools["t"], 3)] == 1.0
    assert min(table.values()) < 1.0  # the threshold took effect
    found = re.search(r"Best threshold: ([\d.]+) with ents_f value of ([\d.]+)\.", out)
    assert found, out
    best, best_score = float(found.group(1)), float(found.group(2))
    assert best_score == 1.0
    # Re-evaluate the saved pipeline (threshold 0.5) with the reported threshold set.
    nlp = spacy.load(tmp / "pipe")
    nlp.get_pipe("gliner").cfg["threshold"] = best
    examples = list(Corpus(str(tmp / "dev.spacy"))(nlp))
    assert nlp.evaluate(examples)["ents_f"] == best_score


def test_package(tools):
    """``spacy package`` builds an sdist that declares spacy-gliner; with a LICENSE and
    LICENSES_SOURCES in the pipeline directory and a license in meta.json, and ``build``
    installed (the test extra), it builds without a single warning."""
    tmp = tools["dir"]
    src = tmp / "pipe_t"
    (src / "LICENSE").write_text("MIT License (test pipeline)\n")
    (src / "LICENSES_SOURCES").write_text("test checkpoint: MIT\n")
    meta = json.loads((src / "meta.json").read_text())
    meta["license"] = "MIT"
    (src / "meta.json").write_text(json.dumps(meta))
    (tmp / "packages").mkdir()
    out = _spacy("package", "pipe_t", "packages", "--name", "gliner_tools", "--version", "0.0.1",
                 "--build", "sdist", "--force", cwd=tmp)  # fmt: skip
    warnings = [line for line in out.splitlines() if "warn" in line.lower() or "⚠" in line]
    assert not warnings, warnings
    assert "no files found matching" not in out, out
    main_dir = tmp / "packages" / "en_gliner_tools-0.0.1"
    meta = json.loads((main_dir / "meta.json").read_text())
    assert any(req.startswith("spacy-gliner") for req in meta["requirements"])
    with tarfile.open(main_dir / "dist" / "en_gliner_tools-0.0.1.tar.gz") as tar:
        names = {Path(name).name for name in tar.getnames()}
    assert {"LICENSE", "LICENSES_SOURCES", "model.safetensors", "gliner_config.json"} <= names
    # The packaged data loads and predicts like the pipeline it was made from.
    nlp = spacy.load(main_dir / "en_gliner_tools" / "en_gliner_tools-0.0.1")
    assert [_ents(doc) for doc in nlp.pipe(TEXTS)] == tools["gold"]


# ------------------------------------------------------------------- displaCy colours


def _mark_colors(html: str) -> dict[str, str]:
    """{label: background} of displaCy's entity marks."""
    found = re.findall(r'background: (#[0-9a-f]+);.*?vertical-align: middle[^>]*>([^<]+)</span>',
                       html, flags=re.S)  # fmt: skip
    return {label: color for color, label in found}


def test_displacy_entry_point_colors():
    """Through the ``spacy_displacy_colors`` entry point, displacy colours zero-shot labels with no
    options; labels spaCy knows keep spaCy's colour ("person" looks like PERSON)."""
    from importlib.metadata import entry_points

    assert "gliner" in {ep.name for ep in entry_points(group="spacy_displacy_colors")}, (
        "entry point missing: reinstall (pip install -e .); a stale spacy_gliner.egg-info in the "
        "repository root (first on sys.path) also hides it"
    )
    doc = spacy.blank("en")("Mary has cancer and takes aspirin in Paris")
    doc.ents = [Span(doc, 0, 1, "person"), Span(doc, 2, 3, "disease"),
                Span(doc, 5, 6, "drug"), Span(doc, 7, 8, "location")]  # fmt: skip
    colors = _mark_colors(displacy.render(doc, style="ent"))
    assert colors == {
        "person": "#aa9cfc",  # spaCy's PERSON
        "disease": GLINER_COLORS["disease"],
        "drug": GLINER_COLORS["drug"],
        "location": GLINER_COLORS["location"],
    }
    assert "#ddd" not in colors.values()  # displaCy's default grey
    assert len(set(colors.values())) == 4


def test_displacy_options_cover_every_label(default_checkpoint):
    labels = ["person", "Disease", "spaceship part", "XYZ"]
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(default_checkpoint), "labels": labels})
    options = displacy_options(nlp)
    assert set(options["colors"]) == set(labels)
    assert options["colors"]["Disease"] == GLINER_COLORS["disease"]
    assert options["colors"]["spaceship part"] == label_color("spaceship part") in PALETTE
    assert displacy_options(labels) == options
    assert displacy_options({"PER": "person"}) == {"colors": {"PER": label_color("per")}}
    doc = nlp.make_doc("a spaceship part and XYZ")
    doc.ents = [Span(doc, 1, 3, "spaceship part"), Span(doc, 4, 5, "XYZ")]
    colors = _mark_colors(displacy.render(doc, style="ent", options=options))
    assert colors == {"spaceship part": label_color("spaceship part"), "XYZ": label_color("xyz")}


def test_label_color_is_stable():
    # CRC-32 of the lowercased label: the same in every process and Python version.
    assert label_color("spaceship part") == label_color("  Spaceship Part ")
    assert label_color("foo") == "#ffd8a8"
    assert len(PALETTE) == 24 and len(set(PALETTE)) == 24
    assert all(GLINER_COLORS[k.upper()] == v for k, v in GLINER_COLORS.items())
    assert len({k.lower() for k in GLINER_COLORS}) >= 60
    # Installing spacy-gliner changes no colour of spaCy's own labels (other pipelines look the same).
    from spacy.displacy.render import DEFAULT_LABEL_COLORS

    assert all(GLINER_COLORS.get(k, v) == v for k, v in DEFAULT_LABEL_COLORS.items())


def test_displacy_span_style_uses_the_colors():
    doc = spacy.blank("en")("Mary has cancer")
    doc.spans["sc"] = [Span(doc, 0, 1, "person"), Span(doc, 2, 3, "disease")]
    html = displacy.render(doc, style="span", options={"spans_key": "sc"})
    assert GLINER_COLORS["disease"] in html
