"""markerV0 span x label logits: one autograd node for training, a buffer-reusing loop for inference.

Per span (start s, width k) and label c the factored markerV0 head computes
``logit = (relu(S[s] + E[s + k]) * keep) . L[c]``: ``S`` / ``E`` the per-word start / end terms
[B, W, H], ``keep`` the dropout mask of the span's hidden layer and ``L`` the label vectors with the
last Linear (and the dropout scale) folded in. Written with autograd, each chunk of start words
leaves several graph nodes, and the backward of its slice of ``E`` zero-fills a gradient the size
of all of ``E`` per chunk. Here forward and backward walk the same chunks by hand and accumulate
the gradients of ``S``, ``E`` and ``L`` in place; only each chunk's hidden layer is kept (as
autograd would keep it).

Cells whose end lies past the padded length W are never spans of any text (the loss masks them):
they get the value of a zero end term, ``relu(S[s]) . L[c]``, and no gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, cast

import torch
from torch import Tensor, nn

from .dropout import keep_mask

if TYPE_CHECKING:
    from .span_rep import MarkerV0

CHUNK_BYTES = (
    2 << 20
)  # CPU: [B, w, K, H] per chunk of about 2 MB stays in cache for the product that follows
GPU_CHUNK_BYTES = 256 << 20  # GPU: few, large kernels


def _chunks(
    num_words: int, batch: int, width: int, hidden: int, itemsize: int, budget: int
) -> list[tuple[int, int, int]]:
    step = max(1, budget // max(1, batch * width * hidden * itemsize))
    return [
        (w0, min(num_words, w0 + step), min(width, num_words - w0))
        for w0 in range(0, num_words, step)
    ]


class MarkerSpanLogits(torch.autograd.Function):
    """``(start [B, W, H], end [B, W, H], labels [B, C, H], width, drop_p) -> logits [B, W, K, C]``."""

    @staticmethod
    def forward(
        ctx, start: Tensor, end: Tensor, labels: Tensor, width: int, drop_p: float
    ) -> Tensor:  # type: ignore[override]
        batch, num_words, hidden = start.shape
        num_labels = labels.size(1)
        padded = torch.cat([end, end.new_zeros(batch, width - 1, hidden)], dim=1)  # [B, W+K-1, H]
        logits = start.new_empty(batch, num_words, width, num_labels)
        budget = CHUNK_BYTES if start.device.type == "cpu" else GPU_CHUNK_BYTES
        chunks = _chunks(num_words, batch, width, hidden, start.element_size(), budget)
        hiddens = []
        for w0, w1, k_used in chunks:
            ends = (
                padded[:, w0 : w1 + k_used - 1].unfold(1, k_used, 1).transpose(-1, -2)
            )  # [B, w, k, H]
            h = torch.add(start[:, w0:w1, None, :], ends).clamp_min_(0)
            if drop_p > 0:
                h.mul_(keep_mask(h.shape, drop_p, h.device).to(h.dtype))
            logits[:, w0:w1, :k_used] = torch.einsum("bwkh,bch->bwkc", h, labels)
            if k_used < width:  # ends past W: a zero end term
                tail = torch.einsum("bwh,bch->bwc", start[:, w0:w1].clamp_min(0), labels)
                logits[:, w0:w1, k_used:] = tail[:, :, None, :]
            hiddens.append(h)
        ctx.save_for_backward(labels)
        ctx.hiddens, ctx.chunks, ctx.shape = hiddens, chunks, (batch, num_words, hidden, width)
        return logits

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (labels,) = ctx.saved_tensors
        batch, num_words, hidden, width = ctx.shape
        grad_start = labels.new_zeros(batch, num_words, hidden)
        grad_padded = labels.new_zeros(batch, num_words + width - 1, hidden)
        grad_labels = torch.zeros_like(labels)
        for (w0, w1, k_used), h in zip(ctx.chunks, ctx.hiddens):
            g = grad[:, w0:w1, :k_used]  # [B, w, k, C]
            grad_labels += torch.einsum("bwkc,bwkh->bch", g, h)
            g_h = torch.einsum("bwkc,bch->bwkh", g, labels).mul_(
                h.sign()
            )  # h >= +0: relu and dropout gate
            grad_start[:, w0:w1] += g_h.sum(2)
            for k in range(k_used):
                grad_padded[:, w0 + k : w1 + k] += g_h[:, :, k]
        return grad_start, grad_padded[:, :num_words], grad_labels, None, None


def marker_span_logits(
    start: Tensor, end: Tensor, labels: Tensor, width: int, drop_p: float
) -> Tensor:
    """Training logits [B, W, K, C]; ``labels`` already carry the dropout scale ``1 / (1 - drop_p)``."""
    return MarkerSpanLogits.apply(start, end, labels, width, drop_p)


@torch.no_grad()
def marker_span_logits_inference(start: Tensor, end: Tensor, labels: Tensor, width: int) -> Tensor:
    """Inference logits [B, W, K, C] (no dropout), width by width.

    For width k the spans inside the window pair ``S[:, :W-k]`` with ``E[:, k:]``, two aligned slices,
    so no padded copy of ``E`` is made; cells whose end is past W take ``relu(S[s]) . L[c]``. The
    hidden layer goes through one scratch buffer of about ``CHUNK_BYTES``, reused for every block:
    beside the output, memory stays flat whatever the batch, and glibc's heap does not fragment.
    """
    batch, num_words, hidden = start.shape
    logits = start.new_empty(batch, num_words, width, labels.size(1))
    if num_words == 0:
        return logits
    labels_t = labels.transpose(1, 2)  # [B, H, C]
    tail_from = max(0, num_words - width + 1)  # only the last K-1 starts have cells past W
    tail = torch.matmul(start[:, tail_from:].clamp_min(0), labels_t)  # [B, W - tail_from, C]
    budget = CHUNK_BYTES if start.device.type == "cpu" else GPU_CHUNK_BYTES
    rows = max(1, min(num_words, budget // max(1, batch * hidden * start.element_size())))
    scratch = start.new_empty(batch, rows, hidden)
    for k in range(width):
        inside = max(0, num_words - k)  # starts whose end s + k is a word of the window
        for s0 in range(0, inside, rows):
            s1 = min(inside, s0 + rows)
            h = torch.add(
                start[:, s0:s1], end[:, s0 + k : s1 + k], out=scratch[:, : s1 - s0]
            ).clamp_min_(0)
            logits[:, s0:s1, k] = torch.matmul(h, labels_t)
        logits[:, inside:, k] = tail[:, inside - tail_from :]
    return logits


# Word vectors per block through the span MLPs (8 MB [rows, 4D] temporaries at hidden 512).
TERM_BLOCK_ROWS = 1024


class Workspace:
    """Buffers one inference call reuses across its batches (never shared between calls or
    threads: the engine creates one per call and passes it down as an argument).

    Over the hundreds of batches of a long document, the span terms ([B * W, 4D] each, a
    different size in every batch) allocated anew per batch fragment the process heap; taken from
    here they are allocated once, for the call's largest batch (``max_rows`` = B * W)."""

    def __init__(self, max_rows: int = 0) -> None:
        self.max_rows = int(max_rows)
        self._buffers: dict[str, Tensor] = {}

    def take(self, name: str, rows: int, cols: int, like: Tensor) -> Tensor:
        """An uninitialised ``[rows, cols]`` tensor with ``like``'s dtype and device."""
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.numel() < rows * cols
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            self._buffers.pop(name, None)  # free the old one first
            buf = self._buffers[name] = like.new_empty(max(rows, self.max_rows) * cols)
        return buf[: rows * cols].view(rows, cols)


