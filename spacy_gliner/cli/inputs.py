"""Input texts: ``.txt`` (one per line), ``.jsonl`` (objects with a text field), ``.spacy``
(DocBin), or a directory of such files read in sorted order."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .errors import CLIError

SUFFIXES = (".txt", ".jsonl", ".spacy")
Labels = Union[list[str], dict[str, str]]


@dataclass
class Record:
    """One input text; ``meta`` holds a JSONL object's other fields, ``doc`` a DocBin's Doc."""

    text: str
    meta: Optional[dict[str, Any]] = None
    doc: Any = None


def input_files(path: Path, exclude: Optional[Path] = None) -> list[Path]:
    """The files to read: ``path`` itself, or its directory's input files in sorted order
    (``exclude``, the output file, is never read)."""
    if not path.exists():
        raise CLIError(f"{path}: no such file or directory")
    if path.is_dir():
        skip = exclude.resolve() if exclude is not None else None
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix in SUFFIXES and p.resolve() != skip
        )
        if not files:
            raise CLIError(f"{path}: the directory has no .txt, .jsonl or .spacy files")
        return files
    if path.suffix not in SUFFIXES:
        raise CLIError(f"{path}: unsupported input (expected .txt, .jsonl, .spacy or a directory)")
    return [path]


def count_records(files: Sequence[Path], text_key: str) -> int:
    """Read every input once, raising ``CLIError`` (file and line) on the first bad record."""
    total = 0
    for path in files:
        if path.suffix == ".spacy":
            total += len(_docbin(path))
        else:
            total += sum(1 for _ in _read(path, text_key, None))
    return total


def read_records(files: Sequence[Path], text_key: str, vocab: Any) -> Iterator[Record]:
    """Every input text in order (``vocab``: the pipeline's, for DocBin inputs)."""
    for path in files:
        yield from _read(path, text_key, vocab)


def _read(path: Path, text_key: str, vocab: Any) -> Iterator[Record]:
    if path.suffix == ".txt":
        return _txt(path)
    if path.suffix == ".jsonl":
        return _jsonl(path, text_key)
    if vocab is None:
        raise ValueError("DocBin inputs need the pipeline's vocab")
    return (Record(doc.text, None, doc) for doc in _docbin(path).get_docs(vocab))


def _txt(path: Path) -> Iterator[Record]:
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    raise CLIError(
                        f"{path}, line {lineno}: not UTF-8 text ({err.reason})"
                    ) from None
                yield Record(text.rstrip("\r\n") if text.endswith("\n") else text)
    except OSError as err:
        raise CLIError(f"{path}: cannot read ({err.strerror})") from None


def _jsonl(path: Path, text_key: str) -> Iterator[Record]:
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    yield _json_record(raw, text_key, f"{path}, line {lineno}")
    except OSError as err:
        raise CLIError(f"{path}: cannot read ({err.strerror})") from None


def _json_record(raw: bytes, text_key: str, where: str) -> Record:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CLIError(f"{where}, column {err.colno}: invalid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise CLIError(f"{where}: not UTF-8 text ({err.reason})") from None
    if not isinstance(obj, dict):
        raise CLIError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    text = obj.get(text_key)
    if not isinstance(text, str):
        raise CLIError(f"{where}: no string field {text_key!r} (choose the field with --text-key)")
    meta = {key: value for key, value in obj.items() if key != text_key}
    return Record(text, meta or None)


def _docbin(path: Path) -> Any:
    from spacy.tokens import DocBin

    try:
        return DocBin().from_disk(path)
    except Exception as err:  # msgpack and zlib raise assorted errors on a corrupt file
        raise CLIError(f"{path}: not a readable spaCy DocBin ({type(err).__name__})") from None


def parse_labels(labels: Optional[str], labels_file: Optional[str]) -> Optional[Labels]:
    """``--labels a,b`` or ``--labels-file`` (one label per line, or a JSON list or
    ``{label: description}`` object); ``None`` when neither is given."""
    if labels is not None:
        names = [name.strip() for name in labels.split(",") if name.strip()]
        if not names:
            raise CLIError("--labels: no label names given")
        return names
    if labels_file is None:
        return None
    path = Path(labels_file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CLIError(f"{path}: cannot read the labels file ({one_reason(err)})") from None
    if text.lstrip().startswith(("{", "[")):
        return _json_labels(path, text)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise CLIError(f"{path}: the labels file is empty")
    return names


def _json_labels(path: Path, text: str) -> Labels:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CLIError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from None
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise CLIError(
        f"{path}: expected a non-empty JSON object {{label: description}} or list of labels"
    )


def one_reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or getattr(err, "reason", None) or type(err).__name__
