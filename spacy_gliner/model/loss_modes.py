"""The span loss's option values (no torch: the component's registered loss checks them in
processes that run ONNX Runtime without torch; ``loss.py`` implements them)."""

from __future__ import annotations

MASKING_MODES = ("none", "global", "label", "span", "softmax")
REDUCTIONS = ("sum", "mean")
