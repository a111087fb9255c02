"""Give freed activation memory back to the operating system during long CPU inference runs.

Each encoder batch allocates and frees tens of MB of differently sized tensors. glibc's malloc keeps
freed chunks in its heap, which fragments, so over a long document (hundreds of batches) the
process's resident memory keeps growing although live memory does not. ``malloc_trim(0)`` hands the
free pages back. It is called at most once per ``interval`` seconds (cheap next to an encoder pass),
only on glibc; elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import Callable, Optional

_trim: Optional[Callable[[int], int]] = None
_loaded = False
_last = 0.0


def _malloc_trim() -> Optional[Callable[[int], int]]:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
            _trim = None
    return _trim


def release_free_memory(interval: float = 0.5) -> bool:
    """Return free heap pages to the OS if ``interval`` seconds have passed since the last call
    that did; True when it trimmed."""
    global _last
    now = time.monotonic()
    if now - _last < interval:
        return False
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    _last = time.monotonic()
    return True
