"""Returning free heap pages to the OS after the barrier's peak."""

from __future__ import annotations

import os
import platform

import pytest

from purelb.controllers import heap

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_memory_freed_below_a_live_allocation_goes_back_to_the_os() -> None:
    garbage = [bytes(4096) for _ in range(8_000)]  # ~32 MB from malloc, not pymalloc
    pin = bytes(4096)  # above the garbage: free() alone cannot shrink the heap
    del garbage
    before = _rss()
    assert heap.trim_heap() is True
    assert before - _rss() > 16 * 2**20
    del pin


def test_a_libc_without_malloc_trim_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:
        def __init__(self, _name: object) -> None:
            pass

    monkeypatch.setattr(heap.ctypes, "CDLL", NoTrim)
    assert heap.trim_heap() is False
