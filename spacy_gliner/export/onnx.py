"""Export a loaded GLiNER to ONNX for the torch-free runtime (``spacy_gliner.OnnxGLiNER``).

The graph is the model's own forward pass traced by torch's TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) with dynamic batch, sub-token, word and label axes:
inputs ``input_ids``, ``attention_mask``, ``words_mask`` ``[B, T]`` and ``text_lengths`` ``[B]``
(int64, exactly what ``PromptTokenizer.assemble_arrays`` builds), output ``probs``: the sigmoid
scores the engine consumes (``[B, W, K, C]`` span models, ``[B, W, C, 3]`` token models). The
tracer takes the plain reference computations (markerV0 without its factored path, see
``GLiNERModel.score_spans``; word and label counts stay tensors, ``model.words.largest``).
Every export is checked before it is kept: ONNX Runtime's probabilities on a second input
shape must match torch's within ``VERIFY_TOLERANCE``.

Uni-encoder span- and token-level models export; bi-encoders (label vectors come from a second
encoder), relation extraction and label decoders raise :class:`UnsupportedExport`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..io.fast_tokenizer import TOKENIZER_FILE, tokenizer_settings
from ..io.onnx_files import INT8_MODEL_FILE, MODEL_FILE, write_export_meta
from ..io.tokenizers import max_sequence_tokens
from ..model.config import CONFIG_FILE
from ..model.families import architecture_of, family_of

OPSET = 18
VERIFY_TOLERANCE = 1e-4
EXPORTABLE = ("span-level uni-encoder", "token-level uni-encoder")
# Example words for tracing: one row longer than the BiLSTM's fused-path threshold (16 words),
# so the trace takes the path that handles any length, and a short padded row.
_EXAMPLE = [
    "John",
    "Smith",
    "works",
    "for",
    "Acme",
    "Corp",
    "in",
    "New",
    "York",
    "City",
    "and",
    "Paris",
    ",",
    "France",
    ",",
    "since",
    "2019",
    "with",
    "Mary",
    "Jones",
    "of",
    "the",
    "United",
    "Nations",
    ".",
]
_CHECK = ["Barack", "Obama", "visited", "Berlin", "with", "Angela", "Merkel", "in", "2010", "."]


class UnsupportedExport(ValueError):
    """The model's architecture has no ONNX export in spacy-gliner."""


