"""Annotate a ``ray.data.Dataset`` of texts with GLiNER on a pool of Ray actors.

``annotate(dataset, model, labels=[...])`` returns a lazy dataset with four list columns appended
to every row (see :mod:`spacy_gliner.integrations.columns`): ``spans_start``, ``spans_end``
(character offsets), ``spans_label`` and ``spans_score``. Guarantees:

- every input row comes out exactly once, with all its other columns unchanged; row order follows
  Ray Data's semantics (kept only with ``DataContext.execution_options.preserve_order``), so join
  on an id column rather than on position;
- each row's spans are those ``nlp.pipe`` gives for its text in one process (scores agree to about
  1e-7: they depend slightly on which texts share a batch);
- each actor loads the pipeline once (a saved spaCy pipeline, or a GLiNER checkpoint directory /
  hub id plus labels, put into ``spacy.blank(lang)``); a bad model or missing labels fail in the
  driver before any actor starts;
- a crashed actor (process exit, OOM kill, lost node) is restarted and its unfinished batches are
  retried on the new actor (Ray Data's default: without limit; ``max_restarts`` and
  ``max_task_retries`` bound it); batches are pure functions of their rows, so a retried batch
  yields the same rows, once.

Options of ``annotate``: each actor gets ``num_cpus_per_actor`` CPUs (and as many torch threads)
and ``num_gpus_per_actor`` GPUs (> 0: the model runs on ``cuda`` unless ``annotator_options``
names a ``device``). ``batch_size`` rows go to each actor call and ``nlp.pipe`` batch.
``batch_format``: ``"pyarrow"`` (explicit column types, the right choice for Parquet),
``"pandas"`` or ``"numpy"`` (returned as Arrow). ``max_restarts`` / ``max_task_retries`` (-1:
unlimited) bound the fault tolerance; ``None`` keeps Ray Data's defaults (passed only when set:
Ray 2.60 warns that free-form actor options are deprecated). When the actors take every CPU of
the cluster, read the input with ``num_cpus=0`` (as ``run_cli`` does): Ray Data starts no read task
while the actors hold all CPUs, and the run waits forever.

``run_cli`` is the ``spacy-gliner ray-annotate`` command: JSONL or Parquet in, Parquet out.
Ray is imported only here (``import spacy_gliner`` never imports it).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Union

from ..cli.errors import CLIError
from ..cli.inputs import Labels
from ..cli.models import Settings, check_model, is_pipeline, load_annotator
from .columns import SPAN_COLUMNS, batch_texts, doc_spans, with_spans

__all__ = ["SPAN_COLUMNS", "GLiNERAnnotator", "annotate", "run_cli"]


class GLiNERAnnotator:
    """Callable class for ``Dataset.map_batches(GLiNERAnnotator, compute=ActorPoolStrategy(...),
    fn_constructor_kwargs={...})``: each actor builds one pipeline in ``__init__`` and annotates
    whole batches in ``__call__``.

    ``model``: saved spaCy pipeline directory (or installed package) with a ``gliner`` component,
    or a GLiNER checkpoint directory / hub id (then ``labels`` is required). ``labels``,
    ``threshold``, ``nested``, ``device`` and ``pipe_batch_size`` (windows per encoder pass)
    override the pipeline's own settings when given. ``torch_threads`` caps torch's intra-op
    threads (default: leave torch's setting). ``__call__`` takes a ``pyarrow.Table``, a
    ``pandas.DataFrame`` or a dict of numpy arrays and returns the same kind, with the span
    columns set and every other column and the row order unchanged; the input is not modified.
    """

    def __init__(
        self,
        model: str,
        labels: Optional[Labels] = None,
        *,
        threshold: Optional[float] = None,
        nested: bool = False,
        text_column: str = "text",
        lang: str = "en",
        device: Optional[str] = None,
        pipe_batch_size: Optional[int] = None,
        torch_threads: Optional[int] = None,
    ) -> None:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        settings = Settings(
            labels=labels,
            threshold=threshold,
            nested=nested,
            batch_size=pipe_batch_size,
            device=device,
        )
        self.nlp, name = load_annotator(str(model), settings, lang)
        self.spans_key: Optional[str] = self.nlp.get_pipe(name).cfg["spans_key"]
        self.text_column = text_column

    def __call__(self, batch: Any) -> Any:
        texts = batch_texts(batch, self.text_column)
        docs = self.nlp.pipe(texts, batch_size=max(1, len(texts)))
        return with_spans(batch, [doc_spans(doc, self.spans_key) for doc in docs])


def annotate(
    dataset: Any,
    pipeline: Union[str, Path],
    *,
    labels: Optional[Labels] = None,
    threshold: Optional[float] = None,
    text_column: str = "text",
    batch_size: int = 64,
    num_actors: int = 2,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    batch_format: str = "pyarrow",
    max_restarts: Optional[int] = None,
    max_task_retries: Optional[int] = None,
    annotator_options: Optional[dict[str, Any]] = None,
    annotator_cls: type[GLiNERAnnotator] = GLiNERAnnotator,
    **map_batches_args: Any,
) -> Any:
    """``dataset`` (a ``ray.data.Dataset`` with a string column ``text_column``) annotated by
    ``num_actors`` actors of ``annotator_cls`` (a :class:`GLiNERAnnotator`), ``batch_size`` rows
    per call: a lazy ``ray.data.Dataset`` with the span columns appended (guarantees and options:
    the module docstring). ``annotator_options`` go to the annotator (``nested``, ``lang``,
    ``device``, ``pipe_batch_size``, ``torch_threads``), others to ``map_batches``. Raises
    ``ValueError`` (before any actor starts) for a model that cannot load or lacks labels."""
    from ray.data import ActorPoolStrategy

    _check_pipeline(str(pipeline), labels)
    if num_actors < 1 or batch_size < 1:
        raise ValueError("num_actors and batch_size must be positive")
    kwargs = {
        "model": str(pipeline),
        "labels": labels,
        "threshold": threshold,
        "text_column": text_column,
        "device": "cuda" if num_gpus_per_actor > 0 else None,
        "torch_threads": max(1, math.floor(num_cpus_per_actor)),
        **(annotator_options or {}),
    }
    retries = {"max_restarts": max_restarts, "max_task_retries": max_task_retries}
    map_batches_args.update({k: v for k, v in retries.items() if v is not None})
    return dataset.map_batches(
        annotator_cls,
        fn_constructor_kwargs=kwargs,
        compute=ActorPoolStrategy(size=num_actors),
        batch_size=batch_size,
        batch_format=batch_format,
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
        **map_batches_args,
    )


def _check_pipeline(model: str, labels: Optional[Labels]) -> None:
    """What an actor would fail on at start, raised in the driver as ``ValueError``."""
    try:
        check_model(model)
    except CLIError as err:
        raise ValueError(str(err)) from None
    if labels is None and not is_pipeline(model):
        raise ValueError(f"{model} is a GLiNER checkpoint: give labels")


def input_files(source: Union[str, Path]) -> tuple[str, list[str]]:
    """``("json" | "parquet", files)``: a JSONL (``.jsonl`` / ``.json``) or Parquet file, or the
    files of one kind in a directory (sorted). Raises ``CLIError`` for anything else."""
    path = Path(source)
    if not path.exists():
        raise CLIError(f"{path}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    kinds = {_kind(p) for p in files} - {None}
    if len(kinds) != 1 or (not path.is_dir() and None in {_kind(p) for p in files}):
        raise CLIError(f"{path}: expected .jsonl/.json or .parquet input (one kind, not mixed)")
    return kinds.pop() or "", [str(p) for p in files if _kind(p) is not None]


def read_input(source: Union[str, Path]) -> Any:
    """A ``ray.data.Dataset`` of what :func:`input_files` finds in ``source`` (JSON Lines for
    ``.jsonl`` files). Its read tasks take no CPU slot (they are I/O), so a pool of actors holding
    every CPU of the cluster cannot starve them."""
    import ray.data

    kind, files = input_files(source)
    if kind == "parquet":
        return ray.data.read_parquet(files, num_cpus=0)
    lines = all(name.endswith(".jsonl") for name in files)
    return ray.data.read_json(files, lines=lines, num_cpus=0)


def _kind(path: Path) -> Optional[str]:
    if path.suffix == ".parquet":
        return "parquet"
    return "json" if path.suffix in (".jsonl", ".json") else None


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise CLIError(f"{output}: exists and is not a directory (Parquet output is a directory)")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise CLIError(f"{output} is not empty: pass --overwrite to replace it")
        shutil.rmtree(output)


def run_cli(
    input: Union[str, Path],
    output: Union[str, Path],
    model: str,
    labels: Optional[Labels] = None,
    *,
    address: Optional[str] = None,
    preserve_order: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> int:
    """Annotate ``input`` (JSONL or Parquet file, or a directory of them) into the Parquet
    directory ``output``: every input row once, with its columns and the span columns; in input
    order when ``preserve_order``. ``options`` are :func:`annotate`'s (``threshold``,
    ``text_column``, ``batch_size``, ``num_actors``, ...). Connects to the Ray cluster at
    ``address`` (``"auto"``: the running one; default: a new local one, shut down at the end).
    Bad input or options raise ``CLIError`` before Ray starts. Read and write tasks take no CPU
    slot, so the actors may take every CPU. Prints a summary line and returns 0."""
    import ray
    import ray.data

    source, out = Path(input), Path(output)
    _prepare_output(out, overwrite)
    try:
        _check_pipeline(model, labels)
    except ValueError as err:
        raise CLIError(str(err)) from None
    input_files(source)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = preserve_order
        begin = time.perf_counter()
        annotated = annotate(read_input(source), model, labels=labels, **options)
        annotated.write_parquet(str(out), ray_remote_args={"num_cpus": 0})
        seconds = time.perf_counter() - begin
        rows = ray.data.read_parquet(str(out)).count()
    finally:
        if started:
            ray.shutdown()
    print(f"{rows} rows annotated in {seconds:.1f} s -> {out}")
    return 0


def run_cli_args(args: Any) -> int:
    """``run_cli`` from the ``ray-annotate`` subcommand's ``argparse.Namespace``."""
    from ..cli.inputs import parse_labels

    options = {"nested": args.nested, "lang": args.lang, "device": args.device}
    return run_cli(
        args.input,
        args.output,
        args.model,
        parse_labels(args.labels, args.labels_file),
        address=args.address,
        preserve_order=not args.any_order,
        overwrite=args.overwrite,
        threshold=args.threshold,
        text_column=args.text_key,
        batch_size=args.batch_size,
        num_actors=args.num_actors,
        num_cpus_per_actor=args.cpus_per_actor,
        num_gpus_per_actor=args.gpus_per_actor,
        annotator_options={k: v for k, v in options.items() if v is not None},
    )


