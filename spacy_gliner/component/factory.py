"""The registered ``gliner`` factory (entry point ``spacy_factories``).

``runtime`` picks the pipe: ``"torch"`` (the default; ``pipe.GLiNERPipe``, trainable) or
``"onnxruntime"`` (``onnx_pipe.OnnxGLiNERPipe``: an ONNX export, inference only). Each runtime's
modules are imported only when a pipe with it is made, so the onnxruntime runtime imports no
torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, Union

from spacy.language import Language
from spacy.pipeline import Pipe
from thinc.api import Model

from .progress import install_handler
from .settings import DEFAULT_CONFIG, INFERENCE_DEFAULTS, TrainingSettings, check_runtime

Labels = Union[list[str], dict[str, str]]
install_handler()


@Language.factory(
    "gliner",
    assigns=["doc.ents", "doc.spans", "doc._.rel"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner(
    nlp: Language, name: str, model: Union[Model, str, None], runtime: str, labels: Labels,
    relations: Labels, threshold: Union[float, dict[str, float]],
    adjacency_threshold: Optional[float], relation_threshold: Optional[float], flat_ner: bool,
    multi_label: bool, spans_key: Optional[str], ents: str, batch_size: Optional[int],
    window_overlap: Optional[int], window_words: Optional[int],
    max_labels_per_pass: Optional[int], device: Optional[str], dtype: Optional[str],
    cache_dir: Optional[str], use_generated_labels: bool, return_vectors: bool,
    scorer: Optional[Callable], loss: Callable,
    fine_tune: bool, encoder_lr: Optional[float], others_lr: Optional[float], weight_decay: float,
    others_weight_decay: Optional[float], grad_clip: float, max_types: Optional[int],
    max_neg_type_ratio: Optional[int], rehearsal_labels: list[str], rehearsal_weight: float,
    seed: int, skip_bad_examples: bool,
) -> Pipe:  # fmt: skip
    """Zero-shot NER with GLiNER (and relation extraction into ``doc._.rel`` with ``relations``
    and a relation-extraction checkpoint; ``span._.gliner_generated_label`` with a label-decoder
    checkpoint; ``span._.gliner_vector`` / ``gliner_label_vector`` with ``return_vectors``).
    ``model``: the ``spacy_gliner.GLiNERModel.v1`` block,
    or a checkpoint (hub id or directory) as a shortcut for it; loaded by ``initialize`` or on
    first use. With ``runtime = "onnxruntime"``, ``model`` is an ONNX export directory
    (``spacy-gliner export MODEL DIR --onnx``) and the training settings are unused."""
    values: dict[str, Any] = dict(locals())
    settings = {key: values[key] for key in INFERENCE_DEFAULTS}
    check_runtime(runtime)
    if runtime == "onnxruntime":
        from .onnx_pipe import OnnxGLiNERPipe

        return OnnxGLiNERPipe(nlp.vocab, model, name, settings=settings, scorer=scorer)
    from .pipe import GLiNERPipe
    from .registry import build_gliner_model

    block = model if isinstance(model, Model) else build_gliner_model(model)
    training = TrainingSettings(
        **{key: values[key] for key in TrainingSettings.__dataclass_fields__}
    )
    return GLiNERPipe(
        nlp.vocab, block, name, settings=settings, scorer=scorer, loss=loss, training=training
    )
