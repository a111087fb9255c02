"""Training through spaCy: initialize / update / optimizer groups / spacy train / bad data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np
import pytest
import spacy
import torch
from helpers import write_bert_encoder
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    ("barack obama was born in hawaii .", [(0, 2, "person"), (5, 6, "location")]),
    (
        "john smith works for google in london .",
        [(0, 2, "person"), (4, 5, "organization"), (6, 7, "location")],
    ),
    (
        "mary visited paris and new york .",
        [(0, 1, "person"), (2, 3, "location"), (4, 6, "location")],
    ),
    ("apple and microsoft won the cup .", [(0, 1, "organization"), (2, 3, "organization")]),
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return write_bert_encoder(tmp_path_factory.mktemp("enc") / "bert")


def make_examples(nlp, data=SENTENCES):
    return helpers.make_examples(nlp, data)


def make_nlp(encoder: Path, **settings):
    nlp = spacy.blank("en")
    config = {
        "others_lr": 3e-4,
        "encoder_lr": 1e-4,
        "loss": {"@losses": "spacy_gliner.span_loss.v1", "masking": "none"},
    }
    config.update(settings)
    pipe = nlp.add_pipe("gliner", config=config)
    return nlp, pipe


def loader(encoder: Path, **kw):
    from spacy_gliner.component.registry import encoder_loader

    return encoder_loader(str(encoder), hidden_size=32, max_width=4, dropout=0.0, **kw)


def test_initialize_collects_labels_and_update_lowers_loss(encoder):
    nlp, pipe = make_nlp(encoder)
    examples = make_examples(nlp)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    assert set(pipe.labels) == {"person", "location", "organization"}
    first, last = helpers.first_and_last_loss(nlp, examples, steps=25)
    assert last < first * 0.5


def test_others_lr_scales_the_step_of_non_encoder_parameters(encoder):
    nlp, pipe = make_nlp(encoder, encoder_lr=1e-4, others_lr=1e-2)
    examples = make_examples(nlp)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    module = pipe.gliner.model
    shim = pipe.model.shims[0]
    assert shim.lr_scales["prompt_rep_layer.0.weight"] == pytest.approx(100.0)
    assert (
        shim.lr_scales["token_rep_layer.bert_layer.model.encoder.layer.0.output.dense.weight"]
        == 1.0
    )
    from thinc.api import Adam

    optimizer = Adam(learn_rate=1e-4, L2=0.0, grad_clip=0.0)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    pipe.update(examples, sgd=optimizer)
    step = {n: (p.detach() - before[n]).abs().max().item() for n, p in module.named_parameters()}
    # Adam's first step moves every weight by ~lr: the two groups differ by the lr ratio.
    assert step["prompt_rep_layer.0.weight"] == pytest.approx(1e-2, rel=0.05)
    assert step[
        "token_rep_layer.bert_layer.model.encoder.layer.0.output.dense.weight"
    ] == pytest.approx(1e-4, rel=0.05)


def test_fine_tune_false_freezes_the_encoder(encoder):
    nlp, pipe = make_nlp(encoder, fine_tune=False)
    examples = make_examples(nlp)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    module = pipe.gliner.model
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    pipe.update(examples, sgd=nlp.create_optimizer())
    for name, param in module.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        assert changed != name.startswith("token_rep_layer"), name


def test_weight_decay_follows_groups(encoder):
    nlp, pipe = make_nlp(encoder, weight_decay=0.1, others_weight_decay=0.01)
    pipe.initialize(lambda: make_examples(nlp), nlp=nlp, model_loader=loader(encoder))
    decay = pipe.model.shims[0].weight_decay
    assert decay["prompt_rep_layer.0.weight"] == 0.01
    assert decay["prompt_rep_layer.0.bias"] == 0.0
    assert decay["token_rep_layer.bert_layer.model.encoder.layer.0.output.dense.weight"] == 0.1
    assert decay["token_rep_layer.bert_layer.model.encoder.layer.0.output.LayerNorm.weight"] == 0.0


def test_rehearsal_keeps_rehearsed_labels_closer_to_the_start(encoder):
    """Fine-tuning with rehearsal moves the rehearsed labels' scores less than without it."""
    probe = ["mary smith visited google in paris .", "the king wrote a book about the war ."]
    rehearsed = ["date", "event"]

    def drift(weight: float) -> float:
        nlp, pipe = make_nlp(encoder, rehearsal_labels=rehearsed, rehearsal_weight=weight)
        examples = make_examples(nlp)
        pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
        words = [t.split() for t in probe]
        before = pipe.gliner.engine().span_probabilities(words, [rehearsed] * len(words))
        optimizer = nlp.create_optimizer()
        optimizer.learn_rate = 1e-3
        torch.manual_seed(0)
        for _ in range(6):
            nlp.update(examples, sgd=optimizer)
        after = pipe.gliner.engine().span_probabilities(words, [rehearsed] * len(words))
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(before, after)]))

    assert drift(5.0) < drift(0.0)


