#!/usr/bin/env python
"""Words/s of the ``gliner`` component, in whatever environment runs this script: torch
(``--runtime torch --model CHECKPOINT``) or ONNX Runtime (``--runtime onnxruntime --model
EXPORT_DIR``, e.g. in a venv with only spacy, onnxruntime, tokenizers and spacy-gliner
``--no-deps``, where no torch can be imported). Run it once in each environment, back to back on
an idle machine, with the same texts and settings:

    python bench/bench_onnx_deploy.py --runtime torch --model CKPT --out torch.json
    /path/to/venv-without-torch/bin/python bench/bench_onnx_deploy.py --runtime onnxruntime \\
        --model EXPORT_DIR --out onnx.json --compare torch.json

Texts: the first ``--n-short`` CoNLL-2003 dev sentences (tokens joined by spaces), labels
person / organization / location / miscellaneous, threshold ``--threshold``; ``nlp.pipe`` after
a warm-up, best of ``--repeats``. Words: whitespace tokens. ``--compare`` prints the speed ratio
and the share of entities (doc, start char, end char, label) both runs found (shared / union).
ONNX Runtime's session uses its default threads (one per core); torch its default threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003" / "dev.jsonl"
LABELS = ["person", "organization", "location", "miscellaneous"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["torch", "onnxruntime"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-short", type=int, default=600)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, help="a JSON file written by another run")
    args = parser.parse_args()
    import spacy

    texts = []
    with args.data.open(encoding="utf-8") as f:
        for line in f:
            tokens = json.loads(line)["tokens"]
            if tokens:
                texts.append(" ".join(tokens))
            if len(texts) == args.n_short:
                break
    nlp = spacy.blank("en")
    config = {"runtime": args.runtime, "model": args.model, "labels": LABELS}
    nlp.add_pipe("gliner", config={**config, "threshold": args.threshold})
    nlp.get_pipe("gliner").apply_settings()  # load outside the timed part
    list(nlp.pipe(texts[:8]))  # warm-up
    best, docs = float("inf"), []
    for _ in range(args.repeats):
        start = time.perf_counter()
        docs = list(nlp.pipe(texts))
        best = min(best, time.perf_counter() - start)
    words = sum(len(t.split()) for t in texts)
    result = {
        "runtime": args.runtime,
        "torch_importable": importlib.util.find_spec("torch") is not None,
        "words": words,
        "seconds": best,
        "words_per_s": words / best,
        "entities": [
            [i, e.start_char, e.end_char, e.label_] for i, d in enumerate(docs) for e in d.ents
        ],
    }
    print(
        f"{args.runtime}: {words / best:,.0f} words/s ({words} words, {best:.2f} s), "
        f"{len(result['entities'])} entities, torch importable: {result['torch_importable']}"
    )
    if args.out:
        args.out.write_text(json.dumps(result))
    if args.compare:
        other = json.loads(args.compare.read_text())
        mine, theirs = {tuple(e) for e in result["entities"]}, {tuple(e) for e in other["entities"]}
        shared = len(mine & theirs) / max(1, len(mine | theirs))
        ratio = result["words_per_s"] / other["words_per_s"]
        print(
            f"vs {other['runtime']}: {ratio:.2f}x the words/s, {shared:.1%} of the entities shared"
        )


if __name__ == "__main__":
    main()
