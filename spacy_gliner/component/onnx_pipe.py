"""The ``gliner`` component on ONNX Runtime (``runtime: "onnxruntime"``; the ``onnx`` extra).

``model`` is an export directory (``spacy-gliner export MODEL DIR --onnx [--int8]``), run by
``spacy_gliner.OnnxGLiNER`` with the component's windows, label groups, batching and decoding
(``engine/core.py``) and the torch pipe's own Doc code (``inference.InferencePipe``): labels,
per-Doc labels, thresholds, ``doc.ents`` / ``doc.spans``, the scorer. Inference only (entities;
no relations, generated labels or vectors; CPU), and nothing here imports torch or
transformers, so a deployment needs spacy, onnxruntime and tokenizers only.

The export loads on first use, ``initialize`` or ``from_disk``; ``to_disk`` / ``to_bytes`` carry
a copy of the export's files, so a saved pipeline runs from its own copy.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Optional, Union

import srsly
from spacy.training import Example

from ..engine.core import EngineCore
from ..io.errors import CheckpointError
from ..io.onnx_files import check_export, export_files
from ..onnx_gliner import OnnxGLiNER
from .doc_labels import register_doc_extensions
from .docs import register_span_extension
from .inference import InferencePipe
from .registry import make_gliner_scorer
from .relations import register_relation_extension
from .settings import engine_options, inference_settings
from .vectors import register_vector_extensions

logger = logging.getLogger("spacy_gliner")
# Guards lazy loading and engine creation (module-level, as in pipe.py).
_LOCK = threading.RLock()
EXPORT_DIR = "onnx"  # the copy of the export in a saved pipeline's component directory
HOW_TO_TRAIN = (
    "Train with runtime 'torch' (the default), then export the trained pipeline with "
    "`spacy-gliner export PIPELINE DIR --onnx` and set model to DIR."
)


class OnnxGLiNERPipe(InferencePipe):
    """The ``gliner`` component running an ONNX export (``model``: its directory). ``settings``
    are the component's inference settings (``INFERENCE_DEFAULTS`` fill what is missing), checked
    for this runtime now (``settings.check_onnx_settings``); ``dtype`` int8 runs the export's
    ``model_int8.onnx``, float32 (or None) its ``model.onnx``. ``model`` (a str or Path) that is
    not a directory yet raises on first use, not here (``spacy.load`` makes the pipe from its
    saved config before ``from_disk`` gives it its own copy)."""

    runtime = "onnxruntime"

    def __init__(
        self,
        vocab: Any,
        model: Any,
        name: str = "gliner",
        *,
        settings: Optional[dict[str, Any]] = None,
        scorer: Optional[Callable] = None,
        **setting_kwargs: Any,
    ) -> None:
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ValueError(
                f"gliner: runtime 'onnxruntime' takes model = the path of an ONNX export "
                f"directory (a string), got {type(model).__name__}: remove the "
                '[components.gliner.model] block and set model = "DIR", a directory written '
                "by `spacy-gliner export MODEL DIR --onnx`."
            )
        self.vocab = vocab
        self.name = name
        self.cfg = inference_settings({**(settings or {}), **setting_kwargs})
        self._validate()
        self.scorer = scorer if scorer is not None else make_gliner_scorer(self.cfg["spans_key"])
        self.source = Path(model)  # the export directory the model loads from
        self._onnx: Optional[OnnxGLiNER] = None
        self._engine: Optional[EngineCore] = None
        if self.source.exists():  # a missing one is an error on first use: see _load
            check_export(self.source, int8=self._int8)
        register_doc_extensions()
        register_relation_extension()
        register_span_extension()
        register_vector_extensions()

    @property
    def _int8(self) -> bool:
        return self.cfg["dtype"] == "int8"

    # ---------------------------------------------------------------- model
    @property
    def onnx(self) -> OnnxGLiNER:
        """The loaded export (loaded from ``source`` on first use)."""
        if self._onnx is None:
            with _LOCK:
                if self._onnx is None:
                    self._set_onnx(self._load(self.source))
        assert self._onnx is not None
        return self._onnx

    def _load(self, directory: Path) -> OnnxGLiNER:
        logger.info("Loading GLiNER ONNX export %s", directory)
        try:
            return OnnxGLiNER.from_pretrained(directory, int8=self._int8)
        except CheckpointError as err:
            raise CheckpointError(
                f"The '{self.name}' component (runtime 'onnxruntime') cannot load its model: {err}"
            ) from err

    def _set_onnx(self, onnx: OnnxGLiNER) -> None:
        """Use this export; the settings that need the model (windows, label prompts) are
        checked now."""
        engine = onnx.engine(engine_options(self.cfg, self.runtime))
        if self.label_set.names:
            engine.label_plan(self.label_set)
        self._onnx, self._engine = onnx, engine

    def _loaded(self) -> bool:
        return self._onnx is not None

    def apply_settings(self) -> None:
        self._validate()
        self._set_onnx(self.onnx)

    def _model(self) -> OnnxGLiNER:
        return self.onnx

    # ---------------------------------------------------------------- training: not here
    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Any = None,
        labels: Optional[Union[list[str], dict[str, str]]] = None,
    ) -> None:
        """Take ``labels`` if given and load the export (its errors come now). Examples with
        entities or spans are refused: this runtime cannot train."""
        key = self.cfg["spans_key"]
        for eg in get_examples() if get_examples is not None else ():
            if eg.reference.has_annotation("ENT_IOB") or (key and key in eg.reference.spans):
                raise ValueError(
                    f"The '{self.name}' component runs on ONNX Runtime (runtime 'onnxruntime'), "
                    f"which is inference only: it cannot train on annotated examples. "
                    f"{HOW_TO_TRAIN} To train other components beside it, list it in "
                    "[training] frozen_components."
                )
        if labels:
            self.set_labels(labels)
        _ = self.engine

    def update(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, float]:
        """Always raises: runtime 'onnxruntime' is inference only."""
        raise ValueError(
            f"The '{self.name}' component runs on ONNX Runtime (runtime 'onnxruntime'), which "
            f"is inference only: it has no update. {HOW_TO_TRAIN}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled without the loaded export (an ONNX Runtime session cannot be pickled): a copy
        loads ``source`` on first use (``nlp.pipe(n_process=2)`` under spawn)."""
        state = {**self.__dict__, "_onnx": None, "_engine": None}
        return (_unpickle, (type(self), self.name, state))

    # ---------------------------------------------------------------- serialization
    def _use_source(self, directory: Path) -> None:
        """Run the export in ``directory`` from now on (loaded now)."""
        with _LOCK:
            self._set_onnx(self._load(directory))
            self.source = directory

    def _files(self) -> list[Path]:
        try:
            return export_files(self.source, int8=self._int8)
        except CheckpointError as err:
            raise CheckpointError(
                f"The '{self.name}' component cannot save its ONNX export: {err}"
            ) from err

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> None:
        """``cfg`` and (unless ``model`` is excluded) a copy of the export's files in
        ``path / "onnx"`` (replacing an older copy there)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        if "model" in exclude:
            return
        files, target = self._files(), path / EXPORT_DIR
        if target.exists() and target.resolve() == self.source.resolve():
            return  # saving where it was loaded from: the copy is there
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for file in files:
            shutil.copyfile(file, target / file.name)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> OnnxGLiNERPipe:
        path = Path(path)
        if "model" not in exclude and not (path / EXPORT_DIR).is_dir():
            raise ValueError(
                f"{path} holds no ONNX export ({EXPORT_DIR}/): it was not saved by a gliner "
                "component with runtime 'onnxruntime' (a torch pipeline keeps model/). Export "
                "it with `spacy-gliner export PIPELINE DIR --onnx` and set model to DIR, or "
                "load it with runtime 'torch'."
            )
        if (path / "cfg").exists():
            self._restore_cfg(srsly.read_json(path / "cfg"))
        if "model" not in exclude:
            self._use_source(path / EXPORT_DIR)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        data: dict[str, Any] = {"cfg": self.cfg}
        if "model" not in exclude:
            data["export"] = {file.name: file.read_bytes() for file in self._files()}
        return srsly.msgpack_dumps(data)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> OnnxGLiNERPipe:
        """The export's files go to a temporary directory, removed with this pipe."""
        data = srsly.msgpack_loads(bytes_data)
        self._restore_cfg(data["cfg"])
        if "model" not in exclude and "export" in data:
            directory = Path(tempfile.mkdtemp(prefix="spacy_gliner_onnx_"))
            weakref.finalize(self, shutil.rmtree, directory, True)
            for name, content in data["export"].items():
                if Path(name).name != name:
                    raise ValueError(f"gliner: bad file name {name!r} in the serialized export.")
                (directory / name).write_bytes(content)
            self._use_source(directory)
        return self


def _unpickle(cls: type[OnnxGLiNERPipe], name: str, state: dict[str, Any]) -> OnnxGLiNERPipe:
    pipe = cls.__new__(cls)
    pipe.name = name
    pipe.__dict__.update(state)
    return pipe
