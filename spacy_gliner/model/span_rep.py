"""Span representation layers: one module per GLiNER ``span_mode``.

Every layer maps contextual word vectors ``words [B, W, D]`` (and, for the marker family, the flat
span indices ``span_idx [B, W*K, 2]``, start-major, width-minor) to span vectors ``[B, W, K, D]``.
Parameter names follow published checkpoints (``span_rep_layer.span_rep_layer.*``), typos included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SPAN_MODES
from .layers import projection_mlp


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x[b, idx[b, s]]``: [B, W, D] x [B, S] -> [B, S, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _to_grid(spans: Tensor, max_width: int) -> Tensor:
    """[B, W*K, D] -> [B, W, K, D]."""
    B, S, D = spans.shape
    return spans.view(B, S // max_width, max_width, D)


# ----------------------------------------------------------------------------------------------
# Marker family: out_project(ReLU([start; end; context?])) per span
# ----------------------------------------------------------------------------------------------


class _Marker(nn.Module):
    """Shared forward of the marker modes; subclasses build the layers and may add a context."""

    max_width: int
    project_start: nn.Module
    project_end: nn.Module
    out_project: nn.Module

    def context(self, words: Tensor) -> Optional[Tensor]:
        """Per-text context vector [B, 1, D] appended to every span, or None."""
        return None

    def span_vectors(self, words: Tensor, span_idx: Tensor) -> Tensor:
        """Vectors ``[B, S, D]`` of any spans ``span_idx`` ``[B, S, 2]`` (first, last word)."""
        start = _gather(self.project_start(words), span_idx[..., 0])  # [B, S, D]
        end = _gather(self.project_end(words), span_idx[..., 1])  # [B, S, D]
        parts = [start, end]
        ctx = self.context(words)  # [B, 1, D] | None
        if ctx is not None:
            parts.append(ctx.expand_as(start))
        return self.out_project(torch.cat(parts, dim=-1).relu())  # [B, S, D]

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        return _to_grid(self.span_vectors(words, span_idx), self.max_width)  # [B, W, K, D]


class MarkerV0(_Marker):
    """``markerV0`` (default): MLP4 start/end projections, MLP4(2D -> D) output."""

    READS_WEIGHTS = ("out_project",)  # int8 keeps these float32 (model/int8.py)

    def __init__(self, hidden_size: int, max_width: int, dropout: float) -> None:
        super().__init__()
        self.max_width = max_width
        self.project_start = projection_mlp(hidden_size, dropout)
        self.project_end = projection_mlp(hidden_size, dropout)
        self.out_project = projection_mlp(hidden_size * 2, dropout, hidden_size)

    def span_terms(self, words: Tensor) -> tuple[Tensor, Tensor]:
        """Factor the first output Linear over [S; E]: ``out_project[0](ReLU([S;E])) == start[s] + end[e]``.

        Returns ``(start_term, end_term)``, both [B, W, 4D]; the bias is folded into ``start_term``.
        The span vector is then ``out_project[1:](start_term[start] + end_term[end])``.
        """
        first = cast(nn.Linear, cast(nn.Sequential, self.out_project)[0])
        D = words.size(-1)
        start = F.linear(
            self.project_start(words).relu(), first.weight[:, :D], first.bias
        )  # [B, W, 4D]
        end = F.linear(self.project_end(words).relu(), first.weight[:, D:])  # [B, W, 4D]
        return start, end


class TokenMarker(MarkerV0):
    """The reference's ``TokenMarker`` (``span_mode == "token_level"`` with ``represent_spans``):
    markerV0's layers over a list of spans of any width, ``[B, S, 2]`` -> ``[B, S, D]``."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__(hidden_size, 0, dropout)

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        return self.span_vectors(words, span_idx)


