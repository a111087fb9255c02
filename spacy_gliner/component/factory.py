"""The registered ``gliner`` factory (entry point ``spacy_factories``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Union

from spacy.language import Language

from .pipe import GLiNERPipe
from .registry import build_gliner_model
from .settings import DEFAULT_CONFIG, TrainingSettings


@Language.factory(
    "gliner",
    assigns=["doc.ents", "doc.spans"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner(
    nlp: Language,
    name: str,
    model: Optional[str],
    labels: Union[list[str], dict[str, str]],
    threshold: Union[float, dict[str, float]],
    flat_ner: bool,
    multi_label: bool,
    spans_key: Optional[str],
    ents: str,
    batch_size: int,
    window_overlap: Optional[int],
    window_words: Optional[int],
    max_labels_per_pass: Optional[int],
    device: Optional[str],
    dtype: str,
    cache_dir: Optional[str],
    scorer: Optional[Callable],
    loss: Callable,
    fine_tune: bool,
    encoder_lr: Optional[float],
    others_lr: Optional[float],
    weight_decay: float,
    others_weight_decay: Optional[float],
    grad_clip: float,
    max_types: Optional[int],
    max_neg_type_ratio: Optional[int],
    rehearsal_labels: list[str],
    rehearsal_weight: float,
    seed: int,
) -> GLiNERPipe:
    """Zero-shot NER with a GLiNER checkpoint (``model``: hub id or directory; loaded on first use)."""
    return GLiNERPipe(
        nlp.vocab,
        build_gliner_model(),
        name,
        checkpoint=model,
        labels=labels,
        threshold=threshold,
        flat_ner=flat_ner,
        multi_label=multi_label,
        spans_key=spans_key,
        ents=ents,
        batch_size=batch_size,
        window_overlap=window_overlap,
        window_words=window_words,
        max_labels_per_pass=max_labels_per_pass,
        device=device,
        dtype=dtype,
        cache_dir=cache_dir,
        scorer=scorer,
        loss=loss,
        training=TrainingSettings(
            fine_tune=fine_tune,
            encoder_lr=encoder_lr,
            others_lr=others_lr,
            weight_decay=weight_decay,
            others_weight_decay=others_weight_decay,
            grad_clip=grad_clip,
            max_types=max_types,
            max_neg_type_ratio=max_neg_type_ratio,
            rehearsal_labels=list(rehearsal_labels),
            rehearsal_weight=rehearsal_weight,
            seed=seed,
        ),
    )
