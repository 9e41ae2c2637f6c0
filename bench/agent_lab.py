"""A whole purelb cluster in network namespaces: API server, allocator, agents, BIRD.

Used by tests/netns/test_agent_e2e_ns.py and ``purelb bench agent --e2e``. Topology
(research/netns-bird.md section 1)::

    root ns  <P>h 172.31.L.254 --+          API server (HTTPS + token) on 172.31.L.254
                                  |
    <P>l   bridge br0 -----------+-- <P>r  router  .1   ::1   allocator, BIRD (router)
                                  +-- <P>n1 node1  .11  ::11  agent, UDP echo, BIRD
                                  +-- <P>n2 node2  .12  ::12  ...
                                  +-- <P>n3 node3  .13  ::13
                                  +-- <P>c  client .100 ::100 (routes to the virtual nets)

LAN 172.31.L.0/24 (L chosen free in the root namespace, default 255) and fd00:db8:ff::/64;
virtual pools 172.31.254.0/24 and fd00:db8:fe::/64 exist only inside the namespaces.
Logs and state files live in a temporary directory, removed at the end unless
``PURELB_LAB_KEEP=1``. Every process is started with PR_SET_PDEATHSIG and in its own
session; ``close`` kills them by process group, then every pid left in each namespace,
then deletes the namespaces (in that order: ``ip netns del`` with a live process leaves
the namespace alive).
"""

from __future__ import annotations

import base64
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from purelb.agent.netns import open_socket_sync

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "purelb-system"
ECHO_PORT = 7777
GOSSIP_PORT = 7934
VIRTUAL_V4 = ipaddress.ip_network("172.31.254.0/24")
VIRTUAL_V6 = ipaddress.ip_network("fd00:db8:fe::/64")
LAN_V6 = ipaddress.ip_network("fd00:db8:ff::/64")
ROUTER_AS, NODE_AS = 64500, 64512
#: how long a process may take to start (Python imports on a shared 2-core machine)
START_TIMEOUT_S = 20.0

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    return sh("ip", *(["-n", ns] if ns else []), *args, check=check)


def sysctl(ns: str, **values: object) -> None:
    sh("ip", "netns", "exec", ns, "sysctl", "-qw",
       *(f"{k.replace('__', '.')}={v}" for k, v in values.items()))


def free_lan_octet() -> int:
    """A third octet L with no 172.31.L.0/24 route in the root namespace (255 first)."""
    used = ip("-4", "route", "show")
    for octet in (255, *range(253, 200, -1)):
        if f"172.31.{octet}." not in used:
            return octet
    raise RuntimeError("no free 172.31.L.0/24 in the root namespace")


