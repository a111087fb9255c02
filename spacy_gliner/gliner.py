"""``GLiNER``: a loaded model with a plain-text API (no spaCy)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Union

from .engine import Engine, EngineOptions, LabelSet, engine_dtype
from .engine.entities import WORD_PATTERN, entity_dicts, split_words
from .engine.label_decoder import LabelDecoderEngine
from .engine.relations import RelationEngine
from .engine.vectors import check_vectors
from .io.model_files import ModelFiles
from .model.config import GLiNERConfig

_ENGINES_LOCK = threading.Lock()  # module-level: a GLiNER stays picklable
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
        return_vectors: bool = False,
        return_label_vectors: bool = False,
    ) -> list[dict[str, Any]]:
        """Entities in ``text`` as ``{"start", "end", "text", "label", "score"}`` (char offsets);
        see :meth:`inference` for the vectors."""
        return self.inference(
            [text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
            dtype=dtype, return_vectors=return_vectors, return_label_vectors=return_label_vectors,
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
        return_vectors: bool = False,
        return_label_vectors: bool = False,
    ) -> list[list[dict[str, Any]]]:
        """Like the reference's ``inference``, but long texts are windowed instead of truncated.
        Anything in ``texts`` that is not a string gets no entities (as in the reference).
        ``batch_size``: rows per encoder call (default: ``EngineOptions``'); ``dtype``: "float32",
        "bfloat16", "float16" (GPU only) or "int8" (CPU only). Label-decoder checkpoints add
        ``"generated_labels"`` (``[name]``, written greedily) to each entity, as the reference
        does with ``do_sample=False``. ``return_vectors`` / ``return_label_vectors`` (span- and
        token-level entity models) add ``"vector"`` / ``"label_vector"`` (numpy float32 ``[D]``,
        as the reference: the span vector and the label vector its score compares; long texts:
        from the window that owns the span)."""
        if isinstance(texts, str):
            texts = [texts]  # as the reference does; iterating a str would score characters
        label_set = LabelSet.from_labels(labels)
        splits = [_split(t) for t in texts]
        engine = self.engine(EngineOptions(batch_size=batch_size, dtype=engine_dtype(dtype)))
        words = [[w for w, _, _ in split] for split in splits]
        vectors = return_vectors or return_label_vectors
        if vectors:
            check_vectors(self.config)
        if self.decoder_tokenizer is not None:
            generated = LabelDecoderEngine(engine)(words, label_set, thresholds=threshold)
            return [
                _generated_entities(text, split, result.decode(flat_ner, multi_label), label_set)
                for text, split, result in zip(texts, splits, generated)
            ]
        results = engine(words, label_set, thresholds=threshold, vectors=vectors)
        output = []
        for text, split, result in zip(texts, splits, results):
            decoded = result.decode(flat_ner, multi_label)
            ents = _entities(text, split, decoded, label_set)
            if vectors:
                _add_vectors(ents, result.vectors_of(decoded), return_vectors, return_label_vectors)
            output.append(ents)
        return output

    def predict_relations(
        self,
        text: str,
        labels: Labels,
        relations: Labels,
        *,
        threshold: float = 0.5,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        flat_ner: bool = True,
        multi_label: bool = False,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Entities and relations of ``text`` (relation-extraction checkpoints), as the
        reference's ``predict_relations``; see :meth:`extract_relations`."""
        return self.extract_relations(
            [text],
            labels,
            relations,
            threshold=threshold,
            adjacency_threshold=adjacency_threshold,
            relation_threshold=relation_threshold,
            flat_ner=flat_ner,
            multi_label=multi_label,
        )[0]

    def extract_relations(
        self,
        texts: Sequence[str],
        labels: Labels,
        relations: Labels,
        *,
        threshold: float = 0.5,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int | None = None,
    ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Per text, ``(entities, relations)``: entities as :meth:`inference` gives them;
        relations as ``{"head": {...}, "tail": {...}, "relation", "score"}``, head and tail
        holding ``start``, ``end``, ``text``, ``type`` and ``entity_idx`` (the index into the
        entities). ``threshold`` serves entities, adjacency and relations unless
        ``adjacency_threshold`` / ``relation_threshold`` are given. Relations are found within
        an encoder window (long texts: see ``spacy_gliner.engine.relations``)."""
        if isinstance(texts, str):
            texts = [texts]
        label_set, relation_set = LabelSet.from_labels(labels), _relation_set(relations)
        splits = [_split(t) for t in texts]
        engine = RelationEngine(self.engine(EngineOptions(batch_size=batch_size)))
        results = engine(
            [[w for w, _, _ in split] for split in splits],
            label_set,
            relation_set,
            thresholds=threshold,
            adjacency_threshold=_or(adjacency_threshold, threshold),
            relation_threshold=_or(relation_threshold, threshold),
        )
        output = []
        for text, split, result in zip(texts, splits, results):
            decoded, found = result.decode(flat_ner, multi_label)
            ents = _entities(text, split, decoded, label_set)
            rels = [
                {
                    "head": _endpoint(ents, r.head),
                    "tail": _endpoint(ents, r.tail),
                    "relation": relation_set.names[r.label],
                    "score": r.score,
                }
                for r in found
            ]
            output.append((ents, rels))
        return output


_split = split_words
_entities = entity_dicts


def _add_vectors(
    ents: list[dict[str, Any]], pairs: list, span_vectors: bool, label_vectors: bool
) -> None:
    for ent, (span_vector, label_vector) in zip(ents, pairs):
        if span_vectors:
            ent["vector"] = span_vector
        if label_vectors:
            ent["label_vector"] = label_vector


def _generated_entities(
    text: str, split: list, decoded: list, label_set: LabelSet
) -> list[dict[str, Any]]:
    ents = _entities(text, split, [ent for ent, _ in decoded], label_set)
    for ent, (_, name) in zip(ents, decoded):
        if name is not None:
            ent["generated_labels"] = [name]
    return ents


def _endpoint(ents: list[dict[str, Any]], index: int) -> dict[str, Any]:
    ent = ents[index]
    return {
        "start": ent["start"],
        "end": ent["end"],
        "text": ent["text"],
        "type": ent["label"],
        "entity_idx": index,
    }


def _relation_set(relations: Labels) -> LabelSet:
    """Relation types as a label set; an empty list is allowed (entities only)."""
    if isinstance(relations, (list, tuple, dict)) and not relations:
        return LabelSet((), ())
    return LabelSet.from_labels(relations)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


__all__ = ["WORD_PATTERN", "GLiNER", "GLiNERConfig"]
