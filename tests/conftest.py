"""Suite-wide rules.

Tests marked ``root`` need root (network namespaces, raw sockets, netlink writes). Outside
CI they skip with a visible reason; under ``CI=true`` a missing privilege is a failure,
because CI runs as root and a silently skipped namespace test would hide a regression.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ROOT_SKIP_REASON = "needs root: network namespaces / netlink writes (runs in CI as root)"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is None or IS_ROOT:
        return
    if IN_CI:
        pytest.fail(f"{item.nodeid}: {ROOT_SKIP_REASON}, but CI is not root", pytrace=False)
    pytest.skip(ROOT_SKIP_REASON)
