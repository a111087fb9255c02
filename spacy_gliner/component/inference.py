"""The inference half of a ``gliner`` pipe, shared by the torch pipe (``pipe.py``) and the ONNX
Runtime pipe (``onnx_pipe.py``): the label set and per-label thresholds, ``predict`` (Docs ->
GLiNER words -> engine results, Docs grouped by their label set) and ``set_annotations``
(``relations.annotate_doc``), so both runtimes write Docs with the same code. Imports no torch:
each runtime's pipe supplies its engine (``engine``, ``_loaded``, and ``_find`` when it runs
more than entity extraction).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Optional, Union

from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.util import minibatch

from ..engine.labels import LabelSet
from .doc_labels import doc_label_set, group_by_label_set
from .docs import doc_words
from .progress import Progress
from .relations import Result, annotate_doc
from .relations import relation_set as relation_settings
from .settings import RUNTIME_SETTINGS, engine_options, plain, validate
from .settings import thresholds as per_label_thresholds

LabelsArg = Union[Sequence[str], dict[str, str]]


# Guards lazy engine creation (module-level: a pipe must stay picklable).
_ENGINE_LOCK = threading.RLock()


class InferencePipe(Pipe):
    """Labels, thresholds, ``predict`` and ``set_annotations`` of a ``gliner`` pipe.

    A subclass sets ``runtime`` (``settings.RUNTIMES``), ``name`` and ``cfg`` (the inference
    settings, validated by ``_validate``), and provides ``engine`` (an engine of the loaded model
    with these settings: ``engine(words, labels, thresholds=..., sentence_starts=...)`` and
    ``label_plan(labels)``) and ``_loaded``. Per-call state stays in the calls (thread-safe as the
    engine is)."""

    runtime = "torch"
    name: str
    cfg: dict[str, Any]
    label_set: LabelSet
    relation_set: LabelSet
    _engine: Any

    # ---------------------------------------------------------------- settings
    def _validate(self) -> None:
        self.label_set, _ = validate(self.cfg, self.runtime)
        self.relation_set = relation_settings(self.cfg)

    def _restore_cfg(self, saved: dict[str, Any]) -> None:
        """Saved settings (labels, threshold, ...) come back; where and how this process runs the
        model (``RUNTIME_SETTINGS``) stays as configured, so ``spacy.load(path, config=...)`` can
        change it."""
        self.cfg.update({key: value for key, value in saved.items() if key not in RUNTIME_SETTINGS})
        self._validate()
        self._engine = None

    @property
    def engine(self) -> Any:
        """The engine of the loaded model with this pipe's settings (loads the model if needed;
        one per model and settings, shared by every call and thread)."""
        if self._engine is None:
            with _ENGINE_LOCK:
                if self._engine is None:
                    options = engine_options(self.cfg, self.runtime)
                    self._engine = self._model().engine(options)
        return self._engine

    def _model(self) -> Any:
        """The loaded model (``GLiNER`` or ``OnnxGLiNER``), loaded now if it is not yet."""
        raise NotImplementedError

    def _loaded(self) -> bool:
        """Whether the model is loaded (label prompts are checked against its tokenizer then)."""
        raise NotImplementedError

    def apply_settings(self) -> None:
        """Load the model if it is not loaded, and run it with ``cfg`` as it is now (after
        settings were changed in place: device, batch size, windows); the settings that need the
        model are checked now."""
        raise NotImplementedError

    @property
    def thresholds(self) -> list[float]:
        """Per-label thresholds from ``cfg["threshold"]`` as it is now (``spacy find-threshold``
        sets it between evaluations)."""
        return per_label_thresholds(self.cfg["threshold"], self.label_set.names)

    @property
    def labels(self) -> tuple:
        return self.label_set.names

    def add_label(self, label: str, prompt: Optional[str] = None) -> int:
        """Add a label (its prompt defaults to the label itself); zero-shot, no retraining needed."""
        if label in self.label_set.names:
            return 0
        labels = dict(zip(self.label_set.names, self.label_set.prompts))
        labels[label] = prompt or label
        self.set_labels(labels)
        return 1

    def set_labels(self, labels: LabelsArg) -> None:
        """Replace the label set (a list, or ``{label: prompt}``); nothing changes if it is invalid."""
        old = self.cfg["labels"]
        self.cfg["labels"] = plain(labels)
        try:
            self._validate()
            if self._loaded():
                self.engine.label_plan(self.label_set)  # prompts that need the tokenizer
        except ValueError:
            self.cfg["labels"] = old
            self._validate()
            raise

    # ---------------------------------------------------------------- inference
    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Docs are collected ``batch_size`` at a time so windows of different docs share
        encoder batches."""
        error_handler = self.get_error_handler()
        progress = Progress("docs annotated")
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                progress.add(len(docs), sum(len(doc) for doc in docs))
                yield from docs
            except Exception as err:
                error_handler(self.name, self, docs, err)

    def predict(self, docs: Iterable[Doc]) -> list[Result]:
        """One result per Doc. Docs with their own labels (``doc._.gliner_labels``) run with
        those; Docs that share a label set share encoder batches."""
        docs = list(docs)
        words, sentence_starts = zip(*(doc_words(doc) for doc in docs)) if docs else ((), ())
        label_sets = [doc_label_set(doc, self.label_set) for doc in docs]
        if any(not labels.names for labels in label_sets):
            raise ValueError(
                f"The '{self.name}' component has no labels: set labels in its config (or "
                "doc._.gliner_labels on each Doc)."
            )
        results: list[Any] = [None] * len(docs)
        for labels, index in group_by_label_set(label_sets):
            texts, starts = [words[i][0] for i in index], [sentence_starts[i] for i in index]
            found = self._find(texts, labels, self._thresholds_for(labels), starts)
            for i, result in zip(index, found):
                results[i] = result
        return results

    def _find(
        self,
        texts: Sequence[Sequence[str]],
        labels: LabelSet,
        thresholds: list[float],
        sentence_starts: Sequence[Sequence[int]],
    ) -> Sequence[Result]:
        """The engine's results for ``texts`` (a runtime with more than entities overrides it)."""
        return self.engine(texts, labels, thresholds=thresholds, sentence_starts=sentence_starts)

    def _thresholds_for(self, labels: LabelSet) -> list[float]:
        strict = labels == self.label_set
        return per_label_thresholds(self.cfg["threshold"], labels.names, strict)

    def set_annotations(self, docs: Iterable[Doc], results: Sequence[Result]) -> None:
        for doc, result in zip(docs, results):
            names = doc_label_set(doc, self.label_set).names
            annotate_doc(doc, result, names, self.relation_set.names, self.cfg)
