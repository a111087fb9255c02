"""One ``nlp`` called from several threads gives the sequential results (uni- and bi-encoders,
short and long documents)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import spacy
from helpers import WORDS


def _texts() -> list[str]:
    rng = random.Random(5)
    short = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for _ in range(12)]
    long = [" ".join(rng.choice(WORDS) for _ in range(1500)) for _ in range(3)]
    return short[:6] + long[:2] + short[6:] + long[2:]


def _result(doc) -> tuple:
    group = doc.spans["sc"]
    return tuple((s.start, s.end, s.label_) for s in group), tuple(group.attrs["scores"])


@pytest.mark.parametrize("settings", [{}, {"labels_encoder": "labels_bert"}], ids=["uni", "bi"])
def test_threads_equal_sequential(reference_checkpoint, settings):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={
            "model": str(reference_checkpoint(**settings)),
            "labels": ["person", "location", "organization"],
            "threshold": 0.5,
            "batch_size": 4,
        },
    )
    texts = _texts()
    sequential = [_result(nlp(t)) for t in texts]
    rounds = [texts[i:] + texts[:i] for i in range(4)]  # each thread its own order
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda order: [(t, _result(nlp(t))) for t in order], rounds))
    expected = dict(zip(texts, sequential))
    for results in threaded:
        for text, result in results:
            assert result == expected[text]
