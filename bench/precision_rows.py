"""Precision rows of ``bench_inference.py``: int8 and ONNX beside float32, on the short texts.

Rows: this component with default settings in float32 and with ``dtype: "int8"``, and the same
component with ``runtime: "onnxruntime"`` on this package's export of the checkpoint
(``spacy-gliner export --onnx --int8``: no torch on its path; ONNX Runtime's default threads, one
per core) in float32 and int8 (QInt8 weights); the reference
(gliner 0.2.29) in float32, with ``quantize="int8"`` (torch dynamic int8), with ``compile()``
(``torch.compile(dynamic=True)``; the compilation happens in the warm-up call, whose time is
reported as ``first_call_s``, and is not in the timed runs), with inference packing
(``configure_inference_packing(InferencePackingConfig(max_length=512))``; gliner 0.2.29 packs
DeBERTa, ModernBERT and T5 encoders only: on others its warm-up fails and the row reports the
error), and through its own ONNX
export (``export_to_onnx(quantize=True)``) run by onnxruntime in float32 and int8 (QUInt8
weights). Each row: words/s and the decoded entities shared with the reference float32 and with
this component's float32 (shared / union of (text, start char, end char, label)).

``train_checkpoint`` fine-tunes a checkpoint briefly on CoNLL-2003 train sentences (this package's
training step, AdamW), so that the agreement figures come from a model whose scores are spread:
an untrained model scores every cell near 0.5, where any rounding flips decisions.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Entity = tuple[int, int, int, str]  # (text, start char, end char, label)


def train_checkpoint(base: Path, data: Path, steps: int, out: Path, seed: int = 0) -> Path:
    """``base`` fine-tuned for ``steps`` steps of 8 CoNLL-2003 train sentences (encoder at 3e-5,
    the rest at 5e-4; cached in ``out``)."""
    if (out / "gliner_config.json").exists():
        return out
    import torch

    from spacy_gliner import GLiNER
    from spacy_gliner.component.registry import make_span_loss
    from spacy_gliner.training.step import Text, make_rows, train_step

    names = json.loads((data / "conll2003" / "meta.json").read_text())["prompt_labels"]
    with open(data / "conll2003" / "train.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [
        Text(r["tokens"], [(s, e, names[label]) for s, e, label in r["spans"]])
        for r in rows
        if r["tokens"] and r["spans"]
    ]
    gliner = GLiNER.from_pretrained(base)
    rng, loss_fn = random.Random(seed), make_span_loss()
    torch.manual_seed(seed)
    encoder = [p for n, p in gliner.model.named_parameters() if n.startswith("token_rep_layer")]
    others = [p for n, p in gliner.model.named_parameters() if not n.startswith("token_rep_layer")]
    groups = [{"params": encoder, "lr": 3e-5}, {"params": others, "lr": 5e-4}]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    start = time.perf_counter()
    for step in range(steps):
        batch = rng.sample(texts, 8)
        rows_ = make_rows(gliner, batch, list(names.values()), 25, 1, rng)
        optimizer.zero_grad()
        loss = train_step(gliner, rows_, loss_fn, None, 0.1)
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  train step {step}: loss {loss:.2f} ({time.perf_counter() - start:.0f} s)")
    gliner.save_pretrained(out)
    return out


def reference_entities(outputs: Sequence[Sequence[dict[str, Any]]]) -> set[Entity]:
    return {(i, e["start"], e["end"], e["label"]) for i, ents in enumerate(outputs) for e in ents}


def doc_entities(docs: Sequence[Any]) -> set[Entity]:
    return {(i, e.start_char, e.end_char, e.label_) for i, doc in enumerate(docs) for e in doc.ents}


def agreement(a: set[Entity], b: set[Entity]) -> float:
    """Shared / union (1.0 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _reference_runtimes(checkpoint: Path, workdir: Path, threads: int) -> dict[str, Any]:
    """The reference's int8 and ONNX variants: a loaded model, or the error as a string."""
    from gliner import GLiNER as RefGLiNER

    models: dict[str, Any] = {}
    try:
        models["reference torch int8"] = RefGLiNER.from_pretrained(
            str(checkpoint), local_files_only=True, quantize="int8"
        )
    except Exception as err:  # reported as the row's result
        models["reference torch int8"] = f"{type(err).__name__}: {err}"
    try:
        compiled = RefGLiNER.from_pretrained(str(checkpoint), local_files_only=True).eval()
        compiled.compile()  # torch.compile(dynamic=True) on its model; compiles at the 1st call
        models["reference torch.compile"] = compiled
    except Exception as err:
        models["reference torch.compile"] = f"{type(err).__name__}: {err}"
    try:  # packs short texts into shared encoder streams (block-diagonal attention)
        from gliner.infer_packing import InferencePackingConfig

        packed = RefGLiNER.from_pretrained(str(checkpoint), local_files_only=True).eval()
        packed.configure_inference_packing(InferencePackingConfig(max_length=512))
        models["reference inference packing"] = packed
    except Exception as err:
        models["reference inference packing"] = f"{type(err).__name__}: {err}"
    try:
        import onnxruntime as ort

        export = RefGLiNER.from_pretrained(str(checkpoint), local_files_only=True)
        with _quiet_stdout():  # the exporter prints the whole graph (from C++)
            paths = export.export_to_onnx(workdir, quantize=True)
        for name, key in (("fp32", "onnx_path"), ("int8", "quantized_path")):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            models[f"reference ONNX {name}"] = RefGLiNER.from_pretrained(
                str(workdir),
                local_files_only=True,
                runtime="onnxruntime",
                runtime_model_file=Path(paths[key]).name,
                runtime_options={"session_options": options},
            )
    except Exception as err:  # onnx(runtime) missing, or the export failed
        for name in ("fp32", "int8"):
            models.setdefault(f"reference ONNX {name}", f"{type(err).__name__}: {err}")
    return models


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 to /dev/null (C++ code prints past ``sys.stdout``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def precision_rows(
    checkpoint: Path,
    texts: list[str],
    labels: list[str],
    threshold: float,
    make_nlp: Callable[..., Any],
    word_doc: Callable[[Any, str], Any],
    words: int,
    repeats: int,
    threads: int,
    workdir: Path,
) -> dict[str, dict[str, Any]]:
    """Every row's words/s and agreements (see the module docs). ``make_nlp(**settings)`` builds
    this component's pipeline; ``word_doc(nlp, text)`` a Doc of the reference's words.

    Every system is loaded and warmed up first, then timed in ``repeats`` rounds, one run of each
    system per round in turn; each keeps its best round. On a machine whose speed drifts over
    minutes, a slow period then costs every system a round, not one system its only runs."""
    rows: dict[str, dict[str, Any]] = {}
    runs: dict[str, Callable[[], Any]] = {}
    ours: dict[str, set[Entity]] = {}
    for name, settings in _our_settings(checkpoint, workdir):
        if isinstance(settings, str):
            rows[name] = {"error": settings}
            continue
        nlp = make_nlp(**settings)
        list(nlp.pipe(texts[:8]))  # warm-up (int8: builds the int8 copy)
        ours[name] = doc_entities(list(nlp.pipe([word_doc(nlp, t) for t in texts])))
        runs[name] = lambda nlp=nlp: list(nlp.pipe(texts))
        rows[name] = {}  # (rows print in this order)
    for name, model in _reference_models(checkpoint, workdir, threads).items():
        if isinstance(model, str):
            rows[name] = {"error": model}
            continue
        start = time.perf_counter()
        try:  # warm-up (torch.compile compiles here; it needs a C++ compiler on CPU)
            _quiet_inference(model, texts[:8], labels, threshold)
        except Exception as err:
            rows[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        rows[name] = {"first_call_s": time.perf_counter() - start}
        runs[name] = lambda m=model: _quiet_inference(m, texts, labels, threshold)
    best: dict[str, float] = {}
    found: dict[str, set[Entity]] = dict(ours)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            out = run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
            if name not in ours:
                found[name] = reference_entities(out)
    for name, seconds in best.items():
        row = rows.setdefault(name, {})
        row.update(seconds=seconds, words_per_s=words / seconds, entities=len(found[name]))
        row["agreement_reference_fp32"] = agreement(found[name], found["reference float32"])
        row["agreement_ours_fp32"] = agreement(found[name], ours["this component, float32"])
    return rows


def _quiet_inference(model: Any, texts: list[str], labels: list[str], threshold: float) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.inference(texts, labels, threshold=threshold, batch_size=8)


def _reference_models(checkpoint: Path, workdir: Path, threads: int) -> dict[str, Any]:
    from gliner import GLiNER as RefGLiNER

    reference = RefGLiNER.from_pretrained(str(checkpoint), local_files_only=True).eval()
    return {"reference float32": reference, **_reference_runtimes(checkpoint, workdir, threads)}


def _our_settings(checkpoint: Path, workdir: Path) -> Iterator[tuple[str, Any]]:
    """(row name, component settings or why the row cannot run): float32 and int8 on torch, then
    on ONNX Runtime (``runtime: "onnxruntime"`` on an export of ``checkpoint``, float32 and
    int8)."""
    yield "this component, float32", {}
    yield "this component, int8", {"dtype": "int8"}
    try:
        from spacy_gliner import GLiNER
        from spacy_gliner.export.onnx import export_onnx

        directory = workdir / "ours"
        with _quiet_stdout():
            export_onnx(GLiNER.from_pretrained(checkpoint), directory, int8=True)
    except Exception as err:  # onnx(runtime) missing, or the export failed
        for name in ("float32", "int8"):
            yield f"this component on ONNX Runtime, {name}", f"{type(err).__name__}: {err}"
        return
    onnx = {"runtime": "onnxruntime", "model": str(directory)}
    yield "this component on ONNX Runtime, float32", onnx
    yield "this component on ONNX Runtime, int8", {**onnx, "dtype": "int8"}


def print_rows(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'':28s} {'words/s':>9s}  {'entities':>8s}  {'= ref fp32':>10s}  {'= ours fp32':>11s}")
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:28s} not run: {row['error'][:200]}")
            continue
        print(
            f"{name:28s} {row['words_per_s']:9,.0f}  {row['entities']:8d}  "
            f"{row['agreement_reference_fp32']:10.1%}  {row['agreement_ours_fp32']:11.1%}"
            + (f"  (first call {row['first_call_s']:.0f} s)" if "compile" in name else ""),
            flush=True,
        )
