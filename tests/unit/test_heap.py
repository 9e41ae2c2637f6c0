"""Returning free heap pages to the OS after the barrier's peak."""

from __future__ import annotations

import os
import platform

import pytest

from purelb import heap

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


def test_the_daemons_gc_pace_is_set_and_collects_cycles_still():
    import gc

    saved = gc.get_threshold()
    try:
        heap.tune_gc()
        assert gc.get_threshold() == heap.GC_THRESHOLDS
        assert heap.GC_THRESHOLDS[0] > saved[0]  # young collections less often, not never

        class Node:
            def __init__(self) -> None:
                self.me = self  # a cycle: only the cyclic GC frees it

        import weakref
        ref = weakref.ref(Node())
        gc.collect()
        assert ref() is None
    finally:
        gc.set_threshold(*saved)


def test_every_long_running_entry_point_sets_the_gc_pace():
    """The API server, the allocator/agent shell and embedded mode each call tune_gc."""
    import inspect

    from purelb.apiserver import cli as apiserver_cli
    from purelb.controllers import daemon_cli, embedded_cli

    for module in (apiserver_cli, daemon_cli, embedded_cli):
        assert "tune_gc()" in inspect.getsource(module), module.__name__
