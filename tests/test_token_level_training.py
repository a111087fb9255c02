"""Training token-level GLiNER models: word targets and loss against the reference package
(gliner==0.2.29) on the same batch, and ``nlp.update`` through the spaCy component."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import DocBin

ref_gliner = pytest.importorskip("gliner")

from spacy_gliner import GLiNER  # noqa: E402
from spacy_gliner.component.registry import checkpoint_loader, encoder_loader  # noqa: E402
from spacy_gliner.training.loss import SpanLoss  # noqa: E402
from spacy_gliner.training.step import forward  # noqa: E402
from spacy_gliner.training.targets import token_targets  # noqa: E402

WORDS = [
    text.split()
    for text in (
        "Barack Obama was born in Hawaii .",
        "John Smith works for Google in New York City",
        "x",
    )
]
SPANS = [
    [(0, 1, "person"), (5, 5, "location")],
    [(0, 1, "person"), (4, 4, "organization"), (6, 8, "location")],
    [],
]
LABEL_SETS = [["person", "location", "date"], ["location", "organization", "person"], ["person"]]
TRAIN = [
    ("barack obama was born in hawaii .", [(0, 2, "person"), (5, 6, "location")]),
    (
        "john smith works for google in new york city .",
        [(0, 2, "person"), (4, 5, "organization"), (6, 9, "location")],
    ),
    ("apple and microsoft won the cup .", [(0, 1, "organization"), (2, 3, "organization")]),
]


@pytest.fixture(
    scope="module",
    params=[{}, {"labels_encoder": "labels_bert", "post_fusion_schema": "l2l-l2t-t2t"}],
    ids=["uni", "bi_fusion"],
)
def checkpoint(request, reference_checkpoint):
    return reference_checkpoint(span_mode="token_level", head_scale=0.12, **request.param)


def test_token_targets_match_reference_create_labels():
    """Start / end / inside targets as the reference's ``UniEncoderTokenProcessor.create_labels``."""
    from gliner.data_processing.processor import UniEncoderTokenProcessor

    batch = {
        "tokens": WORDS,
        "seq_length": torch.tensor([[len(w)] for w in WORDS]),
        "entities": SPANS,
        "classes_to_id": [{t: i for i, t in enumerate(ls, start=1)} for ls in LABEL_SETS],
    }
    ref = UniEncoderTokenProcessor.create_labels(None, batch)  # uses no instance state
    targets, word_mask = token_targets(SPANS, LABEL_SETS, [len(w) for w in WORDS])
    assert torch.equal(targets, ref)
    assert word_mask.sum(1).tolist() == [len(w) for w in WORDS]
    _, masked = token_targets(SPANS, LABEL_SETS, [7, 9, 1], unknown=[None, [False, True], None])
    assert masked.sum(1).tolist() == [7, 8, 1] and not masked[1, 1]


@pytest.mark.parametrize(
    "options",
    [{}, {"alpha": 0.75, "gamma": 2.0, "label_smoothing": 0.1, "reduction": "mean"}],
    ids=["bce_sum", "focal_smoothing_mean"],
)
def test_loss_matches_the_reference_on_the_same_batch(checkpoint, options):
    """The reference model's own loss (its collator's targets, its forward with labels) equals
    ours (forward, ``token_targets``, ``SpanLoss.token``) within 1e-4, in evaluation mode."""
    ref = ref_gliner.GLiNER.from_pretrained(str(checkpoint), local_files_only=True)
    ref.eval()
    collator = ref.data_collator_class(
        ref.config, data_processor=ref.data_processor, prepare_labels=True
    )
    input_x = [{"tokenized_text": w, "ner": [list(s) for s in sp]} for w, sp in zip(WORDS, SPANS)]
    batch = collator(input_x, entity_types=LABEL_SETS)
    with torch.no_grad():
        ref_loss = ref.model(**batch, **options).loss.item()
    ours = GLiNER.from_pretrained(checkpoint)
    loss_fn = SpanLoss(
        options.get("alpha", -1.0),
        options.get("gamma", 0.0),
        options.get("label_smoothing", 0.0),
        options.get("reduction", "sum"),
        0.5,  # negatives / masking do not apply to the token loss, as in the reference
        "global",
    )
    with torch.no_grad():
        logits, label_mask = forward(ours, ours.model, WORDS, LABEL_SETS)
        targets, word_mask = token_targets(SPANS, LABEL_SETS, [len(w) for w in WORDS])
        assert torch.equal(targets, batch["labels"])
        our_loss = loss_fn.token(logits, targets, word_mask, label_mask).item()
    assert abs(our_loss - ref_loss) <= 1e-4 * max(1.0, abs(ref_loss)), (our_loss, ref_loss)


