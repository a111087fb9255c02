"""``spacy-gliner export MODEL OUT_DIR --onnx [--int8]``: an ONNX export for the torch-free
runtime (``spacy_gliner.OnnxGLiNER``; ``spacy_gliner/export/onnx.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CLIError, one_line
from .models import check_model, is_pipeline, torch_gliner


def export_onnx_dir(model: str, out_dir: Path, int8: bool) -> list[Path]:
    """Export the GLiNER of ``model`` (a saved pipeline, a checkpoint directory or a hub id) to
    ``out_dir``; returns the model files written."""
    try:
        from ..export.onnx import export_onnx
    except ImportError as err:  # pragma: no cover - torch is a dependency of spacy-gliner
        raise CLIError(f"exporting needs torch: {one_line(err)}") from None
    try:
        import onnx  # noqa: F401  (torch.onnx writes the graph with it)
        import onnxruntime  # noqa: F401  (the export is checked, and quantized, with it)
    except ImportError:
        raise CLIError(
            "--onnx needs the onnx and onnxruntime packages: pip install 'spacy-gliner[onnx]'"
        ) from None
    gliner = _load_gliner(model)
    try:
        written = export_onnx(gliner, out_dir, int8=int8)
    except (ValueError, OSError) as err:  # UnsupportedExport is a ValueError
        raise CLIError(f"{model}: {one_line(err)}") from None
    return list(written.values())


def _load_gliner(model: str) -> Any:
    check_model(model)
    try:
        if is_pipeline(model):
            import spacy

            return torch_gliner(spacy.load(model), model)
        from ..gliner import GLiNER

        return GLiNER.from_pretrained(model)
    except (ValueError, OSError) as err:
        raise CLIError(f"{model}: {one_line(err)}") from None
