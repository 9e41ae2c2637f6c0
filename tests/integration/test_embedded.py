"""``purelb embedded --no-netlink`` as a real process: apply, restart, kill -9, kubectl, status.

No root needed (the non-root mode); every process is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from .embedded_support import (
    EXAMPLES,
    KUBECTL,
    embedded,
    ingress,
    service_body,
    wait_addresses,
)

EDGE = EXAMPLES / "edge-gateway.yaml"
BIG_POOL = """\
apiVersion: purelb.io/v1
kind: ServiceGroup
metadata: {name: big}
spec:
  local:
    v4pools: [{subnet: 10.200.0.0/16, pool: 10.200.0.0/16, aggregation: default}]
"""
NO_NETLINK = ("--no-netlink",)
BURST_WORKERS = 8
BURST_KILL_AFTER = 60
"""Acknowledged creates before the kill: enough that several are mid-flight when it lands."""
BURST_KILL_ALLOCATED = 20
"""...and committed allocations seen (the allocator trails the creates, and keeps writing)."""


def _services(e) -> dict[str, dict]:
    with e.http() as c:
        items = c.get("/api/v1/namespaces/default/services").json()["items"]
    return {s["metadata"]["name"]: s for s in items}


def test_embedded_applies_manifests_and_allocates_from_the_pool(tmp_path: Path) -> None:
    with embedded(tmp_path / "state", [EDGE], extra=NO_NETLINK) as e:
        assert e.agent == "plan-only"
        with e.http() as c:
            got = wait_addresses(c, ["web"])
            sg = c.get("/apis/purelb.io/v1/namespaces/purelb-system/servicegroups/lan").json()
        assert got["web"] == ("172.31.255.200",)
        assert sg["spec"]["local"]["v4pools"][0]["pool"] == "172.31.255.200-172.31.255.220"


def test_embedded_state_dir_and_kubeconfig_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with embedded(state, [EDGE], extra=NO_NETLINK) as e:
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(e.kubeconfig.stat().st_mode) == 0o600
        cfg = yaml.safe_load(e.kubeconfig.read_text())
        assert cfg["clusters"][0]["cluster"]["server"] == e.url
        assert e.url.startswith("http://127.0.0.1:")


def test_embedded_rerun_with_same_manifests_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with embedded(state, [EDGE], extra=NO_NETLINK) as e:
        with e.http() as c:
            wait_addresses(c, ["web"])
        before = _services(e)["web"]
        assert e.stop() == 0
    with embedded(state, [EDGE], extra=NO_NETLINK) as e:
        with e.http() as c:
            wait_addresses(c, ["web"])
        after = _services(e)["web"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert ingress(after) == ingress(before)
    assert "event=manifests_applied created=0 changed=0" in e.log.read_text()


def test_embedded_restart_keeps_every_service_address(tmp_path: Path) -> None:
    state = tmp_path / "state"
    names = [f"s{i}" for i in range(15)]
    with embedded(state, [EDGE], extra=NO_NETLINK) as e:
        with e.http() as c:
            for n in names:
                assert c.post("/api/v1/namespaces/default/services",
                              json=service_body(n)).status_code == 201
            first = wait_addresses(c, ["web", *names])
        assert e.stop() == 0
    with embedded(state, [EDGE], extra=NO_NETLINK) as e, e.http() as c:
        second = wait_addresses(c, ["web", *names])
        # a new Service after the restart gets a fresh address, never a held one
        assert c.post("/api/v1/namespaces/default/services",
                      json=service_body("late")).status_code == 201
        late = wait_addresses(c, ["late"])["late"]
    assert second == first
    assert late[0] not in {a for v in first.values() for a in v}


def test_embedded_kill_9_during_a_burst_of_creates_loses_no_acknowledged_write(
        tmp_path: Path) -> None:
    """Verify that every create answered 201 before SIGKILL exists after a restart, with the
    address it had been given, and that nothing is allocated twice.

    "The address it had been given" is taken from a watch, which (unlike a GET) only ever
    shows committed writes: a list may show an allocation whose commit is still in flight,
    and that one may rightly be lost and redone with another address."""
    state = tmp_path / "state"
    big = tmp_path / "big.yaml"
    big.write_text(BIG_POOL)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with embedded(state, [EDGE, big], extra=NO_NETLINK) as e:
        with e.http() as c:
            wait_addresses(c, ["web"])

        def worker(wid: int) -> None:
            with e.http() as c:
                i = 0
                while not stop.is_set():
                    name = f"b{wid}-{i}"
                    i += 1
                    try:
                        r = c.post("/api/v1/namespaces/default/services",
                                   json=service_body(name, "big"))
                    except Exception:  # the server died under us: that create is unacknowledged
                        return
                    if r.status_code == 201:
                        with lock:
                            acked.append(name)
                    else:
                        return

        committed: dict[str, tuple[str, ...]] = {}

        def watcher() -> None:
            with e.http() as c:
                try:
                    with c.stream("GET", "/api/v1/namespaces/default/services",
                                  params={"watch": "1"}, timeout=None) as r:
                        for line in r.iter_lines():
                            obj = json.loads(line)["object"]
                            if ingress(obj):
                                committed[obj["metadata"]["name"]] = ingress(obj)
                except Exception:  # the server was killed: the stream ends here
                    return

        watch_thread = threading.Thread(target=watcher)
        watch_thread.start()
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(BURST_WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while (len(acked) < BURST_KILL_AFTER or len(committed) < BURST_KILL_ALLOCATED) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        e.kill9()
        stop.set()
        for t in [*threads, watch_thread]:
            t.join(timeout=15)
        seen_before = dict(committed)
    acked_at_kill = list(acked)
    print(f"burst: acked={len(acked_at_kill)} committed_allocations={len(seen_before)}")
    assert len(acked_at_kill) >= BURST_KILL_AFTER
    assert len(seen_before) >= BURST_KILL_ALLOCATED, "the watch saw too few allocations"
    with embedded(state, [EDGE, big], extra=NO_NETLINK, log_name="restart.log") as e:
        present = _services(e)
        missing = [n for n in acked_at_kill if n not in present]
        assert not missing, f"acknowledged creates lost by kill -9: {missing}"
        with e.http() as c:
            after = wait_addresses(c, sorted(present), timeout_s=40)
    changed = {n: (a, after[n]) for n, a in seen_before.items() if n in after and after[n] != a}
    assert not changed, f"addresses moved across kill -9: {changed}"
    flat = [a for v in after.values() for a in v]
    assert len(flat) == len(set(flat)), "an address was handed out twice"


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason=f"kubectl not found at {KUBECTL}")
def test_kubectl_manages_services_of_an_embedded_gateway(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECACHEDIR": str(tmp_path / "cache")}
    svc = tmp_path / "api.yaml"
    svc.write_text(yaml.safe_dump(service_body("api")))
    with embedded(tmp_path / "state", [EDGE], extra=NO_NETLINK) as e:
        env["KUBECONFIG"] = str(e.kubeconfig)

        def kubectl(*args: str) -> str:
            res = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
            assert res.returncode == 0, res.stderr
            return res.stdout

        assert "service/api created" in kubectl("apply", "-f", str(svc))
        assert "unchanged" in kubectl("apply", "-f", str(svc))
        with e.http() as c:
            addr = wait_addresses(c, ["api"])["api"][0]
        table = kubectl("get", "svc")
        row = next(line for line in table.splitlines() if line.startswith("api "))
        assert addr in row and "LoadBalancer" in row
        kubectl("delete", "svc", "api")
        assert "api" not in _services(e)


def test_status_shows_groups_services_plan_and_hot_path(tmp_path: Path) -> None:
    with embedded(tmp_path / "state", [EDGE], extra=NO_NETLINK) as e:
        with e.http() as c:
            wait_addresses(c, ["web"])
        deadline = time.monotonic() + 10
        while True:  # the group status is flushed on an interval after the allocation
            res = subprocess.run([sys.executable, "-m", "purelb", "status", "--kubeconfig",
                                  str(e.kubeconfig), "--json"], capture_output=True, text=True,
                                 timeout=60, check=False)
            assert res.returncode == 0, res.stderr
            doc = json.loads(res.stdout)
            # the status written before the allocation (in use 0) may be read first
            if (doc["groups"] and doc["groups"][0]["source"] == "status" and doc["plan"]
                    and doc["groups"][0]["in_use"] == 1):
                break
            assert time.monotonic() < deadline, doc
            time.sleep(0.2)
        text = subprocess.run([sys.executable, "-m", "purelb", "status", "--kubeconfig",
                               str(e.kubeconfig)], capture_output=True, text=True, timeout=60,
                              check=True).stdout
    assert doc["groups"][0] == {"namespace": "purelb-system", "name": "lan", "family": 4,
                                "size": 21, "in_use": 1, "available": 20, "source": "status",
                                "note": ""}
    assert doc["services"][0]["addresses"] == ["172.31.255.200"]
    assert doc["plan"]["addresses"][0]["services"] == ["default/web"]
    assert doc["hot_path"].split()[0] in ("native", "fallback")
    assert "GROUPS" in text and "172.31.255.200" in text and "hot path:" in text


def test_embedded_refuses_a_bad_manifest_naming_file_and_kind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    res = subprocess.run([sys.executable, "-m", "purelb", "embedded", "--state-dir",
                          str(tmp_path / "s"), "--listen", "127.0.0.1:0", "--no-netlink",
                          "--config", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 2
    assert str(bad) in res.stderr and "apps/v1 Deployment" in res.stderr


def test_embedded_refuses_plain_http_off_loopback_without_credentials(tmp_path: Path) -> None:
    """Off loopback the CLI generates TLS + token; here: a wildcard listen gets both."""
    state = tmp_path / "state"
    res = subprocess.run([sys.executable, "-c", (
        "from pathlib import Path; import sys\n"
        "from purelb.controllers.embedded import EmbeddedSettings, server_setup, "
        "prepare_state_dir\n"
        f"s = EmbeddedSettings(state_dir=Path({str(state)!r}), host='0.0.0.0', port=0)\n"
        "prepare_state_dir(s.state_dir)\n"
        "setup = server_setup(s)\n"
        "print(bool(setup.config.tls_cert), bool(setup.token), setup.client_url_host)\n")],
        capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.split() == ["True", "True", "127.0.0.1"]
    assert stat.S_IMODE((state / "token").stat().st_mode) == 0o600


def test_embedded_refuses_a_manifest_the_api_rejects_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad-group.yaml"
    bad.write_text("apiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {name: bad}\n"
                   "spec: {local: {v4pools: [{subnet: 10.0.0.0/24, pool: 10.0.0.1-10.0.0.9, "
                   "aggregation: 7}]}}\n")
    res = subprocess.run([sys.executable, "-m", "purelb", "embedded", "--state-dir",
                          str(tmp_path / "s"), "--listen", "127.0.0.1:0", "--no-netlink",
                          "--config", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"{bad} (document 1): ServiceGroup purelb-system/bad rejected" in res.stderr
    assert "aggregation" in res.stderr


SETPRIV = shutil.which("setpriv")
NO_CAPS = [SETPRIV or "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
"""Run a command with every capability dropped: what a non-root user has for netlink and
raw sockets (the uid stays 0 only so the test venv under /root stays readable)."""


@pytest.mark.root
@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) not found")
def test_no_netlink_mode_runs_without_any_privilege(tmp_path: Path) -> None:
    with embedded(tmp_path / "state", [EDGE], extra=NO_NETLINK, wrap=NO_CAPS) as e:
        status = Path(f"/proc/{e.proc.pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status
        with e.http() as c:
            assert wait_addresses(c, ["web"])["web"] == ("172.31.255.200",)


@pytest.mark.root
@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) not found")
def test_netlink_mode_without_privilege_fails_with_the_hint(tmp_path: Path) -> None:
    res = subprocess.run([*NO_CAPS, sys.executable, "-m", "purelb", "embedded", "--state-dir",
                          str(tmp_path / "s"), "--listen", "127.0.0.1:0", "--config", str(EDGE)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "needs root" in res.stderr and "--no-netlink" in res.stderr


def test_embedded_names_the_address_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "purelb", "embedded", "--state-dir",
                              str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}",
                              "--no-netlink", "--config", str(EDGE)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr
