"""The single-gateway agent in a namespace: addresses on the NIC and kube-lb0, kept across
a restart and a kill -9, withdrawn on SIGTERM. Every namespace/process is removed at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.integration.embedded_support

from tests.integration.embedded_support import EXAMPLES, embedded  # noqa: E402

CONFIGS = [EXAMPLES / "edge-gateway.yaml", EXAMPLES / "virtual-pool.yaml"]
SETTLE_TIMEOUT_S = 15.0


@pytest.fixture
def gw() -> Iterator[str]:
    ns = f"ple{os.getpid()}n"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "eth0", "type", "ifb"],
                    ["addr", "add", "172.31.255.1/24", "dev", "eth0"],
                    ["link", "set", "eth0", "up"],
                    ["route", "add", "default", "via", "172.31.255.254"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _addrs(ns: str) -> dict[str, set[str]]:
    out = subprocess.run(["ip", "-n", ns, "-br", "addr"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0].split("@")[0]: {a for a in line.split()[2:]
                                            if not a.startswith("fe80")}
            for line in out.splitlines()}


def _wait(ns: str, want: dict[str, set[str]]) -> dict[str, set[str]]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        got = _addrs(ns)
        if all(got.get(k, set()) == v for k, v in want.items()):
            return got
        assert time.monotonic() < deadline, f"interfaces {got}, wanted {want}"
        time.sleep(0.1)


@pytest.mark.root
def test_gateway_addresses_survive_restart_and_kill_9_and_go_on_sigterm(gw: str,
                                                                        tmp_path: Path) -> None:
    state = tmp_path / "state"
    want = {"eth0": {"172.31.255.1/24", "172.31.255.200/24"},
            "kube-lb0": {"198.51.100.10/32"}}
    with embedded(state, CONFIGS, netns=gw) as e:
        assert e.agent == "netlink"
        _wait(gw, want)
        e.kill9()  # addresses stay behind, marked as ours
    assert _addrs(gw)["eth0"] == want["eth0"]
    with embedded(state, CONFIGS, netns=gw, log_name="second.log") as e:
        _wait(gw, want)  # same Services, same addresses, nothing doubled
        assert e.stop() == 0
    _wait(gw, {"eth0": {"172.31.255.1/24"}, "kube-lb0": set()})
    assert "event=addresses_withdrawn count=2" in (tmp_path / "second.log").read_text()
