"""Heap policy of the long-running daemons: C heap trimming and the cyclic GC's pace.

**Trimming** (glibc only): give the C heap's free pages back to the OS after a one-off peak.

The startup barrier reads every Service at once: response bodies, parsed pages and import
records are freed together right after it, but glibc keeps freed memory that is not at
the top of its heap, so the allocator's RSS would stay ~2 MB (at 10,000 Services) above
what it uses. ``malloc_trim(0)`` returns those free pages (~0.1 ms). Other C libraries
(musl) have no such call and lose nothing but this.

**GC pace**: the allocator and the API server hold tens of thousands of long-lived
objects (caches, the store and its watch log). With CPython's default thresholds
(700, 10, 10) the cyclic GC runs a young collection every 700 allocations and re-scans the
whole heap each time it has grown by a quarter: at 10,000 Services that was 60-220 ms
pauses in the API server and 20-64 ms in the allocator during a burst, ~10% and ~6% of
their CPU, and the 200 ms worst case of `purelb bench e2e`'s paced phase.
:data:`GC_THRESHOLDS` collects young objects 30x less often, which also defers full
collections; cycles are still collected, later (measured: no full collection in a 10,000
Service bench run, paced worst case 200 ms -> 13-24 ms, RSS +4 MB).
"""

from __future__ import annotations

import ctypes
import gc

GC_THRESHOLDS = (20_000, 20, 10)
"""Young-generation allocations between collections, then how many of each generation's
collections before the next older one (see the module docstring)."""


def tune_gc() -> None:
    """Set the daemons' GC pace (:data:`GC_THRESHOLDS`); call once at start-up."""
    gc.set_threshold(*GC_THRESHOLDS)


def trim_heap() -> bool:
    """Release free heap pages to the OS; ``True`` if any were released."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # no dynamic loader, or not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
