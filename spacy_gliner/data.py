"""Convert token-span JSONL (``{"tokens": [...], "spans": [[start, end_incl, label], ...]}``) to spaCy DocBin.

    python -m spacy_gliner.data INPUT.jsonl OUTPUT.spacy [--meta meta.json] [--limit N] [--nested]

Raw labels are mapped to prompt names with the dataset's ``meta.json`` (``prompt_labels``), so the
model reads natural-language labels ("programlang" -> "programming language").
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional, Union, cast

import srsly
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab


def read_jsonl_docs(
    path: Path,
    vocab: Vocab,
    label_map: Optional[dict[str, str]] = None,
    *,
    nested: bool = False,
    spans_key: str = "sc",
    limit: int = 0,
) -> Iterator[Doc]:
    """Docs with gold entities (``doc.ents``; ``doc.spans[spans_key]`` too when ``nested``)."""
    for n, record in enumerate(srsly.read_jsonl(path)):
        if limit and n >= limit:
            return
        where = f"{path}, line {n + 1}"
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError(f"{where}: 'tokens' must be a list of non-empty strings.")
        doc = Doc(vocab, words=tokens)
        spans = []
        for item in record.get("spans", []):
            if not (isinstance(item, (list, tuple)) and len(item) == 3):
                raise ValueError(
                    f"{where}: each span must be [start, end_inclusive, label], got {item!r}."
                )
            start, end, label = item
            if not (
                isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(tokens)
            ):
                raise ValueError(
                    f"{where}: span {item!r} is out of bounds for {len(tokens)} tokens."
                )
            label = label_map.get(label, label) if label_map else label
            spans.append(Span(doc, start, end + 1, label=cast(Union[str, int], label)))
        if nested:
            doc.spans[spans_key] = spans
        else:
            ordered = sorted(spans, key=lambda s: (s.start, s.end))
            for a, b in itertools.pairwise(ordered):
                if b.start < a.end:
                    raise ValueError(
                        f"{where}: overlapping spans {a.start}-{a.end - 1} and {b.start}-{b.end - 1}; "
                        "convert with --nested to keep overlapping spans in doc.spans."
                    )
        doc.set_ents([s for s in spans if not nested or _flat(s, spans)], default="outside")
        yield doc


def _flat(span: Span, spans: Iterable[Span]) -> bool:
    """Keep a nested-data span in doc.ents only if it overlaps no other span."""
    return all(o is span or o.end <= span.start or o.start >= span.end for o in spans)


def prompt_labels(meta_path: Optional[Path]) -> dict[str, str]:
    if meta_path is None or not Path(meta_path).exists():
        return {}
    meta = json.loads(Path(meta_path).read_text())
    return dict(meta.get("prompt_labels", {}))


def convert(
    input_path: Path,
    output_path: Path,
    meta_path: Optional[Path] = None,
    *,
    limit: int = 0,
    nested: bool = False,
) -> int:
    """Write a DocBin; returns the number of docs. Raises ``ValueError`` on bad or empty input."""
    vocab = Vocab()
    docbin = DocBin(store_user_data=False)
    count = 0
    for doc in read_jsonl_docs(
        Path(input_path), vocab, prompt_labels(meta_path), nested=nested, limit=limit
    ):
        docbin.add(doc)
        count += 1
    if count == 0:
        raise ValueError(f"{input_path} holds no documents: nothing to convert.")
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    docbin.to_disk(output_path)
    return count


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument(
        "--meta",
        type=Path,
        default=None,
        help="meta.json with prompt_labels (default: next to input)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="convert at most N documents (0 = all)"
    )
    parser.add_argument(
        "--nested", action="store_true", help="keep overlapping spans in doc.spans['sc']"
    )
    args = parser.parse_args(argv)
    meta = args.meta if args.meta is not None else args.input.parent / "meta.json"
    n = convert(args.input, args.output, meta, limit=args.limit, nested=args.nested)
    print(f"Converted {n} documents: {args.input} -> {args.output}")


if __name__ == "__main__":
    main()
