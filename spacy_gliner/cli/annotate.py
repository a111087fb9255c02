"""``spacy-gliner annotate``: texts in, one JSONL row (or Doc) per text out, resumable."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import CLIError
from .inputs import Record, count_records, input_files, parse_labels, read_records
from .models import Settings, load_annotator
from .output import JsonlWriter, check_resume, doc_row, prepare
from .progress import Progress

# Texts per nlp.pipe call and per fsynced write: large enough for the engine to sort windows by
# length across texts (little padding), small enough that a killed job redoes little work.
DEFAULT_BATCH = 256


def run_annotate(args: argparse.Namespace) -> int:
    """Annotate ``args.input`` into ``args.output``; prints a summary line to stdout."""
    source, out = Path(args.input), Path(args.output)
    fmt = args.format or ("spacy" if out.suffix == ".spacy" else "jsonl")
    if fmt == "spacy" and args.resume:
        raise CLIError("--resume works with JSONL output only (a DocBin is written at the end)")
    if fmt == "spacy" and out.exists() and not args.overwrite:
        raise CLIError(f"{out} exists: pass --overwrite to replace it")
    files = input_files(source, exclude=out)
    total = count_records(files, args.text_key)
    settings = Settings(
        labels=parse_labels(args.labels, args.labels_file),
        threshold=args.threshold,
        nested=args.nested,
        batch_size=args.batch_size,
        device=args.device,
    )
    done = prepare(out, resume=args.resume, overwrite=args.overwrite) if fmt == "jsonl" else 0
    if done > total:
        raise CLIError(f"{out} has {done} rows but the input has only {total} texts")
    if args.n_process > 1:  # forked workers: quiet the tokenizers library's fork warning
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    nlp, name = load_annotator(args.model, settings, args.lang)
    spans_key = nlp.get_pipe(name).cfg["spans_key"]
    records = read_records(files, args.text_key, nlp.vocab)
    if done:
        check_resume(out, records, done)
    batch = args.batch_size or DEFAULT_BATCH
    chunks = annotated(nlp, records, batch, args.n_process, done)
    progress = Progress(total, done)
    if fmt == "jsonl":
        write_jsonl(out, chunks, done, spans_key, progress)
    else:
        write_docbin(out, chunks, progress)
    progress.close()
    skipped = f" ({done} already in {out})" if done else ""
    print(
        f"{progress.texts} texts annotated{skipped} in {progress.seconds:.1f} s, "
        f"{progress.words_per_second:.0f} words/s -> {out}"
    )
    return 0


def schedule(records: Iterable[Record], batch: int, done: int) -> Iterator[list[Record]]:
    """Batches aligned on multiples of ``batch`` counted from the first input text, so a resumed
    run batches texts exactly as an uninterrupted one (scores depend on batch-mates by ~1e-7)."""
    chunk: list[Record] = []
    size = batch - done % batch
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk, size = [], batch
    if chunk:
        yield chunk


def annotated(
    nlp: Any, records: Iterable[Record], batch: int, n_process: int, done: int
) -> Iterator[list[tuple[Record, Any]]]:
    """``(record, doc)`` pairs in input order, one list per output batch."""
    if n_process == 1:
        for chunk in schedule(records, batch, done):
            docs = nlp.pipe([_input(r) for r in chunk], batch_size=len(chunk))
            yield list(zip(chunk, docs))
        return
    pending: deque[Record] = deque()

    def feed() -> Iterator[Any]:
        for record in records:
            pending.append(record)
            yield _input(record)

    docs = nlp.pipe(feed(), batch_size=batch, n_process=n_process)
    current: list[tuple[Record, Any]] = []
    for doc in docs:
        current.append((pending.popleft(), doc))
        if len(current) == batch:
            yield current
            current = []
    if current:
        yield current


def _input(record: Record) -> Any:
    return record.doc if record.doc is not None else record.text


def write_jsonl(
    out: Path,
    chunks: Iterable[list[tuple[Record, Any]]],
    done: int,
    spans_key: Any,
    progress: Progress,
) -> None:
    """Append one row per doc; each batch is on disk before the next one starts."""
    writer = JsonlWriter(out, append=done > 0)
    index = done
    try:
        for chunk in chunks:
            rows = []
            for record, doc in chunk:
                rows.append(doc_row(index, record, doc, spans_key))
                index += 1
            writer.write(rows)
            progress.update(len(chunk), sum(len(r.text.split()) for r, _ in chunk))
    finally:
        writer.close()


def write_docbin(out: Path, chunks: Iterable[list[tuple[Record, Any]]], progress: Progress) -> None:
    """Collect the docs (``meta`` in ``doc.user_data["meta"]``); the file appears at the end."""
    from spacy.tokens import DocBin

    docbin = DocBin(store_user_data=True)
    for chunk in chunks:
        for record, doc in chunk:
            if record.meta:
                doc.user_data["meta"] = record.meta
            docbin.add(doc)
        progress.update(len(chunk), sum(len(r.text.split()) for r, _ in chunk))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(fd)
    try:
        docbin.to_disk(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
