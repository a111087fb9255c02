"""Progress on stderr (texts, texts/s, words/s) and the final summary numbers."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """Counts texts and words; redraws one line on a terminal, else prints a line every 10 s."""

    def __init__(self, total: int, done: int = 0, stream: Optional[TextIO] = None) -> None:
        self.total = total
        self.done = done
        self.texts = 0
        self.words = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.start = self._last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def words_per_second(self) -> float:
        return self.words / max(self.seconds, 1e-9)

    def update(self, texts: int, words: int) -> None:
        self.texts += texts
        self.words += words
        now = time.perf_counter()
        if now - self._last >= (0.2 if self.tty else 10.0):
            self._last = now
            self._show()

    def close(self) -> None:
        if self.tty and self.texts:
            self._show()
            self.stream.write("\n")
            self.stream.flush()

    def _show(self) -> None:
        seconds = max(self.seconds, 1e-9)
        line = (
            f"{self.done + self.texts}/{self.total} texts, {self.texts / seconds:.1f} texts/s, "
            f"{self.words / seconds:.0f} words/s"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
