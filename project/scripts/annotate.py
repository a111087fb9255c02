"""Annotate sample text with a trained pipeline and print the entities."""

import sys

import spacy

nlp = spacy.load(sys.argv[1])
texts = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget.",
    "Patients with type 2 diabetes treated with metformin showed fewer cardiovascular events.",
]
for doc in nlp.pipe(texts):
    print(doc.text)
    for ent in doc.ents:
        print(f"  {ent.text!r:40s} {ent.label_}")
