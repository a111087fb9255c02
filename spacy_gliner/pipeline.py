"""The ``gliner`` spaCy component: Doc tokens -> GLiNER words -> scored spans -> ``doc.ents`` / ``doc.spans``."""
from __future__ import annotations

import logging
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
from .registry import build_gliner_model, make_gliner_scorer

logger = logging.getLogger("spacy_gliner")

ENTS_MODES = ("overwrite", "merge", "none")
DTYPES = ("float32", "float16", "bfloat16")
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
    "max_labels_per_pass": None,
    "device": None,
    "dtype": "float32",
    "cache_dir": None,
    "scorer": {"@scorers": "spacy_gliner.scorer.v1", "spans_key": "sc"},
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
    max_labels_per_pass: Optional[int],
    device: Optional[str],
    dtype: str,
    cache_dir: Optional[str],
    scorer: Optional[Callable],
) -> "GLiNERPipe":
    """Zero-shot NER with a GLiNER checkpoint (``model``: hub id or directory; loaded on first use)."""
    return GLiNERPipe(
        nlp.vocab, build_gliner_model(), name, checkpoint=model, labels=labels, threshold=threshold,
        flat_ner=flat_ner, multi_label=multi_label, spans_key=spans_key, ents=ents, batch_size=batch_size,
        window_overlap=window_overlap, max_labels_per_pass=max_labels_per_pass, device=device, dtype=dtype,
        cache_dir=cache_dir, scorer=scorer,
    )


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
        max_labels_per_pass: Optional[int] = None,
        device: Optional[str] = None,
        dtype: str = "float32",
        cache_dir: Optional[str] = None,
        scorer: Optional[Callable] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer if scorer is not None else make_gliner_scorer(spans_key)
        self.cfg: Dict[str, Any] = {
            "checkpoint": checkpoint, "labels": _plain(labels), "threshold": _plain(threshold),
            "flat_ner": flat_ner, "multi_label": multi_label, "spans_key": spans_key, "ents": ents,
            "batch_size": batch_size, "window_overlap": window_overlap, "max_labels_per_pass": max_labels_per_pass,
            "device": device, "dtype": dtype, "cache_dir": cache_dir,
        }
        self._validate()
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
        for key in ("batch_size", "window_overlap", "max_labels_per_pass"):
            value = cfg[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"gliner: {key} must be a positive integer, got {value!r}.")
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
        self.cfg["labels"] = _plain(labels)
        self._validate()

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
                max_labels_per_pass=self.cfg["max_labels_per_pass"], dtype=dtype,
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
            token_index = _words(doc)[0][1]
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

    # ---------------------------------------------------------------- serialization
    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        if "model" not in exclude and self._gliner is not None:
            self._gliner.save_pretrained(path / MODEL_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "GLiNERPipe":
        from .gliner import GLiNER

        path = Path(path)
        if (path / "cfg").exists():
            self.cfg.update(srsly.read_json(path / "cfg"))
            self._validate()
        if "model" not in exclude and (path / MODEL_DIR).exists():
            self.set_gliner(GLiNER.from_pretrained(path / MODEL_DIR, local_files_only=True, map_location="cpu"))
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        data: Dict[str, Any] = {"cfg": self.cfg}
        if "model" not in exclude and self._gliner is not None:
            data["model"] = self._gliner.to_bytes()
        return srsly.msgpack_dumps(data)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "GLiNERPipe":
        from .gliner import GLiNER

        data = srsly.msgpack_loads(bytes_data)
        self.cfg.update(data["cfg"])
        self._validate()
        if "model" not in exclude and "model" in data:
            self.set_gliner(GLiNER.from_bytes(data["model"]))
        return self


def _words(doc: Doc):
    """GLiNER words (non-whitespace tokens) with their token indices, and sentence-start word indices."""
    index = [t.i for t in doc if not t.is_space]
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
