"""Span columns of annotated batches: docs to parallel lists, and lists onto a batch of any of
Ray Data's batch formats (``pyarrow``, ``pandas``, ``numpy``), keeping every input column.

The four columns are parallel lists, one element per span, in the order of ``doc.spans[key]``:
``spans_start`` / ``spans_end`` (character offsets into the text, ``list<int64>``),
``spans_label`` (``list<string>``) and ``spans_score`` (``list<double>``; null when the
component writes no scored span group and the spans come from ``doc.ents``). In the ``pyarrow``
format the types are explicit, so a batch without any span still has them and every block of a
dataset shares one schema (what Parquet needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

SPAN_COLUMNS = ("spans_start", "spans_end", "spans_label", "spans_score")


class DocSpans(NamedTuple):
    """The spans of one doc as parallel lists."""

    start: list[int]
    end: list[int]
    label: list[str]
    score: list[Optional[float]]


def doc_spans(doc: Any, spans_key: Optional[str]) -> DocSpans:
    """``doc.spans[spans_key]`` with its ``attrs["scores"]``, else ``doc.ents`` without scores."""
    if spans_key is not None and spans_key in doc.spans:
        group = doc.spans[spans_key]
        scores = group.attrs.get("scores") or [None] * len(group)
        found = list(zip(group, scores))
    else:
        found = [(ent, None) for ent in doc.ents]
    return DocSpans(
        [span.start_char for span, _ in found],
        [span.end_char for span, _ in found],
        [span.label_ for span, _ in found],
        [None if score is None else float(score) for _, score in found],
    )


def batch_texts(batch: Any, column: str) -> list[str]:
    """The texts of ``column`` as Python strings (a null text, or pandas' NA / NaN, reads as ``""``).

    Raises ``KeyError`` naming the column when the batch has no such column, ``TypeError`` for a
    value that is neither a string nor null.
    """
    names = batch.column_names if _is_arrow(batch) else list(batch.keys())
    if column not in names:
        raise KeyError(f"no text column {column!r} in the batch (columns: {names})")
    values = batch.column(column).to_pylist() if _is_arrow(batch) else list(batch[column])
    texts = []
    for value in values:
        if _is_null(value):
            value = ""
        if not isinstance(value, str):
            raise TypeError(f"column {column!r} holds a {type(value).__name__}, not a string")
        texts.append(value)
    return texts


def _is_null(value: Any) -> bool:
    """None, pandas' NA, or a float NaN (how pandas shows a missing string)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and value != value


def with_spans(batch: Any, found: Sequence[DocSpans]) -> Any:
    """The batch with the span columns set (replaced if present), one row per input row in the
    same order: a ``pyarrow.Table`` or ``pandas.DataFrame`` stays one; a ``numpy`` batch comes back
    as a ``pyarrow.Table`` (see ``_dict_to_arrow``). The input batch itself is not modified."""
    columns = {name: [spans[i] for spans in found] for i, name in enumerate(SPAN_COLUMNS)}
    if _is_arrow(batch):
        return _arrow_with(batch, columns)
    if hasattr(batch, "assign"):  # pandas.DataFrame
        return batch.assign(**columns)
    return _arrow_with(_dict_to_arrow(batch), columns)


def _dict_to_arrow(batch: Any) -> Any:
    """A ``numpy`` batch (dict of 1-D arrays) as a ``pyarrow.Table``: Ray stores ragged numpy
    columns as tensor extensions that Parquet readers do not understand, so span columns go out
    as Arrow lists. Raises ``TypeError`` for a column with more than one dimension."""
    import pyarrow as pa

    arrays = {}
    for name, values in batch.items():
        if getattr(values, "ndim", 1) != 1:
            raise TypeError(
                f"column {name!r} has {values.ndim} dimensions: use batch_format='pyarrow'"
            )
        arrays[name] = pa.array(values)
    return pa.table(arrays)


def _arrow_with(table: Any, columns: dict[str, list[Any]]) -> Any:
    import pyarrow as pa

    types = {
        "spans_start": pa.list_(pa.int64()),
        "spans_end": pa.list_(pa.int64()),
        "spans_label": pa.list_(pa.string()),
        "spans_score": pa.list_(pa.float64()),
    }
    for name, values in columns.items():
        array = pa.array(values, type=types[name])
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def _is_arrow(batch: Any) -> bool:
    return type(batch).__module__.startswith("pyarrow")