def delete_ns(ns: str) -> None:
    for pid in sh("ip", "netns", "pids", ns, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    ip("netns", "del", ns, check=False)


@dataclass
class Proc:
    name: str
    ns: str | None
    popen: subprocess.Popen[bytes]
    log: Path
    offset: int = 0
    """Size of the (appended) log when this process started: its own output follows."""

    def output(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Api:
    """Minimal sync REST client for the harness (the daemons use purelb.kube)."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        ca = Path(kubeconfig.parent / "lab-ca.pem")
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        self._http = httpx.Client(base_url=cluster["server"], timeout=10.0,
                                  verify=ssl.create_default_context(cafile=str(ca)),
                                  headers={"Authorization": f"Bearer {user['token']}"})

    def close(self) -> None:
        self._http.close()

    def req(self, method: str, path: str, body: Any = None, *,
            content_type: str = "application/json", ok: tuple[int, ...] = (200, 201)) -> Any:
        resp = self._http.request(method, path, content=None if body is None
                                  else json.dumps(body), headers={"Content-Type": content_type})
        if resp.status_code not in ok:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:400]}")
        return resp.json() if resp.content else None

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.req("POST", path, body)

    def get(self, path: str) -> Any:
        return self.req("GET", path)

    def merge(self, path: str, body: dict[str, Any]) -> Any:
        return self.req("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str) -> None:
        self.req("DELETE", path, ok=(200, 202, 404))


@dataclass
class AgentLab:
    """The cluster; use as a context manager. ``bird=True`` adds BGP (router + nodes)."""

    nodes: int = 3
    prefix: str = "pld"
    bird: bool = False
    ownership: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="agentlab-")))
    procs: dict[str, Proc] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = f"{self.prefix}{os.getpid()}"
        assert len(self.base) + 3 <= 15, self.base
        self.octet = 0
        self.api: Api | None = None
        self.kubeconfig = self.workdir / "kubeconfig"

    # ------------------------------------------------------------------ names, addresses

    def node_ns(self, k: int) -> str:
        return f"{self.base}n{k}"

    @property
    def router_ns(self) -> str:
        return f"{self.base}r"

    @property
    def client_ns(self) -> str:
        return f"{self.base}c"

    @property
    def lan_ns(self) -> str:
        return f"{self.base}l"

    def v4(self, host: int) -> str:
        return f"172.31.{self.octet}.{host}"

    def v6(self, host: int) -> str:
        return f"fd00:db8:ff::{host}"

    def node_v4(self, k: int) -> str:
        return self.v4(10 + k)

    def node_v6(self, k: int) -> str:
        return self.v6(10 + k)

    @property
    def api_host(self) -> str:
        return self.v4(254)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AgentLab:
        try:
            self._topology()
            self._control_plane()
            for k in range(1, self.nodes + 1):
                self.start_echo(k)
                self.start_agent(k, wait=False)
            for k in range(1, self.nodes + 1):
                self.wait_agent_ready(k)
            if self.bird:
                self._start_birds()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.procs.values():
            self._kill(proc)
        self.procs.clear()
        if self.api is not None:
            self.api.close()
        for ns in reversed(self.namespaces):
            delete_ns(ns)
        self.namespaces.clear()
        ip("link", "del", f"{self.base}h", check=False)
        if os.environ.get("PURELB_LAB_KEEP"):
            print(f"agent lab logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self, proc: Proc) -> None:
        try:
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _add_ns(self, ns: str, **sysctls: object) -> None:
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("link", "set", "lo", "up", ns=ns)
        # defaults before the veth exists (netns-bird.md section 1 traps)
        sysctl(ns, net__ipv6__conf__all__accept_dad=0, net__ipv6__conf__default__accept_dad=0,
               net__ipv6__conf__all__keep_addr_on_down=1,
               net__ipv6__conf__default__keep_addr_on_down=1, **sysctls)

    def _attach(self, ns: str, port: str, host: int) -> None:
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
           ns=self.lan_ns)
        ip("link", "set", port, "master", "br0", "up", ns=self.lan_ns)
        ip("addr", "add", f"{self.v4(host)}/24", "dev", "eth0", ns=ns)
        ip("addr", "add", f"{self.v6(host)}/64", "dev", "eth0", "nodad", ns=ns)
        ip("link", "set", "eth0", "up", ns=ns)

    def _topology(self) -> None:
        self.octet = free_lan_octet()
        lan = self.lan_ns
        ip("netns", "add", lan)
        self.namespaces.append(lan)
        ip("link", "set", "lo", "up", ns=lan)
        ip("link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0",
           ns=lan)
        ip("link", "set", "br0", "up", ns=lan)
        sysctl(lan, net__ipv6__conf__all__disable_ipv6=1)
        host = f"{self.base}h"
        ip("link", "add", host, "type", "veth", "peer", "name", "p-host", "netns", lan)
        ip("link", "set", "p-host", "master", "br0", "up", ns=lan)
        ip("addr", "add", f"{self.api_host}/24", "dev", host)
        ip("link", "set", host, "up")
        self._add_ns(self.router_ns, net__ipv4__ip_forward=1,
                     net__ipv6__conf__all__forwarding=1,
                     net__ipv4__conf__all__send_redirects=0,
                     net__ipv4__conf__default__send_redirects=0,
                     net__ipv4__fib_multipath_hash_policy=1,
                     net__ipv6__fib_multipath_hash_policy=1)
        self._attach(self.router_ns, "p-r", 1)
        for k in range(1, self.nodes + 1):
            ns = self.node_ns(k)
            self._add_ns(ns)
            self._attach(ns, f"p-n{k}", 10 + k)
            ip("route", "add", "default", "via", self.v4(1), ns=ns)
            ip("-6", "route", "add", "default", "via", self.v6(1), ns=ns)
        self._add_ns(self.client_ns)
        self._attach(self.client_ns, "p-c", 100)
        for net, via in ((VIRTUAL_V4, self.v4(1)), (VIRTUAL_V6, self.v6(1))):
            ip("route", "add", str(net), "via", via, ns=self.client_ns)

    # ------------------------------------------------------------------ processes

    def spawn(self, name: str, ns: str | None, argv: list[str], *,
              env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        cmd = (["ip", "netns", "exec", ns] if ns else []) + argv
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for var in ("KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            full_env.pop(var, None)
        with open(log, "ab") as out:
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent,
                                     env=full_env, cwd=REPO)
        proc = Proc(name, ns, popen, log, offset)
        self.procs[name] = proc
        return proc

    def _control_plane(self) -> None:
        with socket.socket() as s:  # a free port on the API address
            s.bind((self.api_host, 0))
            port = s.getsockname()[1]
        api = self.spawn("apiserver", None, [
            sys.executable, "-m", "purelb", "apiserver", "--listen", f"{self.api_host}:{port}",
            "--kubeconfig-out", str(self.kubeconfig), "--crd", str(REPO / "deploy" / "crds"),
            "--log-level", "WARNING"])
        wait_until(lambda: "listening on" in api.output(),
                   START_TIMEOUT_S, "API server start", api)
        self.api = a = Api(self.kubeconfig)
        a.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        key = base64.b64encode(os.urandom(32)).decode()
        a.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", {
            "metadata": {"name": "purelb-gossip"}, "data": {"k1": base64.b64encode(
                key.encode()).decode()}})
        a.create(f"/apis/purelb.io/v1/namespaces/{NAMESPACE}/lbnodeagents", {
            "apiVersion": "purelb.io/v1", "kind": "LBNodeAgent", "metadata": {"name": "default"},
            "spec": {"local": {"localint": "default", "extlbint": "kube-lb0",
                               "extlbintKind": "ifb", "sendgarp": True, "garpCount": 3,
                               "garpInterval": "100ms"}}})
        sg = f"/apis/purelb.io/v1/namespaces/{NAMESPACE}/servicegroups"
        a.create(sg, {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
                      "metadata": {"name": "lan"}, "spec": {"local": {
                          "v4pools": [{"pool": f"{self.v4(200)}-{self.v4(230)}",
                                       "subnet": f"{self.v4(0)}/24", "aggregation": "default"}],
                          "v6pools": [{"pool": f"{self.v6(200)}-{self.v6(230)}",
                                       "subnet": str(LAN_V6), "aggregation": "default"}]}}})
        a.create(sg, {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
                      "metadata": {"name": "virt"}, "spec": {"local": {
                          "v4pools": [{"pool": "172.31.254.10-172.31.254.60",
                                       "subnet": str(VIRTUAL_V4), "aggregation": "/32"}],
                          "v6pools": [{"pool": "fd00:db8:fe::10-fd00:db8:fe::60",
                                       "subnet": str(VIRTUAL_V6), "aggregation": "/128"}]}}})
        alloc = self.spawn("allocator", self.router_ns, [
            sys.executable, "-m", "purelb", "allocator", "--kubeconfig", str(self.kubeconfig),
            "--no-leader-elect", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO"])
        wait_until(lambda: "allocator_ready" in alloc.output(),
                   START_TIMEOUT_S, "allocator start", alloc)

    def start_agent(self, k: int, *, wait: bool = True) -> Proc:
        seeds = [a for j in range(1, self.nodes + 1)
                 for a in ("--gossip-seed", f"{self.node_v4(j)}:{GOSSIP_PORT}") if j != k]
        extra = ["--ownership", self.ownership, "--state-dir", str(self.workdir / f"state{k}")
                 ] if self.ownership else []
        name = f"agent{k}"
        old = self.procs.get(name)
        if old is not None:
            self._kill(old)
        proc = self.spawn(name, self.node_ns(k), [
            sys.executable, "-m", "purelb", "agent", "--kubeconfig", str(self.kubeconfig),
            "--node-name", f"node{k}", "--host", "127.0.0.1", "--port", "7472",
            "--gossip-bind", f"{self.node_v4(k)}:{GOSSIP_PORT}", *seeds, "--log-level", "INFO",
            *extra])
        if wait:
            self.wait_agent_ready(k)
        return proc

    def wait_agent_ready(self, k: int) -> None:
        proc = self.procs[f"agent{k}"]
        wait_until(lambda: "gossip_ready" in proc.output(),
                   START_TIMEOUT_S, f"agent{k} start", proc)

    def start_echo(self, k: int) -> Proc:
        code = (
            "import socket\n"
            "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n"
            f"s.bind(('::',{ECHO_PORT}))\n"
            "while True:\n"
            "    d,a=s.recvfrom(2048)\n"
            f"    s.sendto(b'node{k} '+d,a)\n")
        return self.spawn(f"echo{k}", self.node_ns(k), [sys.executable, "-c", code])

    def agent_stop(self, k: int, *, hard: bool) -> float:
        """SIGKILL (and take eth0 down) or SIGTERM node k's agent; returns the time."""
        proc = self.procs[f"agent{k}"]
        at = time.monotonic()
        if hard:
            os.kill(proc.popen.pid, signal.SIGKILL)
            ip("link", "set", "eth0", "down", ns=self.node_ns(k))
        else:
            os.kill(proc.popen.pid, signal.SIGTERM)
        return at

    def node_restore(self, k: int) -> None:
        """Link up again, default routes back (the kernel flushed them), agent restarted."""
        ns = self.node_ns(k)
        ip("link", "set", "eth0", "up", ns=ns)
        ip("route", "replace", "default", "via", self.v4(1), ns=ns)
        ip("-6", "route", "replace", "default", "via", self.v6(1), ns=ns)
        self.start_agent(k)

    # ------------------------------------------------------------------ BIRD

    def _bird_dir(self, name: str) -> Path:
        d = self.workdir / "bird" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _start_birds(self) -> None:
        d = self._bird_dir("router")
        (d / "bird.conf").write_text(f"""router id {self.v4(1)};
protocol device {{ }}
template bgp nodes {{ local as {ROUTER_AS}; hold time 3; keepalive time 1; error wait time 1, 5; }}
protocol bgp nodes4 from nodes {{ neighbor range {self.v4(0)}/24 external; dynamic name "n4_";
  ipv4 {{ import all; export none; }}; }}
protocol bgp nodes6 from nodes {{ neighbor range {LAN_V6} external; dynamic name "n6_";
  ipv6 {{ import all; export none; }}; }}
protocol kernel k4 {{ ipv4 {{ export all; }}; merge paths on; }}
protocol kernel k6 {{ ipv6 {{ export all; }}; merge paths on; }}
""")
        self.spawn("bird-router", self.router_ns,
                   ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl")])
        for k in range(1, self.nodes + 1):
            d = self._bird_dir(f"node{k}")
            (d / "bird.conf").write_text(f"""router id {self.node_v4(k)};
protocol device {{ }}
protocol direct lb {{ ipv4; ipv6; interface "kube-lb0"; }}
template bgp tor {{ local as {NODE_AS}; hold time 3; keepalive time 1; connect delay time 1;
  connect retry time 1; error wait time 1, 5; }}
protocol bgp tor4 from tor {{ neighbor {self.v4(1)} as {ROUTER_AS};
  source address {self.node_v4(k)}; ipv4 {{ import none; export where proto = "lb"; }}; }}
protocol bgp tor6 from tor {{ neighbor {self.v6(1)} as {ROUTER_AS};
  source address {self.node_v6(k)}; ipv6 {{ import none; export where proto = "lb"; }}; }}
""")
            self.spawn(f"bird-node{k}", self.node_ns(k),
                       ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl")])

    def birdc(self, name: str, command: str) -> str:
        return sh("birdc", "-s", str(self._bird_dir(name) / "bird.ctl"), command, check=False)

    def router_routes(self, prefix: str) -> list[str]:
        """Next hops of the router's kernel route to ``prefix`` (empty when there is none)."""
        fam = "-6" if ":" in prefix else "-4"
        out = ip("-j", fam, "route", "show", prefix, ns=self.router_ns)
        hops: list[str] = []
        for route in json.loads(out or "[]"):
            if route.get("protocol") != "bird":
                continue
            if "gateway" in route:
                hops.append(route["gateway"])
            hops.extend(nh["gateway"] for nh in route.get("nexthops", []) if "gateway" in nh)
        return sorted(hops)

    # ------------------------------------------------------------------ observation

    def addresses(self, k: int, ifname: str) -> set[str]:
        out = json.loads(ip("-j", "addr", "show", "dev", ifname, ns=self.node_ns(k),
                            check=False) or "[]")
        return {a["local"] for link in out for a in link.get("addr_info", [])}

    def holders(self, address: str, ifname: str = "eth0") -> list[int]:
        return [k for k in range(1, self.nodes + 1) if address in self.addresses(k, ifname)]

    def mac(self, k: int) -> str:
        (link,) = json.loads(ip("-j", "link", "show", "dev", "eth0", ns=self.node_ns(k)))
        return str(link["address"])

    def client_neighbour(self, address: str) -> str | None:
        out = json.loads(ip("-j", "neigh", "show", address, ns=self.client_ns) or "[]")
        return out[0].get("lladdr") if out else None

    def client_socket(self, family: int) -> socket.socket:
        sock = open_socket_sync(self.client_ns, family, socket.SOCK_DGRAM, 0)
        return sock

    # ------------------------------------------------------------------ Services

    def create_service(self, name: str, *, group: str, etp: str = "Cluster",
                       families: tuple[str, ...] = ("IPv4", "IPv6"),
                       annotations: dict[str, str] | None = None,
                       port: tuple[int, str] = (ECHO_PORT, "UDP")) -> None:
        assert self.api is not None
        self.api.create("/api/v1/namespaces/default/services", {
            "metadata": {"name": name, "annotations": {"purelb.io/service-group": group,
                                                       **(annotations or {})}},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": etp,
                     "ipFamilyPolicy": "RequireDualStack" if len(families) == 2
                     else "SingleStack", "ipFamilies": list(families),
                     "ports": [{"port": port[0], "protocol": port[1]}]}})

    def ingress(self, name: str, *, timeout_s: float = 10.0) -> list[str]:
        assert self.api is not None
        api = self.api
        found: list[str] = []

        def ready() -> bool:
            svc = api.get(f"/api/v1/namespaces/default/services/{name}")
            found[:] = [i["ip"] for i in (svc.get("status", {}).get("loadBalancer", {})
                                          .get("ingress") or [])]
            return bool(found)

        wait_until(ready, timeout_s, f"ingress of {name}", self.procs.get("allocator"))
        return found

    def delete_service(self, name: str) -> None:
        assert self.api is not None
        self.api.delete(f"/api/v1/namespaces/default/services/{name}")

    def set_endpoints(self, service: str, nodes: list[int]) -> None:
        """Create or replace the Service's one EndpointSlice with endpoints on ``nodes``."""
        assert self.api is not None
        path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service}-1",
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [f"10.244.{k}.5"], "nodeName": f"node{k}",
                               "conditions": {"ready": True}} for k in nodes],
                "ports": [{"port": ECHO_PORT, "protocol": "UDP"}]}
        try:
            self.api.create(path, body)
        except RuntimeError as exc:
            if "409" not in str(exc):
                raise
            self.api.merge(f"{path}/{service}-1", {"endpoints": body["endpoints"]})


