"""Why the engine keeps torch's default float32 linear (MKL's sgemm) on CPU: oneDNN's kernel is
faster, but its primitive cache keeps memory per distinct product shape.

    python bench/onednn_linear.py              # speed, then memory (about 2 minutes, 2 threads)

Speed: per shape of GLiNER inference (MiniLM encoder, hidden-512 head), milliseconds per call of
``F.linear`` and of ``torch.ops.mkldnn._linear_pointwise`` (a private operator torch ships for
``torch.compile``'s CPU backend), best of 5 interleaved rounds. Memory: resident set growth over
passes of products ``[M, 384] x [384, 1536]`` with M in 100..3,097 (1,000 distinct shapes, as the
batches of a corpus come), through each of the two; the oneDNN pass runs in a child process of its
own so that its memory does not count against ``F.linear``'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [  # (rows, in, out)
    (1000, 384, 384),
    (1000, 384, 1536),
    (1000, 1536, 384),
    (500, 512, 2048),
    (1600, 512, 2048),
]


def onednn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def per_call_ms(fn, calls: int = 20) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def speed() -> None:
    gen = torch.Generator().manual_seed(0)
    print(f"{'rows x in -> out':>22s} {'F.linear ms':>12s} {'oneDNN ms':>10s} {'speed-up':>9s}")
    for rows, d_in, d_out in SHAPES:
        x = torch.randn(rows, d_in, generator=gen)
        w, b = torch.randn(d_out, d_in, generator=gen), torch.randn(d_out, generator=gen)
        plain, fast = [], []
        with torch.inference_mode():
            for _ in range(5):
                plain.append(per_call_ms(lambda: F.linear(x, w, b)))
                fast.append(per_call_ms(lambda: onednn(x, w, b)))
        print(
            f"{rows:6d} x {d_in:4d} -> {d_out:4d}  {min(plain):11.2f} {min(fast):10.2f}"
            f" {min(plain) / min(fast):8.2f}x"
        )


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def memory(kernel: str, passes: int = 2) -> None:
    fn = onednn if kernel == "onednn" else F.linear
    w, b = torch.randn(1536, 384), torch.randn(1536)
    start = rss_mib()
    with torch.inference_mode():
        for p in range(passes):
            for rows in range(100, 3100, 3):
                fn(torch.randn(rows, 384), w, b)
            print(f"{kernel:9s} pass {p + 1}: RSS +{rss_mib() - start:,.0f} MiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-only", choices=["onednn", "mkl"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # a benchmark script: its own process
    if args.memory_only:
        memory(args.memory_only)
        return
    print(f"torch {torch.__version__}, {args.threads} threads")
    speed()
    for kernel in ("mkl", "onednn"):
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--memory-only", kernel]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
