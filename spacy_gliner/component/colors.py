"""displaCy colours for zero-shot labels.

spaCy's displaCy colours entity labels it knows (``PERSON``, ``ORG``, ...) and draws every other
label grey. GLiNER labels are free text, so this module gives:

- ``GLINER_COLORS``: colours for about 60 common zero-shot labels, registered through the
  ``spacy_displacy_colors`` entry point, so ``displacy.render(doc, style="ent")`` uses them with
  no options. Labels spaCy already colours keep spaCy's colour (installing spacy-gliner changes
  nothing for other pipelines).
- ``label_color(label)``: a colour for any label, the same in every process (a hash of the
  lowercased label into a fixed palette).
- ``displacy_options(nlp)``: ``{"colors": {...}}`` covering every label of a pipeline's gliner
  components, for ``displacy.render(doc, style="ent", options=...)``.

Only the standard library is imported here: displaCy loads this module through the entry point
whenever it renders, in any environment where spacy-gliner is installed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

FACTORY = "gliner"

# 24 light, readable colours (dark text stays legible on each), ordered so that neighbours differ.
PALETTE: tuple[str, ...] = (
    "#aa9cfc",  # lavender
    "#7aecec",  # aqua
    "#feca74",  # apricot
    "#bfeeb7",  # mint
    "#ff9561",  # coral
    "#c887fb",  # violet
    "#ffeb80",  # lemon
    "#9cc9cc",  # teal grey
    "#ff8197",  # pink
    "#bfe1d9",  # sage
    "#f0d0ff",  # lilac
    "#e4e7d2",  # stone
    "#a8d8ff",  # sky
    "#ffc3a0",  # peach
    "#c5e99b",  # lime
    "#ffb3d9",  # rose
    "#b5c7ff",  # periwinkle
    "#ffd8a8",  # sand
    "#a0e7c5",  # seafoam
    "#e0b0a0",  # clay
    "#d0d8ff",  # ice blue
    "#f6c6ea",  # blush
    "#c9f2a0",  # pistachio
    "#ffe0b3",  # cream
)

# spaCy's own colours (spacy.displacy.render.DEFAULT_LABEL_COLORS) for the labels it knows, plus
# their usual zero-shot spellings: a GLiNER "person" looks like a spaCy PERSON.
_SPACY_COMPATIBLE: dict[str, str] = {
    "person": "#aa9cfc",
    "org": "#7aecec",
    "organization": "#7aecec",
    "organisation": "#7aecec",
    "company": "#7aecec",
    "gpe": "#feca74",
    "country": "#feca74",
    "city": "#feca74",
    "loc": "#ff9561",
    "location": "#ff9561",
    "norp": "#c887fb",
    "nationality": "#c887fb",
    "fac": "#9cc9cc",
    "facility": "#9cc9cc",
    "product": "#bfeeb7",
    "event": "#ffeb80",
    "law": "#ff8197",
    "language": "#ff8197",
    "work_of_art": "#f0d0ff",
    "date": "#bfe1d9",
    "time": "#bfe1d9",
    "money": "#e4e7d2",
    "quantity": "#e4e7d2",
    "ordinal": "#e4e7d2",
    "cardinal": "#e4e7d2",
    "percent": "#e4e7d2",
}

# Other common zero-shot labels; related labels sit next to each other so they get different
# colours (the palette is walked in order, starting past spaCy's colours).
_OTHER_LABELS: tuple[str, ...] = (
    # biomedical
    "disease",
    "drug",
    "chemical",
    "gene",
    "protein",
    "species",
    "symptom",
    "medical condition",
    "anatomy",
    "cell type",
    "medication",
    "treatment",
    # people and groups
    "job title",
    "title",
    "role",
    "group",
    "team",
    "politician",
    "artist",
    "author",
    # places and things
    "address",
    "building",
    "vehicle",
    "food",
    "animal",
    "plant",
    # creative works and artefacts
    "book",
    "film",
    "movie",
    "song",
    "album",
    "award",
    "software",
    "technology",
    "programming language",
    # identifiers and numbers
    "email",
    "phone number",
    "url",
    "id",
    "number",
    "age",
    "duration",
    "measurement",
    "currency",
    "price",
    # other
    "concept",
    "skill",
    "sport",
    "religion",
    "misc",
)


def label_color(label: str) -> str:
    """A colour from ``PALETTE`` for any label: a CRC-32 of the lowercased, stripped label, so the
    same label gets the same colour in every process and Python version."""
    key = label.strip().lower().encode("utf-8")
    return PALETTE[zlib.crc32(key) % len(PALETTE)]


def _build_colors() -> dict[str, str]:
    colors = dict(_SPACY_COMPATIBLE)
    start = 12  # past the colours spaCy's defaults use, so these labels stand apart from them
    for i, label in enumerate(_OTHER_LABELS):
        colors[label] = PALETTE[(start + i) % len(PALETTE)]
    # Lower- and upper-case spellings (displaCy upper-cases both labels and keys when it looks up).
    return {
        **colors,
        **{label.upper(): color for label, color in colors.items()},
    }


GLINER_COLORS: dict[str, str] = _build_colors()


def color_for(label: str) -> str:
    """The colour displaCy will get for ``label``: ``GLINER_COLORS`` where it names the label (in
    any case), else ``label_color``."""
    return GLINER_COLORS.get(label.lower()) or label_color(label)


def _labels_of(source: Any) -> list[str]:
    """Labels of a spaCy ``Language`` (its gliner components), of one component (``.labels``), or
    an iterable of labels."""
    if isinstance(source, str):
        return [source]
    if hasattr(source, "pipe_names") and hasattr(source, "get_pipe_meta"):
        labels: list[str] = []
        for name in source.pipe_names:
            if source.get_pipe_meta(name).factory == FACTORY:
                labels.extend(source.get_pipe(name).labels)
        return labels
    if hasattr(source, "labels") and not isinstance(source, (dict, list, tuple, set)):
        return list(source.labels)
    if isinstance(source, dict):  # {label: prompt} as in the component's config
        return [str(label) for label in source]
    if isinstance(source, Iterable):
        return [str(label) for label in source]
    raise TypeError(
        "displacy_options takes a spaCy pipeline, a gliner component or an iterable of labels, "
        f"got {type(source).__name__}."
    )


def displacy_options(nlp_or_labels: Any) -> dict[str, Any]:
    """``{"colors": {label: colour}}`` for every label of the pipeline's gliner components (or of
    the labels given), for ``displacy.render(doc, style="ent", options=...)``. Labels outside
    ``GLINER_COLORS`` get ``label_color``; a pipeline without gliner components gives no colours."""
    return {"colors": {label: color_for(label) for label in _labels_of(nlp_or_labels)}}