def build_parser() -> Any:
    """The ``ray-annotate`` command's ``argparse`` parser (``python -m
    spacy_gliner.integrations.ray``); its options are ``spacy-gliner annotate``'s where shared."""
    import argparse

    from ..cli.main import add_labels, positive_int

    p = argparse.ArgumentParser(
        prog="spacy-gliner-ray",
        description="Annotate on a pool of Ray actors: JSONL or Parquet in, Parquet directory out.",
    )
    p.add_argument("input", help=".jsonl / .json or .parquet file, or a directory of them")
    p.add_argument("output", help="output Parquet directory")
    p.add_argument(
        "--model", required=True, help="saved spaCy pipeline, GLiNER checkpoint or hub id"
    )
    add_labels(p, required=False)
    p.add_argument("--text-key", default="text", help="text column (text)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="rows per actor call (64)")
    p.add_argument("--num-actors", type=positive_int, default=2, help="actors (2)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per actor (1)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (0)")
    p.add_argument("--device", help="torch device of each actor (default cuda with GPUs, else cpu)")
    p.add_argument("--address", help="Ray cluster ('auto': the running one; default: a local one)")
    p.add_argument("--any-order", action="store_true", help="do not keep the input order")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT directory")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit code (2 on bad input, one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return run_cli_args(args)
    except CLIError as err:
        print(f"spacy-gliner-ray: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
