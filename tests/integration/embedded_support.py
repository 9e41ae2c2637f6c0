"""Run ``purelb embedded`` as a real process (so it can be SIGKILLed) and talk to it over HTTP.

Every process started here dies with the test: a PR_SET_PDEATHSIG child, its own session
killed as a group at teardown, whatever the test's outcome.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
READY = re.compile(r"purelb embedded ready: api=(\S+) kubeconfig=(\S+) agent=(\S+)")
START_TIMEOUT_S = 30.0
"""Start-up is ~0.5 s here; generous for a loaded CI machine."""
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Embedded:
    proc: subprocess.Popen[str]
    url: str
    kubeconfig: Path
    agent: str
    log: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def start_embedded(state_dir: Path, configs: Sequence[Path], *, extra: Sequence[str] = (),
                   netns: str | None = None, log_name: str = "embedded.log",
                   wrap: Sequence[str] = ()) -> Embedded:
    """Start ``purelb embedded`` (inside ``netns``, under the ``wrap`` command) and wait
    for its ready line."""
    argv = [sys.executable, "-m", "purelb", "embedded", "--state-dir", str(state_dir),
            "--listen", "127.0.0.1:0", "--node-name", "gw1", *extra]
    for c in configs:
        argv += ["--config", str(c)]
    argv = [*wrap, *argv]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    log = state_dir.parent / log_name
    err = log.open("a")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True,
                            start_new_session=True, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            m = READY.search(line)
            if m:
                return Embedded(proc, m.group(1), Path(m.group(2)), m.group(3), log)
        if proc.poll() is not None:
            break
    _kill(proc)
    raise AssertionError(f"purelb embedded did not become ready (rc={proc.returncode}); "
                         f"log:\n{log.read_text()[-4000:]}")


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@contextmanager
def embedded(state_dir: Path, configs: Sequence[Path], **kw: Any) -> Iterator[Embedded]:
    e = start_embedded(state_dir, configs, **kw)
    try:
        yield e
    finally:
        if e.proc.poll() is None:
            _kill(e.proc)
        if e.proc.stdout is not None:
            e.proc.stdout.close()


def service_body(name: str, group: str = "lan") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"purelb.io/service-group": group}},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def ingress(obj: dict[str, Any]) -> tuple[str, ...]:
    return tuple(i["ip"] for i in ((obj.get("status") or {}).get("loadBalancer") or {})
                 .get("ingress") or ())


def wait_addresses(client: httpx.Client, names: Sequence[str], *, timeout_s: float = 20.0
                   ) -> dict[str, tuple[str, ...]]:
    """Poll until every named Service in ``default`` has an address; name -> addresses."""
    deadline = time.monotonic() + timeout_s
    while True:
        items = client.get("/api/v1/namespaces/default/services").json()["items"]
        got = {s["metadata"]["name"]: ingress(s) for s in items}
        if all(got.get(n) for n in names):
            return {n: got[n] for n in names}
        if time.monotonic() > deadline:
            missing = sorted(n for n in names if not got.get(n))
            raise AssertionError(f"no address after {timeout_s} s for {missing[:10]} "
                                 f"({len(missing)} of {len(names)})")
        time.sleep(0.1)
