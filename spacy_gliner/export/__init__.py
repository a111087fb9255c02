"""Exports of a loaded GLiNER to other runtimes (ONNX: ``export.onnx``); needs torch."""
