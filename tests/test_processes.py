"""``nlp.pipe(n_process=2)`` after the parent has used the model, under fork and spawn.

Runs in a subprocess with torch's default (multi-threaded) intra-op pool, which is what made a
forked child wait forever in GNU OpenMP before (the test process itself runs single-threaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, multiprocessing, sys
import spacy, torch


def spans(doc):
    group = doc.spans["sc"]
    return [[s.start, s.end, s.label_, round(float(x), 5)] for s, x in zip(group, group.attrs["scores"])]


if __name__ == "__main__":
    torch.set_num_threads(2)
    method, ckpt, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
    multiprocessing.set_start_method(method, force=True)
    nlp = spacy.blank("en")
    config = {"model": ckpt, "labels": ["person", "location"], "threshold": 0.0, "dtype": dtype}
    nlp.add_pipe("gliner", config=config)
    texts = [f"barack obama visited paris and london in {1990 + i} with john smith ." for i in range(24)]
    nlp(" ".join(texts))  # the parent runs the model first (multi-threaded kernels)
    one = [spans(d) for d in nlp.pipe(texts, batch_size=4)]
    two = [spans(d) for d in nlp.pipe(texts, batch_size=4, n_process=2)]
    print(json.dumps({"one": one, "two": two}))
"""


@pytest.mark.parametrize(
    "method, dtype", [("fork", "float32"), ("spawn", "float32"), ("spawn", "int8")]
)
def test_n_process_2_after_a_warm_parent(default_checkpoint, tmp_path, method, dtype):
    """int8 under spawn: the pipe travels through multiprocessing's pickler, which cannot carry
    the int8 copy's quantized weights; the engine rebuilds the copy in the child."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [sys.executable, str(script), method, str(default_checkpoint), dtype],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["two"]) == 24
    assert result["two"] == result["one"]
    assert any(result["one"])
