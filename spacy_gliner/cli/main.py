"""``spacy-gliner`` / ``python -m spacy_gliner``: argument parsing and error reporting.

Bad input or options print one line, ``spacy-gliner COMMAND: error: ...``, and exit with code 2
(as argparse does for bad arguments); heavy imports (spaCy, torch) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from .errors import CLIError

RESUME_HELP = (
    "continue an interrupted run: keep OUTPUT's complete rows (a partial last line is cut off) "
    "and annotate only the texts after them. Without --resume an existing non-empty OUTPUT is an "
    "error (or replaced with --overwrite)"
)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _threshold(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return number


def add_labels(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--labels", help="comma-separated labels, e.g. person,location")
    group.add_argument(
        "--labels-file",
        help="one label per line, or a JSON object {label: description} (or a JSON list)",
    )
    parser.add_argument("--threshold", type=_threshold, help="score threshold (default 0.5)")
    parser.add_argument(
        "--nested", action="store_true", help="nested spans in doc.spans (flat_ner = false)"
    )
    parser.add_argument("--lang", default="en", help="spaCy language of a new pipeline (en)")


def _add_annotate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate",
        help="annotate texts with a GLiNER model",
        description="Annotate texts: one output row per input text, in input order.",
    )
    p.add_argument("input", help=".txt (one text per line), .jsonl, .spacy, or a directory of them")
    p.add_argument("output", help="output .jsonl (or .spacy with --format spacy)")
    p.add_argument(
        "--model", required=True, help="saved spaCy pipeline, GLiNER checkpoint dir or hub id"
    )
    add_labels(p, required=False)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="texts per batch (default 256) and windows per pass",
    )
    p.add_argument("--n-process", type=positive_int, default=1, help="processes (default 1)")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--format", choices=("jsonl", "spacy"), help="default: from OUTPUT's suffix")
    p.add_argument("--text-key", default="text", help="text field of JSONL inputs (text)")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.set_defaults(func=_annotate)


def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a spaCy pipeline with a GLiNER checkpoint",
        description="Write a spaCy pipeline directory (loads offline with spacy.load).",
    )
    p.add_argument("out_dir", help="pipeline directory to write")
    p.add_argument("--model", required=True, help="GLiNER checkpoint directory or hub id")
    add_labels(p, required=True)
    p.set_defaults(func=_init)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the GLiNER checkpoint of a saved pipeline, or an ONNX export (--onnx)",
        description="Write the gliner component's checkpoint (loadable by GLiNER.from_pretrained)"
        "; with --onnx, an ONNX export of a pipeline or checkpoint (loadable by OnnxGLiNER).",
    )
    p.add_argument(
        "pipeline_dir",
        help="saved spaCy pipeline (with --onnx also a GLiNER checkpoint directory or hub id)",
    )
    p.add_argument("out_dir", help="directory to write")
    p.add_argument(
        "--onnx",
        action="store_true",
        help="write model.onnx, gliner_config.json and tokenizer.json for the ONNX runtime",
    )
    p.add_argument(
        "--int8", action="store_true", help="with --onnx: also model_int8.onnx (dynamic int8)"
    )
    p.set_defaults(func=_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spacy-gliner", description="GLiNER zero-shot NER for spaCy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_annotate(sub)
    _add_init(sub)
    _add_export(sub)
    return parser


def _annotate(args: argparse.Namespace) -> int:
    from .annotate import run_annotate

    return run_annotate(args)


def _init(args: argparse.Namespace) -> int:
    from .inputs import parse_labels
    from .models import Settings, init_pipeline

    labels = parse_labels(args.labels, args.labels_file)
    settings = Settings(labels=labels, threshold=args.threshold, nested=args.nested)
    init_pipeline(Path(args.out_dir), args.model, settings, args.lang)
    print(f"pipeline written to {args.out_dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .models import export_checkpoint

    if args.int8 and not args.onnx:
        raise CLIError("--int8 writes an int8 ONNX model: use it with --onnx")
    if args.onnx:
        from .export_onnx import export_onnx_dir

        written = export_onnx_dir(args.pipeline_dir, Path(args.out_dir), args.int8)
        print(f"ONNX export written to {args.out_dir} ({', '.join(p.name for p in written)})")
        return 0
    for note in export_checkpoint(args.pipeline_dir, Path(args.out_dir)):
        print(note, file=sys.stderr)
    print(f"checkpoint written to {args.out_dir}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CLIError as err:
        print(f"spacy-gliner {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spacy-gliner {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
