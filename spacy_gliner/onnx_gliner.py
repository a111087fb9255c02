"""``OnnxGLiNER``: an exported model run by ONNX Runtime, with the plain-text API of
``spacy_gliner.GLiNER`` and no torch or transformers anywhere on its import path.

Load a directory written by ``spacy-gliner export MODEL DIR --onnx`` (``export/onnx.py``); its
tokenizer is read by the ``tokenizers`` library, its network by ``onnxruntime``, and the windows,
label groups, batching and decoding are the torch engine's own (``engine/core.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from .engine.core import EngineCore, EngineOptions
from .engine.entities import entity_dicts, split_words
from .engine.labels import LabelSet
from .engine.onnx_runtime import OnnxRuntime
from .io.onnx_files import OnnxExport, read_export
from .io.tokenizers import PromptTokenizer

Labels = Union[Sequence[str], Mapping[str, str]]
_ENGINES_LOCK = threading.Lock()


def make_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``; ``threads``: its intra-op threads (default:
    ONNX Runtime's, one per core). The threads belong to the session, not the process."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "gliner: the ONNX runtime needs the onnxruntime package: "
            "pip install 'spacy-gliner[onnx]' (or pip install onnxruntime)."
        ) from err
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # this session's log: errors only (not shape-inference notes)
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxGLiNER:
    """An exported GLiNER under ONNX Runtime: ``OnnxGLiNER.from_pretrained(directory)``.

    ``predict_entities`` / ``inference`` match ``spacy_gliner.GLiNER``'s (same word split, same
    entity dicts, long texts windowed); thread-safe (the session's ``run`` is, and the engines
    keep no per-call state).
    """

    def __init__(self, export: OnnxExport, session: Any) -> None:
        self.export = export
        self.config = export.config
        self.tokenizer = export.tokenizer
        self.prompts = PromptTokenizer(export.tokenizer, export.config)
        self.runtime = OnnxRuntime(session, export.output, export.config.max_width)
        self._engines: dict[EngineOptions, EngineCore] = {}

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, int8: bool = False, threads: int | None = None
    ) -> OnnxGLiNER:
        """Load an export directory; ``int8``: run ``model_int8.onnx`` (exported with
        ``--int8``); ``threads``: ONNX Runtime intra-op threads for this model's session."""
        export = read_export(directory, int8=int8)
        return cls(export, make_session(export.model_path, threads))

    def engine(self, options: EngineOptions | None = None) -> EngineCore:
        """The engine for ``options`` (its ``dtype`` must stay None: precision is the file's)."""
        options = options or EngineOptions()
        if options.dtype is not None:
            raise ValueError(
                "gliner: an ONNX model runs in the precision it was exported in; leave dtype "
                "unset and load model_int8.onnx (OnnxGLiNER.from_pretrained(..., int8=True))."
            )
        with _ENGINES_LOCK:
            engine = self._engines.get(options)
            if engine is None:
                engine = self._engines[options] = EngineCore(
                    self.config,
                    self.prompts,
                    self.runtime,
                    options,
                    max_tokens=self.export.max_tokens,
                    output=self.export.output,
                )
        return engine

    def predict_entities(
        self,
        text: str,
        labels: Labels,
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
    ) -> list[dict[str, Any]]:
        """Entities in ``text`` as ``{"start", "end", "text", "label", "score"}`` (char offsets)."""
        return self.inference(
            [text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label
        )[0]

    def inference(
        self,
        texts: Sequence[str],
        labels: Labels,
        *,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """As ``GLiNER.inference``: entities per text (non-strings get none)."""
        if isinstance(texts, str):
            texts = [texts]
        label_set = LabelSet.from_labels(labels)
        splits = [split_words(t) for t in texts]
        options = EngineOptions(batch_size=batch_size)
        words = [[w for w, _, _ in split] for split in splits]
        results = self.engine(options)(words, label_set, thresholds=threshold)
        return [
            entity_dicts(text, split, result.decode(flat_ner, multi_label), label_set)
            for text, split, result in zip(texts, splits, results)
        ]
