"""Progress of long work on the ``spacy_gliner`` logger, visible without any logging setup.

Like spaCy's own ``spacy`` logger, the ``spacy_gliner`` logger gets a stderr handler when the
component is imported; it prints only while the root logger has no handler (so a host that
configures logging gets each record once, through its own handlers), and the logger level is
INFO so progress shows under ``spacy train``, ``spacy evaluate`` and the ``spacy-gliner`` CLI.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("spacy_gliner")
PROGRESS_SECONDS = 10.0


def _root_unconfigured(record: logging.LogRecord) -> bool:
    return not logging.getLogger().handlers


def install_handler() -> None:
    """Add the stderr handler once (idempotent)."""
    if any(getattr(h, "_spacy_gliner", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s"))
    handler.addFilter(_root_unconfigured)
    handler._spacy_gliner = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


class Progress:
    """Counts work across calls and logs a line every ``PROGRESS_SECONDS`` (per process)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.start = self.last = time.perf_counter()
        self.count = 0
        self.words = 0  # words since ``start``

    def add(self, count: int, words: int = 0, extra: str = "") -> None:
        """Record finished work; the rate counts from the end of the first recorded piece."""
        now = time.perf_counter()
        if self.count == 0:
            self.start = self.last = now
        else:
            self.words += words
        self.count += count
        if now - self.last >= PROGRESS_SECONDS:
            rate = self.words / max(now - self.start, 1e-9)
            logger.info("GLiNER: %d %s, %.0f words/s%s", self.count, self.what, rate, extra)
            self.last = now
