"""Relation-extraction GLiNER models: gliner's ``UniEncoderSpanRelexModel`` (span-level) and
``UniEncoderTokenRelexModel`` (token-level).

The prompt holds the entity types, then the relation types:
``<<ENT>> e1 <<ENT>> e2 ... <<SEP>> <<REL>> r1 <<REL>> r2 ... <<SEP>> words``. The entity head is
the span model's (span x label logits) or the token model's (per word and label start / end /
inside logits, after ``prompt_rep_layer``); its entities go through the shared relation step
(:class:`RelationStep`): the adjacency layer (``relations_rep_layer``, unless
``relations_layer == "none"``: every ordered pair), then ``pair_rep_layer`` scores the pairs
above ``adjacency_threshold`` against the relation vectors, read at the ``<<REL>>`` tokens of the
encoder output (no projection).
"""

from __future__ import annotations

from typing import NamedTuple, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GLiNERConfig
from .dropout import use_fast_dropout
from .layers import projection_mlp
from .relation_layers import ALL_PAIRS, RelationsRepLayer, entity_pairs, pack_rows
from .span_model import GLiNERModel
from .words import enumerate_spans, gather_prompts

Threshold = Union[float, Tensor]  # a number, or one per entity label [C]


class RelexOutput(NamedTuple):
    """One batch of a relation model. Entities are packed per row in the reference's order
    (span models: start, end; token models: start, label, end, a span once per label that forms
    it); pairs index them, row-major over (head, tail)."""

    logits: Tensor  # entity logits: [B, W, K, C] (span) or [B, W, C, 3] (token)
    entity_spans: Tensor  # [B, E, 2] (first word, last word inclusive); 0 on padding
    entity_labels: Tensor  # [B, E] the label that formed each entity (token); 0 for span models
    entity_mask: Tensor  # [B, E]
    pair_idx: Tensor  # [B, N, 2] (head, tail) entity indices; -1 on padding
    pair_mask: Tensor  # [B, N]
    relation_logits: Tensor  # [B, N, R]
    relation_mask: Tensor  # [B, R] relation types present in each row's prompt


