"""``python -m spacy_gliner ...``: the ``spacy-gliner`` command line."""

import sys

from spacy_gliner.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
