"""Loss, label-set sampling, span targets and optimizer groups, checked against gliner==0.2.29."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from spacy_gliner.model.loss import focal_loss_with_logits, span_loss
from spacy_gliner.training.labels import sample_label_sets
from spacy_gliner.training.params import (
    freeze_encoder,
    optimizer_groups,
    param_lr_scales,
    param_weight_decay,
)
from spacy_gliner.training.targets import span_targets

ref_base = pytest.importorskip("gliner.modeling.base")
ref_losses = pytest.importorskip("gliner.modeling.loss_functions")
ref_processor = pytest.importorskip("gliner.data_processing.processor")

B, W, K, C = 3, 6, 4, 5
LENGTHS = [6, 3, 5]
NUM_LABELS = [5, 2, 4]


def _batch(seed: int = 0, scale: float = 3.0):
    """Random logits / sparse targets / masks with padded spans and labels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, W, K, C, generator=g) * scale
    _, span_mask = span_targets([[]] * B, [["x"] * n for n in NUM_LABELS], LENGTHS, K)
    label_mask = torch.arange(C)[None, :] < torch.tensor(NUM_LABELS)[:, None]  # [B, C]
    valid = span_mask[..., None] & label_mask[:, None, None, :]
    targets = ((torch.rand(B, W, K, C, generator=g) < 0.1) & valid).float()
    return logits, targets, span_mask, label_mask


def _ref_loss(logits, targets, span_mask, label_mask, **kw) -> torch.Tensor:
    """``UniEncoderSpanModel.loss`` of the reference; it uses no instance state, so no __init__."""
    ref = object.__new__(ref_base.UniEncoderSpanModel)
    return ref.loss(logits, targets, label_mask, span_mask, **kw)


def _kept(logits, targets, span_mask, label_mask, **kw) -> torch.Tensor:
    """Elements that contribute to the loss: BCE gradient sigmoid(z) - t is never 0."""
    z = logits.clone().requires_grad_(True)
    span_loss(z, targets, span_mask, label_mask, **kw).backward()
    return z.grad != 0


# ----------------------------------------------------------------------------- (a) parity
def test_focal_elementwise_parity():
    logits, targets, _, _ = _batch(1)
    for alpha in (-1.0, 0.25):
        for gamma in (0.0, 2.0):
            for pm in (0.0, 0.1):
                for ls in (0.0, 0.1):
                    ours = focal_loss_with_logits(logits, targets, alpha, gamma, pm, ls)
                    ref = ref_losses.focal_loss_with_logits(
                        logits,
                        targets,
                        alpha=alpha,
                        gamma=gamma,
                        prob_margin=pm,
                        label_smoothing=ls,
                    )
                    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [-1.0, 0.25, 0.75])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_span_loss_parity(alpha, gamma, label_smoothing, reduction):
    logits, targets, span_mask, label_mask = _batch(2)
    kw = {
        "alpha": alpha,
        "gamma": gamma,
        "label_smoothing": label_smoothing,
        "reduction": reduction,
    }
    ours = span_loss(logits, targets, span_mask, label_mask, masking="none", **kw)
    ref = _ref_loss(logits, targets, span_mask, label_mask, masking="none", **kw)
    assert ours.shape == ()
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-4)


@pytest.mark.parametrize("masking", ["global", "label", "span"])
def test_random_masking_parity_same_stream(masking):
    """Same seed -> same uniforms as the reference's torch.rand_like -> identical loss."""
    logits, targets, span_mask, label_mask = _batch(3)
    torch.manual_seed(11)
    ref = _ref_loss(
        logits, targets, span_mask, label_mask, masking=masking, negatives=0.4, alpha=0.75
    )
    gen = torch.Generator().manual_seed(11)
    ours = span_loss(
        logits,
        targets,
        span_mask,
        label_mask,
        masking=masking,
        negatives=0.4,
        alpha=0.75,
        generator=gen,
    )
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-5)
    assert ours < span_loss(
        logits, targets, span_mask, label_mask, masking="none", alpha=0.75
    )  # masks did act