class _Probabilities(nn.Module):
    """The traced function: encoder inputs -> sigmoid probabilities (float32)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> torch.Tensor:
        logits, _, _ = self.model(input_ids, attention_mask, words_mask, text_lengths)
        return torch.sigmoid(logits.float())


def check_exportable(config_dict: dict[str, Any]) -> str:
    """The model's output kind ("span" / "token"); ``UnsupportedExport`` naming the
    architecture when it cannot be exported."""
    arch = architecture_of(config_dict)
    if arch not in EXPORTABLE:
        raise UnsupportedExport(
            f"gliner: ONNX export supports {' and '.join(EXPORTABLE)} models; this checkpoint is "
            f"a {arch} model. Run it with the torch runtime (runtime 'torch', the default)."
        )
    return family_of(config_dict).output


def export_onnx(
    gliner: Any, directory: str | Path, *, int8: bool = False, opset: int = OPSET
) -> dict[str, Path]:
    """Write ``gliner`` (a loaded ``spacy_gliner.GLiNER`` on any device; exported from a CPU
    copy of nothing but its float32 weights) as an ONNX export directory (``io/onnx_files.py``);
    with ``int8``, also ``model_int8.onnx`` (ONNX Runtime's dynamic int8 quantization of the
    MatMul / Gemm weights). Returns the paths written. Raises :class:`UnsupportedExport` for
    architectures without an export, before anything is written."""
    config = gliner.config
    output = check_exportable(config.to_dict())
    if getattr(gliner, "decoder_tokenizer", None) is not None:
        raise UnsupportedExport("gliner: label-decoder models have no ONNX export.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    model = gliner.model
    with _cpu_eval(model) as cpu_model:
        wrapper = _Probabilities(cpu_model).eval()
        example = _inputs(gliner, [_EXAMPLE, _EXAMPLE[:3]], ["person", "organization"])
        with tempfile.TemporaryDirectory() as tmp:
            traced = Path(tmp) / MODEL_FILE
            _trace(wrapper, example, traced, output, opset)
            check = _inputs(gliner, [_CHECK, _CHECK[:4], _CHECK[:1]], ["person", "city", "year"])
            _verify(wrapper, traced, check, output)
            shutil.move(str(traced), model_path)
    written = {"model": model_path}
    if int8:
        written["int8"] = quantize_int8(model_path, directory / INT8_MODEL_FILE)
    config.to_json_file(directory / CONFIG_FILE)
    gliner.tokenizer.backend_tokenizer.save(str(directory / TOKENIZER_FILE))
    encoder_config = model.token_rep_layer.bert_layer.model.config
    meta = {
        "output": output,
        "max_tokens": max_sequence_tokens(gliner.tokenizer, encoder_config),
        "tokenizer_settings": tokenizer_settings(gliner.tokenizer),
        "opset": opset,
        "files": sorted(p.name for p in written.values()),
        "spacy_gliner_version": __version__,
        "torch_version": torch.__version__,
    }
    write_export_meta(directory, meta)
    return written


def quantize_int8(model_path: Path, out_path: Path) -> Path:
    """Dynamic int8 weights (signed, per tensor) for the MatMul / Gemm nodes of ``model_path``;
    everything else (embeddings, LSTM, LayerNorm, attention softmax) stays float32."""
    with _root_logger_kept():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(model_path),
            str(out_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    return out_path


def _drop_pre_process_advice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Please consider to run pre-processing")


@contextlib.contextmanager
def _root_logger_kept() -> Iterator[None]:
    """Undo what ``onnxruntime.quantization`` does to the root logger: one of its modules calls
    ``logging.basicConfig(level=INFO)`` at import, and ``quantize_dynamic`` logs through the
    module-level ``logging.warning`` (which calls ``basicConfig`` when the root logger has no
    handler). Left alone, every INFO record of the process would print from then on. The
    handlers and level the root logger had before are restored; nothing else is touched.
    Meanwhile one record is dropped: its advice to run ``quant_pre_process`` first, which cannot
    run on these graphs (its symbolic shape inference stops on the span layer)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.addFilter(_drop_pre_process_advice)
    try:
        yield
    finally:
        root.removeFilter(_drop_pre_process_advice)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def _cpu_eval(model: nn.Module) -> Iterator[nn.Module]:
    """The model on CPU in evaluation mode for the trace; its device and mode come back after."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        yield model.to("cpu")
    finally:
        model.to(device)
        model.train(was_training)


def _inputs(gliner: Any, word_lists: list[list[str]], labels: list[str]) -> dict[str, Any]:
    return dict(gliner.prompts.encode(word_lists, [labels] * len(word_lists)))


def _trace(wrapper: nn.Module, inputs: dict, path: Path, output: str, opset: int) -> None:
    names = ["input_ids", "attention_mask", "words_mask", "text_lengths"]
    text = {0: "batch", 1: "sequence"}
    probs = {0: "batch", 1: "words", (3 if output == "span" else 2): "labels"}
    axes = {**dict.fromkeys(names[:3], text), "text_lengths": {0: "batch"}, "probs": probs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on sizes it records dynamically
        torch.onnx.export(
            wrapper,
            tuple(inputs[n] for n in names),
            str(path),
            input_names=names,
            output_names=["probs"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _verify(wrapper: nn.Module, path: Path, inputs: dict, output: str) -> None:
    """ONNX Runtime and torch agree on the real cells of an input of another shape than the
    traced one (cells past a text's end hold unused values that differ between paths)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    ours = session.run(["probs"], feeds)[0]
    with torch.no_grad():
        expected = wrapper(**inputs).numpy()
    diff: Any = "shape"
    if ours.shape == expected.shape:
        lengths = inputs["text_lengths"].numpy().reshape(-1, 1, 1)
        last = np.arange(ours.shape[1])[None, :, None]  # the last word of each cell
        if output == "span":
            last = last + np.arange(ours.shape[2])[None, None, :]
        real = (last < lengths)[..., None]  # [B, W, K, 1] or [B, W, 1, 1]
        diff = float(np.abs(np.where(real, ours - expected, 0.0)).max())
    if diff == "shape" or diff > VERIFY_TOLERANCE:
        raise UnsupportedExport(
            f"gliner: the traced ONNX graph does not reproduce the model (shapes {ours.shape} vs "
            f"{expected.shape}, largest difference {diff}); this configuration cannot be "
            "exported. Run it with the torch runtime."
        )
