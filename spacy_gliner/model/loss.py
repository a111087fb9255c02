"""Span classification loss: GLiNER's focal / BCE loss with negative masking (torch only).

``span_loss`` reproduces ``UniEncoderSpanModel.loss`` of gliner 0.2.29 (focal loss, masking
"none" | "global" | "label" | "span", reduction "sum" | "mean") and adds a "softmax" masking mode
(hard-negative sampling) that the reference does not have.

Negative masking (an element is *negative* when its target is 0; positives are always kept):

* ``"none"``: keep every element.
* ``"global"``: keep each negative element independently with probability ``negatives``.
* ``"label"``: elements of classes with no positive span in their example are kept independently
  with probability ``negatives`` (other classes' negatives are all kept).
* ``"span"``: elements of spans with no positive label are kept independently with probability
  ``negatives``.
* ``"softmax"`` (not in the reference; hard-negative sampling): per example, let ``N`` be its
  negative elements inside ``span_mask`` and ``label_mask``. Keep exactly
  ``m = min(|N|, floor(negatives * |N| + 0.5))`` of them, drawn without replacement with
  probabilities proportional to ``softmax`` of their (detached) logits, i.e. sequentially, each
  draw choosing among the remaining negatives with probability ``exp(z_i) / sum_j exp(z_j)``.
  It is implemented with the Gumbel-top-k trick (keep the ``m`` largest ``z_i + G_i``, ``G_i``
  standard Gumbel), so confidently wrong negatives (high logits) are the most likely to be kept.
"""

from __future__ import annotations

from typing import Optional

import torch

from .loss_modes import MASKING_MODES, REDUCTIONS

_EPS = 1e-6


def focal_loss_with_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = -1.0,
    gamma: float = 0.0,
    prob_margin: float = 0.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Element-wise focal loss on logits, as the reference (``reduction="none"``).

    ``t = targets*(1-ls) + 0.5*ls``; ``p = sigmoid(logits)``; ``pm = clamp(p - prob_margin, 0, 1)``;
    ``loss = -t*log(max(p, 1e-6)) - (1-t)*log(max(1-pm, 1e-6))``, times ``(1 - p_t)**gamma`` with
    ``p_t = p*t + (1-pm)*(1-t)`` when ``gamma > 0``, times ``alpha*t + (1-alpha)*(1-t)`` when
    ``alpha >= 0``. ``alpha=-1, gamma=0`` is plain binary cross-entropy.
    """
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = torch.sigmoid(logits)
    pm = torch.clamp(p - prob_margin, min=0.0, max=1.0)
    loss = -targets * torch.log(p.clamp(min=_EPS)) - (1.0 - targets) * torch.log(
        (1.0 - pm).clamp(min=_EPS)
    )
    if gamma > 0:
        p_t = p * targets + (1.0 - pm) * (1.0 - targets)
        loss = loss * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return loss


def _uniform(
    shape: torch.Size, like: torch.Tensor, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """U[0, 1) draws of ``shape``, from ``generator`` (on its own device) or the global RNG."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32).to(
        like.device
    )


