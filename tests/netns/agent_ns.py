"""Namespace helpers for the agent's root tests: create, always remove, run ``ip``.

Names are ``pla<pid>n<k>`` (<= 15 characters, unique per test process). Teardown kills
every process left in a namespace before deleting it (``ip netns del`` with a live
process only removes the name), and runs even when the test failed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

PREFIX = f"pla{os.getpid()}n"
_counter = itertools.count(1)


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n ns] args...`` and return stdout; raise with stderr on failure."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip_json(*args: str, ns: str) -> list[dict]:
    return json.loads(ip("-j", *args, ns=ns) or "[]")


def set_sysctls(ns: str, settings: dict[str, object]) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", *(f"{k}={v}" for k, v in settings.items())],
        check=True,
    )


def _delete(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def make_netns() -> Iterator:
    """Factory: ``make_netns()`` creates a namespace with lo up and returns its name."""
    created: list[str] = []

    def make() -> str:
        name = f"{PREFIX}{next(_counter)}"
        assert len(name) <= 15, name
        ip("netns", "add", name)
        created.append(name)
        ip("link", "set", "lo", "up", ns=name)
        return name

    try:
        yield make
    finally:
        for name in reversed(created):
            _delete(name)


def mac_of(ns: str, ifname: str) -> bytes:
    (link,) = ip_json("link", "show", "dev", ifname, ns=ns)
    return bytes.fromhex(link["address"].replace(":", ""))
