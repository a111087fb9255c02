"""``GLiNER``: a loaded model with a plain-text API (no spaCy)."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Union

from .engine import Engine, EngineOptions, LabelSet, engine_dtype
from .io.model_files import ModelFiles
from .model.config import GLiNERConfig

_ENGINES_LOCK = threading.Lock()  # module-level: a GLiNER stays picklable
WORD_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")
Labels = Union[Sequence[str], Mapping[str, str]]


class GLiNER(ModelFiles):
    """A GLiNER model: ``GLiNER(config)`` (fresh heads) or ``GLiNER.from_pretrained(...)``.

    ``predict_entities`` / ``inference`` split text into words with the reference's regex and run
    the shared :class:`~spacy_gliner.engine.Engine` (one per batch size and dtype, reused across
    calls). ``dtype="int8"`` (CPU) runs an int8 copy of the model that its engine builds on first
    use; this GLiNER's own weights stay float32.
    """

    def __init__(self, config: GLiNERConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._engines: dict[EngineOptions, Engine] = {}

    def engine(self, options: EngineOptions | None = None) -> Engine:
        """The engine for ``options`` (created once; call ``clear_cache`` on it after training)."""
        options = options or EngineOptions()
        with _ENGINES_LOCK:
            engine = self._engines.get(options)
            if engine is None:
                engine = self._engines[options] = Engine(self, options)
        return engine

    def to(self, device: Any) -> GLiNER:
        """Move the weights to ``device``; engines made for the old device are dropped (their
        batching, and an int8 copy, belong to the device they were made for)."""
        super().to(device)
        with _ENGINES_LOCK:
            self._engines.clear()
        return self

    def predict_entities(
        self,
        text: str,
        labels: Labels,
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        dtype: str = "float32",
    ) -> list[dict[str, Any]]:
        """Entities in ``text`` as ``{"start", "end", "text", "label", "score"}`` (char offsets)."""
        return self.inference(
            [text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
            dtype=dtype,
        )[0]  # fmt: skip

    def inference(
        self,
        texts: Sequence[str],
        labels: Labels,
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int | None = None,
        dtype: str = "float32",
    ) -> list[list[dict[str, Any]]]:
        """Like the reference's ``inference``, but long texts are windowed instead of truncated.
        Anything in ``texts`` that is not a string gets no entities (as in the reference).
        ``batch_size``: rows per encoder call (default: ``EngineOptions``'); ``dtype``: "float32",
        "bfloat16", "float16" (GPU only) or "int8" (CPU only)."""
        if isinstance(texts, str):
            texts = [texts]  # as the reference does; iterating a str would score characters
        label_set = LabelSet.from_labels(labels)
        splits = [
            [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(t)]
            if isinstance(t, str)
            else []
            for t in texts
        ]
        rows = {} if batch_size is None else {"batch_size": batch_size}
        engine = self.engine(EngineOptions(**rows, dtype=engine_dtype(dtype)))
        words = [[w for w, _, _ in split] for split in splits]
        results = engine(words, label_set, thresholds=threshold)
        output = []
        for text, split, result in zip(texts, splits, results):
            ents = []
            for start, end, label, score in result.decode(flat_ner, multi_label):
                a, b = split[start][1], split[end][2]
                ents.append(
                    {
                        "start": a,
                        "end": b,
                        "text": text[a:b],
                        "label": label_set.names[label],
                        "score": score,
                    }
                )
            output.append(ents)
        return output


__all__ = ["GLiNER", "GLiNERConfig"]
