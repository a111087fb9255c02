"""The engine's runtime for an exported ONNX model (``spacy_gliner.export.onnx``): no torch.

:class:`OnnxRuntime` feeds a batch's numpy encoder inputs to an ONNX Runtime
``InferenceSession`` whose graph returns the sigmoid probabilities (``probs``: ``[B, W, K, C]``
for span models, ``[B, W, C, 3]`` for token models) and extracts the owned candidates with numpy
(``collect.owned_candidates_numpy`` / ``token_spans.token_candidates``). Windows, label groups,
batching and decoding are the :class:`~spacy_gliner.engine.core.EngineCore`'s, exactly as for
the torch runtime. ``InferenceSession.run`` is thread-safe, and the runtime keeps no per-call
state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .batches import Task
from .collect import Found, numpy_candidates_function
from .core import Call
from .windows import Window

OUTPUT_NAME = "probs"
INPUT_NAMES = ("input_ids", "attention_mask", "words_mask", "text_lengths")


class OnnxRuntime:
    """Runs ``session`` (an ``onnxruntime.InferenceSession`` of an exported GLiNER) on the
    engine's batches; ``output`` is the model's output kind ("span" or "token")."""

    def __init__(self, session: Any, output: str, max_width: int) -> None:
        self.session = session
        # The exporter drops inputs the graph does not read: feed only the ones it has.
        self.input_names = [i.name for i in session.get_inputs()]
        unknown = sorted(set(self.input_names) - set(INPUT_NAMES))
        if unknown:
            raise ValueError(
                f"gliner: the ONNX model expects inputs {unknown}, which spacy-gliner does not "
                f"produce (it feeds {list(INPUT_NAMES)}). Export the model with "
                "`spacy-gliner export --onnx`."
            )
        self._candidates = numpy_candidates_function(output, max_width)

    def running(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def call_state(
        self, windows: Sequence[Sequence[Window]], batches: Sequence[Sequence[Task]]
    ) -> None:
        return None

    def batch_candidates(
        self,
        inputs: dict[str, np.ndarray],
        groups: Sequence[Sequence[int]],
        call: Call,
        batch: Sequence[Task],
    ) -> Found:
        """Owned candidates above threshold of one batch; the graph's float32 probabilities
        (see the module docstring for the shapes) are thresholded with numpy."""
        feeds = {name: inputs[name] for name in self.input_names}
        probs = self.session.run([OUTPUT_NAME], feeds)[0]
        return self._candidates(
            probs, batch, call.windows, call.tokens, call.plan.table, call.thresholds
        )