class TokenSpanRepLayer(nn.Module):
    """Holds a :class:`TokenMarker` under the reference's name (``span_rep_layer.span_rep_layer``;
    its context encoder, ``span_encoder_config`` null, has no weights)."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.span_rep_layer = TokenMarker(hidden_size, dropout)

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        """words [B, W, D], span_idx [B, S, 2] -> span vectors [B, S, D]."""
        return self.span_rep_layer(words, span_idx)


def _mlp2(hidden_size: int, dropout: float) -> nn.Sequential:
    """Legacy ``marker`` endpoint MLP: Linear(D, 2D) -> ReLU -> Dropout -> Linear(2D, D)."""
    return nn.Sequential(
        nn.Linear(hidden_size, hidden_size * 2),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size * 2, hidden_size),
    )


class Marker(_Marker):
    """``marker`` (legacy): 2x-wide endpoint MLPs and a single Linear(2D -> D) output."""

    def __init__(self, hidden_size: int, max_width: int, dropout: float) -> None:
        super().__init__()
        self.max_width = max_width
        self.project_start = _mlp2(hidden_size, dropout)
        self.project_end = _mlp2(hidden_size, dropout)
        self.out_project = nn.Linear(hidden_size * 2, hidden_size)


class MarkerV1(_Marker):
    """``markerV1``: adds the raw mean of all W words (padding included) as context.

    ``project_first`` exists in checkpoints but is never used (as in the reference).
    """

    def __init__(self, hidden_size: int, max_width: int, dropout: float) -> None:
        super().__init__()
        self.max_width = max_width
        self.project_start = projection_mlp(hidden_size, dropout)
        self.project_end = projection_mlp(hidden_size, dropout)
        self.project_first = projection_mlp(hidden_size, dropout)
        self.out_project = projection_mlp(hidden_size * 3, dropout, hidden_size)

    def context(self, words: Tensor) -> Tensor:
        return words.mean(dim=1, keepdim=True)  # [B, 1, D]


class MarkerV2(_Marker):
    """``markerV2``: adds ``project_context`` of the last word (position W-1, padding included)."""

    def __init__(self, hidden_size: int, max_width: int, dropout: float) -> None:
        super().__init__()
        self.max_width = max_width
        self.project_start = projection_mlp(hidden_size, dropout)
        self.project_end = projection_mlp(hidden_size, dropout)
        self.project_context = projection_mlp(hidden_size, dropout)
        self.out_project = projection_mlp(hidden_size * 3, dropout, hidden_size)

    def context(self, words: Tensor) -> Tensor:
        # Project all words then pick the last: bit-identical to the reference's batched MLP.
        return self.project_context(words)[:, -1:]  # [B, 1, D]


# ----------------------------------------------------------------------------------------------
# Width-query modes (ignore span_idx): every start word l gets one vector per width k
# ----------------------------------------------------------------------------------------------


class SpanQuery(nn.Module):
    """``query``: ``ReLU(Linear(words[l] * query_seg[:, k]))``."""

    def __init__(self, hidden_size: int, max_width: int) -> None:
        super().__init__()
        self.query_seg = nn.Parameter(torch.empty(hidden_size, max_width).uniform_(-1, 1))  # [D, K]
        self.project = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU())

    def forward(self, words: Tensor, span_idx: Optional[Tensor] = None) -> Tensor:
        return self.project(torch.einsum("bld,dk->blkd", words, self.query_seg))  # [B, W, K, D]


class SpanMLP(nn.Module):
    """``mlp``: ``ReLU(Linear(D -> K*D)(words))`` split into K vectors."""

    def __init__(self, hidden_size: int, max_width: int) -> None:
        super().__init__()
        self.max_width = max_width
        self.mlp = nn.Linear(hidden_size, hidden_size * max_width)

    def forward(self, words: Tensor, span_idx: Optional[Tensor] = None) -> Tensor:
        B, W, D = words.shape
        return self.mlp(words).view(B, W, self.max_width, D).relu()  # [B, W, K, D]


class SpanCat(nn.Module):
    """``cat``: ``ReLU(Linear([words[l]; q_k]))`` with 128-dim width queries.

    ``q_k`` is a raw reshape of ``query_seg`` [128, K] (not a transpose), as in the reference.
    """

    def __init__(self, hidden_size: int, max_width: int) -> None:
        super().__init__()
        self.max_width = max_width
        self.query_seg = nn.Parameter(torch.randn(128, max_width))
        self.project = nn.Sequential(nn.Linear(hidden_size + 128, hidden_size), nn.ReLU())

    def forward(self, words: Tensor, span_idx: Optional[Tensor] = None) -> Tensor:
        B, W, D = words.shape
        K = self.max_width
        h = words.unsqueeze(2).expand(B, W, K, D)  # [B, W, K, D]
        q = self.query_seg.view(1, 1, K, -1).expand(B, W, K, -1)  # [B, W, K, 128]
        return self.project(torch.cat([h, q], dim=-1))  # [B, W, K, D]


# ----------------------------------------------------------------------------------------------
# Convolutional modes (ignore span_idx): width-k span at l pools words l..l+k, right zero-padded
# ----------------------------------------------------------------------------------------------


class SpanConv(nn.Module):
    """``conv_conv`` / ``conv_max`` / ``conv_mean`` / ``conv_sum``.

    Width 0 is the word itself; width k >= 1 applies a window of k+1 words to the input
    right-padded with k zeros (zeros take part in max/mean). Then ReLU -> Linear.
    """

    def __init__(self, hidden_size: int, max_width: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.max_width = max_width
        if mode == "conv_conv":
            self.convs = nn.ModuleList(
                nn.ModuleDict({"conv": nn.Conv1d(hidden_size, hidden_size, kernel_size=k + 1)})
                for k in range(1, max_width)
            )
            for block in self.convs:
                conv = cast(nn.Conv1d, cast(nn.ModuleDict, block)["conv"])
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
        self.project = nn.Sequential(nn.ReLU(), nn.Linear(hidden_size, hidden_size))

    def _window(self, x: Tensor, k: int) -> Tensor:
        """Window of k+1 words: [B, D, W+k] -> [B, D, W]."""
        if self.mode == "conv_conv":
            return cast(nn.ModuleDict, self.convs[k - 1])["conv"](x)
        if self.mode == "conv_max":
            return F.max_pool1d(x, k + 1, stride=1)
        mean = F.avg_pool1d(x, k + 1, stride=1)
        return mean * (k + 1) if self.mode == "conv_sum" else mean

    def forward(self, words: Tensor, span_idx: Optional[Tensor] = None) -> Tensor:
        x = words.transpose(1, 2)  # [B, D, W]
        reps = [words] + [
            self._window(F.pad(x, (0, k)), k).transpose(1, 2) for k in range(1, self.max_width)
        ]
        return self.project(torch.stack(reps, dim=-2))  # [B, W, K, D]


class ConvShare(nn.Module):
    """``conv_share``: width k uses the bias-free kernel ``conv_weigth[:, :, :k+1]`` (k=0 is a 1x1 conv)."""

    def __init__(self, hidden_size: int, max_width: int) -> None:
        super().__init__()
        self.max_width = max_width
        self.conv_weigth = nn.Parameter(
            torch.empty(hidden_size, hidden_size, max_width)
        )  # [D, D, K] (sic)
        nn.init.kaiming_uniform_(self.conv_weigth, nonlinearity="relu")
        self.project = nn.Sequential(nn.ReLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, words: Tensor, span_idx: Optional[Tensor] = None) -> Tensor:
        x = words.transpose(1, 2)  # [B, D, W]
        reps = [
            F.conv1d(F.pad(x, (0, k)), self.conv_weigth[:, :, : k + 1]).transpose(1, 2)  # [B, W, D]
            for k in range(self.max_width)
        ]
        return self.project(torch.stack(reps, dim=-2))  # [B, W, K, D]


# ----------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------


def _conv_builder(mode: str) -> Callable[[int, int, float], nn.Module]:
    """Builder of a :class:`SpanConv` of the given ``mode`` (the dropout is not used)."""
    return lambda d, k, p: SpanConv(d, k, mode)


_BUILDERS: dict[str, Callable[[int, int, float], nn.Module]] = {
    "markerV0": MarkerV0,
    "marker": Marker,
    "markerV1": MarkerV1,
    "markerV2": MarkerV2,
    "query": lambda d, k, p: SpanQuery(d, k),
    "mlp": lambda d, k, p: SpanMLP(d, k),
    "cat": lambda d, k, p: SpanCat(d, k),
    **{m: _conv_builder(m) for m in ("conv_conv", "conv_max", "conv_mean", "conv_sum")},
    "conv_share": lambda d, k, p: ConvShare(d, k),
}

if tuple(_BUILDERS) != SPAN_MODES:  # config.py lists the modes for torch-free config reading
    raise RuntimeError(f"config.SPAN_MODES {SPAN_MODES} differ from span_rep's {tuple(_BUILDERS)}")


class SpanRepLayer(nn.Module):
    """Builds the ``span_mode`` layer as ``self.span_rep_layer``; maps words to [B, W, K, D] spans."""

    def __init__(self, span_mode: str, hidden_size: int, max_width: int, dropout: float) -> None:
        super().__init__()
        if span_mode not in _BUILDERS:
            raise ValueError(
                f"Unknown span_mode {span_mode!r}; expected one of: {', '.join(SPAN_MODES)}"
            )
        self.span_mode = span_mode
        self.max_width = max_width
        self.span_rep_layer = _BUILDERS[span_mode](hidden_size, max_width, dropout)

    def forward(self, words: Tensor, span_idx: Tensor) -> Tensor:
        """words [B, W, D], span_idx [B, W*K, 2] (invalid spans at (0, 0)) -> [B, W, K, D]."""
        return self.span_rep_layer(words, span_idx)
