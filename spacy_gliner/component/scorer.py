"""Scoring of ``doc.ents`` and ``doc.spans`` (spaCy's span scorer)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from spacy.scorer import Scorer
from spacy.training import Example


@dataclass(frozen=True)
class GLiNERScorer:
    """Scores ``doc.ents`` and ``doc.spans[spans_key]`` (a picklable callable)."""

    spans_key: Optional[str] = None

    def __call__(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        examples = list(examples)
        scores = Scorer.score_spans(examples, "ents", **kwargs)
        key = self.spans_key
        if key:
            scores.update(
                Scorer.score_spans(
                    examples,
                    f"spans_{key}",
                    getter=lambda doc, _: list(doc.spans.get(key, [])),
                    has_annotation=lambda doc: key in doc.spans,
                    allow_overlap=True,
                    **kwargs,
                )
            )
        return scores
