"""Long documents under glibc's malloc: freed heap pages go back to the OS (on growth only) and the
span head reuses its buffers from batch to batch; neither for short texts or other allocators."""
from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from typing import List

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("long_text, glibc, expected", [(False, True, 0), (True, True, 1), (True, False, 0)])
def test_predictor_trims_for_long_documents_under_glibc_only(default_checkpoint, monkeypatch, long_text, glibc, expected):
    calls = []
    monkeypatch.setattr(inference, "release_free_memory", lambda: calls.append(1) or False)
    monkeypatch.setattr(inference, "glibc_malloc", lambda: glibc)
    predictor = Predictor(GLiNER.from_pretrained(default_checkpoint), batch_size=2)
    texts = [_words(12, seed=i) for i in range(6)]  # three batches of short texts
    if long_text:
        texts.append(_words(3 * predictor.window_words, seed=99))  # several windows
    predictor(texts, LabelSet.from_labels(["person", "location"]), thresholds=0.5)
    assert (len(calls) > 0) == bool(expected)


def test_long_documents_reuse_the_span_term_buffers(default_checkpoint, monkeypatch):
    """Within one predict call every batch writes its span terms into the same two buffers (no
    per-batch allocation of [B * W, 4D] tensors); scores equal those of freshly allocated buffers;
    the buffers are freed when the call ends."""
    gliner = GLiNER.from_pretrained(default_checkpoint)
    model = gliner.model
    seen = []
    real_buffer = type(model)._buffer

    def recording_buffer(self, name, rows, cols, like):
        out = real_buffer(self, name, rows, cols, like)
        seen.append((name, out.untyped_storage().data_ptr(), self._workspace is not None))
        return out

    monkeypatch.setattr(type(model), "_buffer", recording_buffer)
    monkeypatch.setattr(inference, "glibc_malloc", lambda: True)
    predictor = Predictor(gliner, batch_size=2)
    text = _words(4 * predictor.window_words, seed=7)  # several windows, several batches
    labels = LabelSet.from_labels(["person", "location"])
    reused = predictor([text], labels, thresholds=0.0)[0]
    starts = {ptr for name, ptr, _ in seen if name == "start_terms"}
    calls = sum(1 for name, _, _ in seen if name == "start_terms")
    assert calls > 2 and all(in_workspace for *_, in_workspace in seen)
    assert len(starts) == 1  # allocated once, for the largest batch, and used by every batch
    assert model._workspace is None  # freed after the call

    seen.clear()  # another allocator (jemalloc, tcmalloc): no workspace
    monkeypatch.setattr(inference, "glibc_malloc", lambda: False)
    predictor([text], labels, thresholds=0.0)
    assert seen and not any(in_workspace for *_, in_workspace in seen)

    monkeypatch.setattr(type(model), "reusing_buffers", lambda self, *args: contextlib.nullcontext())
    fresh = predictor([text], labels, thresholds=0.0)[0]
    assert len(reused) == len(fresh) > 0
    assert np.array_equal(reused.starts, fresh.starts) and np.array_equal(reused.labels, fresh.labels)
    assert np.allclose(reused.scores, fresh.scores, atol=0, rtol=0)


def test_training_never_takes_workspace_buffers(default_checkpoint):
    """Under autograd the span terms are fresh tensors even inside an open workspace."""
    model = GLiNER.from_pretrained(default_checkpoint).model
    like = torch.zeros(1, 8)
    with model.reusing_buffers():
        with torch.no_grad():
            a = model._buffer("start_terms", 4, 8, like)
            b = model._buffer("start_terms", 3, 8, like)
        c = model._buffer("start_terms", 4, 8, like)
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    assert c.untyped_storage().data_ptr() != a.untyped_storage().data_ptr()


def test_glibc_malloc_tells_a_preloaded_allocator_apart():
    """True under glibc's own malloc, False with jemalloc preloaded (when it is installed)."""
    code = "from spacy_gliner.memory import glibc_malloc; print(glibc_malloc())"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert plain in ("True", "False")
    if plain == "False":
        pytest.skip("this process does not allocate with glibc's malloc")
    jemalloc = next((p for p in ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2") if os.path.exists(p)), None)
    if jemalloc is None:
        pytest.skip("libjemalloc2 is not installed")
    env = {**os.environ, "LD_PRELOAD": jemalloc}
    preloaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert preloaded == "False"
