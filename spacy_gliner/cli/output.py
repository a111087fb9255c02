"""Crash-safe JSONL output: whole lines, flushed and fsynced once per batch.

A run killed at any point leaves complete rows, maybe followed by part of one line. ``recover``
cuts that partial line off and counts the rows; ``check_resume`` confirms the rows belong to this
input (same texts, in order), so the rerun skips exactly that many input texts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from .errors import CLIError
from .inputs import Record


def recover(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the number of complete lines."""
    rows = end = pos = 0
    with path.open("r+b") as f:
        for line in f:
            pos += len(line)
            if line.endswith(b"\n"):
                rows += 1
                end = pos
        if end != pos:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return rows


def check_resume(path: Path, records: Iterator[Record], rows: int) -> None:
    """Consume the first ``rows`` input records, checking each against the output's row."""
    with path.open("rb") as f:
        for index, line in enumerate(f):
            where = f"{path}, line {index + 1}"
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise CLIError(f"{where}: not a row written by annotate (invalid JSON)") from None
            record = next(records, None)
            if record is None:
                raise CLIError(
                    f"{path} has {rows} rows but the input has only {index} texts: "
                    "a different input? Use --overwrite to start over."
                )
            if (
                not isinstance(row, dict)
                or row.get("id") != index
                or row.get("text") != record.text
            ):
                raise CLIError(
                    f"{where}: the row does not match input text {index}: a different input "
                    "or order? Use --overwrite to start over."
                )


def prepare(path: Path, *, resume: bool, overwrite: bool) -> int:
    """Rows already done in ``path`` (0 for a new or overwritten output)."""
    if path.is_dir():
        raise CLIError(f"{path}: the output is a directory")
    exists = path.exists() and path.stat().st_size > 0
    if not exists or overwrite:
        return 0
    if not resume:
        raise CLIError(f"{path} exists: pass --resume to continue it, or --overwrite to start over")
    return recover(path)


class JsonlWriter:
    """Appends rows; ``write`` returns once the batch is on disk (flush + fsync)."""

    def __init__(self, path: Path, *, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self.file = path.open("ab" if append else "wb")
        if created or not append:
            _fsync_dir(path.parent)

    def write(self, rows: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n" for row in rows)
        self.file.write(data)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def doc_row(index: int, record: Record, doc: Any, spans_key: Optional[str]) -> dict[str, Any]:
    """``{"id", "text", "spans": [{"start", "end", "label", "score"}], "meta"?}`` of one doc."""
    if spans_key is not None and spans_key in doc.spans:
        group = doc.spans[spans_key]
        scores = group.attrs.get("scores") or [None] * len(group)
        found = list(zip(group, scores))
    else:
        found = [(ent, None) for ent in doc.ents]
    spans = [
        {
            "start": span.start_char,
            "end": span.end_char,
            "label": span.label_,
            "score": None if score is None else float(score),
        }
        for span, score in found
    ]
    row: dict[str, Any] = {"id": index, "text": record.text, "spans": spans}
    if record.meta:
        row["meta"] = record.meta
    return row
