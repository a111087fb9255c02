"""Convert downloaded CoNLL / IOB files (token<TAB or SPACE>tag, blank line between sentences) to
the token-span JSONL format used by `convert`: assets/raw/<set>_<split>.txt -> <out>/<set>/<split>.jsonl."""

import json
import sys
from pathlib import Path


def sentences(path: Path):
    tokens, tags = [], []
    for line in path.read_text(encoding="utf8").splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                yield tokens, tags
            tokens, tags = [], []
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        yield tokens, tags


def spans(tags):
    out, start, label = [], None, None
    for i, tag in enumerate(tags + ["O"]):
        if start is not None and (tag == "O" or tag.startswith("B-") or tag[2:] != label):
            out.append([start, i - 1, label])
            start = None
        if tag != "O" and start is None:
            start, label = i, tag[2:]
    return out


def main(raw_dir: Path, out_dir: Path) -> None:
    for path in sorted(raw_dir.glob("*_*.txt")):
        name, split = path.stem.rsplit("_", 1)
        dest = out_dir / name / f"{split}.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", encoding="utf8") as f:
            for tokens, tags in sentences(path):
                f.write(json.dumps({"tokens": tokens, "spans": spans(tags)}) + "\n")
        print(f"{path} -> {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
