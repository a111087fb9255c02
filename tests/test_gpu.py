"""On a CUDA GPU: the CPU's results in float32, float16 / bfloat16 close to them, training steps.

Skipped where no CUDA GPU is visible (CI)."""
from __future__ import annotations

import random
from typing import List

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example

from helpers import WORDS, write_bert_encoder
from spacy_gliner import GLiNER
from spacy_gliner.inference import LabelSet, Predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LABELS = ["person", "location", "organization"]


def _texts() -> List[List[str]]:
    rng = random.Random(0)
    return [[rng.choice(WORDS) for _ in range(n)] for n in (3, 12, 40, 7, 1200, 25)]  # one long, windowed text


def _cells(result):
    return {(s, e, l): p for s, e, l, p in zip(result.starts.tolist(), result.ends.tolist(), result.labels.tolist(), result.scores.tolist())}


@pytest.fixture(scope="module")
def cpu_results(default_checkpoint):
    return Predictor(GLiNER.from_pretrained(default_checkpoint))(_texts(), LabelSet.from_labels(LABELS), thresholds=0.0)


@pytest.mark.parametrize("dtype, tol", [(None, 1e-4), (torch.float16, 5e-3), (torch.bfloat16, 3e-2)], ids=["fp32", "fp16", "bf16"])
def test_gpu_scores_match_cpu(default_checkpoint, cpu_results, dtype, tol):
    gliner = GLiNER.from_pretrained(default_checkpoint).to("cuda")
    results = Predictor(gliner, dtype=dtype)(_texts(), LabelSet.from_labels(LABELS), thresholds=0.0)
    for cpu, gpu in zip(cpu_results, results):
        assert gpu.num_windows == cpu.num_windows
        a, b = _cells(cpu), _cells(gpu)
        assert a.keys() == b.keys()  # threshold 0: every cell of every window-owned span
        diff = np.abs(np.array([a[k] for k in a]) - np.array([b[k] for k in a]))
        assert diff.max() < tol


def test_pipeline_on_gpu_gives_the_cpu_entities(default_checkpoint, cpu_results):
    texts = [" ".join(words) for words in _texts()]
    scores = np.concatenate([r.scores for r in cpu_results])
    values = np.unique(scores)
    i = int(0.95 * (len(values) - 1))
    while values[i + 1] - values[i] < 1e-3:  # a threshold no score is near
        i += 1
    threshold = float((values[i] + values[i + 1]) / 2)
    out = {}
    for device in ("cpu", "cuda"):
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner", config={"model": str(default_checkpoint), "labels": LABELS, "threshold": threshold, "device": device})
        assert nlp.get_pipe("gliner").gliner.device.type == device
        out[device] = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert out["cuda"] == out["cpu"]
    assert sum(map(len, out["cpu"])) > 0


def test_training_steps_on_gpu_lower_the_loss(tmp_path):
    from spacy_gliner.registry import encoder_loader

    encoder = write_bert_encoder(tmp_path / "bert")
    data = [
        ("barack obama was born in hawaii .", [(0, 2, "person"), (5, 6, "location")]),
        ("john smith works for google in london .", [(0, 2, "person"), (4, 5, "organization"), (6, 7, "location")]),
    ]
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner", config={"device": "cuda", "loss": {"@losses": "spacy_gliner.span_loss.v1", "masking": "none"}})
    examples = []
    for text, spans in data:
        ref = Doc(nlp.vocab, words=text.split())
        ref.ents = [Span(ref, s, e, label=l) for s, e, l in spans]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    loader = encoder_loader(str(encoder), hidden_size=32, max_width=4, dropout=0.0)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader)
    assert next(pipe.gliner.model.parameters()).is_cuda
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = 1e-3
    torch.manual_seed(0)
    first = nlp.update(examples, sgd=optimizer, losses={})["gliner"]
    for _ in range(20):
        last = nlp.update(examples, sgd=optimizer, losses={})["gliner"]
    assert last < first * 0.5
