#!/usr/bin/env python
"""GPU benchmark: this component vs gliner 0.2.29 on one CUDA card, in float16 and float32, the
reference with and without ``torch.compile``.

    python bench/bench_gpu.py --checkpoint project/training/model-best/gliner/model --out gpu.json
    python bench/bench_gpu.py --checkpoint DIR --texts texts.json   # texts without ../shared/data

Texts: the first ``--n-short`` CoNLL-2003 dev sentences (tokens rejoined with spaces) and the
dataset's prompt labels, or ``--texts FILE`` (JSON ``{"texts": [...], "labels": [...]}``). One
threshold (``--threshold``, 0.5) for every system.

Rows: this component (``nlp.pipe``; settings ``device: "cuda"``, ``dtype`` and ``batch_size``,
the component's default first), the reference ``GLiNER.inference`` loaded with
``from_pretrained(map_location="cuda", dtype=...)`` at batch 8 (its default) and 32, and the same
after its ``compile()`` (``torch.compile(dynamic=True)``; the compilation happens in the warm-up,
whose time is reported as ``first_call_s``). Every system is loaded and warmed up on all texts
first, then timed in ``--repeats`` interleaved rounds, keeping each system's best round. Words are
counted with the reference's word regex, the same count for every system. Each row reports the
decoded entities shared with the reference float32 row and with this component's float32 row
(shared / union of (text, start char, end char, label)); this component's entities for that
comparison come from Docs of the reference's words, so both read the same words.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import (
    DEFAULT_DATA,
    REFERENCE_DTYPES,
    WORD_RE,
    doc_from_words,
    our_nlp,
    prompt_labels,
    short_texts,
)
from precision_rows import agreement, doc_entities, reference_entities

# Rows of a run, and of a --compile run: ours (dtype, batch_size or None for the component's
# default); the reference's (dtype, batch size, compiled). Our float32 default row and the
# reference's float32 batch-8 row are the agreement baselines of both runs.
OUR_ROWS = {
    False: (
        ("float16", None),
        ("float16", 64),
        ("float16", 128),
        ("float16", 256),
        ("bfloat16", 128),
        ("float32", None),
        ("float32", 128),
    ),
    True: (("float16", None), ("float16", 128), ("float32", None)),
}
REFERENCE_ROWS = {
    False: (
        ("float32", 8, False),
        ("float32", 32, False),
        ("float16", 8, False),
        ("float16", 32, False),
    ),
    True: (
        ("float32", 8, False),
        ("float16", 8, False),
        ("float16", 32, False),
        ("float16", 8, True),
        ("float16", 32, True),
    ),
}


def load_texts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    if args.texts:
        spec = json.loads(Path(args.texts).read_text())
        return list(spec["texts"])[: args.n_short], list(spec["labels"])
    return short_texts(args.data, args.n_short), list(
        prompt_labels(args.data, "conll2003").values()
    )


def our_systems(
    checkpoint: Path,
    texts: list[str],
    labels: list[str],
    threshold: float,
    device: str,
    compiled: bool,
) -> dict[str, tuple[Callable[[], Any], set]]:
    """Row name -> (timed run, entities on the reference's words), for ``OUR_ROWS[compiled]``."""
    systems = {}
    for dtype, rows in OUR_ROWS[compiled]:
        if device == "cpu" and dtype == "float16":
            continue  # (a smoke run on CPU: float16 is GPU-only)
        nlp = our_nlp(checkpoint, labels, threshold, rows, device=device, dtype=dtype)
        found = doc_entities(list(nlp.pipe([doc_from_words(nlp, t) for t in texts])))
        name = f"spacy-gliner {dtype}, batch_size {rows or 'default'}"
        systems[name] = (lambda nlp=nlp: list(nlp.pipe(texts)), found)
        print(f"loaded and warmed up: {name}", flush=True)
    return systems


def reference_systems(
    checkpoint: Path,
    texts: list[str],
    labels: list[str],
    threshold: float,
    device: str,
    compiled_rows: bool,
) -> tuple[dict[str, tuple[Callable[[], Any], set]], dict[str, float]]:
    """Row name -> (timed run, entities), for ``REFERENCE_ROWS[compiled_rows]``; and each row's
    first (with ``compile()``: compiling) call in s."""
    from gliner import GLiNER as RefGLiNER

    systems, first_call = {}, {}
    models: dict[tuple[str, bool], Any] = {}
    for dtype, batch, compiled in REFERENCE_ROWS[compiled_rows]:
        if device == "cpu" and dtype == "float16":
            continue
        if (dtype, compiled) not in models:
            model = RefGLiNER.from_pretrained(
                str(checkpoint),
                local_files_only=True,
                map_location=device,
                dtype=REFERENCE_DTYPES[dtype],
            ).eval()
            if compiled:
                model.compile()
            models[dtype, compiled] = model
        model = models[dtype, compiled]
        name = f"reference {dtype}{' + compile' if compiled else ''}, batch {batch}"

        def run(model: Any = model, batch: int = batch) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return model.inference(texts, labels, threshold=threshold, batch_size=batch)

        start = time.perf_counter()
        found = reference_entities(run())  # warm-up; compiles the compiled rows
        first_call[name] = time.perf_counter() - start
        systems[name] = (run, found)
        print(f"loaded and warmed up: {name} ({first_call[name]:.1f} s)", flush=True)
    return systems, first_call


def measure(
    systems: dict[str, tuple[Callable[[], Any], set]], words: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Best of ``repeats`` interleaved rounds per system, with agreements. (Every run returns
    host data, so each timing ends after the GPU's work.)"""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, (run, _) in systems.items():
            start = time.perf_counter()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    ours32 = systems["spacy-gliner float32, batch_size default"][1]
    ref32 = systems.get("reference float32, batch 8", (None, ours32))[1]
    return {
        name: {
            "seconds": best[name],
            "words_per_s": words / best[name],
            "entities": len(found),
            "agreement_reference_fp32": agreement(found, ref32),
            "agreement_ours_fp32": agreement(found, ours32),
        }
        for name, (_, found) in systems.items()
    }


def environment() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def print_rows(rows: dict[str, dict[str, Any]], base: str) -> None:
    print(
        f"{'':40s} {'words/s':>9s} {'vs ref':>7s} {'entities':>8s} {'=ref32':>7s} {'=ours32':>7s}"
    )
    for name, row in rows.items():
        print(
            f"{name:40s} {row['words_per_s']:9,.0f} "
            f"{row['words_per_s'] / rows[base]['words_per_s']:6.2f}x {row['entities']:8d} "
            f"{row['agreement_reference_fp32']:7.1%} {row['agreement_ours_fp32']:7.1%}"
            + (f"  (first call {row['first_call_s']:.1f} s)" if "first_call_s" in row else ""),
            flush=True,
        )


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", type=Path, required=True, help="GLiNER checkpoint dir")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data dir")
    ap.add_argument("--texts", type=Path, help='JSON {"texts": [...], "labels": [...]}')
    ap.add_argument("--n-short", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best kept")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--device", default="cuda", help="torch device (cpu: a smoke run)")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="the reference's compile() rows, beside its float16 rows, its float32 batch-8 row "
        "and this component's float16 rows (without: every row but the compiled ones)",
    )
    ap.add_argument("--out", type=Path, help="write all numbers as JSON here")
    args = ap.parse_args(argv)
    texts, labels = load_texts(args)
    words = sum(len(WORD_RE.findall(t)) for t in texts)
    report: dict[str, Any] = {"environment": environment(), "texts": len(texts), "words": words}
    print(json.dumps(report), flush=True)
    systems = our_systems(args.checkpoint, texts, labels, args.threshold, args.device, args.compile)
    first_call: dict[str, float] = {}
    if not args.skip_reference:
        ref, first_call = reference_systems(
            args.checkpoint, texts, labels, args.threshold, args.device, args.compile
        )
        systems.update(ref)
    rows = measure(systems, words, args.repeats)
    for name, seconds in first_call.items():
        rows[name]["first_call_s"] = seconds
    report["rows"] = rows
    base = "reference float32, batch 8"
    print_rows(rows, base if base in rows else next(iter(rows)))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