def test_mean_is_per_valid_span_and_padding_ignored():
    logits, targets, span_mask, label_mask = _batch(4)
    total = span_loss(logits, targets, span_mask, label_mask, reduction="sum")
    mean = span_loss(logits, targets, span_mask, label_mask, reduction="mean")
    assert math.isclose(mean.item(), total.item() / span_mask.sum().item(), rel_tol=1e-6)
    garbage = logits.clone()
    garbage[~span_mask] = 1e4  # padded spans
    garbage[~label_mask[:, None, None, :].expand_as(garbage)] = -1e4  # padded labels
    assert math.isclose(
        span_loss(garbage, targets, span_mask, label_mask).item(), total.item(), rel_tol=1e-6
    )
    empty = span_loss(logits, targets, torch.zeros_like(span_mask), label_mask, reduction="mean")
    assert empty.item() == 0.0


def test_bad_options_raise():
    logits, targets, span_mask, label_mask = _batch()
    with pytest.raises(ValueError):
        span_loss(logits, targets, span_mask, label_mask, masking="focal")
    with pytest.raises(ValueError):
        span_loss(logits, targets, span_mask, label_mask, reduction="none")


# ----------------------------------------------------------------------------- (b) masking rules
def _big(seed: int = 0):
    """Zero logits (every element's BCE = log 2), 2 examples x 40 words x 4 widths x 30 labels."""
    b, w, k, c = 2, 40, 4, 30
    g = torch.Generator().manual_seed(seed)
    logits = torch.zeros(b, w, k, c)
    span_mask = torch.ones(b, w, k, dtype=torch.bool)
    label_mask = torch.ones(b, c, dtype=torch.bool)
    targets = torch.zeros(b, w, k, c)
    targets[:, :, 0, :5] = (
        torch.rand(b, w, 5, generator=g) < 0.3
    ).float()  # positives: width 1, classes 0-4
    return logits, targets, span_mask, label_mask


def _count(**kw) -> float:
    logits, targets, span_mask, label_mask = _big()
    return span_loss(logits, targets, span_mask, label_mask, **kw).item() / math.log(2)


def test_none_keeps_everything():
    _logits, targets, _span_mask, _label_mask = _big()
    assert round(_count(masking="none")) == targets.numel()
    assert round(_count(masking="global", negatives=1.0)) == targets.numel()


def test_global_keeps_fraction():
    _logits, targets, *_ = _big()
    pos, neg = targets.sum().item(), (targets == 0).sum().item()
    gen = torch.Generator().manual_seed(0)
    kept = _count(masking="global", negatives=0.3, generator=gen) - pos
    assert abs(kept / neg - 0.3) < 0.02
    assert round(_count(masking="global", negatives=0.0)) == pos


def test_label_and_span_rules():
    logits, targets, span_mask, label_mask = _big()
    # label: with negatives=0 only classes that have a positive in the example survive (all their spans).
    classes_with_pos = (targets.sum(dim=(1, 2)) > 0).sum().item()
    assert round(_count(masking="label", negatives=0.0)) == classes_with_pos * 40 * 4
    # span: with negatives=0 only spans that have a positive survive (all their classes).
    spans_with_pos = (targets.sum(dim=-1) > 0).sum().item()
    assert round(_count(masking="span", negatives=0.0)) == spans_with_pos * 30
    # with 0.5 the masked groups keep about half of their elements
    gen = torch.Generator().manual_seed(1)
    kept = _count(masking="label", negatives=0.5, generator=gen) - classes_with_pos * 160
    assert abs(kept / ((60 - classes_with_pos) * 160) - 0.5) < 0.03
    kept_mask = _kept(
        logits, targets, span_mask, label_mask, masking="span", negatives=0.5, generator=gen
    )
    assert kept_mask[targets.sum(-1) > 0].all()


