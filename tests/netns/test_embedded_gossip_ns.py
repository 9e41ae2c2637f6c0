"""Two embedded gateways on one LAN with gossip on: exactly one holds each local address.

Each gateway runs its own ``purelb embedded`` (own API server and state) in its own
namespace on a shared bridge, with the same manifests and gossip key; the agents elect one
holder per address. Every namespace and process is removed at teardown.
"""

from __future__ import annotations

import base64
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

HOLD_TIMEOUT_S = 20.0
"""Gossip join (LAN timings) plus the agents' reconcile; a few seconds here."""


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


@pytest.fixture
def lan() -> Iterator[tuple[str, str]]:
    p = f"ple{os.getpid()}"
    br, g1, g2 = f"{p}b", f"{p}g1", f"{p}g2"
    try:
        _sh("ip", "netns", "add", br)
        _sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", br, "link", "set", "br0", "up")
        for i, ns in ((1, g1), (2, g2)):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", br, "link", "add", f"g{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _sh("ip", "-n", br, "link", "set", f"g{i}", "master", "br0", "up")
            _sh("ip", "-n", ns, "addr", "add", f"172.31.255.{i}/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "route", "add", "default", "via", "172.31.255.254")
        yield g1, g2
    finally:
        for ns in (g1, g2, br):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _holds(ns: str, address: str) -> bool:
    out = subprocess.run(["ip", "-n", ns, "-br", "addr", "show", "eth0"], capture_output=True,
                         text=True, check=True).stdout
    return f" {address}/" in out


@pytest.mark.root
def test_two_gateways_elect_one_holder_per_local_address(lan: tuple[str, str],
                                                          tmp_path: Path) -> None:
    g1, g2 = lan
    key = tmp_path / "gossip-key.yaml"
    key.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: purelb-gossip, namespace: "
                   f"purelb-system}}\ndata: {{k1: {base64.b64encode(os.urandom(32)).decode()}}}\n")
    configs = [EXAMPLES / "edge-gateway.yaml", key]
    with embedded(tmp_path / "s1", configs, netns=g1, log_name="g1.log",
                  extra=("--node-name", "gw1", "--gossip-bind", "172.31.255.1",
                         "--gossip-peer", "172.31.255.2")) as e1, \
            embedded(tmp_path / "s2", configs, netns=g2, log_name="g2.log",
                     extra=("--node-name", "gw2", "--gossip-bind", "172.31.255.2",
                            "--gossip-peer", "172.31.255.1")) as e2:
        assert e1.agent == e2.agent == "gossip"
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        stable_since = None
        while True:
            held = [_holds(ns, "172.31.255.200") for ns in (g1, g2)]
            if held.count(True) == 1:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 2.0:  # and stays so
                    break
            else:
                stable_since = None
            assert time.monotonic() < deadline, f"holders (gw1, gw2): {held}"
            time.sleep(0.1)
        status = subprocess.run(["ip", "netns", "exec", g1, sys.executable, "-m", "purelb",
                                 "status", "--kubeconfig", str(e1.kubeconfig)],
                                capture_output=True, text=True, timeout=60, check=True).stdout
        assert "alive=2" in status, status
