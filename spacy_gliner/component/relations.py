"""Relation extraction in the ``gliner`` component: the ``relations`` settings, running a
relation-extraction checkpoint, and ``doc._.rel``.

``doc._.rel`` follows spacy-llm's relation convention: a list with one dict per relation,
``{"dep": i, "dest": j, "relation": label, "score": p}``, where ``i`` / ``j`` index the head and
tail entity in ``doc.ents`` (after the component wrote them). Relations are decoded against the
flat entity decoding that ``doc.ents`` receives; a relation whose head or tail entity (span and
label) is not in the final ``doc.ents`` (``ents = "merge"`` kept an existing entity there, or
``ents = "none"``) is left out. Each (head, tail, relation) appears once. Relations are found within an encoder
window (see ``spacy_gliner.engine.relations``): in long documents, entities that never share a
window get none. Stored in a DocBin made with ``store_user_data=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union, cast

from spacy.tokens import Doc

from ..engine.labels import LabelSet
from ..engine.results import WordsResult
from ..model.config import REL_TOKEN
from .docs import annotate, word_tokens
from .settings import PROMPT_TOKENS

if TYPE_CHECKING:  # torch modules: imported where a torch model runs
    from ..engine.engine import Engine
    from ..engine.label_decoder import GeneratedResult
    from ..engine.relations import RelexResult

RELATION_EXTENSION = "rel"
# One Doc's result: entities; entities and relations; entities and generated labels.
Result = Union[WordsResult, "RelexResult", "GeneratedResult"]


def register_relation_extension() -> None:
    """Register ``doc._.rel`` (default None) unless something (e.g. spacy-llm) already did."""
    if not Doc.has_extension(RELATION_EXTENSION):
        Doc.set_extension(RELATION_EXTENSION, default=None)


def relation_set(cfg: dict[str, Any]) -> LabelSet:
    """The ``relations`` setting as a label set (empty: no relation extraction); checks the
    relation thresholds. Raises ``ValueError`` naming the setting."""
    for name in ("adjacency_threshold", "relation_threshold"):
        value = cfg[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (not number or not 0.0 <= value <= 1.0):
            raise ValueError(f"gliner: {name} must be a number in [0, 1] or null, got {value!r}.")
    if not cfg["relations"]:
        return LabelSet((), ())
    try:
        relations = LabelSet.from_labels(cfg["relations"])
    except ValueError as err:
        raise ValueError(f"gliner: relations: {err}") from err
    for prompt in relations.prompts:
        found = [t for t in (*PROMPT_TOKENS, REL_TOKEN) if t in prompt]
        if found:
            raise ValueError(
                f"gliner: relation {prompt!r} contains the prompt token(s) {found}, which the "
                "model reads as prompt structure. Remove them from the relation type."
            )
    return relations


def check_relation_model(gliner: Any, relations: LabelSet, cfg: dict[str, Any]) -> None:
    """Raise early when relation types (``use_generated_labels``: generated labels;
    ``return_vectors``: entity vectors) are configured for a model that cannot extract
    (generate, return) them."""
    from ..engine.vectors import check_vectors

    generated = cfg["use_generated_labels"]
    if cfg["return_vectors"]:
        check_vectors(gliner.config)
        if relations.names:
            raise ValueError(
                "gliner: return_vectors is set with relations; vectors are returned for entity "
                "extraction only: remove the relations, or unset return_vectors."
            )
    if generated and gliner.decoder_tokenizer is None:
        raise ValueError(
            "gliner: use_generated_labels is set but the checkpoint is not a label-decoder "
            "GLiNER (labels_decoder in its gliner_config.json): load one, or unset it."
        )
    if relations.names and not gliner.config.is_relex:
        raise ValueError(
            "gliner: relations are set but the checkpoint is not a relation-extraction GLiNER "
            "(relations_layer in its gliner_config.json): load one, or remove the relations."
        )


def find(
    engine: Engine,
    words: Sequence[Sequence[str]],
    labels: LabelSet,
    relations: LabelSet,
    thresholds: list[float],
    cfg: dict[str, Any],
    sentence_starts: Sequence[Sequence[int]],
) -> Sequence[Result]:
    """Entity results, or entity and relation results when relation types are configured.
    ``adjacency_threshold`` / ``relation_threshold`` default to the ``threshold`` setting (its
    ``"default"`` when it is per label)."""
    from ..engine.label_decoder import LabelDecoderEngine
    from ..engine.relations import RelationEngine

    if not relations.names and engine.gliner.decoder_tokenizer is not None:
        decoder = LabelDecoderEngine(engine)
        return decoder(words, labels, thresholds=thresholds, sentence_starts=sentence_starts)
    if not relations.names:
        return engine(
            words,
            labels,
            thresholds=thresholds,
            sentence_starts=sentence_starts,
            vectors=cfg["return_vectors"],
        )
    threshold = cfg["threshold"]
    default = threshold.get("default", 0.5) if isinstance(threshold, dict) else threshold
    return RelationEngine(engine)(
        words,
        labels,
        relations,
        thresholds=thresholds,
        adjacency_threshold=_or(cfg["adjacency_threshold"], default),
        relation_threshold=_or(cfg["relation_threshold"], default),
        sentence_starts=sentence_starts,
    )


def annotate_doc(
    doc: Doc,
    result: Result,
    names: Sequence[str],
    relation_names: Sequence[str],
    cfg: dict[str, Any],
) -> None:
    """Entities into ``doc.ents`` / ``doc.spans`` (``docs.annotate``, with generated labels for
    label-decoder models), relations into ``doc._.rel`` (``relation_names`` given: ``result``
    is a ``RelexResult``)."""
    if isinstance(result, WordsResult):
        entities, generated = result, None
    else:  # entities with relations or with generated labels
        entities, generated = result.entities, getattr(result, "generated", None)
    annotate(doc, entities, names, cfg["spans_key"], cfg["ents"], cfg["flat_ner"],
             cfg["multi_label"], generated, cfg["use_generated_labels"],
             cfg["return_vectors"])  # fmt: skip
    if relation_names:
        relex = cast("RelexResult", result)
        doc._.set(RELATION_EXTENSION, doc_relations(doc, relex, names, relation_names))


def doc_relations(
    doc: Doc, result: RelexResult, names: Sequence[str], relation_names: Sequence[str]
) -> list[dict[str, Any]]:
    """``doc._.rel`` items for ``result`` (see the module docstring); ``names``: the entity
    labels, ``relation_names``: the relation labels."""
    token_index = word_tokens(doc)
    entities, relations = result.decode(True, False)
    ent_of = {(ent.start, ent.end, ent.label_): i for i, ent in enumerate(doc.ents)}

    def ent(k: int) -> Optional[int]:
        start, end, label, _ = entities[k]
        return ent_of.get((token_index[start], token_index[end] + 1, names[label]))

    items = []
    for rel in relations:
        dep, dest = ent(rel.head), ent(rel.tail)
        if dep is not None and dest is not None:
            items.append(
                {
                    "dep": dep,
                    "dest": dest,
                    "relation": relation_names[rel.label],
                    "score": float(rel.score),
                }
            )
    return items


def _or(value: Optional[float], default: float) -> float:
    return default if value is None else float(value)
