"""JSONL datasets -> corpus/train.spacy (training mixture), corpus/dev.spacy and corpus/dev_<set>.spacy."""

import argparse
import random
from pathlib import Path

import srsly
from spacy.tokens import Doc, DocBin
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


def mix_pairs(
    train: list,
    general: set[int],
    n: int,
    rng: random.Random,
    prefer: frozenset = frozenset(),
    share: float = 1.0,
) -> list:
    """Replace ``n`` general-domain sentences (``id`` in ``general``) and ``n`` other-domain ones
    by ``n`` two-sentence Docs (random order) whose label set is the union of both datasets'
    labels: the model then sees e.g. location and chemical in one prompt, each with its true
    spans, and learns to tell them apart (not only person from location, chemical from disease).
    Up to ``share`` x ``n`` of the general sentences are drawn from those holding an entity
    labelled in ``prefer`` (e.g. organization: an organization then meets chemical in one
    prompt, as a negative for it), the rest from all others. The corpus keeps the same
    sentences either way; only which ones are joined changes.
    """
    gen = [d for d in train if id(d) in general]
    other = [d for d in train if id(d) not in general]
    n = min(n, len(gen), len(other))
    holds = [any(e.label_ in prefer for e in d.ents) for d in gen]  # all False without prefer
    preferred = [d for d, h in zip(gen, holds) if h]
    a = rng.sample(preferred, min(round(share * n), len(preferred)))
    a += rng.sample([d for d, h in zip(gen, holds) if not h], n - len(a))
    b = rng.sample(other, n)
    used = {id(d) for d in a + b}
    pairs = []
    for x, y in zip(a, b):
        first, second = (x, y) if rng.random() < 0.5 else (y, x)
        doc = Doc.from_docs([first, second], exclude=["user_data"])
        doc._.gliner_negatives = sorted(set(x._.gliner_negatives) | set(y._.gliner_negatives))
        pairs.append(doc)
    return [d for d in train if id(d) not in used] + pairs


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
    parser.add_argument(
        "--mix-pairs",
        type=int,
        default=0,
        help="join this many pairs (a sentence of a --general-sets dataset + one of another "
        "training set) into one training Doc with both datasets' labels (demo recipe only)",
    )
    parser.add_argument("--general-sets", default="conll2003,wnut17")
    parser.add_argument(
        "--mix-prefer",
        default="",
        help="labels (prompt names): general sentences with such an entity are joined first",
    )
    parser.add_argument(
        "--mix-prefer-share",
        type=float,
        default=1.0,
        help="at most this fraction of the joined general sentences is drawn from --mix-prefer",
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
    dataset_of: dict[int, str] = {}  # id(doc) -> its dataset
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
            dataset_of[id(doc)] = name
        train += docs
        dev += load(args.data_dir, name, "dev", vocab, 0 if full else args.dev_limit)
    if args.train_sets and not train:
        raise SystemExit("The training mixture is empty.")
    rng = random.Random(args.seed)
    if args.mix_pairs and not full:
        general = {id(d) for d in train if dataset_of[id(d)] in args.general_sets.split(",")}
        prefer = frozenset(filter(None, args.mix_prefer.split(",")))
        train = mix_pairs(train, general, args.mix_pairs, rng, prefer, args.mix_prefer_share)
    rng.shuffle(train)
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
