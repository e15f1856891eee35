"""Process-level tuning that qlite applies explicitly (never at import).

``tune_cpu_allocator()``: a CPU training step allocates dozens of state-sized buffers (2 MB each
for 8 qubits x 1,024 points). glibc serves allocations above its mmap threshold with fresh pages
and returns them on free, so every buffer is page-faulted again on first touch; measured on a
2-core AMD EPYC (2026-11-26), that made one QIREN layer's forward + backward 25 ms instead of 19 ms.
Raising the mmap threshold (to glibc's maximum, 32 MiB) and the trim threshold keeps freed blocks
in the heap for reuse. The cost: freed memory is returned to the system later, for the whole
process, so ``qlite.fit`` calls this only when asked (``tune_allocator=True``; the ``qlite`` command
line asks, as it owns its process); the benchmarks call it for every row they time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_tuned = False


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed large blocks in glibc's heap (see the module docstring). Returns whether it applied
    (False where the C library is not glibc); idempotent."""
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, mmap_threshold),
                                               (_M_TRIM_THRESHOLD, trim_threshold),
                                               (_M_TOP_PAD, 64 << 20)))
    _tuned = ok
    log.debug("glibc mallopt tuning %s", "applied" if ok else "refused")
    return ok
