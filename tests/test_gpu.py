"""On a CUDA GPU: the CPU's results in float32, float16 / bfloat16 close to them, training steps.

Skipped where no CUDA GPU is visible (CI)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import spacy
import torch
from helpers import WORDS, first_and_last_loss, make_examples, write_bert_encoder

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LABELS = ["person", "location", "organization"]


def _texts() -> list[list[str]]:
    rng = random.Random(0)
    return [
        [rng.choice(WORDS) for _ in range(n)] for n in (3, 12, 40, 7, 1200, 25)
    ]  # one long, windowed text


def _cells(result):
    return {
        (s, e, lab): p
        for s, e, lab, p in zip(
            result.starts.tolist(),
            result.ends.tolist(),
            result.labels.tolist(),
            result.scores.tolist(),
        )
    }


@pytest.fixture(scope="module")
def cpu_results(default_checkpoint):
    return Engine(GLiNER.from_pretrained(default_checkpoint))(
        _texts(), LabelSet.from_labels(LABELS), thresholds=0.0
    )


@pytest.mark.parametrize(
    "dtype, tol",
    [(None, 1e-4), (torch.float16, 5e-3), (torch.bfloat16, 3e-2)],
    ids=["fp32", "fp16", "bf16"],
)
def test_gpu_scores_match_cpu(default_checkpoint, cpu_results, dtype, tol):
    gliner = GLiNER.from_pretrained(default_checkpoint).to("cuda")
    results = Engine(gliner, EngineOptions(dtype=dtype))(
        _texts(), LabelSet.from_labels(LABELS), thresholds=0.0
    )
    for cpu, gpu in zip(cpu_results, results):
        assert gpu.num_windows == cpu.num_windows
        a, b = _cells(cpu), _cells(gpu)
        assert a.keys() == b.keys()  # threshold 0: every cell of every window-owned span
        diff = np.abs(np.array([a[k] for k in a]) - np.array([b[k] for k in a]))
        assert diff.max() < tol


def test_default_batch_size_is_128_rows_on_gpu(default_checkpoint):
    assert Engine(GLiNER.from_pretrained(default_checkpoint).to("cuda")).batch_size == 128


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
        nlp.add_pipe(
            "gliner",
            config={
                "model": str(default_checkpoint),
                "labels": LABELS,
                "threshold": threshold,
                "device": device,
            },
        )
        assert nlp.get_pipe("gliner").gliner.device.type == device
        out[device] = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert out["cuda"] == out["cpu"]
    assert sum(map(len, out["cpu"])) > 0


def test_training_steps_on_gpu_lower_the_loss(tmp_path):
    from spacy_gliner.component.registry import encoder_loader

    encoder = write_bert_encoder(tmp_path / "bert")
    data = [
        ("barack obama was born in hawaii .", [(0, 2, "person"), (5, 6, "location")]),
        (
            "john smith works for google in london .",
            [(0, 2, "person"), (4, 5, "organization"), (6, 7, "location")],
        ),
    ]
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(
        "gliner",
        config={
            "device": "cuda",
            "loss": {"@losses": "spacy_gliner.span_loss.v1", "masking": "none"},
        },
    )
    examples = make_examples(nlp, data)
    loader = encoder_loader(str(encoder), hidden_size=32, max_width=4, dropout=0.0)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader)
    assert next(pipe.gliner.model.parameters()).is_cuda
    first, last = first_and_last_loss(nlp, examples, steps=20)
    assert last < first * 0.5


def test_fused_adam_step_on_gpu_equals_the_cpu_step():
    """The same thinc Adam settings, weights and gradients: the CUDA step (moments on the GPU) gives
    the CPU step's weights and moments."""
    from thinc.api import Adam

    from spacy_gliner.training.optimizer import apply_optimizer

    torch.manual_seed(0)
    weights = {"enc.w": torch.randn(64, 32), "head.w": torch.randn(16), "head.b": torch.randn(3, 5)}
    grads = [{n: torch.randn_like(w) for n, w in weights.items()} for _ in range(3)]
    result = {}
    for device in ("cpu", "cuda"):
        optimizer = Adam(1e-2, grad_clip=0.0, use_averages=True)  # plain Adam: the fused path
        params = [(n, torch.nn.Parameter(w.clone().to(device))) for n, w in weights.items()]
        for step in grads:
            for n, p in params:
                p.grad = step[n].to(device)
            apply_optimizer(optimizer, 1, params, {"head.w": 3.0, "head.b": 3.0}, {"enc.w": 0.1})
        result[device] = ({n: p.detach().cpu() for n, p in params}, optimizer)
    (cpu_w, cpu_opt), (gpu_w, gpu_opt) = result["cpu"], result["cuda"]
    for n in weights:
        torch.testing.assert_close(gpu_w[n], cpu_w[n], atol=1e-6, rtol=1e-5)
        key = (1, n)
        assert gpu_opt.nr_update[key] == cpu_opt.nr_update[key] == 3
        for state, tol in (
            ((gpu_opt.mom1, cpu_opt.mom1), 1e-6),
            ((gpu_opt.mom2, cpu_opt.mom2), 1e-7),
            ((gpu_opt.averages, cpu_opt.averages), 1e-6),
        ):
            torch.testing.assert_close(
                _host(state[0][key]), _host(state[1][key]), atol=tol, rtol=1e-5
            )
    assert not torch.equal(gpu_w["enc.w"], weights["enc.w"])  # the step moved the weights


def _host(array) -> torch.Tensor:
    """A CPU tensor, flat, from a torch tensor (any device) or a numpy array."""
    return (
        array.detach().cpu().reshape(-1)
        if isinstance(array, torch.Tensor)
        else torch.from_numpy(array).reshape(-1)
    )
