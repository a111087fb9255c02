"""The configured span loss (and its token-level form) as a picklable callable. Importing it
imports no torch (the registered loss is built even where the ONNX runtime runs without torch);
calling it does."""

from __future__ import annotations

from dataclasses import dataclass


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
        from ..model.loss import span_loss

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
        from ..model.loss import token_loss

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
