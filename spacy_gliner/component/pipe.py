"""The ``gliner`` spaCy component: Doc tokens -> GLiNER words -> scored spans -> ``doc.ents`` / ``doc.spans``."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Union, cast

import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.util import minibatch
from thinc.api import Model

from ..engine import Engine, EngineOptions, LabelSet, WordsResult
from ..training.step import Rehearsal, Rows, make_rows, rehearse_step, train_step
from .docs import check_no_overlap, doc_words, word_tokens
from .registry import make_gliner_scorer, make_span_loss
from .settings import DTYPES, ENTS_MODES, MODEL_DIR, RUNTIME_SETTINGS, TrainingSettings, plain
from .shim import GLiNERShim

logger = logging.getLogger("spacy_gliner")
# Guards lazy loading and engine creation (module-level: a pipe must stay picklable).
_LOCK = threading.RLock()


class GLiNERPipe(TrainablePipe):
    """Zero-shot span NER: each label's prompt is scored against every span of up to ``max_width`` words."""

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "gliner",
        *,
        checkpoint: Optional[str] = None,
        labels: Union[Sequence[str], dict[str, str]] = (),
        threshold: Union[float, dict[str, float]] = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        spans_key: Optional[str] = "sc",
        ents: str = "overwrite",
        batch_size: int = 16,
        window_overlap: Optional[int] = None,
        window_words: Optional[int] = None,
        max_labels_per_pass: Optional[int] = None,
        device: Optional[str] = None,
        dtype: str = "float32",
        cache_dir: Optional[str] = None,
        scorer: Optional[Callable] = None,
        loss: Optional[Callable] = None,
        training: Optional[TrainingSettings] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer if scorer is not None else make_gliner_scorer(spans_key)
        self.cfg: dict[str, Any] = {
            "checkpoint": checkpoint,
            "labels": plain(labels),
            "threshold": plain(threshold),
            "flat_ner": flat_ner,
            "multi_label": multi_label,
            "spans_key": spans_key,
            "ents": ents,
            "batch_size": batch_size,
            "window_overlap": window_overlap,
            "window_words": window_words,
            "max_labels_per_pass": max_labels_per_pass,
            "device": device,
            "dtype": dtype,
            "cache_dir": cache_dir,
        }
        self._validate()
        self.loss_fn = loss if loss is not None else make_span_loss()
        self.training = training if training is not None else TrainingSettings()
        self._rng = random.Random(self.training.seed)
        self._rehearsal = Rehearsal(self.training.rehearsal_labels, self.training.rehearsal_weight)
        self._gliner = None
        self._engine: Optional[Engine] = None
        for ext in ("gliner_windows", "gliner_label_groups"):
            if not Doc.has_extension(ext):
                Doc.set_extension(ext, default=None)

    # ---------------------------------------------------------------- settings
    def _validate(self) -> None:
        cfg = self.cfg
        self.label_set = LabelSet.from_labels(cfg["labels"]) if cfg["labels"] else LabelSet((), ())
        if not isinstance(cfg["flat_ner"], bool) or not isinstance(cfg["multi_label"], bool):
            raise ValueError("gliner: flat_ner and multi_label must be true or false.")
        if cfg["ents"] not in ENTS_MODES:
            raise ValueError(f"gliner: ents must be one of {ENTS_MODES}, got {cfg['ents']!r}.")
        if cfg["dtype"] not in DTYPES:
            raise ValueError(f"gliner: dtype must be one of {DTYPES}, got {cfg['dtype']!r}.")
        if cfg["spans_key"] is not None and (
            not isinstance(cfg["spans_key"], str) or not cfg["spans_key"]
        ):
            raise ValueError(
                "gliner: spans_key must be a non-empty string, or null to not write doc.spans."
            )
        for key in ("batch_size", "window_overlap", "window_words", "max_labels_per_pass"):
            value = cfg[key]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"gliner: {key} must be a positive integer, got {value!r}.")
        if (
            cfg.get("window_words")
            and cfg["window_overlap"]
            and cfg["window_words"] <= cfg["window_overlap"]
        ):
            raise ValueError(
                f"gliner: window_words ({cfg['window_words']}) must be larger than "
                f"window_overlap ({cfg['window_overlap']})."
            )
        self.thresholds = self._thresholds(cfg["threshold"])

    def _thresholds(self, threshold: Union[float, dict[str, float]]) -> list[float]:
        names = self.label_set.names
        if isinstance(threshold, dict):
            unknown = sorted(set(threshold) - set(names) - {"default"})
            if unknown:
                raise ValueError(
                    f"gliner: thresholds given for unknown labels {unknown}; labels are {list(names)}."
                )
            default = threshold.get("default", 0.5)
            values = {name: threshold.get(name, default) for name in names}
            values["default"] = default
        else:
            values = {"default": threshold}
        for name, value in values.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= 1.0
            ):
                raise ValueError(
                    f"gliner: threshold for {name!r} must be a number in [0, 1], got {value!r}."
                )
        return [float(values.get(name, values["default"])) for name in names]

    @property
    def labels(self) -> tuple:
        return self.label_set.names

    def add_label(self, label: str, prompt: Optional[str] = None) -> int:
        """Add a label (its prompt defaults to the label itself); zero-shot, so no retraining needed."""
        if label in self.label_set.names:
            return 0
        labels = dict(zip(self.label_set.names, self.label_set.prompts))
        labels[label] = prompt or label
        self.set_labels(labels)
        return 1

    def set_labels(self, labels: Union[Sequence[str], dict[str, str]]) -> None:
        """Replace the label set (a list, or ``{label: prompt}``)."""
        LabelSet.from_labels(plain(labels))  # raises before anything changes
        old = self.cfg["labels"]
        self.cfg["labels"] = plain(labels)
        try:
            self._validate()
        except ValueError:
            self.cfg["labels"] = old
            self._validate()
            raise

    # ---------------------------------------------------------------- model
    @property
    def gliner(self):
        """The loaded ``GLiNER`` (loads ``model`` on first use if nothing was loaded yet)."""
        if self._gliner is None:
            if not self.cfg["checkpoint"]:
                raise ValueError(
                    f"The '{self.name}' component has no GLiNER weights: set model = \"<hub id or directory>\" in its "
                    "config, or run nlp.initialize() with a model_loader (see the README)."
                )
            with _LOCK:
                if self._gliner is None:
                    self.set_gliner(self._load_checkpoint())
        return self._gliner

    def _load_checkpoint(self):
        from ..gliner import GLiNER

        logger.info("Loading GLiNER checkpoint %s", self.cfg["checkpoint"])
        return GLiNER.from_pretrained(self.cfg["checkpoint"], cache_dir=self.cfg["cache_dir"])

    def set_gliner(self, gliner) -> None:
        """Use these weights (a ``spacy_gliner.GLiNER``): moved to the configured device."""
        gliner.to(self._device())
        self._gliner = gliner
        cast(GLiNERShim, self.model.shims[0]).set_model(gliner.model)
        self._engine = None
        self._rehearsal = Rehearsal(self.training.rehearsal_labels, self.training.rehearsal_weight)

    def _device(self):
        import torch

        if self.cfg["device"]:
            return torch.device(self.cfg["device"])
        from thinc.api import get_torch_default_device

        return get_torch_default_device()

    @property
    def engine(self) -> Engine:
        """The inference engine of the loaded model with this component's settings (one per
        model and settings, shared by every call and thread)."""
        engine = self._engine
        if engine is None:
            import torch

            dtypes = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
            options = EngineOptions(
                batch_size=self.cfg["batch_size"],
                window_overlap=self.cfg["window_overlap"],
                window_words=self.cfg.get("window_words"),
                max_labels_per_pass=self.cfg["max_labels_per_pass"],
                dtype=dtypes[self.cfg["dtype"]],
            )
            with _LOCK:
                if self._engine is None:
                    self._engine = self.gliner.engine(options)
                engine = self._engine
        return engine

    # ---------------------------------------------------------------- inference
    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Docs are collected ``batch_size`` at a time so windows of different docs share encoder batches."""
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as err:
                error_handler(self.name, self, docs, err)

    def predict(self, docs: Iterable[Doc]) -> list[WordsResult]:
        docs = list(docs)
        if not self.label_set.names:
            raise ValueError(
                f"The '{self.name}' component has no labels: set labels in its config."
            )
        words, sentence_starts = zip(*(doc_words(doc) for doc in docs)) if docs else ((), ())
        return self.engine(
            [w for w, _ in words],
            self.label_set,
            thresholds=self.thresholds,
            sentence_starts=sentence_starts,
        )

    def set_annotations(self, docs: Iterable[Doc], results: list[WordsResult]) -> None:
        cfg = self.cfg
        for doc, result in zip(docs, results):
            token_index = word_tokens(doc)
            doc._.gliner_windows = result.num_windows
            doc._.gliner_label_groups = result.num_label_groups
            if cfg["spans_key"] is not None:
                chosen = result.decode(cfg["flat_ner"], cfg["multi_label"])
                spans = [self._span(doc, token_index, s) for s in chosen]
                doc.spans[cfg["spans_key"]] = SpanGroup(
                    doc,
                    name=cfg["spans_key"],
                    spans=spans,
                    attrs={"scores": [float(s[3]) for s in chosen]},
                )
            if cfg["ents"] != "none":
                flat = [self._span(doc, token_index, s) for s in result.decode(True, False)]
                if cfg["ents"] == "overwrite":
                    doc.set_ents(flat, default="outside")
                else:
                    taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
                    extra = [s for s in flat if not taken.intersection(range(s.start, s.end))]
                    doc.ents = sorted(list(doc.ents) + extra, key=lambda s: s.start)

    def _span(self, doc: Doc, token_index: list[int], span) -> Span:
        start, end, label, _ = span
        return Span(
            doc, token_index[start], token_index[end] + 1, label=self.label_set.names[label]
        )

    # ---------------------------------------------------------------- training
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Union[list[str], dict[str, str]]] = None,
        model_loader: Optional[Callable] = None,
    ) -> None:
        """Load the starting weights (``model_loader`` from ``[initialize.components.gliner]``, else the
        ``model`` setting) and take the labels from ``labels``, the config, or the examples."""
        self._require_examples(get_examples)
        if model_loader is not None:
            self.set_gliner(model_loader())
        _ = self.gliner  # loads the ``model`` setting if nothing was loaded
        if labels:
            self.set_labels(labels)
        elif not self.label_set.names:
            found: dict[str, None] = {}
            for eg in get_examples():
                for span in self._gold_spans(eg.reference):
                    found[span.label_] = None
            if not found:
                raise ValueError(
                    f"The '{self.name}' component found no labels: the training examples have no entities and no "
                    "labels are configured. Set labels in [components.gliner] or [initialize.components.gliner]."
                )
            self.set_labels(sorted(found))
        self._configure_optimizer_groups()

    def _require_examples(self, get_examples: Callable) -> None:
        if get_examples is None or not callable(get_examples):
            raise ValueError(
                f"The '{self.name}' component's initialize needs a callable that returns Examples."
            )
        for _ in get_examples():
            return
        raise ValueError(
            f"The '{self.name}' component got an empty training corpus: check [corpora.train] and the paths."
        )

    def _configure_optimizer_groups(self) -> None:
        from ..training.params import freeze_encoder, param_lr_scales, param_weight_decay

        settings = self.training
        module = self.gliner.model
        freeze_encoder(module, not settings.fine_tune)
        shim = cast(GLiNERShim, self.model.shims[0])
        base = settings.encoder_lr
        if settings.others_lr is not None and base is None:
            raise ValueError(
                "gliner: others_lr needs encoder_lr (the peak of [training.optimizer.learn_rate])."
            )
        shim.lr_scales = (
            param_lr_scales(module, base, settings.others_lr) if base is not None else {}
        )
        shim.weight_decay = param_weight_decay(
            module, settings.weight_decay, settings.others_weight_decay
        )
        shim.grad_clip = settings.grad_clip

    def _gold_spans(self, doc: Doc) -> list[Span]:
        key = self.cfg["spans_key"]
        if key is not None and key in doc.spans:
            return list(doc.spans[key])
        return list(doc.ents)

    def _training_rows(self, examples: list[Example]) -> Rows:
        """Words, gold (start, end, prompt) spans and label sets of each training window."""
        cfg = self.gliner.config
        prompt_of = dict(zip(self.label_set.names, self.label_set.prompts))
        texts = []
        for eg in examples:
            (words, token_index), _ = doc_words(eg.reference)
            word_of = {tok: w for w, tok in enumerate(token_index)}
            spans = []
            for span in self._gold_spans(eg.reference):
                if span.label_ not in prompt_of:
                    raise ValueError(
                        f"Training span {span.text!r} has label {span.label_!r}, which is not among the "
                        f"component's labels {list(self.label_set.names)}. Add it to labels in the config "
                        "(or remove it from the data)."
                    )
                inner = [word_of[i] for i in range(span.start, span.end) if i in word_of]
                if inner:
                    spans.append((inner[0], inner[-1], prompt_of[span.label_]))
            if self.cfg["flat_ner"] and self.cfg["spans_key"] in eg.reference.spans:
                check_no_overlap(spans, eg.reference.text)
            texts.append((words, spans))
        settings = self.training
        ratio = settings.max_neg_type_ratio
        return make_rows(
            self.gliner,
            texts,
            self.label_set.prompts,
            settings.max_types or cfg.max_types,
            ratio if ratio is not None else cfg.max_neg_type_ratio,
            self._rng,
        )

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[dict[str, float]] = None,
    ) -> dict[str, float]:
        """One gradient step on a batch (dropout comes from the model's own ``dropout`` setting)."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        if not examples:
            return losses
        rows = self._training_rows(examples)
        if not rows.words:
            return losses
        losses[self.name] += train_step(self.gliner, rows, self.loss_fn, self._rehearsal)
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def rehearse(
        self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None, losses=None
    ) -> dict[str, float]:
        """Distil the starting model's scores for ``rehearsal_labels`` on unlabelled text."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        words = [w for w in (doc_words(eg.predicted)[0][0] for eg in examples) if w]
        if not words or not self._rehearsal.labels:
            return losses
        losses[self.name] += rehearse_step(self.gliner, words, self._rehearsal)
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def finish_update(self, sgd) -> None:
        """Apply the optimizer; the engine's cached label vectors follow the new weights."""
        super().finish_update(sgd)
        if self._engine is not None:
            self._engine.clear_cache()

    def get_loss(self, examples: Iterable[Example], scores) -> tuple:
        """GLiNER computes its loss inside ``update`` (torch autograd); kept for the Pipe API."""
        raise NotImplementedError(
            "GLiNERPipe computes its loss in update(); call update() instead."
        )

    # ---------------------------------------------------------------- serialization
    def _has_weights(self) -> bool:
        """Weights are loaded, or can be (a ``model`` setting): a saved pipeline always holds them."""
        return self._gliner is not None or bool(self.cfg["checkpoint"])

    def _restore_cfg(self, saved: dict[str, Any]) -> None:
        """Saved settings (labels, threshold, ...) come back; where and how this process runs the model
        (``RUNTIME_SETTINGS``) stays as configured, so ``spacy.load(path, config=...)`` can change it."""
        self.cfg.update({key: value for key, value in saved.items() if key not in RUNTIME_SETTINGS})
        self._validate()
        self._engine = None

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        if "model" not in exclude and self._has_weights():
            self.gliner.save_pretrained(path / MODEL_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> GLiNERPipe:
        from ..gliner import GLiNER

        path = Path(path)
        if (path / "cfg").exists():
            self._restore_cfg(srsly.read_json(path / "cfg"))
        if "model" not in exclude and (path / MODEL_DIR).exists():
            self.set_gliner(
                GLiNER.from_pretrained(path / MODEL_DIR, local_files_only=True, map_location="cpu")
            )
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        data: dict[str, Any] = {"cfg": self.cfg}
        if "model" not in exclude and self._has_weights():
            data["model"] = self.gliner.to_bytes()
        return srsly.msgpack_dumps(data)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> GLiNERPipe:
        from ..gliner import GLiNER

        data = srsly.msgpack_loads(bytes_data)
        self._restore_cfg(data["cfg"])
        if "model" not in exclude and "model" in data:
            self.set_gliner(GLiNER.from_bytes(data["model"]))
        return self
