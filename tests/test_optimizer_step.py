"""The fused CPU Adam path applies exactly thinc's Adam update (same state, same arithmetic)."""

import copy

import numpy
import pytest
import torch
from thinc.api import Adam
from thinc.optimizers import Optimizer

from spacy_gliner.training.optimizer import _plain_adam, _thinc_update, apply_optimizer


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))


def _grads(model: torch.nn.Module, step: int) -> None:
    torch.manual_seed(100 + step)
    model(torch.randn(4, 6)).pow(2).sum().backward()


@pytest.mark.parametrize("use_averages", [False, True])
def test_fused_adam_equals_thinc_adam(use_averages):
    fused_model, thinc_model = _model(), _model()
    fused_opt = Adam(learn_rate=0.01, use_averages=use_averages, L2=0.0, grad_clip=0.0)
    thinc_opt = Adam(learn_rate=0.01, use_averages=use_averages, L2=0.0, grad_clip=0.0)
    scales = {"2.weight": 10.0, "2.bias": 10.0}
    decay = {"0.weight": 0.1, "2.weight": 0.01}
    assert _plain_adam(fused_opt)
    for step in range(4):
        fused_opt.learn_rate = thinc_opt.learn_rate = 0.01 * (1 - step / 10)
        _grads(fused_model, step)
        _grads(thinc_model, step)
        apply_optimizer(fused_opt, 7, list(fused_model.named_parameters()), scales, decay)
        for name, param in thinc_model.named_parameters():
            _thinc_update(thinc_opt, 7, name, param, scales.get(name, 1.0), decay.get(name, 0.0))
            param.grad = None
    for (name, a), (_, b) in zip(fused_model.named_parameters(), thinc_model.named_parameters()):
        assert a.grad is None
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), name  # steps are ~0.01-0.1
        numpy.testing.assert_allclose(
            fused_opt.mom1[(7, name)], thinc_opt.mom1[(7, name)], rtol=1e-4, atol=1e-6
        )
        numpy.testing.assert_allclose(
            fused_opt.mom2[(7, name)], thinc_opt.mom2[(7, name)], rtol=1e-4, atol=1e-8
        )
        assert fused_opt.nr_update[(7, name)] == thinc_opt.nr_update[(7, name)] == 4
        if use_averages:
            numpy.testing.assert_allclose(
                fused_opt.averages[(7, name)], thinc_opt.averages[(7, name)], rtol=1e-5, atol=1e-5
            )
    # The learning-rate scale really changes the step: "2.*" moved further than with scale 1.
    start = _model()
    moved = {
        n: (p - q).abs().max().item()
        for (n, p), (_, q) in zip(fused_model.named_parameters(), start.named_parameters())
    }
    assert moved["2.bias"] > 3 * moved["0.bias"]


def test_other_optimizers_fall_back_to_thinc():
    model = _model()
    assert not _plain_adam(Adam(learn_rate=0.01, grad_clip=1.0))
    assert not _plain_adam(Adam(learn_rate=0.01, L2=1e-4, grad_clip=0.0))
    assert not _plain_adam(Optimizer(0.01, use_radam=True, grad_clip=0.0))
    opt = Adam(learn_rate=0.01, L2=1e-4, grad_clip=1.0)
    before = copy.deepcopy(model)
    _grads(model, 0)
    apply_optimizer(opt, 1, list(model.named_parameters()), {}, {})
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters()))
    assert opt.nr_update[(1, "0.weight")] == 1
