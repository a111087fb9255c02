"""Component settings: the one source of their defaults, and their validation.

``INFERENCE_DEFAULTS`` and ``TrainingSettings`` hold every default; the factory's
``DEFAULT_CONFIG`` and both pipes (``GLiNERPipe``, ``OnnxGLiNERPipe``) take theirs from here, and
``validate`` checks the settings of either runtime. Importing this module imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ..engine.core import EngineOptions
from ..engine.labels import LabelSet

ENTS_MODES = ("overwrite", "merge", "none")
# What runs the model: torch (trainable; engine/engine.py) or ONNX Runtime (an export directory,
# inference only, no torch imported; component/onnx_pipe.py).
RUNTIMES = ("torch", "onnxruntime")
# The dtypes of the onnxruntime runtime: the export's model.onnx, or model_int8.onnx.
ONNX_DTYPES = (None, "float32", "int8")
# Where and how this process runs the model: from the config at load time, never from a saved
# pipeline.
RUNTIME_SETTINGS = ("device", "dtype", "batch_size", "cache_dir")
MODEL_DIR = "model"
# Prompt structure tokens of every published checkpoint; a label containing one is refused at
# build time (the tokenizer's own special tokens are checked when the model loads).
PROMPT_TOKENS = ("<<ENT>>", "<<SEP>>", "[FLERT]")

INFERENCE_DEFAULTS: dict[str, Any] = {
    "labels": [],
    "relations": [],
    "threshold": 0.5,
    "adjacency_threshold": None,
    "relation_threshold": None,
    "flat_ner": True,
    "multi_label": False,
    "spans_key": "sc",
    "ents": "overwrite",
    "batch_size": None,  # the engine's default (32 on CPU, 128 on a GPU): one place for both
    "window_overlap": None,
    "window_words": None,
    "max_labels_per_pass": None,
    "device": None,
    "dtype": "float32",
    "cache_dir": None,
    "use_generated_labels": False,
    "return_vectors": False,
}


@dataclass
class TrainingSettings:
    """How ``update`` trains (the loss itself is the registered ``loss`` function).

    ``encoder_lr``/``others_lr``: the learning rates of the encoder (``token_rep_layer``) and of the
    other layers. spaCy's optimizer schedule should peak at ``encoder_lr``; the other layers get
    ``others_lr / encoder_lr`` times its rate. Decoupled weight decay per group (LayerNorm and bias
    excluded). ``grad_clip``: global gradient-norm clipping (0 = off). ``max_types`` and
    ``max_neg_type_ratio`` (default: the model's) drive negative label sampling.
    ``rehearsal_weight`` > 0 distils the starting model's scores for ``rehearsal_labels`` into
    every update, against forgetting zero-shot labels while fine-tuning on a few.
    ``skip_bad_examples``: training examples that cannot be used (no words, a label outside the
    label set, overlapping spans under ``flat_ner``) are skipped with a counted warning instead of
    stopping ``initialize`` with an error that names the first one.
    """

    fine_tune: bool = True
    encoder_lr: Optional[float] = None
    others_lr: Optional[float] = None
    weight_decay: float = 0.0
    others_weight_decay: Optional[float] = None
    grad_clip: float = 0.0
    max_types: Optional[int] = None
    max_neg_type_ratio: Optional[int] = None
    rehearsal_labels: list[str] = field(default_factory=list)
    rehearsal_weight: float = 0.0
    seed: int = 0
    skip_bad_examples: bool = False


DEFAULT_CONFIG: dict[str, Any] = {
    "model": {"@architectures": "spacy_gliner.GLiNERModel.v1", "checkpoint": None},
    "runtime": "torch",
    **INFERENCE_DEFAULTS,
    "scorer": {"@scorers": "spacy_gliner.scorer.v1", "spans_key": "sc"},
    # Training only (spacy train); see configs/ and the README.
    "loss": {"@losses": "spacy_gliner.span_loss.v1"},
    **asdict(TrainingSettings()),
}


def inference_settings(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` settings (plain values) with ``INFERENCE_DEFAULTS`` for the missing ones; unknown
    names raise ``ValueError``."""
    unknown = sorted(set(given) - set(INFERENCE_DEFAULTS))
    if unknown:
        raise ValueError(
            f"gliner: unknown setting(s) {unknown}; known: {sorted(INFERENCE_DEFAULTS)}."
        )
    return {key: plain(given.get(key, value)) for key, value in INFERENCE_DEFAULTS.items()}


def plain(value: Any) -> Any:
    """Config values as plain lists/dicts (spaCy may pass tuples or confection containers)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def validate(cfg: dict[str, Any], runtime: str = "torch") -> tuple[LabelSet, list[float]]:
    """Check every setting that needs no model, for ``runtime`` (``RUNTIMES``); return the label
    set and per-label thresholds. Raises ``ValueError`` naming the setting and what would work.
    Imports torch only for the torch runtime's ``device`` / ``dtype``."""
    check_runtime(runtime)
    labels = LabelSet.from_labels(cfg["labels"]) if cfg["labels"] else LabelSet((), ())
    for prompt in labels.prompts:
        found = [t for t in PROMPT_TOKENS if t in prompt]
        if found:
            raise ValueError(
                f"gliner: label {prompt!r} contains the prompt token(s) {found}, which the model "
                "reads as prompt structure (labels would shift). Remove them from the label."
            )
    if not isinstance(cfg["flat_ner"], bool) or not isinstance(cfg["multi_label"], bool):
        raise ValueError("gliner: flat_ner and multi_label must be true or false.")
    for name in ("use_generated_labels", "return_vectors"):
        if not isinstance(cfg[name], bool):
            raise ValueError(f"gliner: {name} must be true or false.")
    _one_of("ents", cfg["ents"], ENTS_MODES)
    key = cfg["spans_key"]
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(
            "gliner: spans_key must be a non-empty string, or null to not write doc.spans."
        )
    for name in ("batch_size", "window_overlap", "window_words", "max_labels_per_pass"):
        value = cfg[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"gliner: {name} must be a positive integer, got {value!r}.")
    words, overlap = cfg.get("window_words"), cfg["window_overlap"]
    if words and overlap and words <= overlap:
        raise ValueError(
            f"gliner: window_words ({words}) must be larger than window_overlap ({overlap})."
        )
    if runtime == "torch":
        from ..engine.dtypes import DTYPES

        _one_of("dtype", cfg["dtype"], tuple(DTYPES))
        check_device(cfg["device"], cfg["dtype"])
    else:
        check_onnx_settings(cfg)
    return labels, thresholds(cfg["threshold"], labels.names)


def check_runtime(runtime: Any) -> None:
    """Raise ``ValueError`` unless ``runtime`` is one of ``RUNTIMES``."""
    _one_of("runtime", runtime, RUNTIMES)


def check_onnx_settings(cfg: dict[str, Any]) -> None:
    """The settings the onnxruntime runtime cannot run (it runs an export's float32 or int8
    graph on CPU, entities only) raise ``ValueError`` saying what to do instead."""
    if cfg["dtype"] not in ONNX_DTYPES:
        raise ValueError(
            f"gliner: dtype {cfg['dtype']!r} is not available with runtime 'onnxruntime', which "
            "runs the export's model.onnx (dtype float32, the default) or model_int8.onnx "
            "(dtype int8; `spacy-gliner export MODEL DIR --onnx --int8` writes it)."
        )
    if cfg["device"] not in (None, "cpu"):
        raise ValueError(
            f"gliner: runtime 'onnxruntime' runs on CPU only, not on device {cfg['device']!r}: "
            "leave device unset (or 'cpu'), or use runtime 'torch' for a GPU."
        )
    if cfg["cache_dir"]:
        raise ValueError(
            "gliner: cache_dir is for hub downloads of the torch runtime; runtime 'onnxruntime' "
            "reads a local export directory (model). Unset cache_dir."
        )
    torch_only = {
        "relations": "relation extraction",
        "use_generated_labels": "generated labels (label-decoder models)",
        "return_vectors": "span and label vectors",
    }
    for name, what in torch_only.items():
        if cfg[name]:
            raise ValueError(
                f"gliner: {name} is set, but runtime 'onnxruntime' finds entities only ({what} "
                f"needs runtime 'torch'). Unset {name}, or use runtime 'torch'."
            )


def engine_options(cfg: dict[str, Any], runtime: str = "torch") -> EngineOptions:
    """The engine options of validated settings ``cfg`` (the onnxruntime runtime's precision is
    its graph's: no engine dtype)."""
    dtype = None
    if runtime == "torch":
        from ..engine.dtypes import engine_dtype

        dtype = engine_dtype(cfg["dtype"])
    return EngineOptions(
        batch_size=cfg["batch_size"],
        window_overlap=cfg["window_overlap"],
        window_words=cfg["window_words"],
        max_labels_per_pass=cfg["max_labels_per_pass"],
        dtype=dtype,
    )


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"gliner: {name} must be one of {allowed}, got {value!r}.")


