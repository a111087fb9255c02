"""Give freed activation memory back to the operating system during long CPU inference runs.

Each encoder batch allocates and frees tens of MB of differently sized tensors. glibc's malloc keeps
freed chunks in its heap, which fragments, so over a long document (hundreds of batches) the
process's resident memory keeps growing although live memory does not. ``malloc_trim(0)`` hands the
free pages back. It runs when resident memory has grown by ``growth_mib`` since the last trim, only
on Linux with glibc; elsewhere this does nothing. The caller uses it for long documents only, and
only when the process allocates with glibc's malloc (``glibc_malloc``; jemalloc or tcmalloc preloaded
do not fragment this way): a trim and the page faults after it cost 4-7% of the time on
short-sentence runs, whose heap does not grow.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable, Optional

_trim: Optional[Callable[[int], int]] = None
_loaded = False
_after_last_trim: Optional[float] = None
_glibc_malloc: Optional[bool] = None
_libc: Optional[ctypes.CDLL] = None


def glibc_malloc() -> bool:
    """Whether this process allocates with glibc's malloc: Linux with glibc, and no other allocator
    (jemalloc, tcmalloc) preloaded in front of it. The heap workarounds are for glibc's only."""
    global _glibc_malloc
    if _glibc_malloc is None:
        _glibc_malloc = False
        if _malloc_trim() is not None and _libc is not None:
            address = lambda lib: ctypes.cast(lib.malloc, ctypes.c_void_p).value  # noqa: E731
            # The process resolves symbols through its global scope, where a preloaded malloc comes first.
            _glibc_malloc = address(_libc) == address(ctypes.CDLL(None))
    return _glibc_malloc


def _malloc_trim() -> Optional[Callable[[int], int]]:
    global _trim, _loaded, _libc
    if not _loaded:
        _loaded = True
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = _libc.malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
            _trim = None
    return _trim


def resident_mib() -> Optional[float]:
    """Resident memory of this process in MiB (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory(growth_mib: float = 32.0) -> bool:
    """Return free heap pages to the OS if resident memory grew by more than ``growth_mib`` MiB
    since the last trim (or since the first call); True when it trimmed."""
    global _after_last_trim
    trim = _malloc_trim()
    rss = resident_mib() if trim is not None else None
    if rss is None:
        return False
    if _after_last_trim is not None and rss - _after_last_trim <= growth_mib:
        return False
    trim(0)
    _after_last_trim = resident_mib()
    return True
