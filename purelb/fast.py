"""The hot path: address-space allocator and rendezvous election, native or pure.

This is the one place that chooses between the Cython extension ``purelb._native`` and its
pure-Python twin ``purelb._fallback`` (bit-identical answers, checked by one shared
property-test suite). The choice is made once, at import:

- ``PURELB_PURE=1`` (or ``true``/``yes``) forces the fallback;
- otherwise the extension is used if it imports and matches this source tree's ABI
  version (a stale build left behind by a failed rebuild is refused, not trusted);
- otherwise the fallback, with the reason.

The choice is logged once (INFO for native, WARNING for an unexpected fallback) and is
visible as ``IMPLEMENTATION`` ("native" | "fallback") and ``IMPLEMENTATION_REASON``.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

from purelb._fasterrors import (
    MAX_SPACE_SIZE,
    NotAllocatedError,
    OffsetInUse,
    OffsetOutOfRange,
    SpaceFull,
)

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATION_REASON",
    "MAX_SPACE_SIZE",
    "NATIVE_ABI_VERSION",
    "PURE_ENV",
    "AddressSpace",
    "NotAllocatedError",
    "OffsetInUse",
    "OffsetOutOfRange",
    "Rendezvous",
    "SpaceFull",
    "describe",
    "fmix64",
    "load_native",
    "pure_forced",
    "stable_hash64",
    "winner",
    "winners",
]

LOGGER = logging.getLogger(__name__)

#: Bumped whenever native/_native.pyx changes its API or semantics; the extension exports
#: the value it was built with, and a mismatch means a stale .so (refused).
NATIVE_ABI_VERSION = 1

#: Environment variable forcing the pure-Python fallback.
PURE_ENV = "PURELB_PURE"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def load_native() -> tuple[ModuleType | None, str]:
    """Import the extension if it is built and current; returns (module or None, reason)."""
    try:
        from purelb import _native  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"extension purelb._native not importable ({exc})"
    built = getattr(_native, "ABI_VERSION", None)
    if built != NATIVE_ABI_VERSION:
        return None, (
            f"extension purelb._native is stale (ABI {built}, expected {NATIVE_ABI_VERSION}); "
            "rebuild with `pip install -e .`"
        )
    return _native, "extension purelb._native loaded"


def _choose() -> tuple[ModuleType, str, str]:
    from purelb import _fallback

    if pure_forced():
        return _fallback, "fallback", f"{PURE_ENV}={os.environ[PURE_ENV]} forces the fallback"
    native, reason = load_native()
    if native is None:
        return _fallback, "fallback", reason
    return native, "native", reason


def pure_forced() -> bool:
    """Whether the environment asks for the pure-Python fallback."""
    return os.environ.get(PURE_ENV, "").strip().lower() in _TRUE_WORDS


_impl, IMPLEMENTATION, IMPLEMENTATION_REASON = _choose()
if IMPLEMENTATION == "native" or pure_forced():
    LOGGER.info("purelb hot path: %s (%s)", IMPLEMENTATION, IMPLEMENTATION_REASON)
else:
    LOGGER.warning(
        "purelb hot path: pure-Python fallback (%s); answers are identical, slower",
        IMPLEMENTATION_REASON,
    )

AddressSpace = _impl.AddressSpace
Rendezvous = _impl.Rendezvous
stable_hash64 = _impl.stable_hash64
fmix64 = _impl.fmix64
winner = _impl.winner
winners = _impl.winners


def describe() -> str:
    """One line for status output and daemon start-up logs: which hot path and why."""
    return f"{IMPLEMENTATION} ({IMPLEMENTATION_REASON})"