def test_trained_model_loads_in_the_reference_with_same_scores(encoder, tmp_path):
    from gliner import GLiNER as RefGLiNER

    nlp, pipe = make_nlp(encoder)
    examples = make_examples(nlp)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    for _ in range(3):
        nlp.update(examples, sgd=nlp.create_optimizer())
    pipe.gliner.save_pretrained(tmp_path / "ckpt")
    ref = RefGLiNER.from_pretrained(str(tmp_path / "ckpt"), local_files_only=True)
    text = "mary smith visited google in paris ."
    labels = ["person", "location", "organization"]
    ours = pipe.gliner.inference([text], labels, threshold=0.0)[0]
    theirs = ref.inference([text], labels, threshold=0.0, batch_size=1)[0]
    assert [(e["start"], e["end"], e["label"]) for e in ours] == [
        (e["start"], e["end"], e["label"]) for e in theirs
    ]
    for a, b in zip(ours, theirs):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_label_missing_from_label_set_is_a_clear_error(encoder):
    nlp, pipe = make_nlp(encoder, labels=["person"])
    examples = make_examples(nlp)
    with pytest.raises(ValueError, match=r"Training example 0 .*not among the component's labels"):
        pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    nlp, pipe = make_nlp(encoder, labels=["person", "location", "organization"])
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    pipe.set_labels(["person"])  # data seen only by update() is checked there
    with pytest.raises(ValueError, match="not among the component's labels"):
        pipe.update(examples)


def test_empty_corpus_is_a_clear_error(encoder):
    nlp, pipe = make_nlp(encoder)
    with pytest.raises(ValueError, match="empty training corpus"):
        pipe.initialize(lambda: [], nlp=nlp, model_loader=loader(encoder))


def test_overlapping_spans_with_flat_ner_are_a_clear_error(encoder):
    nlp, pipe = make_nlp(encoder, flat_ner=True)
    ref = Doc(nlp.vocab, words=["new", "york", "city", "is", "big"])
    ref.spans["sc"] = [Span(ref, 0, 2, "location"), Span(ref, 1, 3, "location")]
    eg = Example(Doc(nlp.vocab, words=ref.text.split()), ref)
    with pytest.raises(ValueError, match=r"Training example 0 .*Overlapping training spans"):
        pipe.initialize(lambda: [eg], nlp=nlp, model_loader=loader(encoder), labels=["location"])
    with pytest.raises(ValueError, match="Overlapping training spans"):
        pipe.update([eg])
    nlp2, pipe2 = make_nlp(encoder, flat_ner=False)
    pipe2.initialize(lambda: [eg], nlp=nlp2, model_loader=loader(encoder), labels=["location"])
    assert pipe2.update([eg])["gliner"] > 0


def test_convert_rejects_bad_spans(tmp_path):
    from spacy_gliner.data import convert

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["a", "b"], "spans": [[1, 5, "X"]]}) + "\n")
    with pytest.raises(ValueError, match="out of bounds"):
        convert(bad, tmp_path / "bad.spacy")
    overlap = tmp_path / "overlap.jsonl"
    overlap.write_text(
        json.dumps({"tokens": ["a", "b", "c"], "spans": [[0, 1, "X"], [1, 2, "Y"]]}) + "\n"
    )
    with pytest.raises(ValueError, match="overlapping spans"):
        convert(overlap, tmp_path / "o.spacy")
    assert convert(overlap, tmp_path / "o.spacy", nested=True) == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no documents"):
        convert(empty, tmp_path / "e.spacy")


DATA = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "conll2003").exists(), reason="../shared/data not present")
def test_project_convert_on_a_small_sample(tmp_path):
    out = tmp_path / "corpus"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "project" / "scripts" / "convert.py"),
            str(DATA),
            str(out),
            "--train-sets",
            "conll2003,wnut17",
            "--eval-sets",
            "ncbi_disease,mit_movie",
            "--train-limit",
            "20",
            "--eval-limit",
            "10",
        ],
        check=True,
    )
    nlp = spacy.blank("en")
    train = list(DocBin().from_disk(out / "train.spacy").get_docs(nlp.vocab))
    assert len(train) == 40
    labels = {e.label_ for d in train for e in d.ents}
    assert (
        labels
        <= {
            "person",
            "location",
            "organization",
            "miscellaneous",
            "corporation",
            "creative work",
            "group",
            "product",
        }
        and "person" in labels
    )  # prompt names, not raw tags
    assert len(list(DocBin().from_disk(out / "dev_mit_movie.spacy").get_docs(nlp.vocab))) == 10


