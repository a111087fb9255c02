#!/usr/bin/env python
"""The engine's CPU batching defaults: words/s of every (batch_size, max_batch_tokens) pair.

    python bench/defaults_sweep.py --checkpoint DIR                # ~5 min on 2 idle cores
    python bench/defaults_sweep.py --checkpoint DIR --threads 1    # CPU time is robust to load

Short: ``--n-short`` CoNLL-2003 dev sentences (4 labels); long: ``--n-long`` documents of > 1,000
words from consecutive BC5CDR dev sentences. Every configuration runs once per round, rounds
alternate the configurations, the best of ``--rounds`` is kept: wall-clock words/s and words per
CPU-second (``time.process_time``: with one thread, the figure a busy machine moves least).
``max_batch_tokens`` is given in encoder windows (x the model's sub-token window), as the engine's
``CPU_BATCH_WINDOWS`` default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def texts(data: Path, n_short: int, n_long: int) -> dict[str, tuple[list[list[str]], list[str]]]:
    shorts = [r["tokens"] for r in _rows(data / "conll2003" / "dev.jsonl") if r["tokens"]]
    longs: list[list[str]] = []
    current: list[str] = []
    for row in _rows(data / "bc5cdr" / "dev.jsonl"):
        current += row["tokens"]
        if len(current) > 1000:
            longs.append(current)
            current = []
        if len(longs) == n_long:
            break

    def labels(name: str) -> list[str]:
        meta = json.loads((data / name / "meta.json").read_text())
        return list(meta["prompt_labels"].values())

    return {
        "short": (shorts[:n_short], labels("conll2003")),
        "long": (longs, labels("bc5cdr")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n-short", type=int, default=300)
    ap.add_argument("--n-long", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--windows", type=int, nargs="+", default=[2, 4, 8])
    args = ap.parse_args()
    import torch

    from spacy_gliner import GLiNER
    from spacy_gliner.engine import Engine, EngineOptions, LabelSet

    torch.set_num_threads(args.threads)
    gliner = GLiNER.from_pretrained(args.checkpoint)
    sets = texts(args.data, args.n_short, args.n_long)
    window = Engine(gliner).max_tokens
    best: dict[tuple[str, int, int], tuple[float, float]] = {}
    for round_ in range(args.rounds):
        for rows in args.batch_sizes:
            for windows in args.windows:
                options = EngineOptions(batch_size=rows, max_batch_tokens=windows * window)
                engine = Engine(gliner, options)
                for name, (words, labels) in sets.items():
                    label_set = LabelSet.from_labels(labels)
                    if round_ == 0:
                        engine(words[:8], label_set)  # warm-up
                    cpu, wall = time.process_time(), time.perf_counter()
                    engine(words, label_set)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    n = sum(map(len, words))
                    key = (name, rows, windows)
                    old = best.get(key, (0.0, 0.0))
                    best[key] = (max(old[0], n / wall), max(old[1], n / cpu))
                    print(f"round {round_} {name:5s} batch_size {rows:3d} windows {windows:2d}: "
                          f"{n / wall:7,.0f} words/s, {n / cpu:7,.0f} words/CPU-s", flush=True)  # fmt: skip
    print(f"\nbest of {args.rounds} rounds, {args.threads} thread(s):")
    for (name, rows, windows), (wall, cpu) in sorted(best.items()):
        print(f"{name:5s} batch_size {rows:3d} windows {windows:2d}: {wall:7,.0f} words/s, "
              f"{cpu:7,.0f} words/CPU-s")  # fmt: skip


if __name__ == "__main__":
    main()
