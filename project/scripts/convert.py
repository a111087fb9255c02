"""JSONL datasets -> corpus/train.spacy (training mixture), corpus/dev.spacy and corpus/dev_<set>.spacy."""

import argparse
import random
from pathlib import Path

import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_gliner import register_doc_extensions
from spacy_gliner.data import prompt_labels, read_jsonl_docs


def load(data_dir: Path, name: str, split: str, vocab: Vocab, limit: int):
    path = data_dir / name / f"{split}.jsonl"
    if not path.exists():
        fallback = {"dev": ["test", "train_500shot"], "train": ["train_500shot"]}.get(split, [])
        path = next(
            (
                data_dir / name / f"{s}.jsonl"
                for s in fallback
                if (data_dir / name / f"{s}.jsonl").exists()
            ),
            path,
        )
    if not path.exists():
        raise SystemExit(
            f"Missing {path}: point vars.data_dir at converted JSONL (or run convert-raw)."
        )
    return list(
        read_jsonl_docs(path, vocab, prompt_labels(data_dir / name / "meta.json"), limit=limit)
    )


def dataset_labels(data_dir: Path, name: str) -> list[str]:
    """Every label of a dataset, as prompt names."""
    meta = srsly.read_json(data_dir / name / "meta.json")
    names = meta.get("prompt_labels", {})
    return sorted({names.get(label, label) for label in meta["labels"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train-sets", default="")
    parser.add_argument("--eval-sets", default="")
    parser.add_argument("--recipe", default="demo", choices=["demo", "full"])
    parser.add_argument(
        "--train-limit", type=int, default=600, help="per training set, demo recipe only"
    )
    parser.add_argument(
        "--eval-limit", type=int, default=300, help="per evaluation set, demo recipe only"
    )
    parser.add_argument(
        "--demo-train-sets",
        default="",
        help="the demo recipe's training sets (default: --train-sets)",
    )
    parser.add_argument(
        "--train-limits",
        default="",
        help="per-set overrides of --train-limit, e.g. conll2003=6000,wnut17=2000 (demo only)",
    )
    parser.add_argument(
        "--dev-limit",
        type=int,
        default=100,
        help="per training set in corpus/dev.spacy (spacy train's evaluation), demo recipe only",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    full = args.recipe == "full"
    limits = {
        k: int(v)
        for k, v in (item.split("=") for item in filter(None, args.train_limits.split(",")))
    }
    vocab = Vocab()
    register_doc_extensions()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    train, dev = [], []
    train_sets = args.train_sets if full or not args.demo_train_sets else args.demo_train_sets
    for name in filter(None, train_sets.split(",")):
        limit = limits.get(name, args.train_limit)
        docs = load(args.data_dir, name, "train", vocab, 0 if full else limit)
        # Each sentence's negatives are its own dataset's other labels (the reference's
        # ner_negatives): every step then contrasts e.g. person with location, not with labels
        # of other domains. An unannotated mention of another dataset's type is no false negative.
        negatives = dataset_labels(args.data_dir, name)
        for doc in docs:
            doc._.gliner_negatives = negatives
        train += docs
        dev += load(args.data_dir, name, "dev", vocab, 0 if full else args.dev_limit)
    if args.train_sets and not train:
        raise SystemExit("The training mixture is empty.")
    random.Random(args.seed).shuffle(train)
    if train:
        DocBin(docs=train, store_user_data=True).to_disk(args.out_dir / "train.spacy")
        DocBin(docs=dev).to_disk(args.out_dir / "dev.spacy")
        print(f"train: {len(train)} docs, dev: {len(dev)} docs")
    for name in filter(None, args.eval_sets.split(",")):
        docs = load(args.data_dir, name, "dev", vocab, 0 if full else args.eval_limit)
        DocBin(docs=docs).to_disk(args.out_dir / f"dev_{name}.spacy")
        print(f"dev_{name}: {len(docs)} docs")


if __name__ == "__main__":
    main()