class RelationStep:
    """The relation layers of a relex model, created on it with the reference's names
    (``relations_rep_layer``, ``pair_rep_layer``), and the step that uses them."""

    READS_WEIGHTS = ("pair_rep_layer",)  # int8 keeps it float32 (model/int8.py)
    relations_rep_layer: nn.Module
    pair_rep_layer: nn.Module
    config: GLiNERConfig

    def add_relation_layers(self) -> None:
        cfg = self.config
        dim = cfg.hidden_size
        layer = cfg.relations_layer
        if layer is not None and layer != ALL_PAIRS:
            self.relations_rep_layer = RelationsRepLayer(dim, layer)
        self.pair_rep_layer = projection_mlp(dim * 2, cfg.dropout, dim)

    def relations(
        self,
        entities: Tensor,
        entity_mask: Tensor,
        hidden: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        adjacency_threshold: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(pair_idx, pair_mask, relation_logits, relation_mask)`` for entity vectors
        ``[B, E, D]``; a pair is scored when its adjacency probability is strictly above
        ``adjacency_threshold`` (every pair of distinct entities for ``"none"``)."""
        cfg = self.config
        pairs = entity_mask.unsqueeze(2) & entity_mask.unsqueeze(1)  # [B, E, E]
        if hasattr(self, "relations_rep_layer") and entities.size(1):
            pairs &= self.relations_rep_layer(entities, entity_mask) > adjacency_threshold
        pair_idx, pair_mask = entity_pairs(pairs)
        shift = 0 if cfg.embed_rel_token else 1
        relations, relation_mask = gather_prompts(
            hidden, input_ids, attention_mask, cfg.rel_token_index, shift
        )
        return pair_idx, pair_mask, self.pair_logits(entities, pair_idx, relations), relation_mask

    def pair_logits(self, entities: Tensor, pair_idx: Tensor, relations: Tensor) -> Tensor:
        """``[B, N, R]``: ``pair_rep_layer([head; tail]) . relation`` for every pair and relation
        type. ``pair_rep_layer`` is Linear(2D, 4D), ReLU, Dropout, Linear(4D, D); its first layer
        is applied per entity and half (``W[:, :2D]`` is ``[W_head, W_tail]``) and its last one
        folded into the relation vectors (``(W h + b) . r = h . (W^T r) + b . r``): the same map
        without a ``[B, N, 2D]`` concatenation or a per-pair ``4D x D`` product. Only each row's
        real pairs (packed at the front, ``pair_idx >= 0``) are computed: a batch is padded to its
        row with the most pairs, which can be thousands; padding slots hold 0."""
        layers = cast(nn.Sequential, self.pair_rep_layer)
        first, dropout, last = cast(nn.Linear, layers[0]), layers[2], cast(nn.Linear, layers[3])
        dim = entities.size(-1)
        head_part = F.linear(entities, first.weight[:, :dim], first.bias)  # [B, E, 4D]
        tail_part = F.linear(entities, first.weight[:, dim:])  # [B, E, 4D]
        folded = torch.einsum("dk,brd->brk", last.weight, relations)  # [B, R, 4D]
        offset = torch.einsum("d,brd->br", last.bias, relations)  # [B, R]
        logits = relations.new_zeros(pair_idx.size(0), pair_idx.size(1), relations.size(1))
        counts = (pair_idx[..., 0] >= 0).sum(dim=1).tolist()
        for row, count in enumerate(counts):
            if count:
                heads, tails = pair_idx[row, :count, 0], pair_idx[row, :count, 1]
                hidden = torch.relu(head_part[row, heads] + tail_part[row, tails])  # [n, 4D]
                logits[row, :count] = dropout(hidden) @ folded[row].T + offset[row]
        return logits


class SpanRelexModel(GLiNERModel, RelationStep):
    """Span-level GLiNER with relation extraction; attribute names follow the reference.

    ``forward`` is the span model's (entity logits only, for the engine's entity path);
    :meth:`extract` runs the whole model. No per-call state is kept.
    """

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        self.add_relation_layers()
        use_fast_dropout(self)

    def extract(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        words_mask: Tensor,
        text_lengths: Tensor,
        threshold: Threshold = 0.5,
        adjacency_threshold: float = 0.5,
    ) -> RelexOutput:
        """Entity logits, entities, entity pairs and relation logits of one batch (the
        reference path: span vectors, then their product with the label vectors). A span is an
        entity when some label's probability is strictly above ``threshold``."""
        cfg = self.config
        hidden = self.token_rep_layer.encode_text(input_ids, attention_mask)  # [B, T, D]
        words, word_mask, prompts, _ = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, hidden=hidden
        )
        lengths = word_mask.sum(-1)
        span_idx = enumerate_spans(lengths, words.size(1), cfg.max_width)  # [B, W*K, 2]
        spans = self.span_rep_layer(words, span_idx)  # [B, W, K, D]
        logits = torch.einsum("bwkd,bcd->bwkc", spans, self.prompt_rep_layer(prompts))
        width = torch.arange(cfg.max_width, device=words.device)
        ends = torch.arange(words.size(1), device=words.device)[:, None] + width  # [W, K]
        valid = ends.flatten()[None, :] < lengths[:, None]  # [B, W*K]: spans inside the text
        limit = torch.as_tensor(threshold, dtype=logits.dtype, device=logits.device)
        keep = (torch.sigmoid(logits) > limit).any(-1).flatten(1) & valid  # [B, W*K]
        entities, entity_mask = pack_rows(spans.flatten(1, 2), keep)  # [B, E, D]
        entity_spans, _ = pack_rows(span_idx, keep)  # [B, E, 2]
        step = self.relations(
            entities, entity_mask, hidden, input_ids, attention_mask, adjacency_threshold
        )
        no_labels = torch.zeros_like(entity_mask, dtype=torch.long)
        return RelexOutput(logits, entity_spans, no_labels, entity_mask, *step)
