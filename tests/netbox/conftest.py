"""A real NetBox on 127.0.0.1 for the external-IPAM tests (session scoped).

``scripts/netbox-up.sh`` installs and starts NetBox (its own PostgreSQL cluster and Redis
on free loopback ports, the migrated-schema seed in ``tests/fixtures/netbox-seed``,
superuser and tokens, gunicorn); ``scripts/netbox-down.sh`` stops only what it started.
State persists in ``$PURELB_NETBOX_STATE`` (default under /var/tmp) so a second session
starts in seconds. With ``PURELB_NETBOX_URL`` + ``PURELB_NETBOX_TOKEN`` set, that NetBox is
used instead and nothing is started or stopped.

Each test gets its own tenant and prefixes (random ranges inside 10.0.0.0/8 and
fd00::/8, only rows in NetBox) and removes them afterwards, so tests never see each
other's addresses.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "scripts" / "netbox-up.sh"
DOWN = REPO / "scripts" / "netbox-down.sh"
SEED_DIR = REPO / "tests" / "fixtures" / "netbox-seed"
DEFAULT_STATE = "/var/tmp/purelb-netbox"
#: a fresh machine: apt + pip install (~1-4 min) + seed restore; generous for a loaded CI box
START_TIMEOUT_S = 1200
STOP_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the servers bind: a port only in TIME_WAIT from the last run is free to reuse
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pidfile: Path, word: str) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError, IndexError):
        return False
    return word.encode() in cmdline


@dataclass
class NetboxServer:
    url: str
    token_v1: str
    token_v2: str
    setup_seconds: float = 0.0
    started_here: bool = False
    env: dict[str, str] | None = None
    """How netbox-up.sh was run (``None``: an external NetBox we may not stop)."""

    def admin(self) -> Admin:
        return Admin(self.url, self.token_v1)

    def stop_web(self) -> None:
        """Stop gunicorn only (NetBox down for clients; the database stays)."""
        assert self.env is not None
        pidfile = Path(self.env["NETBOX_STATE_DIR"]) / "run" / "gunicorn.pid"
        if _pid_alive(pidfile, "gunicorn"):
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 15)
            deadline = time.monotonic() + 30
            while _pid_alive(pidfile, "gunicorn") and time.monotonic() < deadline:
                time.sleep(0.1)

    def start_web(self) -> None:
        assert self.env is not None
        proc = subprocess.run(
            ["bash", str(UP)], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]


@dataclass
class Admin:
    """Direct NetBox writes the tests make "by hand" (a human operator's view)."""

    url: str
    token: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
            timeout=30,
        )

    def req(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def addresses(self, **params: Any) -> list[dict[str, Any]]:
        return self.req("GET", "/api/ipam/ip-addresses/", params={"limit": 1000, **params})[
            "results"
        ]


@pytest.fixture(scope="session")
def netbox_server() -> Iterator[NetboxServer]:
    url, token = os.environ.get("PURELB_NETBOX_URL"), os.environ.get("PURELB_NETBOX_TOKEN")
    if url and token:
        yield NetboxServer(url, token, os.environ.get("PURELB_NETBOX_TOKEN_V2", ""))
        return
    state = Path(os.environ.get("PURELB_NETBOX_STATE", DEFAULT_STATE))
    state.mkdir(parents=True, exist_ok=True)
    # Several pytest sessions may share the NetBox: each holds a shared lock while it runs,
    # and the last one out stops it if a session that started it had to leave it running.
    users = (state / "purelb-users.lock").open("a+")
    fcntl.flock(users, fcntl.LOCK_SH)
    ports_file = state / "purelb-ports.env"
    running = _pid_alive(state / "run" / "gunicorn.pid", "gunicorn")
    ports: dict[str, int] = {}
    if ports_file.exists():
        for line in ports_file.read_text().splitlines():
            k, _, v = line.partition("=")
            if v.isdigit():
                ports[k] = int(v)
    names = ("NETBOX_PORT", "NETBOX_PG_PORT", "NETBOX_REDIS_PORT")
    if not (running and all(n in ports for n in names)):
        pg_running = _pid_alive(state / "pgdata" / "postmaster.pid", "postgres")
        for n in names:
            keep = n in ports and (_port_free(ports[n]) or (n == "NETBOX_PG_PORT" and pg_running))
            if not keep:
                ports[n] = _free_port()
        state.mkdir(parents=True, exist_ok=True)
        ports_file.write_text("".join(f"{n}={ports[n]}\n" for n in names))
    env = dict(os.environ)
    env.update({n: str(ports[n]) for n in names})
    env.update(NETBOX_STATE_DIR=str(state), NETBOX_SEED_DIR=str(SEED_DIR))
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(UP)], env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    setup = time.monotonic() - start
    if proc.returncode != 0:
        users.close()
        pytest.fail(f"netbox-up.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    exports = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export ") :].partition("=")
            exports[k] = shlex.split(v)[0] if v else ""
    server = NetboxServer(
        exports["NETBOX_URL"],
        exports["NETBOX_TOKEN_V1"],
        exports["NETBOX_TOKEN_V2"],
        setup_seconds=setup,
        started_here=not running,
        env=env,
    )
    print(f"\nNetBox at {server.url} ready in {setup:.1f}s (started here: {server.started_here})")
    pending = state / "purelb-stop-pending"
    try:
        yield server
    finally:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # alone now?
        except BlockingIOError:
            if server.started_here:
                pending.touch()  # another session still uses it: the last one stops it
        else:
            if server.started_here or pending.exists():
                pending.unlink(missing_ok=True)
                subprocess.run(
                    ["bash", str(DOWN)], env=env, capture_output=True, timeout=STOP_TIMEOUT_S
                )
        finally:
            users.close()


