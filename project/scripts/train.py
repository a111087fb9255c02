"""Run `spacy train configs/train.cfg` with the demo or the full recipe."""

import subprocess
import sys

recipe, demo_steps, full_steps, gpu_id = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
steps = demo_steps if recipe == "demo" else full_steps
cmd = [
    sys.executable,
    "-m",
    "spacy",
    "train",
    "../configs/train.cfg",
    "--output",
    "training",
    "--paths.train",
    "corpus/train.spacy",
    "--paths.dev",
    "corpus/dev.spacy",
    "--paths.base_model",
    "assets/encoder",
    "--training.max_steps",
    str(steps),
    "--gpu-id",
    gpu_id,
]
if recipe == "demo":
    # A short budget: fewer evaluations, warm-up scaled to the budget, larger rates, light dropout.
    # The recipe of bench/bench_training.py's recipe B (see the README's training figures).
    cmd += [
        "--training.eval_frequency",
        str(steps),  # spacy train evaluates at step 0 and at the end only
        "--training.optimizer.learn_rate.warmup_steps",
        str(max(1, int(steps) // 20)),
        "--training.optimizer.learn_rate.initial_rate",
        "0.00005",
        "--components.gliner.others_lr",
        "0.0005",
        "--components.gliner.weight_decay",
        "0.01",
        "--initialize.components.gliner.model_loader.dropout",
        "0.1",
        "--training.dropout",
        "0.1",
        # Label vectors from the label's own first sub-token, not the [ENT] marker: the
        # pretrained encoder tells "person" from "location" from step 0, while an [ENT] marker
        # must first learn to gather its label's meaning (1,200 steps are not enough for that).
        "--initialize.components.gliner.model_loader.embed_ent_token",
        "false",
    ]
print(" ".join(cmd), flush=True)
sys.exit(subprocess.call(cmd))
