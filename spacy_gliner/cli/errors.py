"""The one error the command line reports as a one-line message with exit code 2."""

from __future__ import annotations


class CLIError(Exception):
    """Bad input or options: printed as ``spacy-gliner COMMAND: error: MESSAGE``, exit code 2."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (spaCy and transformers errors span several)."""
    text = " ".join(str(err).split())
    return text[:500] + ("..." if len(text) > 500 else "") or type(err).__name__
