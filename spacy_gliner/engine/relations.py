"""Relation extraction: word lists x entity types x relation types -> entities and relations.

A relation model reads every entity type and every relation type in one prompt, so a call runs
one label group. Texts are windowed as for entity models (``windows.py``): entity candidates
come from the window that owns each span, exactly as :class:`~spacy_gliner.engine.Engine` keeps
them. **Relations are found within a window**: a window's model picks its entities, pairs and
relation scores from the spans it sees, so two entities that never share a window (long
documents only: further apart than a window's words) get no relation. A relation found in
several overlapping windows is reported once, with its highest score. For a text that fits one
window this is exactly the reference's ``inference`` (entities and relations).

The model runs under the entity engine's own contexts (evaluation mode, attention backends).
Thread safety: everything a call computes lives in the call; the engine holds only settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..io.tokenizers import Row, TextTokens
from ..model.relex_model import RelexOutput
from .batches import Task, make_batches, make_tasks, plan_text_windows, threshold_table
from .decode import Decoded
from .engine import Engine
from .labels import LabelSet, check_prompt_text, group_table
from .results import WordsResult
from .score import candidates_function, collect_results
from .torch_context import attention_backends, eval_mode
from .windows import Window

# Relation candidates: (text, head start, head end, tail start, tail end, label, score, head
# entity label, tail entity label); the entity labels order token-level entities as the reference.
Found = tuple[np.ndarray, ...]
_KEYS = 6  # text, head start, head end, tail start, tail end, label: a relation's identity


class Relation(NamedTuple):
    """A decoded relation: indices into the decoded entity list, the relation label index."""

    head: int
    label: int
    tail: int
    score: float


class RelexResult:
    """One text's entity candidates (a :class:`WordsResult`) and relation candidates.

    Relation candidates are unique (head span, tail span, label) triples above the relation
    threshold, held as arrays (``heads`` / ``tails`` ``[N, 2]`` first and last word, ``labels``,
    ``scores``) in the reference's order: head span, tail span (span models: each by start, then
    end; token-level models: start, the label that formed the span, end), relation label.
    """

    def __init__(self, entities: WordsResult, relations: Found) -> None:
        self.entities = entities
        hs, he, ts, te, self.labels, self.scores = relations[:6]
        self.heads = np.stack([hs, he], axis=-1)
        self.tails = np.stack([ts, te], axis=-1)

    def decode(
        self, flat_ner: bool = True, multi_label: bool = False
    ) -> tuple[list[Decoded], list[Relation]]:
        """Decoded entities (as ``WordsResult.decode``) and the relations between them, as the
        reference's ``SpanRelexDecoder``: a relation is kept when both its spans are decoded
        entities, and points at the first decoded entity with each span's boundaries."""
        entities = self.entities.decode(flat_ner, multi_label)
        if not entities or not len(self.scores):
            return entities, []
        spans = np.array([(start, end) for start, end, _, _ in entities], dtype=np.int64)
        size = int(max(spans.max(), self.heads.max(), self.tails.max())) + 1
        keys, first = np.unique(spans[:, 0] * size + spans[:, 1], return_index=True)
        head, head_ok = _lookup(keys, first, self.heads[:, 0] * size + self.heads[:, 1])
        tail, tail_ok = _lookup(keys, first, self.tails[:, 0] * size + self.tails[:, 1])
        kept = np.flatnonzero(head_ok & tail_ok)
        rows = zip(
            head[kept].tolist(),
            self.labels[kept].tolist(),
            tail[kept].tolist(),
            self.scores[kept].tolist(),
        )
        return entities, [Relation(*row) for row in rows]


