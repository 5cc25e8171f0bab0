"""CPU memory-allocator settings for inference (glibc only).

A window's activations and logits are tens to thousands of MB. With glibc's
defaults, every block above the dynamic mmap threshold (at most 32 MiB) is
obtained with ``mmap`` and returned on free, so each window pays again for
zeroed pages (page faults, kernel time) instead of reusing freed memory. On a
2-core CPU that is up to half of the wall time of a many-prompt call.

:func:`tune_allocator` raises the mmap threshold to 256 MiB and keeps up to
1 GiB of freed memory in the heap for reuse (``mallopt``; the process-wide
equivalent of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` /
``MALLOC_TOP_PAD_``). It runs once per process, is a no-op off glibc, and is
disabled by ``SAT_MALLOC_TUNING=0`` in the environment.

Example:
    >>> from sat.model.allocator import tune_allocator
    >>> tune_allocator() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

__all__ = ["tune_allocator"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


@functools.cache
def tune_allocator() -> bool:
    """Apply the settings of this module's docstring once; True when they were applied."""
    if os.environ.get("SAT_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(k, v) == 1 for k, v in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    log.debug("malloc tuning %s", "applied" if ok else "rejected")
    return ok
