"""Give the C heap's free pages back to the OS after a one-off peak (glibc only).

The startup barrier reads every Service at once: response bodies, parsed pages and import
records are freed together right after it, but glibc keeps freed memory that is not at
the top of its heap, so the allocator's RSS would stay ~2 MB (at 10,000 Services) above
what it uses. ``malloc_trim(0)`` returns those free pages (~0.1 ms). Other C libraries
(musl) have no such call and lose nothing but this.
"""

from __future__ import annotations

import ctypes


def trim_heap() -> bool:
    """Release free heap pages to the OS; ``True`` if any were released."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # no dynamic loader, or not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
