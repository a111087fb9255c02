"""Texts, thresholds and comparisons shared by the ONNX Runtime tests (``test_onnx.py``: the
runtime; ``test_onnx_pipe.py``: the spaCy component on it)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine

TOL = 1e-4
LABELS = ["person", "location", "organization", "date"]
TEXTS = [
    "Barack Obama was born in Hawaii and visited Paris , London and New York in 2009 .",
    "x",
    "Dr. Smith's e-mail: j_doe@x.com (call 555-0199) ; Google , Apple and Microsoft won .",
    "John-Paul Smith_Jones met Mary-Ann at the University in Paris, France.",
]
# About 700 words of distinct sentences (repeated text would give exact score ties, which float
# noise may order either way in decoding).
LONG = " ".join(
    f"In {1900 + i} , {name} of {org} met {other} in {city} on day {i} ."
    for i, (name, org, other, city) in enumerate(
        zip(
            ["Barack Obama", "Mary Smith", "John", "Angela Merkel", "Dr. Jones"] * 12,
            [
                "Google",
                "the United Nations",
                "Apple",
                "Acme Corp",
                "the University of Paris",
                "Microsoft",
            ]
            * 10,
            ["the queen", "a doctor", "the king", "Paul", "the president", "an author", "Michelle"]
            * 9,
            ["Paris", "London", "New York", "Berlin", "Hawaii", "Tokyo", "Rome", "Madrid"] * 8,
        )
    )
)


def words_of(text: str) -> list[str]:
    from spacy_gliner.engine.entities import split_words

    return [w for w, _, _ in split_words(text)]


def gap_threshold(
    ours: GLiNER,
    texts: list[str],
    quantile: float = 0.9,
    split: Callable[[str], list[str]] = words_of,
) -> float:
    """A threshold near ``quantile`` of the torch probabilities of ``texts`` (words: ``split``)
    for ``LABELS``, in a gap wider than 4 * TOL between them, so float noise cannot move a cell
    (or a token model's start / end / inside score) across it."""
    words = [split(t) for t in texts]
    probs = Engine(ours).span_probabilities(words, [LABELS] * len(texts))
    values = np.unique(np.concatenate([p.ravel() for p in probs]))
    wide = np.flatnonzero(np.diff(values) > 4 * TOL)
    i = wide[np.argmin(np.abs(wide - quantile * (len(values) - 1)))]
    return float((values[i] + values[i + 1]) / 2)


def assert_same_results(
    torch_results, onnx_results, decode: bool = True, threshold: float | None = None
) -> list[int]:
    """Same candidates (a cell only one side has must score within TOL of ``threshold``: float
    noise may move it across), scores within TOL, and (``decode``) the same decoded spans for
    every text without overlapping candidates whose scores are within 2 * TOL (a tie that float
    noise may break either way; ties between spans that do not overlap cannot change a greedy
    decoding). Returns the indices of the texts whose decodings were
    compared (``decode``) or could have been (identical candidates, no ties)."""
    assert len(torch_results) == len(onnx_results)
    compared = []
    for i, (a, b) in enumerate(zip(torch_results, onnx_results)):
        assert (a.num_windows, a.num_label_groups) == (b.num_windows, b.num_label_groups)
        cells_a = dict(zip(zip(a.starts, a.ends, a.labels), a.scores))
        cells_b = dict(zip(zip(b.starts, b.ends, b.labels), b.scores))
        for key in set(cells_a) ^ set(cells_b):
            assert threshold is not None, f"candidate {key} found by one runtime only"
            assert abs(cells_a.get(key, cells_b.get(key)) - threshold) <= TOL, key
        shared = sorted(set(cells_a) & set(cells_b))
        assert len(shared) >= 0.95 * len(cells_a)
        np.testing.assert_allclose(
            [cells_a[k] for k in shared], [cells_b[k] for k in shared], atol=TOL, rtol=0
        )
        if len(cells_a) == len(cells_b) == len(shared) and not conflicting_ties(a):
            for flat in (True, False) if decode else ():
                assert [d[:3] for d in a.decode(flat)] == [d[:3] for d in b.decode(flat)]
            compared.append(i)
    return compared


def conflicting_ties(result) -> bool:
    """Whether two candidates of ``result`` (a ``WordsResult``) whose spans overlap (the same
    span with two labels included) score within 2 * TOL of each other: greedy decoding takes
    the higher first, so float noise may decide between them."""
    order = np.argsort(result.scores, kind="stable")
    scores, starts, ends = (
        np.asarray(x)[order] for x in (result.scores, result.starts, result.ends)
    )
    for i in range(len(scores)):
        j = i + 1
        while j < len(scores) and scores[j] - scores[i] <= 2 * TOL:
            if starts[i] <= ends[j] and starts[j] <= ends[i]:
                return True
            j += 1
    return False


# Prepended to a subprocess script: importing torch or transformers raises ImportError there, as
# in an environment where they are not installed.
NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)
