"""Plain text in, entity dicts out: the word split and the output format of the Python APIs
(``GLiNER.inference`` and ``OnnxGLiNER.inference``). No torch."""

from __future__ import annotations

import re
from typing import Any

from .labels import LabelSet

# The reference's word splitter (gliner's WhitespaceTokenSplitter).
WORD_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")


def split_words(text: Any) -> list[tuple[str, int, int]]:
    """Words of ``text`` with their character offsets (none for a non-string)."""
    if not isinstance(text, str):
        return []
    return [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]


def entity_dicts(
    text: str, split: list, decoded: list, label_set: LabelSet
) -> list[dict[str, Any]]:
    """``{"start", "end", "text", "label", "score"}`` (char offsets) of decoded word spans."""
    ents = []
    for start, end, label, score in decoded:
        a, b = split[start][1], split[end][2]
        ents.append(
            {
                "start": a,
                "end": b,
                "text": text[a:b],
                "label": label_set.names[label],
                "score": score,
            }
        )
    return ents