def test_spacy_train_reduces_loss_and_writes_model_best(encoder, tmp_path):
    nlp = spacy.blank("en")
    db = DocBin()
    for eg in make_examples(nlp) * 4:
        db.add(eg.reference)
    db.to_disk(tmp_path / "train.spacy")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(REPO / "configs" / "train.cfg"),
            "--output",
            str(tmp_path / "out"),
            "--paths.train",
            str(tmp_path / "train.spacy"),
            "--paths.dev",
            str(tmp_path / "train.spacy"),
            "--paths.base_model",
            str(encoder),
            "--training.max_steps",
            "30",
            "--training.eval_frequency",
            "10",
            "--training.optimizer.learn_rate.initial_rate",
            "0.001",
            "--training.optimizer.learn_rate.warmup_steps",
            "1",
            "--initialize.components.gliner.model_loader.hidden_size",
            "32",
            "--initialize.components.gliner.model_loader.max_width",
            "4",
            "--initialize.components.gliner.model_loader.dropout",
            "0.0",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    # The loss column is summed over each evaluation period: compare the first full period
    # (steps 1-10) with the last one (steps 21-30), not a single step with ten.
    losses = [float(row[2]) for row in rows if int(row[1])]
    assert len(losses) == 3 and losses[-1] < losses[0], result.stdout
    best = tmp_path / "out" / "model-best"
    assert (best / "gliner" / "model" / "gliner_config.json").exists()
    loaded = spacy.load(best)
    assert loaded.get_pipe("gliner").labels


def test_long_training_docs_are_windowed_within_the_token_budget(encoder):
    nlp, pipe = make_nlp(encoder)
    words = ("barack obama was born in hawaii and visited paris . " * 120).split()
    ref = Doc(nlp.vocab, words=words)
    ref.ents = [Span(ref, i, i + 2, label="person") for i in range(0, len(words), 10)]
    eg = Example(Doc(nlp.vocab, words=words), ref)
    pipe.initialize(lambda: [eg], nlp=nlp, model_loader=loader(encoder))
    import random

    from spacy_gliner.training.step import make_rows

    gold = [(i, i + 1, "person") for i in range(0, len(words), 10)]
    batch = make_rows(pipe.gliner, [(words, gold)], ["person"], 25, 1, random.Random(0))
    rows, spans = batch.words, batch.spans
    assert len(rows) > 1 and sum(map(len, rows)) >= len(words)
    limit = pipe.gliner.tokenizer.model_max_length
    for row in rows:
        assert len(pipe.gliner.tokenizer(row, is_split_into_words=True)["input_ids"]) < limit
    found = {(s, e) for row_spans in spans for s, e, _ in row_spans}
    assert found  # gold spans carried into the windows, shifted to window coordinates
    assert pipe.update([eg])["gliner"] > 0


def test_update_honours_drop(encoder):
    """``drop`` is the dropout of the GLiNER layers (not the encoder's own) for the step."""
    from spacy_gliner.training.step import forward, head_dropout

    nlp, pipe = make_nlp(encoder)
    examples = make_examples(nlp)
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    gliner, module = pipe.gliner, pipe.gliner.model
    encoder_module = module.token_rep_layer.bert_layer.model
    dropouts = lambda m: [d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)]  # noqa: E731
    before_all, before_encoder = dropouts(module), dropouts(encoder_module)
    words, labels = [s.split() for s, _ in SENTENCES[:2]], [["person", "location"]] * 2
    module.train()
    encoder_module.eval()  # only the head's dropout varies below
    try:
        with head_dropout(module, 0.0):
            assert torch.equal(
                forward(gliner, module, words, labels)[0], forward(gliner, module, words, labels)[0]
            )
            assert dropouts(encoder_module) == before_encoder
        with head_dropout(module, 0.9):
            assert not torch.equal(
                forward(gliner, module, words, labels)[0], forward(gliner, module, words, labels)[0]
            )
    finally:
        module.eval()
    assert dropouts(module) == before_all
    assert pipe.update(examples, drop=0.3)["gliner"] > 0
    assert dropouts(module) == before_all


@pytest.mark.parametrize("bad", ["empty", "unknown_label", "overlap"])
def test_bad_training_example_is_named_before_training(encoder, bad, caplog):
    from spacy.tokens import Doc, Span
    from spacy.training import Example

    nlp, pipe = make_nlp(encoder, labels=["person", "location", "organization"])
    examples = make_examples(nlp)
    words = ["mary", "smith", "visited", "paris"]
    ref = Doc(nlp.vocab, words=[] if bad == "empty" else words)
    if bad == "unknown_label":
        ref.ents = [Span(ref, 0, 2, label="wizard")]
    elif bad == "overlap":
        ref.spans["sc"] = [Span(ref, 0, 2, label="person"), Span(ref, 1, 3, label="person")]
    examples.insert(
        2, Example(Doc(nlp.vocab, words=list(ref.text.split()) if len(ref) else []), ref)
    )
    with pytest.raises(ValueError, match="Training example 2 "):
        pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    nlp, pipe = make_nlp(
        encoder, labels=["person", "location", "organization"], skip_bad_examples=True
    )
    with caplog.at_level("WARNING", logger="spacy_gliner"):
        pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader(encoder))
    assert "1 training example(s) cannot be used" in caplog.text
    assert pipe.update(examples)["gliner"] > 0
