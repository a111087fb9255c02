"""A/B: peak RSS of one long document with and without the engine's per-call span-term workspace.

    python bench/workspace_ab.py on|off CHECKPOINT N_WORDS      # one fresh process per run

The document is the first N_WORDS words of CoNLL-2003 dev (../shared/data); "off" replaces the
engine's workspace choice by None. Prints one JSON line: peak RSS above the warmed-up model.
"""

import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(2)
mode, ckpt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
from spacy_gliner import GLiNER
from spacy_gliner.engine import Engine, EngineOptions, LabelSet
from spacy_gliner.engine import engine as em

if mode == "off":
    em._workspace = lambda windows, batches: None
words = []
for line in open(Path(__file__).resolve().parents[2] / "shared/data/conll2003/dev.jsonl"):
    words += json.loads(line)["tokens"]
    if len(words) >= n:
        break
words = words[:n]
g = GLiNER.from_pretrained(ckpt)
eng = Engine(g, EngineOptions(batch_size=16))
labels = LabelSet.from_labels(["person", "organization", "location", "miscellaneous"])
eng([words[:500]], labels, thresholds=0.5)


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024


open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
t = time.time()
eng([words], labels, thresholds=0.5)
dt = time.time() - t
print(
    json.dumps(
        {
            "mode": mode,
            "words": n,
            "peak_mib": round(status("VmHWM") - before, 1),
            "s": round(dt, 1),
        }
    )
)
