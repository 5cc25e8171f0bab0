"""CPU memory-allocator tuning for inference (glibc only); opt-in, never applied by SAT itself.

A window's activations and logits are tens to thousands of MB. With glibc's
defaults, every block above the dynamic mmap threshold (at most 32 MiB) is
obtained with ``mmap`` and returned on free, so each window pays again for
zeroed pages (page faults, kernel time) instead of reusing freed memory. On a
2-core CPU that is up to half of the wall time of a many-prompt call.

:func:`tune` raises the mmap threshold to 256 MiB and keeps up to 1 GiB of freed
memory in the heap for reuse (``mallopt``; the equivalent of ``MALLOC_MMAP_THRESHOLD_``
/ ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_``). These settings belong to the whole
process: every library in it then allocates this way, and up to 1 GiB of freed memory
stays resident (a higher peak RSS). So importing SAT or segmenting never applies them:
call :func:`tune` once in a process that mainly runs SAT inference (``sat segment
--tune-allocator`` does). It cannot be undone; off glibc it does nothing.

Example:
    >>> from sat.model import allocator
    >>> allocator.tune()          # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

__all__ = ["is_tuned", "tune"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20
_lock = threading.Lock()
_applied = False


def tune() -> bool:
    """Apply the settings of this module's docstring to this process (once).

    Returns:
        True when they are in effect (applied now or by an earlier call); False off glibc or
        when ``mallopt`` refuses them.
    """
    global _applied
    with _lock:
        if _applied:
            return True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            log.info("allocator tuning needs glibc's mallopt; not available here, nothing changed")
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _applied = all(mallopt(k, v) == 1 for k, v in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
        log.debug("malloc tuning %s", "applied" if _applied else "rejected")
        return _applied


def is_tuned() -> bool:
    """True once :func:`tune` has applied the settings in this process."""
    return _applied
