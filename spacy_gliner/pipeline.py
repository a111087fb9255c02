"""The ``gliner`` spaCy component: Doc tokens -> GLiNER words -> scored spans -> ``doc.ents`` / ``doc.spans``."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.util import minibatch
from thinc.api import Model

from .inference import LabelSet, Predictor, WordsResult
from .registry import build_gliner_model, make_gliner_scorer, make_span_loss

logger = logging.getLogger("spacy_gliner")

ENTS_MODES = ("overwrite", "merge", "none")
DTYPES = ("float32", "float16", "bfloat16")
# Where and how this process runs the model: from the config at load time, never from a saved pipeline.
RUNTIME_SETTINGS = ("device", "dtype", "batch_size", "cache_dir")
MODEL_DIR = "model"

DEFAULT_CONFIG: Dict[str, Any] = {
    "model": None,
    "labels": [],
    "threshold": 0.5,
    "flat_ner": True,
    "multi_label": False,
    "spans_key": "sc",
    "ents": "overwrite",
    "batch_size": 16,
    "window_overlap": None,
    "window_words": None,
    "max_labels_per_pass": None,
    "device": None,
    "dtype": "float32",
    "cache_dir": None,
    "scorer": {"@scorers": "spacy_gliner.scorer.v1", "spans_key": "sc"},
    # Training only (spacy train); see configs/ and the README.
    "loss": {"@losses": "spacy_gliner.span_loss.v1"},
    "fine_tune": True,
    "encoder_lr": None,
    "others_lr": None,
    "weight_decay": 0.0,
    "others_weight_decay": None,
    "grad_clip": 0.0,
    "max_types": None,
    "max_neg_type_ratio": None,
    "rehearsal_labels": [],
    "rehearsal_weight": 0.0,
    "seed": 0,
}


@Language.factory(
    "gliner",
    assigns=["doc.ents", "doc.spans"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner(
    nlp: Language,
    name: str,
    model: Optional[str],
    labels: Union[List[str], Dict[str, str]],
    threshold: Union[float, Dict[str, float]],
    flat_ner: bool,
    multi_label: bool,
    spans_key: Optional[str],
    ents: str,
    batch_size: int,
    window_overlap: Optional[int],
    window_words: Optional[int],
    max_labels_per_pass: Optional[int],
    device: Optional[str],
    dtype: str,
    cache_dir: Optional[str],
    scorer: Optional[Callable],
    loss: Callable,
    fine_tune: bool,
    encoder_lr: Optional[float],
    others_lr: Optional[float],
    weight_decay: float,
    others_weight_decay: Optional[float],
    grad_clip: float,
    max_types: Optional[int],
    max_neg_type_ratio: Optional[int],
    rehearsal_labels: List[str],
    rehearsal_weight: float,
    seed: int,
) -> "GLiNERPipe":
    """Zero-shot NER with a GLiNER checkpoint (``model``: hub id or directory; loaded on first use)."""
    return GLiNERPipe(
        nlp.vocab, build_gliner_model(), name, checkpoint=model, labels=labels, threshold=threshold,
        flat_ner=flat_ner, multi_label=multi_label, spans_key=spans_key, ents=ents, batch_size=batch_size,
        window_overlap=window_overlap, window_words=window_words, max_labels_per_pass=max_labels_per_pass,
        device=device, dtype=dtype, cache_dir=cache_dir, scorer=scorer, loss=loss,
        training=TrainingSettings(
            fine_tune=fine_tune, encoder_lr=encoder_lr, others_lr=others_lr, weight_decay=weight_decay,
            others_weight_decay=others_weight_decay, grad_clip=grad_clip, max_types=max_types,
            max_neg_type_ratio=max_neg_type_ratio, rehearsal_labels=list(rehearsal_labels),
            rehearsal_weight=rehearsal_weight, seed=seed,
        ),
    )


@dataclass
class TrainingSettings:
    """How ``update`` trains (the loss itself is the registered ``loss`` function).

    ``encoder_lr``/``others_lr``: the learning rates of the encoder (``token_rep_layer``) and of the
    other layers. spaCy's optimizer schedule should peak at ``encoder_lr``; the other layers get
    ``others_lr / encoder_lr`` times its rate. Decoupled weight decay per group (LayerNorm and bias
    excluded). ``grad_clip``: global gradient-norm clipping (0 = off). ``max_types`` and
    ``max_neg_type_ratio`` (default: the model's) drive negative label sampling.
    ``rehearsal_weight`` > 0 distils the starting model's scores for ``rehearsal_labels`` into
    every update, against forgetting zero-shot labels while fine-tuning on a few.
    """

    fine_tune: bool = True
    encoder_lr: Optional[float] = None
    others_lr: Optional[float] = None
    weight_decay: float = 0.0
    others_weight_decay: Optional[float] = None
    grad_clip: float = 0.0
    max_types: Optional[int] = None
    max_neg_type_ratio: Optional[int] = None
    rehearsal_labels: List[str] = field(default_factory=list)
    rehearsal_weight: float = 0.0
    seed: int = 0


class GLiNERPipe(TrainablePipe):
    """Zero-shot span NER: each label's prompt is scored against every span of up to ``max_width`` words."""

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "gliner",
        *,
        checkpoint: Optional[str] = None,
        labels: Union[Sequence[str], Dict[str, str]] = (),
        threshold: Union[float, Dict[str, float]] = 0.5,
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
        training: Optional["TrainingSettings"] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer if scorer is not None else make_gliner_scorer(spans_key)
        self.cfg: Dict[str, Any] = {
            "checkpoint": checkpoint, "labels": _plain(labels), "threshold": _plain(threshold),
            "flat_ner": flat_ner, "multi_label": multi_label, "spans_key": spans_key, "ents": ents,
            "batch_size": batch_size, "window_overlap": window_overlap, "window_words": window_words,
            "max_labels_per_pass": max_labels_per_pass,
            "device": device, "dtype": dtype, "cache_dir": cache_dir,
        }
        self._validate()
        self.loss_fn = loss if loss is not None else make_span_loss()
        self.training = training if training is not None else TrainingSettings()
        self._rng = random.Random(self.training.seed)
        self._prompt_budget: Optional[int] = None
        self._teacher = None
        self._gliner = None
        self._predictor: Optional[Predictor] = None
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
        if cfg["spans_key"] is not None and (not isinstance(cfg["spans_key"], str) or not cfg["spans_key"]):
            raise ValueError("gliner: spans_key must be a non-empty string, or null to not write doc.spans.")
        for key in ("batch_size", "window_overlap", "window_words", "max_labels_per_pass"):
            value = cfg[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"gliner: {key} must be a positive integer, got {value!r}.")
        if cfg.get("window_words") and cfg["window_overlap"] and cfg["window_words"] <= cfg["window_overlap"]:
            raise ValueError(
                f"gliner: window_words ({cfg['window_words']}) must be larger than window_overlap ({cfg['window_overlap']})."
            )
        self.thresholds = self._thresholds(cfg["threshold"])

    def _thresholds(self, threshold: Union[float, Dict[str, float]]) -> List[float]:
        names = self.label_set.names
        if isinstance(threshold, dict):
            unknown = sorted(set(threshold) - set(names) - {"default"})
            if unknown:
                raise ValueError(f"gliner: thresholds given for unknown labels {unknown}; labels are {list(names)}.")
            default = threshold.get("default", 0.5)
            values = {name: threshold.get(name, default) for name in names}
            values["default"] = default
        else:
            values = {"default": threshold}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"gliner: threshold for {name!r} must be a number in [0, 1], got {value!r}.")
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

    def set_labels(self, labels: Union[Sequence[str], Dict[str, str]]) -> None:
        """Replace the label set (a list, or ``{label: prompt}``)."""
        LabelSet.from_labels(_plain(labels))  # raises before anything changes
        old = self.cfg["labels"]
        self.cfg["labels"] = _plain(labels)
        self._prompt_budget = None
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
            from .gliner import GLiNER

            logger.info("Loading GLiNER checkpoint %s", self.cfg["checkpoint"])
            self.set_gliner(GLiNER.from_pretrained(self.cfg["checkpoint"], cache_dir=self.cfg["cache_dir"]))
        return self._gliner

    def set_gliner(self, gliner) -> None:
        """Use these weights (a ``spacy_gliner.GLiNER``): moved to the configured device."""
        gliner.to(self._device())
        self._gliner = gliner
        self.model.shims[0].set_model(gliner.model)
        self._predictor = None
        self._teacher = None
        self._prompt_budget = None

    def _device(self):
        import torch

        if self.cfg["device"]:
            return torch.device(self.cfg["device"])
        from thinc.api import get_torch_default_device

        return get_torch_default_device()

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            import torch

            dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.cfg["dtype"]]
            self._predictor = Predictor(
                self.gliner, batch_size=self.cfg["batch_size"], window_overlap=self.cfg["window_overlap"],
                window_words=self.cfg.get("window_words"), max_labels_per_pass=self.cfg["max_labels_per_pass"],
                dtype=dtype,
            )
        return self._predictor

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

    def predict(self, docs: Iterable[Doc]) -> List[WordsResult]:
        docs = list(docs)
        if not self.label_set.names:
            raise ValueError(f"The '{self.name}' component has no labels: set labels in its config.")
        words, sentence_starts = zip(*(_words(doc) for doc in docs)) if docs else ((), ())
        return self.predictor(
            [w for w, _ in words], self.label_set, thresholds=self.thresholds, sentence_starts=sentence_starts,
        )

    def set_annotations(self, docs: Iterable[Doc], results: List[WordsResult]) -> None:
        cfg = self.cfg
        for doc, result in zip(docs, results):
            token_index = _word_tokens(doc)
            doc._.gliner_windows = result.num_windows
            doc._.gliner_label_groups = result.num_label_groups
            if cfg["spans_key"] is not None:
                chosen = result.decode(cfg["flat_ner"], cfg["multi_label"])
                spans = [self._span(doc, token_index, s) for s in chosen]
                doc.spans[cfg["spans_key"]] = SpanGroup(
                    doc, name=cfg["spans_key"], spans=spans, attrs={"scores": [float(s[3]) for s in chosen]}
                )
            if cfg["ents"] != "none":
                flat = [self._span(doc, token_index, s) for s in result.decode(True, False)]
                if cfg["ents"] == "overwrite":
                    doc.set_ents(flat, default="outside")
                else:
                    taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
                    extra = [s for s in flat if not taken.intersection(range(s.start, s.end))]
                    doc.ents = sorted(list(doc.ents) + extra, key=lambda s: s.start)

    def _span(self, doc: Doc, token_index: List[int], span) -> Span:
        start, end, label, _ = span
        return Span(doc, token_index[start], token_index[end] + 1, label=self.label_set.names[label])

    # ---------------------------------------------------------------- training
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Union[List[str], Dict[str, str]]] = None,
        model_loader: Optional[Callable] = None,
    ) -> None:
        """Load the starting weights (``model_loader`` from ``[initialize.components.gliner]``, else the
        ``model`` setting) and take the labels from ``labels``, the config, or the examples."""
        self._require_examples(get_examples)
        if model_loader is not None:
            self.set_gliner(model_loader())
        self.gliner  # loads the ``model`` setting if nothing was loaded
        if labels:
            self.set_labels(labels)
        elif not self.label_set.names:
            found: Dict[str, None] = {}
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
            raise ValueError(f"The '{self.name}' component's initialize needs a callable that returns Examples.")
        for _ in get_examples():
            return
        raise ValueError(f"The '{self.name}' component got an empty training corpus: check [corpora.train] and the paths.")

    def _configure_optimizer_groups(self) -> None:
        from .training import freeze_encoder, param_lr_scales, param_weight_decay

        settings = self.training
        module = self.gliner.model
        freeze_encoder(module, not settings.fine_tune)
        shim = self.model.shims[0]
        base = settings.encoder_lr
        if settings.others_lr is not None and base is None:
            raise ValueError("gliner: others_lr needs encoder_lr (the peak of [training.optimizer.learn_rate]).")
        shim.lr_scales = param_lr_scales(module, base, settings.others_lr) if base is not None else {}
        shim.weight_decay = param_weight_decay(module, settings.weight_decay, settings.others_weight_decay)
        shim.grad_clip = settings.grad_clip

    def _gold_spans(self, doc: Doc) -> List[Span]:
        key = self.cfg["spans_key"]
        if key is not None and key in doc.spans:
            return list(doc.spans[key])
        return list(doc.ents)

    def _training_rows(self, examples: List[Example]):
        """Words, gold (start, end, prompt) spans and label sets of each training window."""
        from .training import sample_label_sets

        cfg = self.gliner.config
        prompt_of = dict(zip(self.label_set.names, self.label_set.prompts))
        words_list, spans_list = [], []
        for eg in examples:
            (words, token_index), _ = _words(eg.reference)
            word_of = {tok: w for w, tok in enumerate(token_index)}
            spans = []
            for span in self._gold_spans(eg.reference):
                if span.label_ not in prompt_of:
                    raise ValueError(
                        f"Training span {span.text!r} has label {span.label_!r}, which is not among the component's "
                        f"labels {list(self.label_set.names)}. Add it to labels in the config (or remove it from the data)."
                    )
                inner = [word_of[i] for i in range(span.start, span.end) if i in word_of]
                if inner:
                    spans.append((inner[0], inner[-1], prompt_of[span.label_]))
            if self.cfg["flat_ner"] and self.cfg["spans_key"] in eg.reference.spans:
                _check_no_overlap(spans, eg)
            for start, end in self._training_windows(words):
                words_list.append(words[start:end])
                spans_list.append([(s - start, e - start, l) for s, e, l in spans if s >= start and e < end])
        types = [[label for _, _, label in spans] for spans in spans_list]
        label_sets = sample_label_sets(
            types, list(self.label_set.prompts), self.training.max_types or cfg.max_types,
            self.training.max_neg_type_ratio if self.training.max_neg_type_ratio is not None else cfg.max_neg_type_ratio,
            self._rng,
        )
        return words_list, spans_list, label_sets

    def _training_windows(self, words: List[str]) -> List[tuple]:
        """Windows of a long training doc, sized like inference windows for the largest label prompt."""
        from .tokenization import max_sequence_tokens
        from .windows import plan_windows

        gliner = self.gliner
        cfg = gliner.config
        if len(words) <= 32:
            return [(0, len(words))]
        if self._prompt_budget is None:
            counts = sorted((gliner.prompts.prompt_token_count([p]) - 2 for p in self.label_set.prompts), reverse=True)
            max_types = self.training.max_types or cfg.max_types
            prompt = sum(counts[:max_types]) + min(max_types, len(counts)) + 1
            limit = max_sequence_tokens(gliner.tokenizer, gliner.model.token_rep_layer.bert_layer.model.config)
            self._prompt_budget = max(64, limit - gliner.prompts.num_special - prompt)
        counts = gliner.prompts.word_token_counts(words)
        return [tuple(w) for w in plan_windows(counts, self._prompt_budget, cfg.max_len, cfg.max_width)]

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One gradient step on a batch (dropout comes from the model's own ``dropout`` setting)."""
        from .training import span_targets

        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        if not examples:
            return losses
        words, spans, label_sets = self._training_rows(examples)
        keep = [i for i, w in enumerate(words) if w]
        if not keep:
            return losses
        words, spans, label_sets = [words[i] for i in keep], [spans[i] for i in keep], [label_sets[i] for i in keep]
        gliner = self.gliner
        gliner.model.train()
        try:
            logits, label_mask = self._forward(gliner, words, label_sets)
            targets, span_mask = span_targets(spans, label_sets, [len(w) for w in words], gliner.config.max_width)
            loss = self.loss_fn(logits, targets.to(logits.device), span_mask.to(logits.device), label_mask)
            if self.training.rehearsal_weight > 0 and self.training.rehearsal_labels:
                loss = loss + self.training.rehearsal_weight * self._rehearsal_loss(words)
            loss.backward()
        finally:
            gliner.model.eval()
        losses[self.name] += float(loss.detach())
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def rehearse(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None, losses=None) -> Dict[str, float]:
        """Distil the starting model's scores for ``rehearsal_labels`` on unlabelled text (spaCy's rehearse)."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        words = [w for w in (_words(eg.predicted)[0][0] for eg in examples) if w]
        if not words or not self.training.rehearsal_labels:
            return losses
        self.gliner.model.train()
        try:
            loss = self._rehearsal_loss(words)
            loss.backward()
        finally:
            self.gliner.model.eval()
        losses[self.name] += float(loss.detach())
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def _forward(self, gliner, words, label_sets):
        device = gliner.device
        inputs = {k: v.to(device) for k, v in gliner.prompts.encode(words, label_sets).items()}
        if gliner.config.is_bi_encoder:
            inputs["labels_embeddings"], inputs["labels_mask"] = _bi_encoder_labels(gliner, label_sets, device)
        logits, _, label_mask = gliner.model(**inputs)
        return logits, label_mask

    def _rehearsal_loss(self, words):
        import copy

        import torch

        labels = [list(self.training.rehearsal_labels)] * len(words)
        if self._teacher is None:
            self._teacher = copy.deepcopy(self.gliner.model).eval()
            self._teacher.requires_grad_(False)
        teacher_gliner = _Swapped(self.gliner, self._teacher)
        with torch.no_grad():
            target, _ = self._forward(teacher_gliner, words, labels)
        logits, _ = self._forward(self.gliner, words, labels)
        lengths = torch.tensor([len(w) for w in words], device=logits.device)
        ends = torch.arange(logits.size(1), device=logits.device)[:, None] + torch.arange(logits.size(2), device=logits.device)
        valid = (ends[None] < lengths[:, None, None]).unsqueeze(-1).float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.sigmoid(target), reduction="none")
        return (bce * valid).sum() / valid.sum().clamp(min=1.0)

    def get_loss(self, examples: Iterable[Example], scores) -> tuple:
        """GLiNER computes its loss inside ``update`` (torch autograd); kept for the Pipe API."""
        raise NotImplementedError("GLiNERPipe computes its loss in update(); call update() instead.")

    # ---------------------------------------------------------------- serialization
    def _has_weights(self) -> bool:
        """Weights are loaded, or can be (a ``model`` setting): a saved pipeline always holds them."""
        return self._gliner is not None or bool(self.cfg["checkpoint"])

    def _restore_cfg(self, saved: Dict[str, Any]) -> None:
        """Saved settings (labels, threshold, ...) come back; where and how this process runs the model
        (``RUNTIME_SETTINGS``) stays as configured, so ``spacy.load(path, config=...)`` can change it."""
        self.cfg.update({key: value for key, value in saved.items() if key not in RUNTIME_SETTINGS})
        self._validate()
        self._predictor = None

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        if "model" not in exclude and self._has_weights():
            self.gliner.save_pretrained(path / MODEL_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "GLiNERPipe":
        from .gliner import GLiNER

        path = Path(path)
        if (path / "cfg").exists():
            self._restore_cfg(srsly.read_json(path / "cfg"))
        if "model" not in exclude and (path / MODEL_DIR).exists():
            self.set_gliner(GLiNER.from_pretrained(path / MODEL_DIR, local_files_only=True, map_location="cpu"))
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        data: Dict[str, Any] = {"cfg": self.cfg}
        if "model" not in exclude and self._has_weights():
            data["model"] = self.gliner.to_bytes()
        return srsly.msgpack_dumps(data)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "GLiNERPipe":
        from .gliner import GLiNER

        data = srsly.msgpack_loads(bytes_data)
        self._restore_cfg(data["cfg"])
        if "model" not in exclude and "model" in data:
            self.set_gliner(GLiNER.from_bytes(data["model"]))
        return self


class _Swapped:
    """A GLiNER view with another torch module (the frozen teacher for rehearsal)."""

    def __init__(self, gliner, module) -> None:
        self.config, self.prompts, self.model, self.device = gliner.config, gliner.prompts, module, gliner.device


def _bi_encoder_labels(gliner, label_sets, device):
    import torch

    union = list(dict.fromkeys(label for labels in label_sets for label in labels))
    enc = {k: v.to(device) for k, v in gliner.prompts.encode_labels(union).items()}
    vectors = gliner.model.encode_labels(**enc)  # [N, D]
    width = max(len(labels) for labels in label_sets)
    index = torch.zeros(len(label_sets), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(label_sets), width, dtype=torch.bool, device=device)
    for i, labels in enumerate(label_sets):
        index[i, : len(labels)] = torch.tensor([union.index(label) for label in labels], device=device)
        mask[i, : len(labels)] = True
    return vectors[index] * mask.unsqueeze(-1), mask


def _check_no_overlap(spans, eg: Example) -> None:
    ordered = sorted(spans)
    for (s1, e1, l1), (s2, e2, l2) in zip(ordered, ordered[1:]):
        if s2 <= e1:
            raise ValueError(
                f"Overlapping training spans ({s1}-{e1} {l1!r}, {s2}-{e2} {l2!r}) in {eg.reference.text[:60]!r} while "
                "flat_ner = true: set flat_ner = false for nested data, or remove the overlap."
            )


def _word_tokens(doc: Doc) -> List[int]:
    """Token indices of GLiNER's words: every token that is not whitespace."""
    return [t.i for t in doc if not t.is_space]


def _words(doc: Doc):
    """GLiNER words (non-whitespace tokens) with their token indices, and sentence-start word indices."""
    index = _word_tokens(doc)
    starts: List[int] = []
    if doc.has_annotation("SENT_START"):
        word_of = {tok: w for w, tok in enumerate(index)}
        starts = [word_of[s.start] for s in doc.sents if s.start in word_of]
    return ([doc[i].text for i in index], index), starts


def _plain(value: Any) -> Any:
    """Config values as plain lists/dicts (spaCy may pass tuples or confection containers)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return list(value)
    return value
