"""The token-level GLiNER network: encoder -> word and label vectors -> per-word start / end /
inside logits for every label (gliner's ``UniEncoderTokenModel`` / ``BiEncoderTokenModel``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import GLiNERConfig
from .dropout import use_fast_dropout
from .marker_scores import Workspace
from .prompt_words import WordsAndPrompts

# Index of each score along the last axis of a token model's logits.
START, END, INSIDE = 0, 1, 2


class TokenScorer(nn.Module):
    """gliner's ``Scorer``: word x label -> (start, end, inside) logits.

    ``proj_token`` / ``proj_label`` map ``D -> 2D``, split into halves ``(t0, t1)`` / ``(l0, l1)``;
    ``out_mlp`` (Linear 3D->4D, Dropout, ReLU, Linear 4D->3) reads ``[t0, l0, t1 * l1]``. The
    first linear layer is applied per part (``W[:, :D] t0 + W[:, D:2D] l0 + W[:, 2D:] (t1 l1)``),
    which is the same map without materialising the ``[B, W, C, 3D]`` concatenation.
    """

    READS_WEIGHTS = ("out_mlp.0",)  # int8 keeps these float32 (model/int8.py)

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.proj_token = nn.Linear(hidden_size, hidden_size * 2)
        self.proj_label = nn.Linear(hidden_size, hidden_size * 2)
        self.out_mlp = nn.Sequential(
            nn.Linear(hidden_size * 3, hidden_size * 4),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(hidden_size * 4, 3),
        )

    def forward(
        self, words: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[B, W, C, 3]`` from word vectors ``[B, W, D]`` and label vectors ``[B, C, D]``.

        With ``word_mask`` ``[B, W]`` (True for real words) only real words' cells are computed
        (equal to the full computation's, up to float rounding; ``tests/test_token_level.py``);
        the padding words' cells hold ``-inf``."""
        dim = words.size(-1)
        l0, l1 = self.proj_label(labels).split(dim, dim=-1)  # [B, C, D] each
        first: nn.Linear = self.out_mlp[0]  # type: ignore[assignment]
        label_part = F.linear(l0, first.weight[:, dim : 2 * dim])  # [B, C, 4D]
        if word_mask is None:
            t0, t1 = self.proj_token(words).split(dim, dim=-1)  # [B, W, D] each
            return self._cells(
                t0.unsqueeze(2), t1.unsqueeze(2), label_part.unsqueeze(1), l1.unsqueeze(1)
            )
        rows, cols = word_mask.nonzero(as_tuple=True)  # the N real words
        t0, t1 = self.proj_token(words[rows, cols]).split(dim, dim=-1)  # [N, D] each
        cells = self._cells(t0.unsqueeze(1), t1.unsqueeze(1), label_part[rows], l1[rows])
        logits = cells.new_full((*word_mask.shape, labels.size(1), 3), float("-inf"))
        logits[rows, cols] = cells  # [N, C, 3] into [B, W, C, 3]
        return logits

    def _cells(
        self, t0: torch.Tensor, t1: torch.Tensor, label_part: torch.Tensor, l1: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[..., C, 3]`` of word parts ``t0``, ``t1`` ``[..., 1, D]`` with label parts
        ``label_part`` ``[..., C, 4D]`` and ``l1`` ``[..., C, D]`` (broadcast over ``...``)."""
        dim = t0.size(-1)
        first: nn.Linear = self.out_mlp[0]  # type: ignore[assignment]
        weight = first.weight  # [4D, 3D]
        word_part = F.linear(t0, weight[:, :dim], first.bias)  # [..., 1, 4D]
        hidden = F.linear(t1 * l1, weight[:, 2 * dim :])  # [..., C, 4D]
        hidden += word_part  # in place: the largest tensor of the head
        hidden += label_part
        hidden = torch.relu_(self.out_mlp[1](hidden))  # Dropout, ReLU
        return self.out_mlp[3](hidden)


class TokenModel(WordsAndPrompts):
    """Token-level GLiNER (uni-encoder, or bi-encoder when ``config.labels_encoder`` is set).

    Same encoder, word pooling, prompt vectors, LSTM and fusion rules as the span model
    (:class:`~spacy_gliner.model.prompt_words.WordsAndPrompts`); the head is ``scorer``. The
    label vectors go to the scorer as they are (token models have no ``prompt_rep_layer``).
    """

    def __init__(
        self, config: GLiNERConfig, text_model: nn.Module, labels_model: nn.Module | None = None
    ) -> None:
        super().__init__(config, text_model, labels_model)
        self.scorer = TokenScorer(config.hidden_size, config.dropout)
        self.add_fuser(text_model)
        use_fast_dropout(self)  # CPU training: dropout masks from random bits (see dropout.py)

    def head(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """The family's head on :meth:`encode`'s output: logits [B, W, C, 3] (``forward``'s).

        In inference (eval mode, not tracing an export), only real words' cells are computed
        (padding words' cells hold ``-inf``); in training, every cell as the reference does."""
        if self.training or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self.scorer(words, prompts)
        return self.scorer(words, prompts, word_mask)

    def entity_vectors(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        prompts: torch.Tensor,
        row: int,
        spans: torch.Tensor,
        columns: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors of ``N`` spans of batch row ``row`` (``spans`` ``[N, 2]``: first and last word
        in the row, inclusive), as the reference's ``return_vectors`` defines them for token
        models: the mean of the span's word vectors ``[N, D]`` (the vectors the scorer reads),
        and the label vectors ``[N, D]`` the scorer reads for prompt ``columns`` ``[N]``."""
        positions = torch.arange(words.size(1), device=words.device)
        inside = (positions >= spans[:, :1]) & (positions <= spans[:, 1:])  # [N, W]
        weights = inside.to(words.dtype) / inside.sum(-1, keepdim=True).to(words.dtype)
        return weights @ words[row], prompts[row][columns]
