"""int8 and bfloat16 against float32 on a trained checkpoint: the README's "int8 on CPU" table.

Per dataset (first ``--n`` dev sentences, the dataset's prompt labels, threshold 0.5): decoded
entities (flat) shared by the low-precision engine and float32 over their union, the share of
float32's entities it also finds, |Δp| over every span x label cell (threshold 0) at the 99th
percentile and the maximum, and CPU time against float32 (``time.process_time`` of the scoring
calls, best of ``--repeats``; the rows alternate).

    python bench/int8_agreement.py --checkpoint project/training/model-best/gliner/model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DTYPES = {"int8": torch.qint8, "bfloat16": torch.bfloat16}


def load(data: Path, name: str, n: int) -> tuple[list[list[str]], LabelSet]:
    meta = json.loads((data / name / "meta.json").read_text())
    with open(data / name / "dev.jsonl") as f:
        rows = [json.loads(line)["tokens"] for line in f]
    labels = sorted(set(meta["prompt_labels"].values()))
    return [r for r in rows if r][:n], LabelSet.from_labels(labels)


def run(engine: Engine, words, labels, threshold: float) -> tuple[dict, float]:
    start = time.process_time()
    results = engine(words, labels, thresholds=threshold)
    cpu = time.process_time() - start
    cells = {
        (i, int(s), int(e), int(k)): float(p)
        for i, r in enumerate(results)
        for s, e, k, p in zip(r.starts, r.ends, r.labels, r.scores)
    }
    return cells, cpu


def entities(engine: Engine, words, labels) -> set:
    results = engine(words, labels, thresholds=0.5)
    return {(i, s, e, k) for i, r in enumerate(results) for s, e, k, _ in r.decode(True, False)}


def row(gliner: GLiNER, dtype: str, words, labels, repeats: int) -> dict:
    full = Engine(gliner)
    low = Engine(gliner, EngineOptions(dtype=DTYPES[dtype]))
    ours, theirs = entities(full, words, labels), entities(low, words, labels)
    times: dict[str, list[float]] = {"full": [], "low": []}
    for _ in range(repeats):
        a, t_full = run(full, words, labels, 0.0)
        b, t_low = run(low, words, labels, 0.0)
        times["full"].append(t_full)
        times["low"].append(t_low)
    diff = np.array([abs(a[k] - b.get(k, 0.0)) for k in a] + [b[k] for k in set(b) - set(a)])
    return {
        "entities": len(ours),
        "shared": len(ours & theirs) / max(1, len(ours | theirs)),
        "found": len(ours & theirs) / max(1, len(ours)),
        "dp_p99": float(np.quantile(diff, 0.99)),
        "dp_max": float(diff.max()),
        "speedup": min(times["full"]) / min(times["low"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", default="conll2003,wnut17,bc5cdr")
    parser.add_argument("--dtypes", default="int8,bfloat16")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    gliner = GLiNER.from_pretrained(args.checkpoint)
    report: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print("| dataset | dtype | entities | shared | found | |Δp| p99 / max | CPU time vs float32 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        words, labels = load(args.data, name, args.n)
        for dtype in args.dtypes.split(","):
            r = report[f"{name}/{dtype}"] = row(gliner, dtype, words, labels, args.repeats)
            print(
                f"| {name} | {dtype} | {r['entities']} | {100 * r['shared']:.1f}% | "
                f"{100 * r['found']:.1f}% | {r['dp_p99']:.3f} / {r['dp_max']:.3f} | "
                f"{r['speedup']:.2f}x faster |",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
