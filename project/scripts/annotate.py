"""Annotate sample text with a trained pipeline and print the entities.

    python scripts/annotate.py training/model-best [--labels person,location,...]

The sample labels are given to the component for this run (zero-shot: any label list works).
"""

import argparse

import spacy

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget.",
    "Patients with type 2 diabetes treated with metformin showed fewer cardiovascular events.",
    "Aspirin and ibuprofen were given to Mary Smith at a hospital in London.",
]
LABELS = "person,location,organization,chemical,disease"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--labels", default=LABELS, help="comma-separated labels")
    args = parser.parse_args()
    nlp = spacy.load(args.pipeline)
    nlp.get_pipe("gliner").set_labels(args.labels.split(","))
    for doc in nlp.pipe(TEXTS):
        print(doc.text)
        spans = doc.spans["sc"]  # the flat decoding (as doc.ents), with scores
        for span, score in zip(spans, spans.attrs["scores"]):
            print(f"  {span.text!r:40s} {span.label_:14s} {score:.2f}")


if __name__ == "__main__":
    main()
