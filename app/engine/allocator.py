"""The C allocator, told to keep freed memory for the next forward call.

A folded forward pass allocates and frees activations of tens of MiB per layer. glibc's malloc
serves such blocks with fresh ``mmap`` pages (or hands the top of its heap back to the OS when
they are freed), so every call faults the pages in again and the kernel zeroes them: a folded
BERT-style run at 32 x 128 tokens faulted 43,920 pages in per call from the main thread (0
with this setting); on the server's inference thread glibc's per-thread arena already reuses
most of them (5,632 -> 3,584 faults per call, about 10% of its time; docs/benchmarks.md).
Raising the mmap threshold to its maximum (32 MiB on 64-bit) and the trim threshold to
``retain_bytes`` makes freed blocks reusable without a fault. Those thresholds govern the main
arena; the per-thread arenas glibc gives other threads are capped heaps that still fault
(2,769 faults per call of that run on the inference thread, 0 from the main thread), so one
arena for every thread (``M_ARENA_MAX`` 1) makes the inference thread's calls fault-free too:
the threads that allocate at once are few (the event loop and the inference thread), and
CPython's small objects never reach malloc. The cost: the process keeps up to
``retain_bytes`` of freed memory resident after its peak instead of returning it. Threads that
allocated before the call keep their arenas: call it before starting the inference thread.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
"""glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)."""


def retain_freed_memory(retain_bytes: int) -> bool:
    """Keep up to ``retain_bytes`` of freed memory for reuse (glibc only; elsewhere, or with 0,
    nothing changes). True when glibc took the three settings."""
    if retain_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt to speak of)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    retain = min(retain_bytes, 2**31 - 1)
    applied = (
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
        and bool(mallopt(M_TRIM_THRESHOLD, retain))
        and bool(mallopt(M_ARENA_MAX, 1))
    )
    if not applied:
        logger.warning("the C library refused mallopt; freed memory goes back to the OS")
    return applied
