"""The ``spacy-gliner`` command line (``python -m spacy_gliner``): annotate, init, export.

The top layer of the package: it may import every other layer; nothing imports it.
"""
