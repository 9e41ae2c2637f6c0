"""A namespace test bed for gossip: N namespaces on one bridge, one member process in each.

Used by tests/netns/test_gossip_netns.py and ``purelb bench gossip`` (root only).
Topology (research/netns-bird.md section 1): namespace ``<prefix>l`` holds bridge ``br0``;
node i gets namespace ``<prefix><letter>`` with ``eth0`` = 172.31.255.(11+i)/24, and its veth
peer on the bridge. Each member is ``python -m purelb.election.member`` started through
``ip netns exec`` (which execs, so the Popen pid is the member: SIGKILL hits it, not a
wrapper), with PR_SET_PDEATHSIG so it dies with the harness.

The harness is synchronous: :meth:`GossipLab.poll` multiplexes every member's stdout with
``selectors`` and stamps each JSON line with ``time.monotonic()`` on arrival, so detection
times are measured on one clock. Cleanup (``__exit__``) kills members by pid, then every
process still inside a namespace (``ip netns pids``), then deletes the namespaces, even
after a failure.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SUBNET = "172.31.255.0/24"
PORT = 7934
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Line:
    """One JSON line from a member, stamped on arrival."""

    at: float
    node: int
    data: dict[str, object]


@dataclass
class MemberProcess:
    node: int
    name: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    buffer: bytes = b""
    lines: list[Line] = field(default_factory=list)


class GossipLab:
    """Create with ``with GossipLab(3, prefix="plg") as lab:``; see the module docstring."""

    def __init__(self, nodes: int, *, prefix: str, cluster: str = "lab",
                 timings: str = "lan", report_interval_s: float = 0.0) -> None:
        if not 2 <= nodes <= 26:
            raise ValueError(f"nodes must be in 2..26, got {nodes}")
        self.nodes = nodes
        self.prefix = prefix
        self.base = f"{prefix}{os.getpid()}"
        if len(self.base) + 1 > 15:
            raise ValueError(f"namespace prefix {self.base!r} too long for 15-char names")
        self.cluster = cluster
        self.timings = timings
        self.report_interval_s = report_interval_s
        self.members: dict[int, MemberProcess] = {}
        self._selector = selectors.DefaultSelector()
        self._tmp = tempfile.TemporaryDirectory(prefix="purelb-gossip-lab-")
        self.keyring_file = Path(self._tmp.name) / "keyring.json"
        self.write_keyring({"k1": os.urandom(32)})
        self._namespaces: list[str] = []

    # -- topology ------------------------------------------------------------------------

    def ns(self, node: int) -> str:
        return f"{self.base}{chr(ord('a') + node)}"

    def addr(self, node: int) -> str:
        return f"172.31.255.{11 + node}"

    def __enter__(self) -> GossipLab:
        sweep_stale(self.prefix)
        try:
            lan = f"{self.base}l"
            self._add_ns(lan)
            _ip("-n", lan, "link", "add", "br0", "type", "bridge", "stp_state", "0")
            _ip("-n", lan, "link", "set", "br0", "up")
            for node in range(self.nodes):
                ns = self.ns(node)
                self._add_ns(ns)
                port = f"p{node}"
                _ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
                _ip("-n", lan, "link", "set", port, "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(node)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")  # lo is down in a new namespace

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for m in list(self.members.values()):
            self._kill(m)
        for ns in reversed(self._namespaces):
            _delete_ns(ns)
        self._namespaces.clear()
        self._selector.close()
        self._tmp.cleanup()

    # -- members -------------------------------------------------------------------------

    def write_keyring(self, secrets: dict[str, bytes], *, primary: str | None = None) -> None:
        data = {name: base64.b64encode(raw).decode() for name, raw in secrets.items()}
        if primary is not None:
            data["primary"] = base64.b64encode(primary.encode()).decode()
        tmp = self.keyring_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.keyring_file)  # atomic: a member never reads half a file

    def start(self, node: int, *, seeds: list[int] | None = None) -> MemberProcess:
        name = f"node{node}"
        seeds = [0] if seeds is None else seeds
        argv = [
            "ip", "netns", "exec", self.ns(node), sys.executable, "-m",
            "purelb.election.member", "--name", name, "--bind", f"{self.addr(node)}:{PORT}",
            "--cluster", self.cluster, "--keyring-file", str(self.keyring_file),
            "--subnets-from", "eth0", "--timings", self.timings,
            "--report-interval", str(self.report_interval_s),
        ]
        for s in seeds:
            if s != node:
                argv += ["--seed", f"{self.addr(s)}:{PORT}"]
        stderr_path = Path(self._tmp.name) / f"{name}.{len(self.members)}.{time.monotonic_ns()}.err"
        with stderr_path.open("wb") as stderr:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        member = MemberProcess(node, name, proc, stderr_path=stderr_path)
        self.members[node] = member
        self._selector.register(proc.stdout, selectors.EVENT_READ, member)
        return member

    def signal(self, node: int, signum: int) -> float:
        """Send a signal; returns the monotonic time it was sent."""
        at = time.monotonic()
        os.kill(self.members[node].proc.pid, signum)
        return at

    def kill(self, node: int) -> float:
        """SIGKILL a member (a hard failure); returns when."""
        at = self.signal(node, signal.SIGKILL)
        self._kill(self.members.pop(node))
        return at

    def _kill(self, m: MemberProcess) -> None:
        stdout: IO[bytes] | None = m.proc.stdout
        if stdout is not None:
            try:
                self._selector.unregister(stdout)
            except (KeyError, ValueError):
                pass
        try:
            os.killpg(m.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        m.proc.wait(timeout=5)
        if stdout is not None:
            stdout.close()
        self.members.pop(m.node, None)

    # -- observing -----------------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[Line]:
        """Read every complete line that arrives within ``timeout_s`` (returns early on any)."""
        out: list[Line] = []
        for key, _ in self._selector.select(timeout_s):
            member: MemberProcess = key.data
            stream = key.fileobj
            assert not isinstance(stream, int)
            try:
                chunk = os.read(stream.fileno(), 65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            now = time.monotonic()
            if not chunk:
                self._selector.unregister(stream)
                continue
            member.buffer += chunk
            *complete, member.buffer = member.buffer.split(b"\n")
            for raw in complete:
                line = Line(now, member.node, json.loads(raw))
                member.lines.append(line)
                out.append(line)
        return out

    def wait_for(self, predicate: Callable[[Line], bool], *, timeout_s: float,
                 what: str) -> Line:
        """Poll until ``predicate(line)`` is true for an arriving line; return that line."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for line in self.poll(left):
                if predicate(line):
                    return line
        raise TimeoutError(f"{what}: not seen within {timeout_s} s; {self.diagnose()}")

    def diagnose(self) -> str:
        """Exit codes and stderr tails of the members (for failure messages)."""
        parts = []
        for m in self.members.values():
            try:
                tail = m.stderr_path.read_text(errors="replace")[-800:]
            except OSError:
                tail = "<no stderr file>"
            parts.append(f"{m.name}: returncode={m.proc.poll()} stderr={tail!r}")
        return "; ".join(parts)

    def wait_all(self, nodes: list[int], predicate: Callable[[Line], bool], *,
                 timeout_s: float, what: str) -> dict[int, Line]:
        """Wait until each of ``nodes`` emitted a line matching ``predicate``."""
        seen: dict[int, Line] = {}
        deadline = time.monotonic() + timeout_s
        while set(seen) != set(nodes):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: only {sorted(seen)} of {nodes} within "
                                   f"{timeout_s} s; {self.diagnose()}")
            for line in self.poll(left):
                if line.node in nodes and line.node not in seen and predicate(line):
                    seen[line.node] = line
        return seen

    def wait_converged(self, nodes: list[int], *, timeout_s: float) -> None:
        """Wait until every node in ``nodes`` has reported all the others alive."""
        names = {f"node{n}" for n in nodes}
        alive: dict[int, set[str]] = {n: set() for n in nodes}
        for n in nodes:  # lines read before this call count too
            for line in self.members[n].lines:
                _track(alive[n], line)
        deadline = time.monotonic() + timeout_s
        while any(alive[n] != names - {f"node{n}"} for n in nodes):
            left = deadline - time.monotonic()
            if left <= 0:
                history = {n: [(round(ln.at, 3), ln.data.get("kind"), ln.data.get("member"))
                               for ln in self.members[n].lines
                               if ln.data.get("event") == "member"] for n in nodes}
                raise TimeoutError(f"not converged within {timeout_s} s: {alive}; "
                                   f"events: {history}; {self.diagnose()}")
            for line in self.poll(left):
                if line.node in alive:
                    _track(alive[line.node], line)

    def stats(self, node: int, *, timeout_s: float = 3.0) -> dict[str, object]:
        """Ask a member for a stats line (SIGUSR1) and return it."""
        self.signal(node, signal.SIGUSR1)
        line = self.wait_for(lambda ln: ln.node == node and ln.data.get("event") == "stats",
                             timeout_s=timeout_s, what=f"stats of node{node}")
        return line.data


def _delete_ns(ns: str) -> None:
    """Kill what runs inside (by pid, daemons included), then delete the namespace; an
    ``ip netns del`` with a live process would only hide it (research/netns-bird.md 4)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def sweep_stale(prefix: str) -> None:
    """Delete ``<prefix><pid><letter>`` namespaces whose creating process is gone (a harness
    killed before its cleanup ran). Namespaces of live harnesses are left alone."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=False).stdout
    for ns in (line.split()[0] for line in listing.splitlines() if line.strip()):
        digits = ns[len(prefix):-1]
        if not ns.startswith(prefix) or not digits.isdigit():
            continue
        try:
            os.kill(int(digits), 0)
        except ProcessLookupError:
            _delete_ns(ns)
        except PermissionError:
            pass  # alive, owned by someone else


def _track(alive: set[str], line: Line) -> None:
    d = line.data
    if d.get("event") != "member":
        return
    name = str(d["member"])
    if d["kind"] in ("joined", "alive") or (d["kind"] == "present" and d["state"] == "ALIVE"):
        alive.add(name)
    elif d["kind"] in ("dead", "left", "reaped", "suspect"):
        alive.discard(name)