def factored_marker_logits(
    span_layer: MarkerV0,
    words: Tensor,
    labels: Tensor,
    width: int,
    workspace: Optional[Workspace] = None,
) -> Tensor:
    """markerV0 logits ``[B, W, K, C]`` without materialising span vectors of size D.

    ``out_project`` = Linear1 -> ReLU -> Dropout -> Linear2 over ReLU([S; E]); Linear1 splits into
    a per-start plus a per-end term, and Linear2 folds into the label vectors ``labels`` [B, C, D],
    so each span costs an add, a ReLU and a product with C label vectors. With autograd enabled
    this is :class:`MarkerSpanLogits` (dropout as in training), else the inference loop. Equal to
    the plain module ``MarkerV0.forward`` followed by the label product (tests pin it).
    """
    out = cast(nn.Sequential, span_layer.out_project)
    last = cast(nn.Linear, out[3])
    label_vecs = labels @ last.weight  # [B, C, 4D]
    label_bias = labels @ last.bias  # [B, C]
    inference = not torch.is_grad_enabled()
    start_term, end_term = span_terms(span_layer, words, workspace if inference else None)
    if inference:
        logits = marker_span_logits_inference(start_term, end_term, label_vecs, width)
        return logits.add_(label_bias[:, None, None, :])
    batch, num_words, _ = start_term.shape
    if num_words == 0 or label_vecs.size(1) == 0:
        return start_term.new_zeros(batch, num_words, width, label_vecs.size(1))
    dropout = cast(nn.Dropout, out[2])
    drop = dropout.p if dropout.training else 0.0
    scaled = label_vecs * (1.0 / (1.0 - drop)) if drop else label_vecs
    return (
        marker_span_logits(start_term, end_term, scaled, width, drop) + label_bias[:, None, None, :]
    )


