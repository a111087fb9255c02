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
- a crashed actor (process exit, OOM kill, lost node) is restarted up to ``max_restarts`` times and
  its unfinished batches are retried up to ``max_task_retries`` times; batches are pure functions
  of their rows, so a retried batch yields the same rows once.

``run_cli`` is the ``spacy-gliner ray-annotate`` command: JSONL or Parquet in, Parquet out.
Ray is imported only here (``import spacy_gliner`` never imports it).
"""

from __future__ import annotations

import math
import shutil
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
    nested: bool = False,
    text_column: str = "text",
    batch_size: int = 64,
    num_actors: int = 2,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    lang: str = "en",
    device: Optional[str] = None,
    pipe_batch_size: Optional[int] = None,
    batch_format: str = "pyarrow",
    max_restarts: int = 3,
    max_task_retries: int = 3,
    annotator_cls: type[GLiNERAnnotator] = GLiNERAnnotator,
    **ray_remote_args: Any,
) -> Any:
    """``dataset`` (a ``ray.data.Dataset`` with a string column ``text_column``) annotated by
    ``num_actors`` actors, each with ``num_cpus_per_actor`` CPUs (also its torch thread count) and
    ``num_gpus_per_actor`` GPUs (> 0: the model runs on ``cuda`` unless ``device`` says otherwise).

    Returns a lazy ``ray.data.Dataset``: the input rows with the span columns appended (see the
    module docstring for the guarantees). ``batch_size`` is the number of rows per actor call (and
    per ``nlp.pipe`` batch); ``batch_format`` is ``"pyarrow"`` (explicit column types, the right
    choice for Parquet), ``"pandas"`` or ``"numpy"``. ``max_restarts`` / ``max_task_retries``
    (-1: unlimited) set the actors' fault tolerance; further keyword arguments go to Ray as actor
    options (``memory``, ``resources``, ``runtime_env``, ...). ``annotator_cls`` may be a subclass
    of :class:`GLiNERAnnotator`. Raises ``ValueError`` for a model that cannot be loaded or a
    checkpoint given without labels, before any actor starts.
    """
    from ray.data import ActorPoolStrategy

    _check_pipeline(str(pipeline), labels)
    if num_actors < 1 or batch_size < 1:
        raise ValueError("num_actors and batch_size must be positive")
    if num_gpus_per_actor > 0 and device is None:
        device = "cuda"
    kwargs = {
        "model": str(pipeline),
        "labels": labels,
        "threshold": threshold,
        "nested": nested,
        "text_column": text_column,
        "lang": lang,
        "device": device,
        "pipe_batch_size": pipe_batch_size,
        "torch_threads": max(1, math.floor(num_cpus_per_actor)),
    }
    return dataset.map_batches(
        annotator_cls,
        fn_constructor_kwargs=kwargs,
        compute=ActorPoolStrategy(size=num_actors),
        batch_size=batch_size,
        batch_format=batch_format,
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
        max_restarts=max_restarts,
        max_task_retries=max_task_retries,
        **ray_remote_args,
    )


def _check_pipeline(model: str, labels: Optional[Labels]) -> None:
    """What an actor would fail on at start, raised in the driver as ``ValueError``."""
    try:
        check_model(model)
    except CLIError as err:
        raise ValueError(str(err)) from None
    if labels is None and not is_pipeline(model):
        raise ValueError(f"{model} is a GLiNER checkpoint: give labels")


def read_input(source: Union[str, Path]) -> Any:
    """A ``ray.data.Dataset`` of a JSONL (``.jsonl`` / ``.json``) or Parquet file, or of a
    directory of such files (all of one kind). Raises ``CLIError`` for anything else."""
    import ray.data

    path = Path(source)
    if not path.exists():
        raise CLIError(f"{path}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    kinds = {_kind(p) for p in files} - {None}
    if len(kinds) != 1:
        raise CLIError(f"{path}: expected .jsonl/.json or .parquet input (one kind, not mixed)")
    wanted = [str(p) for p in files if _kind(p) is not None]
    if kinds == {"parquet"}:
        return ray.data.read_parquet(wanted)
    return ray.data.read_json(wanted)


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
    threshold: Optional[float] = None,
    nested: bool = False,
    text_column: str = "text",
    batch_size: int = 64,
    num_actors: int = 2,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    lang: str = "en",
    device: Optional[str] = None,
    address: Optional[str] = None,
    preserve_order: bool = True,
    overwrite: bool = False,
) -> int:
    """Annotate ``input`` (JSONL or Parquet file or directory) into the Parquet directory
    ``output``: every input row once, with its columns and the span columns; in input order when
    ``preserve_order``. Connects to the Ray cluster at ``address`` (``"auto"``: the running one;
    default: a new local one, shut down at the end). Bad input or options raise ``CLIError``
    before Ray starts; prints a summary line and returns 0."""
    import ray
    import ray.data

    source, out = Path(input), Path(output)
    _prepare_output(out, overwrite)
    try:
        _check_pipeline(model, labels)
    except ValueError as err:
        raise CLIError(str(err)) from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = preserve_order
        begin = time.perf_counter()
        annotated = annotate(
            read_input(source),
            model,
            labels=labels,
            threshold=threshold,
            nested=nested,
            text_column=text_column,
            batch_size=batch_size,
            num_actors=num_actors,
            num_cpus_per_actor=num_cpus_per_actor,
            num_gpus_per_actor=num_gpus_per_actor,
            lang=lang,
            device=device,
        )
        annotated.write_parquet(str(out))
        seconds = time.perf_counter() - begin
        rows = ray.data.read_parquet(str(out)).count()
    finally:
        if started:
            ray.shutdown()
    print(f"{rows} rows annotated in {seconds:.1f} s with {num_actors} actors -> {out}")
    return 0


def run_cli_args(args: Any) -> int:
    """``run_cli`` from the ``ray-annotate`` subcommand's ``argparse.Namespace``."""
    from ..cli.inputs import parse_labels

    return run_cli(
        args.input,
        args.output,
        args.model,
        parse_labels(args.labels, args.labels_file),
        threshold=args.threshold,
        nested=args.nested,
        text_column=args.text_key,
        batch_size=args.batch_size,
        num_actors=args.num_actors,
        num_cpus_per_actor=args.cpus_per_actor,
        num_gpus_per_actor=args.gpus_per_actor,
        lang=args.lang,
        device=args.device,
        address=args.address,
        preserve_order=not args.any_order,
        overwrite=args.overwrite,
    )
