"""The CPU inference linear layer (``spacy_gliner.model.linear``): oneDNN's float32 product where
it applies, ``F.linear`` everywhere else, the same values either way."""

from __future__ import annotations

import platform

import pytest
import torch
import torch.nn.functional as F

from spacy_gliner import GLiNER
from spacy_gliner.model.linear import (
    COPY_ROWS,
    ENV_SWITCH,
    Linear,
    linear,
    onednn_applies,
    onednn_linear_available,
    use_fast_linear,
)

TEXTS = [
    "Barack Obama was born in Hawaii and worked in Washington.",
    "Google and Apple are companies.",
    "Angela Merkel met Emmanuel Macron in Paris.",
]
LABELS = ["person", "location", "organization"]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN is used on x86-64 only"
)
def test_onednn_is_available_on_x86_cpu_builds():
    """This project's CPU wheels have the operator: the fast path really runs in CI."""
    assert onednn_linear_available() is torch.backends.mkldnn.is_available()


@pytest.mark.parametrize(
    "x_shape, out_features, bias, strided",
    [
        ((7, 24), 16, True, False),
        ((3, 11, 32), 48, False, False),
        ((0, 24), 16, True, False),
        ((2, 0, 24), 16, True, False),
        ((COPY_ROWS + 5, 40), 64, True, True),  # a strided weight, copied first
        ((5, 40), 64, False, True),  # a strided weight, few rows: F.linear
    ],
)
def test_linear_equals_f_linear(x_shape, out_features, bias, strided):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*x_shape, generator=gen)
    full = torch.randn(out_features, 2 * x_shape[-1], generator=gen)
    weight = full[:, x_shape[-1] :] if strided else full[:, : x_shape[-1]].contiguous()
    b = torch.randn(out_features, generator=gen) if bias else None
    with torch.inference_mode():
        _close(linear(x, weight, b), F.linear(x, weight, b))
    with torch.no_grad():
        _close(linear(x, weight, b), F.linear(x, weight, b))


def test_plain_path_for_autograd_other_dtypes_and_the_switch(monkeypatch):
    x, weight = torch.randn(4, 8), torch.randn(6, 8, requires_grad=True)
    assert not onednn_applies(x, weight)  # autograd on: F.linear, gradients flow
    out = linear(x, weight)
    out.sum().backward()
    assert weight.grad is not None and torch.equal(weight.grad, x.sum(0).expand(6, 8))
    with torch.no_grad():
        assert not onednn_applies(x.double(), weight.double())
        assert not onednn_applies(x.bfloat16(), weight.bfloat16())
        assert onednn_applies(x, weight) is onednn_linear_available()
        monkeypatch.setenv(ENV_SWITCH, "0")
        assert not onednn_applies(x, weight)


def test_traced_graphs_use_the_plain_operator():
    """Tracing (and so the ONNX export) records ``aten::linear``, never the private operator."""
    layer = use_fast_linear(torch.nn.Sequential(torch.nn.Linear(8, 4))).eval()
    with torch.no_grad():
        traced = torch.jit.trace(layer, torch.randn(3, 8))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::linear" in kinds
    assert not any("mkldnn" in kind for kind in kinds)


def test_use_fast_linear_swaps_exact_linears_only():
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 8), torch.nn.MultiheadAttention(8, 2), torch.nn.Linear(8, 3)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    assert use_fast_linear(model) is model
    assert type(model[0]) is Linear and type(model[2]) is Linear
    assert type(model[1].out_proj) is not Linear  # a subclass of nn.Linear: left alone
    assert [id(p) for p in model.parameters()] == params
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("config", [{}, {"span_mode": "token_level"}])
def test_model_scores_are_the_same_with_onednn_on_and_off(
    reference_checkpoint, config, monkeypatch
):
    """The loaded model's Linear layers are ``Linear``; the entities and scores of
    ``GLiNER.inference`` are the same with the switch on and off."""
    gliner = GLiNER.from_pretrained(reference_checkpoint(**config))
    linears = [m for m in gliner.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is Linear for m in linears)
    on = gliner.inference(TEXTS, LABELS, threshold=0.0)
    monkeypatch.setenv(ENV_SWITCH, "0")
    off = gliner.inference(TEXTS, LABELS, threshold=0.0)
    assert [[(e["start"], e["end"], e["label"]) for e in t] for t in on] == [
        [(e["start"], e["end"], e["label"]) for e in t] for t in off
    ]
    for a, b in zip(on, off):
        for ea, eb in zip(a, b):
            assert abs(ea["score"] - eb["score"]) < 1e-5