def traced_marker_logits(span_layer: MarkerV0, words: Tensor, labels: Tensor, width: int) -> Tensor:
    """The factored logits [B, W, K, C] in whole-tensor ops (no loops over chunks, no sizes read
    from values), for tracing into an ONNX graph: the hidden layer ``relu(S[s] + E[s + k])`` of
    every cell as one [B, W, K, 4D] tensor (cells past W take a zero end term, as in
    :func:`marker_span_logits_inference`), then the product with the folded label vectors. Same
    values as :func:`factored_marker_logits` in inference up to float rounding (an export is
    checked against the model before it is kept)."""
    out = cast(nn.Sequential, span_layer.out_project)
    last = cast(nn.Linear, out[3])
    start, end = span_layer.span_terms(words)  # [B, W, 4D] each
    batch, num_words, hidden = start.shape
    padded = torch.cat([end, end.new_zeros(batch, width - 1, hidden)], dim=1)  # [B, W+K-1, 4D]
    ends = torch.arange(num_words, device=words.device)[:, None] + torch.arange(
        width, device=words.device
    )
    cells = padded.index_select(1, ends.reshape(-1)).view(batch, num_words, width, hidden)
    hidden_layer = (start.unsqueeze(2) + cells).clamp_min(0)  # [B, W, K, 4D]
    logits = torch.einsum("bwkh,bch->bwkc", hidden_layer, labels @ last.weight)
    return logits + (labels @ last.bias)[:, None, None, :]


def span_terms(
    span_layer: MarkerV0, words: Tensor, workspace: Optional[Workspace] = None
) -> tuple[Tensor, Tensor]:
    """``span_layer.span_terms(words)`` ([B, W, 4D] each), ``TERM_BLOCK_ROWS`` word vectors at a
    time (the MLPs' [rows, 4D] temporaries stay small), into ``workspace`` buffers when given.
    All-zero word vectors (batch padding, words without sub-tokens) are not run: they share the
    zero vector's terms."""
    batch, num_words, dim = words.shape
    flat = words.reshape(-1, dim)
    real = flat.abs().amax(-1) != 0  # [B*W] (float reduction: bool kernels are slow on CPU)
    zero_start, zero_end = span_layer.span_terms(words.new_zeros(1, 1, dim))  # [1, 1, 4D]
    hidden4 = zero_start.size(-1)
    if workspace is not None:
        start = workspace.take("start_terms", flat.size(0), hidden4, zero_start)  # [B*W, 4D]
        end = workspace.take("end_terms", flat.size(0), hidden4, zero_end)
    else:
        start = zero_start.new_empty(flat.size(0), hidden4)  # (autocast: the terms' dtype)
        end = zero_end.new_empty(flat.size(0), hidden4)
    rows = real.nonzero().squeeze(1)
    contiguous = rows.numel() == flat.size(0)
    if not contiguous:
        start[~real] = zero_start.view(hidden4)
        end[~real] = zero_end.view(hidden4)
    for r0 in range(0, rows.numel(), TERM_BLOCK_ROWS):
        r1 = min(rows.numel(), r0 + TERM_BLOCK_ROWS)
        if contiguous:
            s, e = span_layer.span_terms(flat[r0:r1].unsqueeze(0))
            start[r0:r1], end[r0:r1] = s[0], e[0]
        else:
            idx = rows[r0:r1]
            s, e = span_layer.span_terms(flat.index_select(0, idx).unsqueeze(0))
            start.index_copy_(0, idx, s[0])
            end.index_copy_(0, idx, e[0])
    return start.view(batch, num_words, hidden4), end.view(batch, num_words, hidden4)
