"""The fast paths compute what plain autograd computes: the markerV0 span-logit node (training) and
loop (inference), CPU dropout from random bits, and the swap of every dropout module."""

import pytest
import torch

from spacy_gliner.model import marker_scores as span_scores
from spacy_gliner.model.dropout import FastDropout, keep_mask, use_fast_dropout
from spacy_gliner.model.marker_scores import marker_span_logits, marker_span_logits_inference

B, W, H, C, K = 3, 7, 16, 4, 5


def _autograd_logits(start, end, labels, keep=None):
    padded = torch.cat([end, end.new_zeros(B, K - 1, H)], 1)
    hidden = torch.relu(
        start[:, :, None] + padded.unfold(1, K, 1).transpose(-1, -2)
    )  # [B, W, K, H]
    if keep is not None:
        hidden = hidden * keep
    return torch.einsum("bwkh,bch->bwkc", hidden, labels)


def _inputs():
    torch.manual_seed(0)
    return [
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in ((B, W, H), (B, W, H), (B, C, H))
    ]


# Cells whose end lies past W are never spans (the loss masks them): compare the others.
VALID = ((torch.arange(W)[:, None] + torch.arange(K)[None]) < W).double()[None, :, :, None]


@pytest.mark.parametrize("chunk_bytes", [span_scores.CHUNK_BYTES, 1, 3 * K * H * 8 * B])
def test_marker_span_logits_equal_autograd(monkeypatch, chunk_bytes):
    monkeypatch.setattr(span_scores, "CHUNK_BYTES", chunk_bytes)
    start, end, labels = _inputs()
    ours = marker_span_logits(start, end, labels, K, 0.0)
    ref = _autograd_logits(start, end, labels)
    assert torch.allclose(ours, ref, atol=1e-12)  # every cell, the ones past W included
    weights = torch.randn_like(ours) * VALID
    grads = torch.autograd.grad((ours * weights).sum(), (start, end, labels))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (start, end, labels))
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda s, e, lab: marker_span_logits(s, e, lab, K, 0.0) * VALID, (start, end, labels)
    )


@pytest.mark.parametrize("chunk_bytes", [span_scores.CHUNK_BYTES, 1, 2 * H * 8 * B])
def test_marker_span_logits_inference_equal_autograd(monkeypatch, chunk_bytes):
    """Every cell (those past W too), whatever the block size: one word, a few, all."""
    monkeypatch.setattr(span_scores, "CHUNK_BYTES", chunk_bytes)
    start, end, labels = (t.detach() for t in _inputs())
    ours = marker_span_logits_inference(start, end, labels, K)
    assert torch.allclose(ours, _autograd_logits(start, end, labels), atol=1e-12)
    wide = marker_span_logits_inference(start, end, labels, W + 3)  # widths longer than the text
    assert torch.allclose(wide[:, :, :K], ours, atol=1e-12)
    assert torch.allclose(
        wide[:, :, W:], wide[:, :, W : W + 1].expand_as(wide[:, :, W:]), atol=1e-12
    )


def test_marker_span_logits_dropout_matches_its_mask(monkeypatch):
    start, end, labels = _inputs()
    masks = []
    real_keep_mask = span_scores.keep_mask

    def recording_keep_mask(shape, p, device):
        masks.append(real_keep_mask(shape, p, device))
        return masks[-1]

    monkeypatch.setattr(span_scores, "keep_mask", recording_keep_mask)
    ours = marker_span_logits(start, end, labels, K, 0.5)
    (keep,) = masks  # one chunk
    assert 0.3 < keep.mean().item() < 0.7
    ref = _autograd_logits(start, end, labels, keep.double())
    assert torch.allclose(ours * VALID, ref * VALID, atol=1e-12)
    weights = torch.randn_like(ours) * VALID
    grads = torch.autograd.grad((ours * weights).sum(), (start, end, labels))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (start, end, labels))
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-12)


def test_keep_mask_and_fast_dropout():
    torch.manual_seed(0)
    for p in (0.1, 0.4, 0.9):
        keep = keep_mask((400_000,), p, torch.device("cpu"))
        assert set(keep.unique().tolist()) <= {0.0, 1.0}
        assert abs((1 - keep.mean().item()) - p) < 0.005
    drop = FastDropout(0.25).train()
    x = torch.ones(1000, 100, requires_grad=True)
    out = drop(x)
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.75))
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # gradient = the scaled mask
    drop.eval()
    assert torch.equal(drop(x), x)
    # p = 0 in training: torch's own dropout, i.e. the identity
    y = torch.randn(50, 50)
    assert torch.equal(FastDropout(0.0).train()(y), y)