def test_softmax_keeps_exact_count_and_positives():
    logits, targets, span_mask, label_mask = _big()
    span_mask[1, 30:] = False  # padding must not count as negatives
    label_mask[1, 25:] = False
    gen = torch.Generator().manual_seed(0)
    for negatives in (0.0, 0.1, 0.25, 1.0, 3.0):
        kept = _kept(
            logits,
            targets,
            span_mask,
            label_mask,
            masking="softmax",
            negatives=negatives,
            generator=gen,
        )
        valid = span_mask[..., None] & label_mask[:, None, None, :]
        assert not kept[~valid].any()
        assert kept[(targets > 0) & valid].all()
        for b in range(2):
            n_neg = ((targets[b] == 0) & valid[b]).sum().item()
            expected = min(n_neg, math.floor(negatives * n_neg + 0.5))
            assert (kept[b] & (targets[b] == 0)).sum().item() == expected


def test_softmax_prefers_hard_negatives_and_is_deterministic():
    logits = torch.zeros(1, 50, 4, 2)
    targets = torch.zeros_like(logits)
    logits[..., 0] = 2.0  # class 0: confidently wrong (hard) negatives
    logits[..., 1] = -2.0  # class 1: easy negatives
    span_mask = torch.ones(1, 50, 4, dtype=torch.bool)
    label_mask = torch.ones(1, 2, dtype=torch.bool)
    args = (logits, targets, span_mask, label_mask)
    kept = _kept(
        *args, masking="softmax", negatives=0.25, generator=torch.Generator().manual_seed(5)
    )
    assert kept.sum().item() == 100
    assert kept[..., 0].sum().item() >= 90  # weight ratio e^4 ~ 55 : 1
    again = _kept(
        *args, masking="softmax", negatives=0.25, generator=torch.Generator().manual_seed(5)
    )
    other = _kept(
        *args, masking="softmax", negatives=0.25, generator=torch.Generator().manual_seed(6)
    )
    assert torch.equal(kept, again)
    assert not torch.equal(kept, other)

    # graded logits: keep frequency increases with the logit
    graded = torch.linspace(-2, 2, 40).view(1, 40, 1, 1)
    counts = torch.zeros(40)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        mask = _kept(
            graded,
            torch.zeros_like(graded),
            torch.ones(1, 40, 1, dtype=torch.bool),
            torch.ones(1, 1, dtype=torch.bool),
            masking="softmax",
            negatives=0.25,
            generator=gen,
        )
        counts += mask.view(-1).float()
    assert counts[-10:].sum() > 3 * counts[:10].sum()
    assert counts[30:].mean() > counts[20:30].mean() > counts[10:20].mean() > counts[:10].mean()


# ----------------------------------------------------------------------------- (c) label sets
TYPES = [["person", "org", "person"], ["city"], ["date", "person"], ["money", "org"]]


def test_sample_label_sets_rules():
    for seed in range(50):
        sets = sample_label_sets(
            TYPES, None, max_types=25, max_neg_type_ratio=2, rng=random.Random(seed)
        )
        for positives, labels in zip(TYPES, sets):
            assert set(positives) <= set(labels)
            assert len(labels) == len(set(labels))
            assert len(labels) - len(set(positives)) <= 2 * len(positives)
            assert set(labels) <= {t for ts in TYPES for t in ts}
        small = sample_label_sets(
            TYPES, None, max_types=2, max_neg_type_ratio=3, rng=random.Random(seed)
        )
        assert all(1 <= len(labels) <= 2 for labels in small)
    a = sample_label_sets(TYPES, None, 25, 2, random.Random(7))
    assert a == sample_label_sets(TYPES, None, 25, 2, random.Random(7))
    assert any(sample_label_sets(TYPES, None, 25, 2, random.Random(s)) != a for s in range(8, 12))
    # ratio 0: positives only
    only_pos = sample_label_sets(TYPES, None, 25, 0, random.Random(0))
    assert [set(x) for x in only_pos] == [set(t) for t in TYPES]


def test_sample_label_sets_explicit_and_empty():
    rng = random.Random(0)
    sets = sample_label_sets(
        [["a"], ["b"], [], []],
        ["a", "b", "c"],
        25,
        1,
        rng,
        labels=[["z", "a", "z"], None, None, None],
        negatives=[None, ["q"], None, []],
    )
    assert sets[0] == ["z", "a", "z"]  # used as-is
    assert set(sets[1]) == {"b", "q"}
    assert len(sets[2]) == 1 and sets[2][0] in {"a", "b", "c"}  # empty example: one batch type
    assert len(sets[3]) == 1 and sets[3][0] in {"a", "b", "c"}
    assert sample_label_sets([[], []], None, 25, 1, random.Random(0)) == [[""], [""]]