def _lookup(keys: np.ndarray, first: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each ``wanted`` key: the entity index stored for it in ``first`` (sorted unique
    ``keys``), and whether it is there."""
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return first[at], keys[at] == wanted


class _Call(NamedTuple):
    """Everything one call computes, passed to the steps that need it."""

    tokens: list[TextTokens]
    windows: list[list[Window]]
    prompt: np.ndarray  # sub-token ids of the one prompt
    per_label: np.ndarray  # [labels] entity thresholds
    adjacency_threshold: float
    relation_threshold: float


class RelationEngine:
    """Runs a relation-extraction GLiNER with the settings of an :class:`Engine` (batching,
    windows, dtype); see the module docstring for how windows and relations meet."""

    def __init__(self, engine: Engine) -> None:
        if not engine.gliner.config.is_relex:
            raise ValueError(
                "Relation extraction needs a relation-extraction GLiNER checkpoint "
                "(relations_layer set in gliner_config.json); this model finds entities only."
            )
        self.engine = engine

    def __call__(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        relations: LabelSet,
        *,
        thresholds: float | Sequence[float] = 0.5,
        adjacency_threshold: float = 0.5,
        relation_threshold: float = 0.5,
        sentence_starts: Sequence[Sequence[int]] | None = None,
    ) -> list[RelexResult]:
        """Entities and relations of each word list. ``thresholds`` (one, or one per entity
        label) select entity candidates, and the spans the relation step pairs (a span with some
        label above its threshold); ``adjacency_threshold`` the pairs it scores;
        ``relation_threshold`` the relations kept. All comparisons are strict (``>``)."""
        if len(labels) == 0:
            raise ValueError("GLiNER needs at least one entity label.")
        per_label = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
        if not word_lists:
            return []
        engine, prompts = self.engine, self.engine.gliner.prompts
        prompt = self._prompt(labels, relations)
        tokens = prompts.tokenize_words(word_lists)
        fixed = len(prompts.prefix) + len(prompts.suffix)
        budget = engine.max_tokens - fixed - len(prompt)
        windows = plan_text_windows(
            tokens, budget, engine.window_words, engine.overlap, sentence_starts
        )
        call = _Call(tokens, windows, prompt, per_label, adjacency_threshold, relation_threshold)
        tasks = make_tasks(tokens, windows, [len(prompt)], fixed)
        found, relation_parts, truncated = self._run_tasks(call, tasks)
        lengths = [len(w) for w in word_lists]
        entities = collect_results(
            windows, lengths, found, truncated, 1, engine.max_width, engine.output
        )
        per_text = _collect_relations(relation_parts, len(word_lists))
        return [RelexResult(e, r) for e, r in zip(entities, per_text)]

    def _run_tasks(self, call: _Call, tasks: list[Task]) -> tuple[list, list, np.ndarray]:
        """Entity candidates and relation candidates of every batch; words cut per text."""
        engine, prompts = self.engine, self.engine.gliner.prompts
        table = group_table([list(range(len(call.per_label)))])
        limits = threshold_table(table, np.asarray(call.per_label))
        truncated = np.zeros(len(call.tokens), dtype=np.int64)
        found, relation_parts = [], []
        candidates = candidates_function(engine.output, engine.max_width)
        with eval_mode(engine.gliner.model):
            for batch in make_batches(tasks, engine.batch_size, engine.max_batch_tokens):
                rows = [
                    Row(call.tokens[t.text], *call.windows[t.text][t.window], call.prompt)
                    for t in batch
                ]
                inputs, cut = prompts.assemble(rows, engine.max_tokens)
                for task, n in zip(batch, cut):
                    truncated[task.text] += n
                out = self._run(inputs, call.per_label, call.adjacency_threshold)
                probs = torch.sigmoid(out.logits.float())
                found.append(candidates(probs, batch, call.windows, call.tokens, table, limits))
                relation_parts.append(
                    _batch_relations(out, batch, call.windows, call.relation_threshold)
                )
        return found, relation_parts, truncated

    def _prompt(self, labels: LabelSet, relations: LabelSet) -> np.ndarray:
        """Sub-token ids of the one prompt (entity types, then relation types)."""
        engine, prompts = self.engine, self.engine.gliner.prompts
        check_prompt_text([*labels.prompts, *relations.prompts], prompts.reserved_tokens())
        ids = prompts.prompt_ids([list(labels.prompts)], list(relations.prompts))[0]
        spare = engine.max_tokens - len(prompts.prefix) - len(prompts.suffix) - len(ids)
        if spare < engine.max_width:
            raise ValueError(
                f"The prompt of {len(labels)} entity and {len(relations)} relation types takes "
                f"{len(ids)} sub-tokens of the encoder's {engine.max_tokens}, leaving too few for "
                "text. A relation model reads all types in one prompt: use fewer or shorter ones."
            )
        return ids

    @torch.inference_mode()
    def _run(self, inputs: dict, per_label: np.ndarray, adjacency_threshold: float) -> RelexOutput:
        gliner = self.engine.gliner
        device = gliner.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        limit = torch.tensor(np.array(per_label), dtype=torch.float32)
        dtype = self.engine.options.dtype
        with (
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
            attention_backends(device),
        ):
            return gliner.model.extract(
                **inputs, threshold=limit.to(device), adjacency_threshold=adjacency_threshold
            )


def _batch_relations(
    out: RelexOutput, batch: Sequence[Task], windows: Sequence[Sequence[Window]], threshold: float
) -> Found:
    """The scored (pair, relation) cells of one batch above ``threshold``, in document words."""
    probs = torch.sigmoid(out.relation_logits.float())  # [B, N, R]
    keep = probs > threshold
    keep &= out.pair_mask.unsqueeze(-1) & out.relation_mask.unsqueeze(1)
    row, pair, label = torch.nonzero(keep, as_tuple=True)
    head, tail = out.pair_idx[row, pair, 0], out.pair_idx[row, pair, 1]
    row_np = row.cpu().numpy()
    shift = np.array([windows[t.text][t.window].start for t in batch], dtype=np.int64)[row_np]
    text = np.array([t.text for t in batch], dtype=np.int64)[row_np]
    head_span = out.entity_spans[row, head].cpu().numpy() + shift[:, None]  # [M, 2]
    tail_span = out.entity_spans[row, tail].cpu().numpy() + shift[:, None]
    return (
        text,
        head_span[:, 0],
        head_span[:, 1],
        tail_span[:, 0],
        tail_span[:, 1],
        label.cpu().numpy().astype(np.int64),
        probs[row, pair, label].cpu().numpy().astype(np.float64),
        out.entity_labels[row, head].cpu().numpy().astype(np.int64),
        out.entity_labels[row, tail].cpu().numpy().astype(np.int64),
    )


def _collect_relations(parts: Sequence[Found], num_texts: int) -> list[Found]:
    """Per text: each (head span, tail span, label) once, with its highest score, in the
    reference's order: head (start, entity label, end), tail (same), relation label, where the
    entity labels (token-level models: the labels that formed the spans; 0 for span models) are
    those of the repeat that comes first, lexically by (head label, tail label), as the
    reference's first occurrence (a span paired with itself under two labels included)."""
    if not parts:
        return [tuple(np.zeros(0, dtype=np.int64) for _ in range(6))] * num_texts
    columns = [np.concatenate(c) for c in zip(*parts)]
    keys, score, head_label, tail_label = columns[:_KEYS], columns[6], columns[7], columns[8]
    order = np.lexsort(tuple(reversed(keys)))
    keys, score = [k[order] for k in keys], score[order]
    head_label, tail_label = head_label[order], tail_label[order]
    first = np.ones(len(score), dtype=bool)
    first[1:] = np.any([k[1:] != k[:-1] for k in keys], axis=0) if len(score) > 1 else True
    starts = np.flatnonzero(first)
    base = int(tail_label.max(initial=0)) + 1
    rank = head_label * base + tail_label  # (head label, tail label), lexically
    if len(starts):
        score = np.maximum.reduceat(score, starts)
        rank = np.minimum.reduceat(rank, starts)
    text, hs, he, ts, te, label = (k[starts] for k in keys)
    order = np.lexsort((label, te, rank % base, ts, he, rank // base, hs, text))
    text, rest = text[order], [c[order] for c in (hs, he, ts, te, label, score)]
    bounds = np.searchsorted(text, np.arange(num_texts + 1))
    return [tuple(c[bounds[t] : bounds[t + 1]] for c in rest) for t in range(num_texts)]