def test_use_fast_dropout_swaps_every_dropout_and_keeps_the_state_dict(bert_dir):
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(bert_dir))
    model = torch.nn.Sequential(encoder, torch.nn.Linear(4, 4), torch.nn.Dropout(0.3))
    keys = list(model.state_dict())
    n_dropouts = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert n_dropouts > 3
    use_fast_dropout(model)
    assert list(model.state_dict()) == keys
    assert sum(type(m) is torch.nn.Dropout for m in model.modules()) == 0
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == n_dropouts
    assert model[2].p == 0.3


def test_training_forward_equals_eval_forward_without_dropout(bert_dir):
    """With dropout 0, the training path (custom span node) gives the inference path's logits on
    every real span, and gradients flow to every head."""
    from spacy_gliner.component.registry import encoder_loader

    gliner = encoder_loader(str(bert_dir), hidden_size=32, max_width=4, dropout=0.0)()
    words = [
        ["barack", "obama", "visited", "paris"],
        ["john", "smith", "works", "at", "google", "in", "london"],
    ]
    inputs = gliner.prompts.encode(
        words, [["person", "location"], ["person", "organization", "location"]]
    )
    model = gliner.model.eval()
    with torch.no_grad():
        eval_logits, word_mask, _ = model(**inputs)
    model.train()
    for module in model.modules():  # the encoder's own dropouts off too
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):
            module.dropout_prob = 0.0
    train_logits, _, _ = model(**inputs)
    ends = torch.arange(word_mask.size(1))[:, None] + torch.arange(4)[None]
    valid = (ends[None] < word_mask.sum(-1)[:, None, None])[..., None]
    assert torch.allclose(train_logits * valid, eval_logits * valid, atol=1e-5)
    (train_logits * valid).sum().backward()
    for name in (
        "span_rep_layer.span_rep_layer.project_start.0.weight",
        "span_rep_layer.span_rep_layer.out_project.0.weight",
        "span_rep_layer.span_rep_layer.out_project.3.weight",
        "prompt_rep_layer.0.weight",
    ):
        param = dict(model.named_parameters())[name]
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_factored_marker_paths_equal_the_plain_module(bert_dir):
    """The model's markerV0 fast paths (inference loop, training node) give the plain module's
    logits (span vectors, then the label product) on every real span, with their gradients."""
    from spacy_gliner.component.registry import encoder_loader

    gliner = encoder_loader(str(bert_dir), hidden_size=32, max_width=4, dropout=0.0)()
    model = gliner.model.eval()
    words = [
        ["barack", "obama", "visited", "paris"],
        ["john", "smith", "works", "at", "google", "in", "london"],
    ]
    inputs = gliner.prompts.encode(words, [["person", "location"], ["person", "organization"]])
    with torch.no_grad():
        hidden, word_mask, prompts, _ = model.encode(**inputs)
        fast = model.score_spans(hidden, word_mask, prompts)
        plain = model.plain_span_logits(hidden, word_mask, model.prompt_rep_layer(prompts))
    ends = torch.arange(word_mask.size(1))[:, None] + torch.arange(4)[None]
    valid = (ends[None] < word_mask.sum(-1)[:, None, None])[..., None]
    torch.testing.assert_close(fast * valid, plain * valid, atol=1e-5, rtol=1e-5)
    hidden = hidden.detach().requires_grad_(True)
    trained = model.score_spans(hidden, word_mask, prompts)  # autograd on: the training node
    (grad_fast,) = torch.autograd.grad((trained * valid).sum(), hidden)
    hidden2 = hidden.detach().requires_grad_(True)
    reference = model.plain_span_logits(hidden2, word_mask, model.prompt_rep_layer(prompts))
    (grad_plain,) = torch.autograd.grad((reference * valid).sum(), hidden2)
    torch.testing.assert_close(trained * valid, reference * valid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_fast, grad_plain, atol=1e-5, rtol=1e-4)


def test_workspace_reuse_across_batches_gives_fresh_results(bert_dir):
    """An inference call's reused span-term buffers (bigger, smaller, then bigger batches) give
    the logits of freshly allocated ones."""
    from spacy_gliner.component.registry import encoder_loader
    from spacy_gliner.model.marker_scores import Workspace

    gliner = encoder_loader(str(bert_dir), hidden_size=32, max_width=4, dropout=0.0)()
    model = gliner.model.eval()
    workspace = Workspace(max_rows=8)
    batches = [
        [["barack", "obama", "visited", "paris", "and", "london"], ["john", "smith"]],
        [["mary"]],
        [["the", "king", "wrote", "a", "book", "about", "the", "war", "in", "france"]],
    ]
    with torch.inference_mode():
        for words in batches:
            inputs = gliner.prompts.encode(words, [["person", "location"]] * len(words))
            fresh, _, _ = model(**inputs)
            reused, _, _ = model(**inputs, workspace=workspace)
            assert torch.equal(fresh, reused)
