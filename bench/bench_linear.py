"""float32 linear layers on CPU: ``F.linear`` (MKL's sgemm) against ``spacy_gliner.model.linear``
(oneDNN where it applies), on the shapes of GLiNER inference with a MiniLM encoder (hidden 384,
intermediate 1536) and a hidden-512 head, in inference mode.

    python bench/bench_linear.py                # 2 threads
    python bench/bench_linear.py --threads 1

Prints per shape the milliseconds per call of each (best of ``--repeats`` rounds, the two
interleaved), GFLOP/s and the largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from spacy_gliner.model.linear import linear, onednn_linear_available

# (rows, in, out): encoder attention / FFN in and out at ~1,000 tokens per batch (32 rows), the
# projection to the head, the span terms (hidden 512 -> 4 x 512) and the token scorer's cells.
SHAPES = [
    (1000, 384, 384),
    (1000, 384, 1536),
    (1000, 1536, 384),
    (1000, 384, 512),
    (500, 512, 2048),
    (500, 2048, 512),
    (1600, 512, 2048),
]


def per_call_ms(fn, calls: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # a benchmark script: its own process
    print(f"torch {torch.__version__}, {args.threads} threads, oneDNN: {onednn_linear_available()}")
    print(f"{'rows x in -> out':>22s} {'F.linear ms':>12s} {'linear ms':>10s} {'speed-up':>9s}")
    gen = torch.Generator().manual_seed(0)
    for rows, d_in, d_out in SHAPES:
        x = torch.randn(rows, d_in, generator=gen)
        w, b = torch.randn(d_out, d_in, generator=gen), torch.randn(d_out, generator=gen)
        plain, fast = [], []
        with torch.inference_mode():
            diff = (linear(x, w, b) - F.linear(x, w, b)).abs().max().item()
            for _ in range(args.repeats):
                plain.append(per_call_ms(lambda: F.linear(x, w, b), args.calls))
                fast.append(per_call_ms(lambda: linear(x, w, b), args.calls))
        flop = 2 * rows * d_in * d_out / 1e6  # per ms -> GFLOP/s
        print(
            f"{rows:6d} x {d_in:4d} -> {d_out:4d}  {min(plain):9.2f} ({flop / min(plain):4.0f} GF/s)"
            f" {min(fast):7.2f} ({flop / min(fast):4.0f}) {min(plain) / min(fast):6.2f}x"
            f"  max diff {diff:.1e}"
        )


if __name__ == "__main__":
    main()
