"""Write an encoder with another encoder's architecture and tokenizer but random weights.

For timing runs on a machine the pretrained weights cannot be copied to (the benchmark's speed does
not depend on the weights' values):

    python bench/random_encoder.py SRC_DIR OUT_DIR      # SRC_DIR: config.json + tokenizer files
    python bench/bench_inference.py --encoder OUT_DIR ...
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "spm.model",
    "sentencepiece.bpe.model",
    "merges.txt",
    "added_tokens.json",
)


def main(src: str, out: str, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel

    src_dir, out_dir = Path(src), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src_dir / name).exists():
            shutil.copy(src_dir / name, out_dir / name)
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(src_dir)).save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(main(sys.argv[1], sys.argv[2]))