def check_device(device: Optional[str], dtype: str) -> None:
    """A device torch knows and this process has; float16 only off the CPU, int8 only on it."""
    import torch

    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"gliner: device {device!r} is not a torch device; use e.g. 'cpu', 'cuda', 'cuda:1', 'mps'."
        ) from err
    if parsed.type != "cpu" and dtype == "int8":
        raise ValueError(
            f"gliner: dtype int8 runs on CPU only (torch's dynamic int8 kernels), not on device "
            f"{device!r}: on a GPU use float16 or bfloat16, or set device to 'cpu'."
        )
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"gliner: device {device!r} needs CUDA, which this torch build or machine does not "
            "have (torch.cuda.is_available() is False). Use device 'cpu' or install a CUDA torch."
        )
    if parsed.type == "cpu" and dtype == "float16":
        raise ValueError(
            "gliner: dtype float16 runs on a GPU only: on CPU use float32 (the default), "
            "bfloat16 or int8, or set device to a GPU."
        )


def thresholds(
    threshold: Union[float, dict[str, float]], names: tuple[str, ...], strict: bool = True
) -> list[float]:
    """One threshold per label from a number or ``{label: value, "default": value}``; values for
    labels not in ``names`` are an error when ``strict``, else ignored (a Doc's own labels)."""
    if isinstance(threshold, dict):
        unknown = sorted(set(threshold) - set(names) - {"default"}) if strict else []
        if unknown:
            raise ValueError(
                f"gliner: thresholds given for unknown labels {unknown}; labels are {list(names)}."
            )
        default = threshold.get("default", 0.5)
        values = {name: threshold.get(name, default) for name in names}
        values["default"] = default
    else:
        values = {"default": threshold}
    for name, value in values.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"gliner: threshold for {name!r} must be a number in [0, 1], got {value!r}."
            )
    return [float(values.get(name, values["default"])) for name in names]


def device_of(cfg: dict[str, Any]) -> Any:
    """The torch device of the ``device`` setting (thinc's default device when unset)."""
    import torch

    if cfg["device"]:
        return torch.device(cfg["device"])
    from thinc.api import get_torch_default_device

    return get_torch_default_device()


def check_trainable(cfg: dict[str, Any], name: str) -> None:
    """Raise unless the component's settings allow training (int8 is for inference only)."""
    if cfg["dtype"] == "int8":
        raise ValueError(
            f"The '{name}' component has dtype int8, which is for inference only (it runs an int8 "
            "copy of the model, without gradients). Train with dtype float32 (the default), then "
            "load the trained pipeline with int8: spacy.load(path, config="
            f'{{"components": {{"{name}": {{"dtype": "int8"}}}}}}).'
        )
