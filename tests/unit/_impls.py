"""The hot-path implementations a test module runs against (native and fallback).

Each hot-path test module builds its ``impl`` fixture from ``impl_params()``, so one suite
checks both ``purelb._native`` and ``purelb._fallback``. The native one is skipped (with
the reason) when ``PURELB_PURE=1`` asks for the fallback only or when the extension is not
built; under CI a missing extension fails instead, because CI installs with a compiler.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from purelb import _fallback, fast

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PURE_ONLY = fast.pure_forced()

NATIVE, NATIVE_REASON = fast.load_native()


def native_skip_reason() -> str | None:
    """Why the native implementation cannot be tested here, or None."""
    if PURE_ONLY:
        return f"{fast.PURE_ENV}=1: testing the fallback only"
    if NATIVE is None:
        if IN_CI:
            pytest.fail(f"CI must build the native extension: {NATIVE_REASON}", pytrace=False)
        return f"native extension not built: {NATIVE_REASON}"
    return None


def impl_params() -> list:
    reason = native_skip_reason()
    native_marks = [pytest.mark.skip(reason=reason)] if reason else []
    return [
        pytest.param(_fallback, id="fallback"),
        pytest.param(NATIVE, id="native", marks=native_marks),
    ]


def implementations() -> list[ModuleType]:
    """The implementations available to compare against each other."""
    found: list[ModuleType] = [_fallback]
    if native_skip_reason() is None and NATIVE is not None:
        found.append(NATIVE)
    return found
