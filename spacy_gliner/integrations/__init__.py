"""Integrations with data-processing frameworks (the top layer: nothing in the package imports it).

- :mod:`spacy_gliner.integrations.ray`: annotate a ``ray.data.Dataset`` on a pool of actors
  (``pip install "spacy-gliner[ray]"``).

Importing this package (or ``spacy_gliner``) never imports an optional framework; each
integration module imports its framework when it is itself imported or used.
"""