def _nlp(loader, **settings):
    nlp = spacy.blank("en")
    config = {
        "others_lr": 3e-4,
        "encoder_lr": 1e-4,
        "loss": {"@losses": "spacy_gliner.span_loss.v1", "masking": "none"},
        **settings,
    }
    pipe = nlp.add_pipe("gliner", config=config)
    examples = helpers.make_examples(nlp, TRAIN)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader)
    return nlp, pipe, examples


def test_update_lowers_the_loss_of_a_new_token_model(bert_dir):
    """A fresh token-level model (``EncoderLoader`` with span_mode token_level) learns from
    ``nlp.update``: the loss halves and the words that start a gold span get higher start
    probabilities than every other word (the tiny random encoder is too weak to tell the
    labels apart this fast, so the check is label-agnostic)."""
    loader = encoder_loader(
        str(bert_dir), span_mode="token_level", hidden_size=32, dropout=0.0, max_width=4
    )
    nlp, pipe, examples = _nlp(loader)
    assert pipe.gliner.config.is_token_level
    first, last = helpers.first_and_last_loss(nlp, examples, steps=30, learn_rate=3e-3)
    assert last < first * 0.5, (first, last)
    text, gold = TRAIN[1]
    words = text.split()
    probs = pipe.gliner.engine().span_probabilities([words], [sorted(pipe.labels)])[0]
    start = probs[:, :, 0].max(axis=1)  # [words]: best start probability over the labels
    starts = {s for s, _, _ in gold}
    others = [w for w in range(len(words)) if w not in starts]
    assert min(start[w] for w in starts) > max(start[w] for w in others), start.round(2)
    assert isinstance(nlp(text).ents, tuple)


def test_update_and_rehearsal_on_a_reference_token_checkpoint(checkpoint):
    """Fine-tuning a reference token checkpoint (uni- and bi-encoder) lowers the loss; rehearsal
    (distilling the starting model's token scores) runs beside it."""
    nlp, pipe, examples = _nlp(
        checkpoint_loader(str(checkpoint), local_files_only=True),
        rehearsal_labels=["date", "event"],
        rehearsal_weight=1.0,
    )
    words = [w.split() for w, _ in TRAIN]
    before = pipe.gliner.engine().span_probabilities(words, [["date"]] * len(words))
    first, last = helpers.first_and_last_loss(nlp, examples, steps=20, learn_rate=3e-3)
    assert np.isfinite(first) and last < first * 0.7, (first, last)
    after = pipe.gliner.engine().span_probabilities(words, [["date"]] * len(words))
    assert all(a.shape == b.shape == (len(w), 1, 3) for a, b, w in zip(after, before, words))


REPO = Path(__file__).resolve().parents[1]


def test_token_config_differs_from_train_cfg_only_in_span_mode():
    """configs/train_token.cfg is configs/train.cfg with span_mode token_level (comments aside)."""

    def settings(name: str) -> list[str]:
        lines = (REPO / "configs" / name).read_text().splitlines()
        return [line for line in lines if line.strip() and not line.startswith("#")]

    token, span = settings("train_token.cfg"), settings("train.cfg")
    changed = [(a, b) for a, b in zip(span, token) if a != b]
    assert len(token) == len(span) and changed == [
        ('span_mode = "markerV0"', 'span_mode = "token_level"')
    ]


def test_spacy_train_with_the_token_config_lowers_the_loss(bert_dir, tmp_path):
    """``spacy train configs/train_token.cfg`` (30 steps, tiny encoder): a token-level model
    whose loss, summed per evaluation period of 10 steps, falls period after period (about
    700 -> 580 -> 500 here), saved as model-best that loads back as a token-level model."""
    nlp = spacy.blank("en")
    db = DocBin()
    for eg in helpers.make_examples(nlp, TRAIN) * 4:
        db.add(eg.reference)
    db.to_disk(tmp_path / "train.spacy")
    overrides = {
        "paths.train": tmp_path / "train.spacy",
        "paths.dev": tmp_path / "train.spacy",
        "paths.base_model": bert_dir,
        "training.max_steps": 30,
        "training.eval_frequency": 10,
        "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.dropout": 0.1,
        "components.gliner.others_lr": 0.003,
        "initialize.components.gliner.model_loader.hidden_size": 32,
        "initialize.components.gliner.model_loader.dropout": 0.0,
    }
    args = [f"--{key}={value}" for key, value in overrides.items()]
    cfg = str(REPO / "configs" / "train_token.cfg")
    command = [sys.executable, "-m", "spacy", "train", cfg, "--output", str(tmp_path / "out")]
    result = subprocess.run([*command, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    losses = [float(row[2]) for row in rows if int(row[1])]  # summed per evaluation period
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], result.stdout
    loaded = spacy.load(tmp_path / "out" / "model-best")
    assert loaded.get_pipe("gliner").gliner.config.is_token_level
    assert isinstance(loaded("mary visited paris .").ents, tuple)
