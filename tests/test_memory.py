"""When freed heap memory is handed back to the OS: on growth only, and for long documents only."""
from __future__ import annotations

import random
from typing import List

import pytest

from helpers import WORDS
from spacy_gliner import GLiNER, memory
from spacy_gliner import inference
from spacy_gliner.inference import LabelSet, Predictor


@pytest.fixture()
def fake_process(monkeypatch):
    """A process whose resident memory the test sets, and a malloc_trim that records its calls."""
    state = {"rss": 500.0, "trims": 0}

    def trim(_pad: int) -> int:
        state["trims"] += 1
        state["rss"] -= 50.0  # what a trim gives back
        return 1

    monkeypatch.setattr(memory, "_loaded", True)
    monkeypatch.setattr(memory, "_trim", trim)
    monkeypatch.setattr(memory, "_after_last_trim", None)
    monkeypatch.setattr(memory, "resident_mib", lambda: state["rss"])
    return state


def test_trims_only_after_resident_memory_grew(fake_process):
    assert memory.release_free_memory(growth_mib=32) is True  # first call: a trim sets the baseline (450)
    fake_process["rss"] = 470.0
    assert memory.release_free_memory(growth_mib=32) is False  # +20 MiB: no trim
    fake_process["rss"] = 490.0
    assert memory.release_free_memory(growth_mib=32) is True  # +40 MiB: trim, new baseline 440
    fake_process["rss"] = 460.0
    assert memory.release_free_memory(growth_mib=32) is False
    assert fake_process["trims"] == 2


def test_no_trim_without_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_loaded", True)
    monkeypatch.setattr(memory, "_trim", None)
    assert memory.release_free_memory() is False


def test_resident_mib_reads_this_process():
    rss = memory.resident_mib()
    assert rss is None or 1 < rss < 1e6


def _words(n: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


@pytest.mark.parametrize("long_text, expected", [(False, 0), (True, 1)])
def test_predictor_trims_for_long_documents_only(default_checkpoint, monkeypatch, long_text, expected):
    calls = []
    monkeypatch.setattr(inference, "release_free_memory", lambda: calls.append(1) or False)
    predictor = Predictor(GLiNER.from_pretrained(default_checkpoint), batch_size=2)
    texts = [_words(12, seed=i) for i in range(6)]  # three batches of short texts
    if long_text:
        texts.append(_words(3 * predictor.window_words, seed=99))  # several windows
    predictor(texts, LabelSet.from_labels(["person", "location"]), thresholds=0.5)
    assert (len(calls) > 0) == bool(expected)

