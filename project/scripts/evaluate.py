"""Evaluate a trained pipeline per dataset, and zero-shot on label sets it never saw in training."""

import argparse
import json
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training import Example


def score(nlp, path: Path, zero_shot: bool):
    gold = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    pipe = nlp.get_pipe("gliner")
    trained = dict(zip(pipe.label_set.names, pipe.label_set.prompts))
    labels = sorted({e.label_ for d in gold for e in d.ents})
    # Training labels are prompt names already, so each label is its own prompt.
    pipe.set_labels(labels)
    try:
        examples = [Example(nlp.make_doc(d.text), d) for d in gold]
        scores = nlp.evaluate(examples, batch_size=64)
    finally:
        pipe.set_labels(trained)
    return {
        "zero_shot": zero_shot,
        "labels": labels,
        "ents_p": scores["ents_p"],
        "ents_r": scores["ents_r"],
        "ents_f": scores["ents_f"],
        "ents_per_type": scores["ents_per_type"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sets", default="")
    parser.add_argument("--zero-shot", default="")
    parser.add_argument("--gpu-id", type=int, default=-1)
    args = parser.parse_args()
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.load(args.model)
    results = {}
    for names, zero in ((args.sets, False), (args.zero_shot, True)):
        for name in filter(None, names.split(",")):
            results[name] = score(nlp, args.corpus / f"dev_{name}.spacy", zero)
            print(
                f"{name:22s} {'zero-shot' if zero else 'in-domain':9s}  F1 {100 * results[name]['ents_f']:.1f}"
            )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "scores.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