@dataclass
class Scope:
    """One test's own tenant, tag-free prefixes and cleanup list."""

    admin: Admin
    tenant: str
    v4: str
    v6: str
    prefix_ids: dict[str, int] = field(default_factory=dict)

    def add_prefix(self, cidr: str, **extra: Any) -> int:
        data = self.admin.req(
            "POST", "/api/ipam/prefixes/", json={"prefix": cidr, "status": "active", **extra}
        )
        self.prefix_ids[cidr] = data["id"]
        return int(data["id"])

    def reserve(self, address: str) -> int:
        data = self.admin.req(
            "POST",
            "/api/ipam/ip-addresses/",
            json={"address": address, "status": "reserved", "tenant": {"slug": self.tenant}},
        )
        return int(data["id"])

    def cleanup(self) -> None:
        ids = {rec["id"] for rec in self.admin.addresses(tenant=self.tenant)}
        for cidr in (*self.prefix_ids, self.v4, self.v6):
            ids |= {rec["id"] for rec in self.admin.addresses(parent=cidr)}
        if ids:  # one bulk DELETE: per-address deletes cost ~0.3 s each
            self.admin.http.request(
                "DELETE", "/api/ipam/ip-addresses/", json=[{"id": i} for i in sorted(ids)]
            )
        for pid in self.prefix_ids.values():
            self.admin.http.delete(f"/api/ipam/prefixes/{pid}/")
        found = self.admin.req("GET", "/api/tenancy/tenants/", params={"slug": self.tenant})
        for t in found["results"]:
            self.admin.http.delete(f"/api/tenancy/tenants/{t['id']}/")


@pytest.fixture
def nb_scope(netbox_server: NetboxServer) -> Iterator[Scope]:
    """A tenant and two random, unused ranges (a v4 /24 and a v6 /64) for one test."""
    admin = netbox_server.admin()
    slug = f"t-{secrets.token_hex(4)}"
    admin.req("POST", "/api/tenancy/tenants/", json={"name": slug, "slug": slug})
    rnd = secrets.randbelow(2**16)
    v4 = f"10.{rnd >> 8}.{rnd & 0xFF}.0/24"
    v6 = f"fd00:{secrets.randbelow(2**16):x}:{rnd:x}::/64"
    scope = Scope(admin, slug, v4, v6)
    try:
        yield scope
    finally:
        scope.cleanup()
        admin.http.close()
