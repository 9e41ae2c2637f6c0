"""The README's first command, minus the install steps: scripts/demo-embedded.sh --once.

Runs the real sandbox (three namespaces, a bridge, purelb embedded in the gateway namespace,
a TCP echo) and checks what it prints. Teardown removes every namespace with the test's
prefix and kills anything left in them, whatever happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo-embedded.sh"
DEMO_TIMEOUT_S = 180
PURELB = Path(sys.executable).with_name("purelb")


def _env(prefix: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update(PURELB_DEMO_PREFIX=prefix, PURELB=str(PURELB), PYTHON=sys.executable,
               HOME=env.get("HOME", "/root"), TMPDIR=str(tmp))
    return env


def _leftovers(tmp: Path) -> list[str]:
    """Processes still running with the demo's state directory (under ``tmp``) in argv."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if str(tmp) in line and "ps -eo" not in line]


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]


@pytest.fixture
def prefix() -> str:
    p = f"ple{os.getpid()}d"
    yield p
    for ns in _namespaces(p):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                              check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _run(prefix: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the demo in its own session; on a timeout the whole group is killed (the
    namespaces then go in the fixture's teardown)."""
    proc = subprocess.Popen(["bash", str(DEMO), *args], cwd=REPO, env=_env(prefix, tmp),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.root
def test_demo_sandbox_allocates_attracts_and_answers_from_the_lan(prefix: str,
                                                                  tmp_path: Path) -> None:
    res = _run(prefix, tmp_path, "--once")
    out = res.stdout
    assert res.returncode == 0, f"stdout:\n{out}\nstderr:\n{res.stderr}"
    # allocations: the local pool, the dual-stack pool and the virtual pool
    assert "default/web 172.31.255.200" in out
    assert "default/dns 172.31.255.230 fd00:db8:ff::230" in out
    assert "default/api 198.51.100.10" in out
    # interfaces: local addresses on the NIC, the virtual one on kube-lb0 as a /32
    eth0 = next(line for line in out.splitlines()
                if line.startswith("eth0@") and "172.31.255.1/24" in line)
    assert "172.31.255.200/24" in eth0 and "fd00:db8:ff::230/64" in eth0
    kube_lb0 = next(line for line in out.splitlines() if line.startswith("kube-lb0 "))
    assert "198.51.100.10/32" in kube_lb0
    assert "kube-lb0 kind: " in out
    # the Services table (kubectl, or purelb status where kubectl cannot be used)
    assert "172.31.255.230,fd00:db8:ff::230" in out
    assert "gateway,eth0,172.31.255.200 (IPv4)" in out  # the agent's announcing annotation
    # reachability from the LAN namespace, every address, ping and TCP
    for addr in ("172.31.255.200", "172.31.255.230", "fd00:db8:ff::230", "198.51.100.10"):
        line = next(x for x in out.splitlines() if x.startswith(addr + " "))
        assert "ping ok" in line and "tcp ok" in line, line
        assert f"echo from gateway {addr}: hello" in line
    assert "every allocated address is reachable from the LAN" in out
    assert "demo: sandbox removed" in out
    assert _namespaces(prefix) == []
    assert _leftovers(tmp_path) == []


@pytest.mark.root
def test_demo_no_netlink_mode_allocates_and_shows_the_plan_without_a_sandbox(
        prefix: str, tmp_path: Path) -> None:
    res = _run(prefix, tmp_path, "--once", "--no-netlink")
    out = res.stdout
    assert res.returncode == 0, f"stdout:\n{out}\nstderr:\n{res.stderr}"
    assert "default/web 172.31.255.200" in out
    assert "PLAN (node gateway, netlink disabled: nothing configured)" in out
    assert "198.51.100.10/32" in out
    assert _namespaces(prefix) == []
    assert _leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # the state directory went with it