def probe(sock: socket.socket, address: str, *, timeout_s: float = 0.05) -> str | None:
    """One UDP echo to ``address``: the answering node's name, or None."""
    sock.settimeout(timeout_s)
    try:
        sock.sendto(b"ping", (address, ECHO_PORT))
        while True:
            data, _src = sock.recvfrom(2048)
            if data.endswith(b"ping"):
                return data.split()[0].decode()
    except (TimeoutError, OSError):
        return None


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str,
               proc: Proc | None = None, *, interval_s: float = 0.02) -> float:
    """Poll ``pred`` until true; return the seconds it took. Raises with the log tail."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: {proc.name} exited ({proc.popen.returncode}):\n"
                               f"{proc.tail()}")
        if time.monotonic() - start > timeout_s:
            tail = f"\n{proc.name} log:\n{proc.tail()}" if proc else ""
            raise TimeoutError(f"{what}: not within {timeout_s} s{tail}")
        time.sleep(interval_s)


def settled_holder(lab: AgentLab, address: str, *, ifname: str = "eth0",
                   stable_s: float = 0.5, timeout_s: float = 15.0) -> int:
    """Wait until exactly one node has held ``address`` for ``stable_s``; return it.

    A node that rejoins may win an address back, so right after a restore two nodes can
    hold it for a moment; measuring from such a moment would be wrong.
    """
    since: list[float] = []
    holder: list[int] = []

    def check() -> bool:
        now = lab.holders(address, ifname)
        if len(now) != 1 or (holder and holder[0] != now[0]):
            since.clear()
            holder[:] = now[:1] if len(now) == 1 else []
            if len(now) == 1:
                since.append(time.monotonic())
            return False
        if not since:
            holder[:] = now
            since.append(time.monotonic())
        return time.monotonic() - since[0] >= stable_s

    wait_until(check, timeout_s, f"{address} settled on one node")
    return holder[0]


def failover(lab: AgentLab, address: str, *, hard: bool, probe_interval_s: float = 0.01,
             timeout_s: float = 10.0) -> tuple[float, int, int]:
    """Stop the holder of ``address``; seconds until the client hears another node.

    Returns (seconds, old node, new node). The old node is restored afterwards (link up,
    agent restarted) by the caller with ``lab.node_restore(old)``.
    """
    (old,) = lab.holders(address)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with lab.client_socket(family) as sock:
        assert probe(sock, address, timeout_s=1.0) == f"node{old}"
        at = lab.agent_stop(old, hard=hard)
        while True:
            who = probe(sock, address, timeout_s=probe_interval_s)
            if who is not None and who != f"node{old}":
                return time.monotonic() - at, old, int(who.removeprefix("node"))
            if time.monotonic() - at > timeout_s:
                raise TimeoutError(f"no other node answered for {address} within {timeout_s} s"
                                   f"\n{lab.procs[f'agent{old}'].tail()}")


def sweep_stale(prefix: str) -> Iterator[str]:
    """Delete namespaces of earlier runs whose process died (pid no longer exists)."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(prefix):
            continue
        digits = "".join(c for c in name[len(prefix):] if c.isdigit())
        if digits and not os.path.exists(f"/proc/{digits[:-1] or digits}"):
            delete_ns(name)
            yield name
