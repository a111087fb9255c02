"""``dtype: "int8"``: dynamic int8 inference on CPU against our own float32 on a trained model.

The fixture model is trained for a few hundred steps on a handful of sentences (a random model
scores everything near 0.5, where any rounding flips decisions), then scored on recombinations
of its training words. The gate is the one the README states: the decoded entities of int8 and
float32 agree on at least 97% (shared / union); 99% of the scores move by at most 0.02, none by
more than 0.25.
"""

from __future__ import annotations

import pickle
import random
from concurrent.futures import ThreadPoolExecutor

import helpers
import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc

from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet

AGREEMENT = 0.97  # decoded entities shared by int8 and float32, over their union
# |p_int8 - p_float32| over every cell (span x label, threshold 0): 99% within P99, all within MAX.
SCORE_BOUND_P99 = 0.02
SCORE_BOUND_MAX = 0.25
LABELS = ["person", "location", "organization"]
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
    ("the queen lives in london with john smith .", [(5, 6, "location"), (7, 9, "person")]),
    ("google founded a team in paris .", [(0, 1, "organization"), (5, 6, "location")]),
]
STEPS = 300


@pytest.fixture(scope="module")
def trained(bert_dir):
    """A spaCy pipeline whose GLiNER (tiny BERT) was trained on ``SENTENCES``."""
    from spacy_gliner.component.registry import encoder_loader

    nlp = spacy.blank("en")
    loss = {"@losses": "spacy_gliner.span_loss.v1", "masking": "none"}
    config = {"loss": loss, "others_lr": 1e-3, "encoder_lr": 1e-3, "labels": LABELS}
    pipe = nlp.add_pipe("gliner", config=config)
    examples = helpers.make_examples(nlp, SENTENCES)
    # Label vectors from the label words themselves (embed_ent_token off): a 2-layer random
    # encoder learns them in a few hundred steps (from <<ENT>> it takes many more).
    loader = encoder_loader(
        str(bert_dir), hidden_size=32, max_width=4, dropout=0.0, embed_ent_token=False
    )
    pipe.initialize(lambda: examples, nlp=nlp, model_loader=loader)
    first, last = helpers.first_and_last_loss(nlp, examples, steps=STEPS, learn_rate=1e-3)
    assert last < first * 0.01, "the fixture did not train"
    return nlp


def _texts() -> list[list[str]]:
    """Training sentences and recombinations of their halves (unseen word orders)."""
    rng = random.Random(3)
    words = [text.split() for text, _ in SENTENCES]
    mixed = []
    for _ in range(40):
        a, b = rng.sample(words, 2)
        mixed.append(a[: rng.randint(2, len(a))] + b[rng.randint(0, len(b) - 2) :])
    return words + mixed


def _entities(engine: Engine, texts) -> dict:
    results = engine(texts, LabelSet.from_labels(LABELS), thresholds=0.5)
    return {
        (i, s, e, label): p
        for i, r in enumerate(results)
        for s, e, label, p in r.decode(True, False)
    }


def _cells(engine: Engine, texts) -> dict:
    """Every scored cell (probabilities of exactly 0 are left out by threshold 0)."""
    results = engine(texts, LabelSet.from_labels(LABELS), thresholds=0.0)
    return {
        (i, s, e, label): p
        for i, r in enumerate(results)
        for s, e, label, p in zip(r.starts, r.ends, r.labels, r.scores)
    }


def test_int8_agrees_with_float32_and_leaves_it_unchanged(trained):
    gliner = trained.get_pipe("gliner").gliner
    texts = _texts()
    before = {k: v.detach().clone() for k, v in gliner.model.state_dict().items()}
    full = Engine(gliner)
    int8 = Engine(gliner, EngineOptions(dtype=torch.qint8))
    ours, quantized = _entities(full, texts), _entities(int8, texts)
    assert len(ours) >= len(texts), "the trained model finds too few entities"
    shared = set(ours) & set(quantized)
    assert len(shared) / len(set(ours) | set(quantized)) >= AGREEMENT
    a, b = _cells(full, texts), _cells(int8, texts)
    diff = np.array([abs(a[k] - b.get(k, 0.0)) for k in a] + [b[k] for k in set(b) - set(a)])
    assert 0 < diff.max() <= SCORE_BOUND_MAX  # int8 did run
    assert np.quantile(diff, 0.99) <= SCORE_BOUND_P99
    after = gliner.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # float32 model unchanged
    assert all(type(m).__module__.startswith(("torch.nn.modules", "transformers", "spacy_gliner"))
               for m in gliner.model.modules())  # fmt: skip
    assert _entities(Engine(gliner), texts) == ours


def test_component_and_api_accept_int8(trained, tmp_path):
    trained.to_disk(tmp_path / "pipe")
    nlp = spacy.load(tmp_path / "pipe", config={"components": {"gliner": {"dtype": "int8"}}})
    words = _texts()[:12]
    docs = [Doc(nlp.vocab, words=w) for w in words]
    found = {
        (i, e.start, e.end - 1, e.label_) for i, d in enumerate(nlp.pipe(docs)) for e in d.ents
    }
    engine = nlp.get_pipe("gliner").engine
    assert engine.model is not engine.gliner.model  # the engine runs its own int8 copy
    expected = _entities(
        Engine(nlp.get_pipe("gliner").gliner, EngineOptions(dtype=torch.qint8)), words
    )
    assert found == {(i, s, e, LABELS[label]) for i, s, e, label in expected}
    gliner = GLiNER.from_pretrained(tmp_path / "pipe" / "gliner" / "model")
    text = " ".join(words[0])
    int8 = gliner.predict_entities(text, LABELS, dtype="int8")
    full = gliner.predict_entities(text, LABELS)
    assert [(e["start"], e["end"], e["label"]) for e in int8] == [
        (e["start"], e["end"], e["label"]) for e in full
    ]
    clone = pickle.loads(pickle.dumps(nlp.get_pipe("gliner")))
    assert [e.text for e in clone(nlp.make_doc(text)).ents] == [e["text"] for e in int8]


