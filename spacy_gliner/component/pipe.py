"""The ``gliner`` spaCy component: Doc tokens -> GLiNER words -> scored spans -> ``doc.ents`` /
``doc.spans`` (and ``doc._.rel`` with ``relations``: ``relations.py``). Inference runs in the
engine, training in ``spacy_gliner.training``."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, Union, cast

import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.training import Example
from thinc.api import Model

from ..engine import Engine, LabelSet
from ..training.step import Rehearsal, Rows, make_rows, rehearse_step, train_step
from .doc_labels import register_doc_extensions
from .docs import doc_words, register_span_extension
from .examples import check_examples, collect_labels, training_texts
from .inference import InferencePipe
from .progress import Progress
from .registry import make_gliner_scorer, make_span_loss
from .relations import Result, check_relation_model, find, register_relation_extension
from .settings import (
    MODEL_DIR,
    TrainingSettings,
    check_trainable,
    device_of,
    engine_options,
    inference_settings,
)
from .shim import GLiNERShim
from .vectors import register_vector_extensions

logger = logging.getLogger("spacy_gliner")
# Guards lazy loading and engine creation (module-level: a pipe must stay picklable).
_LOCK = threading.RLock()


class GLiNERPipe(InferencePipe, TrainablePipe):
    """Zero-shot span NER: each label's prompt is scored against every span of up to
    ``max_width`` words (token-level models: spans of any width formed from per-word start / end /
    inside scores). ``settings`` are the inference settings (``INFERENCE_DEFAULTS`` fill
    what is missing); every one that needs no model is validated here, the rest when the model
    loads (``initialize``, ``from_disk`` or first use). Labels, ``predict`` and
    ``set_annotations``: ``inference.InferencePipe``."""

    def __init__(
        self,
        vocab: Any,
        model: Model,
        name: str = "gliner",
        *,
        settings: Optional[dict[str, Any]] = None,
        scorer: Optional[Callable] = None,
        loss: Optional[Callable] = None,
        training: Optional[TrainingSettings] = None,
        **setting_kwargs: Any,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: dict[str, Any] = {"checkpoint": model.attrs.get("checkpoint")}
        self.cfg.update(inference_settings({**(settings or {}), **setting_kwargs}))
        self._validate()
        self.scorer = scorer if scorer is not None else make_gliner_scorer(self.cfg["spans_key"])
        self.loss_fn = loss if loss is not None else make_span_loss()
        self.training = training if training is not None else TrainingSettings()
        self._rng = random.Random(self.training.seed)
        self._rehearsal = Rehearsal(self.training.rehearsal_labels, self.training.rehearsal_weight)
        self._gliner: Any = None
        self._engine: Optional[Engine] = None
        self._train_progress = Progress("training steps")
        register_doc_extensions()
        register_relation_extension()
        register_span_extension()
        register_vector_extensions()

    # ---------------------------------------------------------------- model
    @property
    def gliner(self) -> Any:
        """The loaded ``GLiNER`` (loads the ``checkpoint`` on first use if nothing was loaded)."""
        if self._gliner is None:
            if not self.cfg["checkpoint"]:
                raise ValueError(
                    f"The '{self.name}' component has no GLiNER weights: set "
                    "[components.gliner.model] checkpoint (a hub id or directory), or run "
                    "nlp.initialize() with a model_loader (see the README)."
                )
            with _LOCK:
                if self._gliner is None:
                    self.set_gliner(self._load_checkpoint())
        return self._gliner

    def _load_checkpoint(self) -> Any:
        from ..gliner import GLiNER

        logger.info("Loading GLiNER checkpoint %s", self.cfg["checkpoint"])
        return GLiNER.from_pretrained(self.cfg["checkpoint"], cache_dir=self.cfg["cache_dir"])

    def set_gliner(self, gliner: Any) -> None:
        """Use these weights (a ``spacy_gliner.GLiNER``), moved to the configured device; the
        settings that need the model (windows, dtype, label prompts) are checked now."""
        check_relation_model(gliner, self.relation_set, self.cfg)
        gliner.to(device_of(self.cfg))
        engine = gliner.engine(engine_options(self.cfg))
        if self.label_set.names:
            engine.label_plan(self.label_set)
        self._gliner, self._engine = gliner, engine
        cast(GLiNERShim, self.model.shims[0]).set_model(gliner.model)
        self._rehearsal = Rehearsal(self.training.rehearsal_labels, self.training.rehearsal_weight)

    def _loaded(self) -> bool:
        return self._gliner is not None

    def apply_settings(self) -> None:
        self._validate()
        self.set_gliner(self.gliner)

    def _model(self) -> Any:
        return self.gliner

    def _find(
        self,
        texts: Sequence[Sequence[str]],
        labels: LabelSet,
        thresholds: list[float],
        sentence_starts: Sequence[Sequence[int]],
    ) -> Sequence[Result]:
        """Entities, with relations or generated labels for those models (``relations.find``)."""
        cfg = self.cfg
        return find(self.engine, texts, labels, self.relation_set, thresholds, cfg, sentence_starts)

    # ---------------------------------------------------------------- training
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Union[list[str], dict[str, str]]] = None,
        model_loader: Optional[Callable] = None,
    ) -> None:
        """Load the starting weights (``model_loader`` from ``[initialize.components.gliner]``,
        else the model block's checkpoint) and take the labels from ``labels``, the config, or
        the examples."""
        self._require_examples(get_examples)
        if model_loader is not None:
            self.set_gliner(model_loader())
        _ = self.gliner  # loads the checkpoint if nothing was loaded
        if labels:
            self.set_labels(labels)
        elif not self.label_set.names:
            found = collect_labels(get_examples, self.cfg["spans_key"])
            if not found:
                raise ValueError(
                    f"The '{self.name}' component found no labels: the training examples have no "
                    "entities and no labels are configured. Set labels in [components.gliner] or "
                    "[initialize.components.gliner]."
                )
            self.set_labels(found)
        self._check_training_data(get_examples)
        self._configure_optimizer_groups()

    def _check_training_data(self, get_examples: Callable[[], Iterable[Example]]) -> None:
        prompt_of = dict(zip(self.label_set.names, self.label_set.prompts))
        cfg, skip = self.cfg, self.training.skip_bad_examples
        bad = check_examples(get_examples(), prompt_of, cfg["spans_key"], cfg["flat_ner"], skip)
        if bad:
            logger.warning(
                "gliner: %d training example(s) cannot be used and will be skipped.", bad
            )

    def _require_examples(self, get_examples: Callable) -> None:
        if get_examples is None or not callable(get_examples):
            raise ValueError(
                f"The '{self.name}' component's initialize needs a callable that returns Examples."
            )
        for _ in get_examples():
            return
        raise ValueError(
            f"The '{self.name}' component got an empty training corpus: check [corpora.train] "
            "and the paths."
        )

    def _configure_optimizer_groups(self) -> None:
        from ..training.params import parameter_groups

        t = self.training
        shim = cast(GLiNERShim, self.model.shims[0])
        shim.lr_scales, shim.weight_decay = parameter_groups(
            self.gliner.model, t.fine_tune, t.encoder_lr, t.others_lr, t.weight_decay, t.others_weight_decay
        )  # fmt: skip
        shim.grad_clip = t.grad_clip

    def _training_rows(self, examples: list[Example]) -> Rows:
        cfg, settings = self.gliner.config, self.training
        texts = training_texts(
            examples, self.label_set, self.cfg["spans_key"], self.cfg["flat_ner"],
            settings.skip_bad_examples,
        )  # fmt: skip
        ratio = settings.max_neg_type_ratio
        return make_rows(
            self.gliner, texts, self.label_set.prompts, settings.max_types or cfg.max_types,
            ratio if ratio is not None else cfg.max_neg_type_ratio, self._rng,
        )  # fmt: skip

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Any = None,
        losses: Optional[dict[str, float]] = None,
    ) -> dict[str, float]:
        """One gradient step on a batch. ``drop`` (spaCy's ``[training] dropout``) is the dropout
        of the GLiNER layers outside the encoder for this step; the encoder keeps its own."""
        self._check_trainable()
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        rows = self._training_rows(examples) if examples else None
        if rows is None or not rows.words:
            return losses
        loss = train_step(self.gliner, rows, self.loss_fn, self._rehearsal, drop)
        losses[self.name] += loss
        self._train_progress.add(1, sum(len(w) for w in rows.words), f", last loss {loss:.4g}")
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def rehearse(
        self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None, losses: Any = None
    ) -> dict[str, float]:
        """Distil the starting model's scores for ``rehearsal_labels`` on unlabelled text."""
        self._check_trainable()
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        words = [w for w in (doc_words(eg.predicted)[0][0] for eg in examples) if w]
        if not words or not self._rehearsal.labels:
            return losses
        losses[self.name] += rehearse_step(self.gliner, words, self._rehearsal)
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def _check_trainable(self) -> None:
        check_trainable(self.cfg, self.name)

    def finish_update(self, sgd: Any) -> None:
        """Apply the optimizer; the engine's cached label vectors follow the new weights."""
        super().finish_update(sgd)
        if self._engine is not None:
            self._engine.clear_cache()

    def get_loss(self, examples: Iterable[Example], scores: Any) -> tuple:
        """GLiNER computes its loss inside ``update`` (torch autograd); kept for the Pipe API."""
        raise NotImplementedError(
            "GLiNERPipe computes its loss in update(); call update() instead."
        )

    # ---------------------------------------------------------------- serialization
    def _has_weights(self) -> bool:
        """Weights are loaded, or can be (a checkpoint): a saved pipeline always holds them."""
        return self._gliner is not None or bool(self.cfg["checkpoint"])

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
            model_dir = path / MODEL_DIR
            self.set_gliner(
                GLiNER.from_pretrained(model_dir, local_files_only=True, map_location="cpu")
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
