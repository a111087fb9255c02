"""Parity of span representation and fusion layers with the reference gliner==0.2.29 modules."""

from __future__ import annotations

import pytest
import torch

from spacy_gliner.model.fusion import CrossFuser, LayersFuser
from spacy_gliner.model.span_rep import SPAN_MODES, MarkerV0, SpanRepLayer

ref_span_rep = pytest.importorskip("gliner.modeling.span_rep")
ref_layers = pytest.importorskip("gliner.modeling.layers")

D, K, B, W = 32, 4, 2, 7
LENGTHS = [7, 4]  # second row is padded


def _words() -> torch.Tensor:
    words = torch.randn(B, W, D)
    for b, n in enumerate(LENGTHS):
        words[b, n:] = 0.0
    return words


def _span_idx() -> torch.Tensor:
    """Reference construction: span_idx[i*K+k] = (i, i+k), zeroed where end >= n."""
    starts = torch.arange(W).repeat_interleave(K)
    idx = torch.stack([starts, starts + torch.arange(K).repeat(W)], dim=-1)  # [W*K, 2]
    rows = [idx * (idx[:, 1] < n).unsqueeze(-1) for n in LENGTHS]
    return torch.stack(rows)  # [B, W*K, 2]


def _sync(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Same key set and shapes, both directions; ours ends up with the reference weights."""
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert set(ours_sd) == set(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    ref.load_state_dict(ours_sd, strict=True)
    torch.manual_seed(123)
    ref.load_state_dict({k: torch.randn_like(v) * 0.3 for k, v in ref_sd.items()}, strict=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()


def test_span_modes_listed():
    assert set(SPAN_MODES) == {
        "markerV0",
        "marker",
        "markerV1",
        "markerV2",
        "query",
        "mlp",
        "cat",
        "conv_conv",
        "conv_max",
        "conv_mean",
        "conv_sum",
        "conv_share",
    }


def test_span_idx_construction():
    idx = _span_idx()
    assert idx.shape == (B, W * K, 2)
    assert idx[1, 4 * K :].abs().sum() == 0  # padded words
    assert idx[1, :12].tolist()[:5] == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 1]]


@pytest.mark.parametrize("mode", SPAN_MODES)
def test_span_rep_parity(mode: str):
    torch.manual_seed(0)
    ours = SpanRepLayer(mode, hidden_size=D, max_width=K, dropout=0.3)
    ref = ref_span_rep.SpanRepLayer(hidden_size=D, max_width=K, span_mode=mode, dropout=0.3)
    _sync(ours, ref)
    assert all(k.startswith("span_rep_layer.") for k in ours.state_dict())
    words, span_idx = _words(), _span_idx()
    with torch.no_grad():
        out, expected = ours(words, span_idx), ref(words, span_idx)
    assert out.shape == (B, W, K, D)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_key_names_match_checkpoints():
    keys = lambda mode: set(SpanRepLayer(mode, D, K, 0.1).state_dict())  # noqa: E731
    assert "span_rep_layer.conv_weigth" in keys("conv_share")
    assert "span_rep_layer.convs.2.conv.weight" in keys("conv_conv")
    assert "span_rep_layer.project.1.weight" in keys("conv_max")
    assert {"span_rep_layer.query_seg", "span_rep_layer.project.0.weight"} <= keys("cat")
    assert "span_rep_layer.project_first.3.bias" in keys("markerV1")


def test_init_scheme():
    torch.manual_seed(0)
    q = SpanRepLayer("query", D, K, 0.1).span_rep_layer.query_seg
    assert q.shape == (D, K) and q.abs().max() <= 1.0
    w = SpanRepLayer("conv_share", D, K, 0.1).span_rep_layer.conv_weigth
    bound = (2.0**0.5) * (3.0 / (D * K)) ** 0.5  # kaiming_uniform, relu gain, fan_in = D*K
    assert w.abs().max() <= bound


def test_marker_v0_factored_path():
    torch.manual_seed(1)
    layer = SpanRepLayer("markerV0", D, K, 0.1).eval()
    marker: MarkerV0 = layer.span_rep_layer
    words, span_idx = _words(), _span_idx()
    with torch.no_grad():
        start, end = marker.span_terms(words)  # [B, W, 4D]
        assert start.shape == end.shape == (B, W, 4 * D)
        rows = torch.arange(B)[:, None]
        hidden = start[rows, span_idx[..., 0]] + end[rows, span_idx[..., 1]]  # [B, W*K, 4D]
        fast = marker.out_project[1:](hidden).view(B, W, K, D)
        torch.testing.assert_close(fast, layer(words, span_idx), atol=1e-5, rtol=1e-5)


def test_bad_span_mode():
    with pytest.raises(ValueError, match="markerV0"):
        SpanRepLayer("token_level", D, K, 0.1)


def _fusion_inputs():
    torch.manual_seed(2)
    labels, words = torch.randn(B, 3, D), torch.randn(B, 5, D)
    labels_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    words_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return labels, words, labels_mask, words_mask


@pytest.mark.parametrize("schema", ["l2l-l2t-t2t", "t2l", "l2t-t2l", "l2l-t2t-t2l-l2t"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_cross_fuser_parity(schema: str, num_layers: int):
    torch.manual_seed(0)
    ours = CrossFuser(D, num_heads=4, num_layers=num_layers, dropout=0.1, schema=schema.split("-"))
    ref = ref_layers.CrossFuser(
        D, D, num_heads=4, num_layers=num_layers, dropout=0.1, schema=schema
    )
    _sync(ours, ref)
    labels, words, labels_mask, words_mask = _fusion_inputs()
    with torch.no_grad():
        got = ours(labels, words, labels_mask, words_mask)
        expected = ref(labels, words, labels_mask, words_mask)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5, equal_nan=True)


def test_cross_fuser_bad_token():
    with pytest.raises(ValueError, match="l2t"):
        CrossFuser(D, 4, 1, 0.1, ["l2l", "x2y"])


def test_layers_fuser_parity():
    torch.manual_seed(0)
    n_layers, hidden = 6, 16
    ours, ref = LayersFuser(n_layers, hidden), ref_layers.LayersFuser(n_layers, hidden)
    _sync(ours, ref)
    hidden_states = tuple(torch.randn(B, 9, hidden) for _ in range(n_layers + 1))
    with torch.no_grad():
        out = ours(hidden_states)
        torch.testing.assert_close(out, ref(list(hidden_states)), atol=1e-5, rtol=1e-5)
    assert out.shape == (B, 9, hidden)


def test_marker_v0_traced_form_matches_factored_inference():
    """``traced_marker_logits`` (the whole-tensor form an ONNX export traces) equals the inference
    loop ``factored_marker_logits`` on every cell, cells past the padded length included."""
    from spacy_gliner.model.marker_scores import factored_marker_logits, traced_marker_logits

    torch.manual_seed(2)
    marker: MarkerV0 = SpanRepLayer("markerV0", D, K, 0.1).eval().span_rep_layer
    words, labels = _words(), torch.randn(B, 3, D)
    with torch.no_grad():
        traced = traced_marker_logits(marker, words, labels, K)
        factored = factored_marker_logits(marker, words, labels, K)
    assert traced.shape == (B, W, K, 3)
    torch.testing.assert_close(traced, factored, atol=1e-5, rtol=1e-5)