def test_sample_label_sets_matches_reference_statistics():
    """Mean label-set size per example agrees with the reference collator's."""
    batch = [{"ner": [[0, 0, t] for t in ts]} for ts in TYPES]
    fake = SimpleNamespace(config=SimpleNamespace(max_neg_type_ratio=2, max_types=3))
    ref_fn = ref_processor.UniEncoderSpanProcessor.batch_generate_class_mappings
    n = 3000
    random.seed(0)
    ref_sizes = torch.zeros(len(TYPES))
    for _ in range(n):
        class_to_ids, _ = ref_fn(fake, batch)
        ref_sizes += torch.tensor([len(m) for m in class_to_ids], dtype=torch.float)
    rng = random.Random(0)
    our_sizes = torch.zeros(len(TYPES))
    for _ in range(n):
        sets = sample_label_sets(TYPES, None, max_types=3, max_neg_type_ratio=2, rng=rng)
        our_sizes += torch.tensor([len(s) for s in sets], dtype=torch.float)
    torch.testing.assert_close(our_sizes / n, ref_sizes / n, atol=0.06, rtol=0)


# ----------------------------------------------------------------------------- (d) targets
def test_span_targets_positions():
    spans = [[(0, 1, "a"), (2, 2, "b"), (0, 5, "a"), (3, 4, "zzz")], [(1, 2, "a"), (2, 3, "b")]]
    label_sets = [["a", "b", "a"], ["b"]]
    targets, span_mask = span_targets(spans, label_sets, [5, 3], max_width=4)
    assert targets.shape == (2, 5, 4, 3) and targets.dtype == torch.float32
    assert span_mask.shape == (2, 5, 4) and span_mask.dtype == torch.bool
    expected = {(0, 0, 1, 0), (0, 0, 1, 2), (0, 2, 0, 1)}  # (0,5) too wide; "zzz" not a label
    assert {
        tuple(i) for i in targets.nonzero().tolist()
    } == expected  # (2,3) ends beyond text; "a" not in set 1
    assert span_mask[0].sum() == 4 + 4 + 3 + 2 + 1
    assert span_mask[1].sum() == 3 + 2 + 1 and not span_mask[1, 3:].any()


def test_span_targets_match_reference_create_labels():
    tokens = [["w"] * 7, ["w"] * 3, ["w"] * 5]
    ner = [
        [(0, 0, "a"), (1, 3, "b"), (5, 6, "a"), (2, 6, "b")],
        [(0, 2, "c"), (2, 3, "c")],
        [(4, 4, "b")],
    ]
    label_sets = [["a", "b"], ["c", "a", "b"], ["b"]]
    batch = {
        "tokens": tokens,
        "entities": ner,
        "classes_to_id": [{t: i for i, t in enumerate(ls, start=1)} for ls in label_sets],
    }
    fake = SimpleNamespace(config=SimpleNamespace(max_width=4))
    ref = ref_processor.UniEncoderSpanProcessor.create_labels(fake, batch)  # [B, W*K, C]
    targets, _ = span_targets(ner, label_sets, [len(t) for t in tokens], 4)
    assert torch.equal(targets.view(3, -1, 3), ref)


# ----------------------------------------------------------------------------- (e) optimizer
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from spacy_gliner.gliner import GLiNER
    from spacy_gliner.io.model_files import assemble as _assemble
    from spacy_gliner.io.tokenizers import add_special_tokens
    from spacy_gliner.model.config import GLiNERConfig

    words = [
        "the",
        "a",
        "person",
        "org",
        "city",
        "date",
        "money",
        "john",
        "paris",
        "went",
        "to",
        "on",
        "in",
        "of",
        "acme",
    ]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *[f"w{i}" for i in range(80)]]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(path))
    config = GLiNERConfig(
        model_name="tiny-bert", hidden_size=32, max_width=4, dropout=0.0, post_fusion_schema=""
    )
    add_special_tokens(tokenizer, config)
    bert = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    model = _assemble(config, bert)
    return GLiNER(config, parts=(model, tokenizer, None))


def test_optimizer_groups_split(tiny):
    from transformers.trainer_pt_utils import get_parameter_names

    model = tiny.model
    names = {id(p): n for n, p in model.named_parameters()}
    groups = optimizer_groups(
        model, lr=1e-5, weight_decay=0.1, others_lr=3e-5, others_weight_decay=0.01
    )
    assert [g["name"] for g in groups] == [
        "others_decay",
        "others_no_decay",
        "encoder_decay",
        "encoder_no_decay",
    ]
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # each parameter exactly once
    ref_decay = {
        n for n in get_parameter_names(model, [torch.nn.LayerNorm]) if "bias" not in n
    }  # reference rule
    for g in groups:
        group_names = {names[id(p)] for p in g["params"]}
        is_encoder = g["name"].startswith("encoder")
        assert all(("token_rep_layer" in n) == is_encoder for n in group_names)
        assert all((n in ref_decay) == (not g["name"].endswith("no_decay")) for n in group_names)
        assert g["lr"] == (1e-5 if is_encoder else 3e-5)
        assert g["weight_decay"] == {"others_decay": 0.01, "encoder_decay": 0.1}.get(g["name"], 0.0)
    encoder_no_decay = {names[id(p)] for p in groups[3]["params"]}
    assert any("LayerNorm.weight" in n for n in encoder_no_decay)

    scales = param_lr_scales(model, 1e-5, 3e-5)
    assert set(scales) == set(names.values())
    assert all(
        s == (1.0 if "token_rep_layer" in n else pytest.approx(3.0)) for n, s in scales.items()
    )
    decay = param_weight_decay(model, 0.1, 0.01)
    assert all(
        d == ((0.1 if "token_rep_layer" in n else 0.01) if n in ref_decay else 0.0)
        for n, d in decay.items()
    )


def test_training_step_and_freeze_encoder(tiny):
    model = tiny.model
    model.train()
    docs = [
        (["john", "went", "to", "paris"], [(0, 0, "person"), (3, 3, "city")]),
        (["acme", "in", "paris", "on", "date"], [(0, 0, "org")]),
        (["the", "money"], []),
    ]
    words = [w for w, _ in docs]
    label_sets = sample_label_sets(
        [[s[2] for s in spans] for _, spans in docs], None, 25, 1, random.Random(0)
    )
    enc = tiny.prompts.encode(words, label_sets)
    targets, span_mask = span_targets([s for _, s in docs], label_sets, [len(w) for w in words], 4)

    def step(optimizer) -> None:
        optimizer.zero_grad()
        logits, _, label_mask = model(**enc)
        assert logits.shape == targets.shape
        loss = span_loss(
            logits,
            targets,
            span_mask,
            label_mask,
            alpha=0.75,
            masking="softmax",
            negatives=0.5,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.isfinite(loss) and loss.item() > 0
        loss.backward()
        optimizer.step()

    try:
        assert freeze_encoder(model, True) > 0
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        step(torch.optim.AdamW(optimizer_groups(model, 1e-3, 0.1, 1e-2, 0.1)))
        for n, p in model.named_parameters():
            if "token_rep_layer" in n:
                assert torch.equal(p, before[n]), n
        assert not torch.equal(
            model.prompt_rep_layer[0].weight, before["prompt_rep_layer.0.weight"]
        )

        freeze_encoder(model, False)
        assert all(p.requires_grad for p in model.parameters())
        step(torch.optim.AdamW(optimizer_groups(model, 1e-3, 0.1, 1e-2, 0.1)))
        emb = "token_rep_layer.bert_layer.model.embeddings.word_embeddings.weight"
        assert not torch.equal(dict(model.named_parameters())[emb], before[emb])
    finally:
        freeze_encoder(model, False)
        model.eval()
