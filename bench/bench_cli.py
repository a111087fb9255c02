"""``spacy-gliner annotate`` against ``nlp.pipe`` in one process, on the same texts and model.

    python bench/bench_cli.py CHECKPOINT [--n 2000] [--repeats 2]

Texts: the first N CoNLL-2003 dev sentences (../shared/data), tokens joined by spaces. Both arms
load the checkpoint into ``spacy.blank("en")`` + the ``gliner`` pipe (threshold 0.5, four labels);
the CLI runs as a subprocess (its own summary line gives words/s after loading), ``nlp.pipe`` is
timed after loading too. Arms alternate; entities are compared row by row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = "person,organization,location,miscellaneous"
DATA = Path(__file__).resolve().parents[2] / "shared/data/conll2003/dev.jsonl"


def texts(n: int) -> list[str]:
    out = []
    with open(DATA) as f:
        for line in f:
            tokens = json.loads(line)["tokens"]
            if tokens:
                out.append(" ".join(tokens))
            if len(out) == n:
                break
    return out


def run_cli(ckpt: str, source: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "spacy_gliner", "annotate", str(source), str(out),
           "--model", ckpt, "--labels", LABELS, "--threshold", "0.5", "--overwrite"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = [x for x in proc.stdout.splitlines() if "words/s" in x][-1]
    return float(line.split(" words/s")[0].split()[-1].replace(",", ""))


def run_pipe(ckpt: str, items: list[str]) -> tuple[float, list]:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": ckpt, "labels": LABELS.split(","), "threshold": 0.5})
    nlp.initialize()
    docs = [nlp.make_doc(t) for t in items]
    start = time.perf_counter()
    done = list(nlp.pipe(docs))
    seconds = time.perf_counter() - start
    words = sum(len([t for t in d if not t.is_space]) for d in done)
    return words / seconds, [[(e.start_char, e.end_char, e.label_) for e in d.spans["sc"]] for d in done]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    items = texts(args.n)
    tmp = Path(tempfile.mkdtemp())
    source = tmp / "texts.txt"
    source.write_text("\n".join(items) + "\n")
    cli_rates, pipe_rates = [], []
    for _ in range(args.repeats):
        cli_rates.append(run_cli(args.checkpoint, source, tmp / "out.jsonl"))
        rate, spans = run_pipe(args.checkpoint, items)
        pipe_rates.append(rate)
    rows = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    cli_spans = [[(s["start"], s["end"], s["label"]) for s in row["spans"]] for row in rows]
    same = sum(a == [tuple(x) for x in b] for a, b in zip(cli_spans, spans))
    print(f"texts {len(items)}; CLI words/s {cli_rates}; nlp.pipe words/s {[round(r) for r in pipe_rates]}")
    print(f"ratio CLI / nlp.pipe (best of each): {max(cli_rates) / max(pipe_rates):.3f}")
    print(f"texts with identical spans: {same} of {len(items)}")


if __name__ == "__main__":
    main()