def _softmax_negative_mask(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    negatives: float,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Keep-mask for "softmax" masking; see ``span_loss``. Shapes: [B, N] in, [B, N] bool out."""
    n_cand = candidates.sum(dim=1)  # [B]
    n_keep = (
        torch.floor(n_cand.to(torch.float64) * max(negatives, 0.0) + 0.5).long().clamp(max=n_cand)
    )  # [B]
    u = _uniform(logits.shape, logits, generator).clamp(min=torch.finfo(torch.float32).tiny)
    gumbel = -torch.log(-torch.log(u))  # [B, N]
    keys = torch.where(
        candidates, logits.detach().float() + gumbel, torch.full_like(gumbel, float("-inf"))
    )
    order = keys.argsort(dim=1, descending=True)  # [B, N]
    ranks = torch.arange(keys.size(1), device=keys.device).expand_as(keys)
    keep_sorted = ranks < n_keep[:, None]  # first n_keep of each row
    return torch.zeros_like(candidates).scatter(1, order, keep_sorted)


def span_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    span_mask: torch.Tensor,
    label_mask: torch.Tensor,
    *,
    alpha: float = -1.0,
    gamma: float = 0.0,
    label_smoothing: float = 0.0,
    prob_margin: float = 0.0,
    reduction: str = "sum",
    masking: str = "none",
    negatives: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Scalar loss over all (span, label) pairs, as ``UniEncoderSpanModel.loss`` (loss_type "focal").

    Shapes: ``logits``/``targets`` [B, W, K, C] (targets 0/1 floats), ``span_mask`` [B, W, K] and
    ``label_mask`` [B, C] (bool; False = padding). Element losses are ``focal_loss_with_logits``,
    computed in float32; padded spans and labels contribute nothing.

    Negative masking (``masking``) as described in the module docstring.

    The random masks draw one uniform per element of the [B, W, K, C] tensor from ``generator`` (or the
    global torch RNG), so they are deterministic under a seeded generator; "global", "label" and
    "span" consume the stream exactly like the reference's ``torch.rand_like``.

    ``reduction``: ``"sum"``, or ``"mean"`` = sum / number of valid spans (not elements), 0 if none.
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"Unknown masking {masking!r}; use one of {MASKING_MODES}.")
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {reduction!r}; use one of {REDUCTIONS}.")
    logits = logits.float()
    targets = targets.to(logits.dtype)
    loss = focal_loss_with_logits(
        logits, targets, alpha, gamma, prob_margin, label_smoothing
    )  # [B, W, K, C]
    valid = span_mask.bool()[..., None] & label_mask.bool()[:, None, None, :]  # [B, W, K, C]
    valid = valid & _kept(masking, logits, targets, valid, negatives, generator)
    total = torch.where(valid, loss, torch.zeros_like(loss)).sum()
    if reduction == "mean":
        num_spans = span_mask.bool().sum()
        return total / num_spans if num_spans > 0 else total * 0.0
    return total


def _kept(
    masking: str,
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    negatives: float,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Bool ``[B, W, K, C]``: the elements the negative masking keeps (see ``span_loss``)."""
    negative = targets == 0
    if masking == "none":
        return torch.ones_like(negative)
    if masking == "softmax":
        batch = logits.size(0)
        candidates = (negative & valid).reshape(batch, -1)  # [B, N]
        keep = _softmax_negative_mask(logits.reshape(batch, -1), candidates, negatives, generator)
        return ~negative | keep.view_as(negative)
    if masking == "global":
        proposals = negative
    elif masking == "label":  # classes with no positive in their example
        proposals = (targets.sum(dim=(1, 2)) == 0)[:, None, None, :].expand_as(targets)
    else:  # "span": spans with no positive label
        proposals = (targets.sum(dim=-1) == 0)[..., None].expand_as(targets)
    return ~proposals | (_uniform(targets.shape, logits, generator) < negatives)


def token_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    word_mask: torch.Tensor,
    label_mask: torch.Tensor,
    *,
    alpha: float = -1.0,
    gamma: float = 0.0,
    label_smoothing: float = 0.0,
    prob_margin: float = 0.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Scalar loss of a token-level model, as ``UniEncoderTokenModel.loss`` (gliner 0.2.29).

    Shapes: ``logits``/``targets`` [B, W, C, 3] (start, end, inside; targets 0/1 floats),
    ``word_mask`` [B, W] and ``label_mask`` [B, C] (bool; False = padding). Element losses are
    ``focal_loss_with_logits`` in float32; padded words and labels contribute nothing. There is no
    negative masking: the reference's token loss never applies it (its ``masking`` is ignored).
    ``reduction``: ``"sum"``, or ``"mean"`` = sum / number of valid (word, label) pairs, 0 if none.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {reduction!r}; use one of {REDUCTIONS}.")
    logits = logits.float()
    targets = targets.to(logits.dtype)
    loss = focal_loss_with_logits(logits, targets, alpha, gamma, prob_margin, label_smoothing)
    valid = word_mask.bool()[:, :, None] & label_mask.bool()[:, None, :]  # [B, W, C]
    total = torch.where(valid[..., None], loss, torch.zeros_like(loss)).sum()
    if reduction == "mean":
        pairs = valid.sum()
        return total / pairs if pairs > 0 else total * 0.0
    return total


__all__ = ["MASKING_MODES", "focal_loss_with_logits", "span_loss", "token_loss"]
