"""Load what ``--model`` names (a saved pipeline or a GLiNER checkpoint); ``init`` and ``export``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import CLIError, one_line
from .inputs import Labels

FACTORY = "gliner"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass
class Settings:
    """What the command line may set on the component (``None``: keep the model's own)."""

    labels: Optional[Labels] = None
    threshold: Optional[float] = None
    nested: bool = False
    batch_size: Optional[int] = None
    device: Optional[str] = None


def is_pipeline(model: str) -> bool:
    """A saved spaCy pipeline directory, or an installed pipeline package."""
    import spacy.util

    path = Path(model).expanduser()
    if path.is_dir():
        return (path / "config.cfg").exists()
    return bool(spacy.util.is_package(model))


def check_model(model: str) -> None:
    """Fail early on a ``--model`` that is neither a directory to load nor a possible hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.cfg").exists() and not (path / "gliner_config.json").exists():
            raise CLIError(
                f"{model}: neither a saved spaCy pipeline (config.cfg) nor a GLiNER checkpoint "
                "(gliner_config.json)"
            )
    elif path.exists() or not HUB_ID.match(model):
        raise CLIError(f"{model}: no such model directory, and not a Hugging Face hub id")


def load_annotator(model: str, settings: Settings, lang: str = "en") -> tuple[Any, str]:
    """``(nlp, name of its gliner component)`` with the weights loaded and ``settings`` applied."""
    check_model(model)
    try:
        if is_pipeline(model):
            return _load_pipeline(model, settings)
        return _build_pipeline(model, settings, lang)
    except (ValueError, OSError) as err:  # config, checkpoint and hub errors
        raise CLIError(f"{model}: {one_line(err)}") from None


def torch_gliner(nlp: Any, where: str) -> Any:
    """The ``GLiNER`` weights of the pipeline's gliner component; a pipeline that runs an ONNX
    export has none (its export is the files under ``where``'s component directory)."""
    name = gliner_pipe_name(nlp, where)
    pipe: Any = nlp.get_pipe(name)
    if pipe.runtime != "torch":
        raise CLIError(
            f"{where}: the '{name}' component runs an ONNX export (runtime "
            f"'{pipe.runtime}'), which has no torch weights to export; its export files are in "
            f"{Path(where) / name / 'onnx'} (OnnxGLiNER.from_pretrained reads them)"
        )
    return pipe.gliner


def gliner_pipe_name(nlp: Any, where: str) -> str:
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == FACTORY:
            return name
    raise CLIError(f"{where}: the pipeline has no '{FACTORY}' component")


def _overrides(settings: Settings) -> dict[str, Any]:
    """Component settings the command line sets (only those given)."""
    values = {
        "threshold": settings.threshold,
        "flat_ner": False if settings.nested else None,
        "batch_size": settings.batch_size,
        "device": settings.device,
    }
    return {key: value for key, value in values.items() if value is not None}


def _load_pipeline(model: str, settings: Settings) -> tuple[Any, str]:
    import spacy

    nlp = spacy.load(model)
    name = gliner_pipe_name(nlp, model)
    pipe: Any = nlp.get_pipe(name)
    cfg = pipe.cfg
    cfg.update(_overrides(settings))
    # set_labels validates every setting; apply_settings loads the model (torch: moves it to the
    # device) and makes a new engine for the batch size.
    pipe.set_labels(settings.labels if settings.labels is not None else cfg["labels"])
    pipe.apply_settings()
    if not pipe.labels:
        raise CLIError(f"{model}: the pipeline has no labels; give --labels or --labels-file")
    return nlp, name


def _build_pipeline(model: str, settings: Settings, lang: str) -> tuple[Any, str]:
    import spacy

    if settings.labels is None:
        raise CLIError(f"{model} is a GLiNER checkpoint: give --labels or --labels-file")
    config: dict[str, Any] = {"model": model, "labels": settings.labels, **_overrides(settings)}
    nlp = spacy.blank(lang)
    nlp.add_pipe(FACTORY, config=config)
    pipe: Any = nlp.get_pipe(FACTORY)
    pipe.apply_settings()  # load now: errors before any output is written
    return nlp, FACTORY


def init_pipeline(out_dir: Path, model: str, settings: Settings, lang: str = "en") -> None:
    """A spaCy pipeline directory holding the checkpoint's weights (``model = null`` in its
    config, so ``spacy.load(out_dir)`` needs neither the checkpoint nor the network)."""
    import spacy

    from ..gliner import GLiNER

    check_model(model)
    if settings.labels is None:
        raise CLIError("give --labels or --labels-file")
    config: dict[str, Any] = {"labels": settings.labels, "flat_ner": not settings.nested}
    if settings.threshold is not None:
        config["threshold"] = settings.threshold
    try:
        nlp = spacy.blank(lang)
        pipe: Any = nlp.add_pipe(FACTORY, config=config)
        pipe.set_gliner(GLiNER.from_pretrained(model))
    except (ValueError, OSError, ImportError) as err:  # ImportError: unknown language code
        raise CLIError(f"{model}: {one_line(err)}") from None
    nlp.to_disk(out_dir)


def export_checkpoint(pipeline_dir: str, out_dir: Path) -> list[str]:
    """Write the pipeline's GLiNER checkpoint; returns notes on ``model_name`` portability."""
    import spacy

    if not is_pipeline(pipeline_dir):
        raise CLIError(f"{pipeline_dir}: not a saved spaCy pipeline (no config.cfg)")
    try:
        nlp = spacy.load(pipeline_dir)
        gliner = torch_gliner(nlp, pipeline_dir)
    except (ValueError, OSError) as err:
        raise CLIError(f"{pipeline_dir}: {one_line(err)}") from None
    gliner.save_pretrained(out_dir)
    config_path = out_dir / "gliner_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    notes = portable_names(config)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return notes


def is_local_path(name: str) -> bool:
    """A filesystem path rather than a hub id (``org/name`` or ``name``)."""
    return (
        Path(name).expanduser().exists()
        or name.startswith((".", "/", "~"))
        or "\\" in name
        or re.match(r"^[A-Za-z]:", name) is not None
        or not HUB_ID.match(name)
    )


def portable_names(config: dict[str, Any]) -> list[str]:
    """Point ``model_name`` (and ``labels_encoder``) at the encoder's hub id where the stored
    encoder config names one; else keep the local path and say why that is harmless."""
    notes = []
    for key, stored in (
        ("model_name", "encoder_config"),
        ("labels_encoder", "labels_encoder_config"),
    ):
        name = config.get(key)
        if not name:
            continue
        origin = (config.get(stored) or {}).get("_name_or_path") or ""
        if origin and not is_local_path(origin):
            if origin != name:
                config[key] = origin
                notes.append(f"{key}: {name!r} -> {origin!r} (the encoder's hub id)")
        elif is_local_path(name):
            notes.append(
                f"warning: {key} is the local path {name!r}; the checkpoint stores {stored} and "
                f"its tokenizer files, so it loads without {key}"
            )
    return notes