def test_int8_threads_equal_sequential(trained):
    engine = Engine(trained.get_pipe("gliner").gliner, EngineOptions(dtype=torch.qint8))
    texts = _texts()
    labels = LabelSet.from_labels(LABELS)

    def run(order):
        return [(tuple(t), engine([t], labels, thresholds=0.0)[0].scores.tolist()) for t in order]

    expected = dict(run(texts))
    rounds = [texts[i:] + texts[:i] for i in range(0, 40, 10)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for results in pool.map(run, rounds):
            assert all(scores == expected[t] for t, scores in results)


def test_int8_on_a_gpu_or_in_training_is_a_clear_error(trained, default_checkpoint):
    nlp = spacy.blank("en")
    config = {"model": str(default_checkpoint), "labels": ["person"], "dtype": "int8"}
    with pytest.raises(ValueError, match="int8 runs on CPU only"):
        nlp.add_pipe("gliner", config={**config, "device": "cuda"})
    gliner = GLiNER.from_pretrained(default_checkpoint)
    options = EngineOptions(dtype=torch.qint8)
    assert gliner.engine(options) is gliner.engine(options)  # made once, on CPU
    gliner.to("meta")  # not a CPU: moving drops the engines made for the CPU
    with pytest.raises(ValueError, match="int8 runs on CPU only"):
        gliner.engine(options)
    pipe = nlp.add_pipe("gliner", config=config)
    examples = helpers.make_examples(nlp, SENTENCES[:1])
    with pytest.raises(ValueError, match="int8, which is for inference only"):
        nlp.update(examples, sgd=nlp.create_optimizer())
    with pytest.raises(ValueError, match="int8, which is for inference only"):
        pipe.rehearse(examples)


def test_int8_copy_quantizes_the_linear_layers_it_should(default_checkpoint):
    """Kept in float32: the encoder's value projections (accuracy) and markerV0's out_project
    (its weights are read as tensors); every other Linear runs int8."""
    from spacy_gliner.model.int8 import Int8Linear, float32_linears, int8_copy

    model = GLiNER.from_pretrained(default_checkpoint).model
    copy = int8_copy(model)
    kept = float32_linears(model)
    layer = "token_rep_layer.bert_layer.model.encoder.layer.0."
    assert layer + "attention.self.value" in kept
    assert not {layer + "intermediate.dense", layer + "output.dense"} & kept
    assert "span_rep_layer.span_rep_layer.out_project.0" in kept
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears - kept  # something is quantized
    for name in linears:
        expected = torch.nn.Linear if name in kept else Int8Linear
        assert type(copy.get_submodule(name)) is expected, name
        assert type(model.get_submodule(name)) is torch.nn.Linear, name


@pytest.mark.parametrize("shape", [(1, 8, 4), (37, 96, 50), (0, 16, 8), (200, 1536, 384)])
def test_int_matmul_equals_its_float_fallback(shape):
    """The int8 product (torch._int_mm where this torch has it) equals the exact integer product,
    and so does the float32 fallback used where it does not."""
    from spacy_gliner.model.int8 import int_matmul

    n, k, m = shape
    gen = torch.Generator().manual_seed(n + k + m)
    a = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=gen)
    b = torch.randint(-127, 128, (k, m), dtype=torch.int8, generator=gen)
    exact = (a.long() @ b.long()).to(torch.int32)
    assert torch.equal(int_matmul(a, b, use_int_mm=False), exact)
    assert torch.equal(int_matmul(a, b), exact)


def test_int8_linear_tracks_the_float_layer():
    """Per-row activation scales: a row with a large outlier costs the other rows no precision."""
    from spacy_gliner.model.int8 import quantize_linear

    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(3, 10, 64, generator=gen)
    x[0, 0, 5] = 300.0  # one outlier token
    with torch.no_grad():
        full, int8 = linear(x), quantize_linear(linear)(x)
    assert int8.shape == full.shape and int8.dtype == torch.float32
    rel = (int8 - full).abs().amax(-1) / full.abs().amax(-1)
    assert rel[0, 0] < 0.05 and rel.flatten()[1:].max() < 0.05


@pytest.mark.parametrize(
    "config",
    [
        {"span_mode": "token_level"},
        {"relations_layer": "dot"},
        {"relations_layer": "mlp", "span_mode": "token_level"},
        {"span_mode": "token_level", "represent_spans": True},
    ],
    ids=["token", "relex-span", "relex-token-mlp", "represent-spans"],
)
def test_int8_runs_every_family_and_tracks_float32(reference_checkpoint, config):
    """Every family's int8 copy runs (layers whose weights a forward reads stay float32) and its
    probabilities stay near float32's (untrained heads: scores only, no agreement gate)."""
    gliner = GLiNER.from_pretrained(reference_checkpoint(**config))
    texts = _texts()[:12]
    labels = LabelSet.from_labels(LABELS)
    full = Engine(gliner)(texts, labels, thresholds=0.0)
    int8 = Engine(gliner, EngineOptions(dtype=torch.qint8))(texts, labels, thresholds=0.0)
    cells = [dict(zip(zip(r.starts, r.ends, r.labels), r.scores)) for r in full]
    moved = [abs(p - cells[i].get(k, 0.0)) for i, r in enumerate(int8)
             for k, p in zip(zip(r.starts, r.ends, r.labels), r.scores)]  # fmt: skip
    assert moved and max(moved) < 0.05
