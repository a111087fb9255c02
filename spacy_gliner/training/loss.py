"""The configured span loss (and its token-level form) as a picklable callable."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.loss import span_loss, token_loss


@dataclass(frozen=True)
class SpanLoss:
    """The configured loss (a picklable callable, for multiprocessing)."""

    alpha: float
    gamma: float
    label_smoothing: float
    reduction: str
    negatives: float
    masking: str

    def __call__(self, logits, targets, span_mask, label_mask):
        return span_loss(
            logits,
            targets,
            span_mask,
            label_mask,
            alpha=self.alpha,
            gamma=self.gamma,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            masking=self.masking,
            negatives=self.negatives,
        )

    def token(self, logits, targets, word_mask, label_mask):
        """The same options for a token-level model (``token_loss``: logits [B, W, C, 3]);
        ``masking`` and ``negatives`` do not apply (the reference's token loss ignores them)."""
        return token_loss(
            logits,
            targets,
            word_mask,
            label_mask,
            alpha=self.alpha,
            gamma=self.gamma,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )
