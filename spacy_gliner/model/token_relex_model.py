"""The token-level relation-extraction GLiNER (gliner's ``UniEncoderTokenRelexModel``): the
token model's scorer on projected label vectors, entities formed from start / end / inside
probabilities (a span once per label that forms it, as the reference), span vectors from
``span_rep_layer`` (gliner's ``TokenMarker``), then the shared relation step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import GLiNERConfig
from .dropout import use_fast_dropout
from .layers import projection_mlp
from .marker_scores import Workspace
from .prompt_words import WordsAndPrompts
from .relation_layers import pack_rows
from .relex_model import RelationStep, RelexOutput, Threshold
from .token_model import END, INSIDE, START, TokenScorer


class TokenMarker(nn.Module):
    """gliner's ``TokenMarker``: ``out_project(ReLU([project_start(start); project_end(end)]))``
    for explicit spans ``[B, E, 2]`` -> ``[B, E, D]``."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.project_start = projection_mlp(hidden_size, dropout)
        self.project_end = projection_mlp(hidden_size, dropout)
        self.out_project = projection_mlp(hidden_size * 2, dropout, hidden_size)

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        dim = words.size(-1)
        start = torch.gather(
            self.project_start(words), 1, span_idx[..., :1].expand(-1, -1, dim)
        )  # [B, E, D]
        end = torch.gather(self.project_end(words), 1, span_idx[..., 1:].expand(-1, -1, dim))
        return self.out_project(torch.cat([start, end], dim=-1).relu())


class TokenSpanRepLayer(nn.Module):
    """Holds the ``TokenMarker`` as ``span_rep_layer`` (the reference's state-dict names)."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.span_rep_layer = TokenMarker(hidden_size, dropout)

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        return self.span_rep_layer(words, span_idx)


def token_entities(probs: Tensor, limit: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
    """The reference's ``extract_spans_from_tokens``: ``(s, c, e)`` with the start probability
    of word ``s``, the end probability of ``e`` and the inside probability of every word
    ``s..e`` strictly above the threshold of label ``c`` (``limit``: a number or ``[C]``),
    ``s <= e < length``; ordered by (row, s, c, e). Returns the ``(b, s, c, e)`` index tensors."""
    _, W, C, _ = probs.shape
    real = torch.arange(W, device=probs.device)[None, :] < lengths[:, None]  # [B, W]
    above = (probs > limit.view(-1, 1) if limit.dim() else probs > limit) & real[..., None, None]
    span = torch.arange(W, device=probs.device)
    ordered = span[:, None] <= span[None, :]  # [s, e]
    pairs = above[:, :, None, :, START] & above[:, None, :, :, END] & ordered[None, :, :, None]
    b, s, e, c = torch.nonzero(pairs, as_tuple=True)  # [B, s, e, C] candidates
    inside = torch.nn.functional.pad(above[..., INSIDE].long().cumsum(dim=1), (0, 0, 1, 0))
    full = inside[b, e + 1, c] - inside[b, s, c] == e - s + 1  # every word s..e is inside
    b, s, c, e = b[full], s[full], c[full], e[full]
    order = torch.argsort(((b * W + s) * C + c) * W + e)
    return b[order], s[order], c[order], e[order]


class TokenRelexModel(WordsAndPrompts, RelationStep):
    """Token-level GLiNER with relation extraction; attribute names follow the reference.

    ``forward`` gives the token model's logits ``[B, W, C, 3]`` (the engine's entity path);
    :meth:`extract` runs the whole model. No per-call state is kept.
    """

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        dim = config.hidden_size
        self.span_rep_layer = TokenSpanRepLayer(dim, config.dropout)
        self.prompt_rep_layer = projection_mlp(dim, config.dropout)
        self.add_fuser(text_model)
        self.add_relation_layers()
        self.scorer = TokenScorer(dim, config.dropout)
        use_fast_dropout(self)

    def head(
        self,
        words: Tensor,
        word_mask: Tensor,
        prompts: Tensor,
        workspace: Workspace | None = None,
    ) -> Tensor:
        """The token model's logits ``[B, W, C, 3]`` (start, end, inside) on :meth:`encode`'s
        output, from the projected label vectors; ``workspace`` is unused."""
        return self.scorer(words, self.prompt_rep_layer(prompts))

    def extract(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        words_mask: Tensor,
        text_lengths: Tensor,
        threshold: Threshold = 0.5,
        adjacency_threshold: float = 0.5,
    ) -> RelexOutput:
        """Entity logits, entities (:func:`token_entities`), entity pairs and relation logits."""
        hidden = self.token_rep_layer.encode_text(input_ids, attention_mask)  # [B, T, D]
        words, word_mask, prompts, _ = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, hidden=hidden
        )
        logits = self.head(words, word_mask, prompts)  # [B, W, C, 3]
        limit = torch.as_tensor(threshold, dtype=logits.dtype, device=logits.device)
        b, s, c, e = token_entities(torch.sigmoid(logits), limit, word_mask.sum(-1))
        keep = torch.zeros(words.size(0), b.numel(), dtype=torch.bool, device=words.device)
        keep[b, torch.arange(b.numel(), device=words.device)] = True
        entity_spans, entity_mask = pack_rows(
            torch.stack([s, e], -1).expand(len(keep), -1, -1), keep
        )
        entity_labels, _ = pack_rows(c.expand(len(keep), -1), keep)
        entities = self.span_rep_layer(words, entity_spans)  # [B, E, D]
        step = self.relations(
            entities, entity_mask, hidden, input_ids, attention_mask, adjacency_threshold
        )
        return RelexOutput(logits, entity_spans, entity_labels, entity_mask, *step)
