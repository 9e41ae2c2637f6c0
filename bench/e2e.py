"""``purelb bench e2e``: Services created through the API -> ingress written by the allocator.

Three processes, as in a cluster: ``purelb apiserver`` (memory storage, the CRDs loaded),
``purelb allocator`` (leader election on, no client-side throttle) and this load
generator. The generator speaks raw HTTP/1.1 over keep-alive Trio sockets with
pre-formatted requests, so it costs the shared cores as little as possible, and watches
Services to stamp the moment each one's ``status.loadBalancer.ingress`` appears.

Phases:

* **burst**: ``--services`` Services created by ``--clients`` connections as fast as the
  API server takes them; Services/s = created / (last ingress - first create).
* **paced**: ``--paced`` Services at ``--rate`` per second (one every 1/rate s); the
  create -> ingress latency percentiles at a steady, moderate load.
* **restart**: the allocator is stopped (SIGTERM) and started again with every Service
  in place; time until ``/readyz`` (caches synced, lease held, import done) and until a
  new Service gets its address.

Allocator CPU (user+system) and RSS come from ``/proc/<pid>/stat`` and ``/status``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench._procs import cpu_seconds, start_apiserver
from bench._rawhttp import HEAD_END, RawConnection
from purelb import fastjson

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "deploy" / "crds"
NAMESPACE = "bench"
INSTALL_NS = "purelb-system"
SCHEMA = 2

DEFAULT_SERVICES = 10_000
"""The issue's memory target is stated at 10,000 Services."""
DEFAULT_PACED = 1_000
DEFAULT_RATE = 100.0
"""The issue's latency target is stated at 100 Services/s."""
DEFAULT_CLIENTS = 16
"""Concurrent create connections: enough to keep a single-threaded API server busy."""
QUICK = {"services": 1_000, "paced": 200}
STARTUP_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 120.0
"""How long the allocator may lag behind the last create before the run fails."""
POOL = "10.128.0.0/14"
"""262,144 addresses: never the bottleneck, and large enough for any --services."""
TARGETS = {"services_per_s": 1000.0, "p50_ms_at_100_per_s": 20.0, "rss_mb_at_10k": 60.0}
SETTLE_WINDOW_S = 0.1
SETTLE_IDLE_CPU_S = 0.005
"""Idle: under 5% of a core over the window (lease renewals, metrics)."""
SETTLE_TIMEOUT_S = 30.0


@dataclass(slots=True)
class PhaseResult:
    name: str
    services: int
    seconds: float
    services_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    allocator_cpu_s: float
    allocator_cpu_pct: float
    allocator_cpu_ms_per_service: float
    """CPU the allocator spent per Service: the figure that does not depend on how busy
    the shared machine was (1000 / it = Services/s one allocator core could do)."""
    allocator_rss_mb: float
    creates_s: float
    """Time the generator spent creating (the API server's share of the phase)."""
    apiserver_cpu_pct: float
    apiserver_cpu_ms_per_service: float
    generator_cpu_ms_per_service: float
    """This load generator's own CPU (creates and the ingress watch) per Service."""
    total_cpu_ms_per_service: float
    """All three processes: 2 cores / this = the Services/s this machine could sustain
    if the work overlapped perfectly (the bound the burst figure is measured against)."""
    settle_s: float
    """After the last ingress, how long until the allocator went idle (Events and watch
    echoes still being handled); its CPU is counted in the phase."""
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", type=int, default=DEFAULT_SERVICES,
                        help="Services in the burst phase (default %(default)s)")
    parser.add_argument("--paced", type=int, default=DEFAULT_PACED,
                        help="Services in the paced phase (default %(default)s)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help="creates per second in the paced phase (default %(default)s)")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['services']} burst + {QUICK['paced']} paced Services")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the report as JSON here")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH",
                        help="write a PNG chart (latency CDF, completions over time) here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------- raw HTTP


def _request(method: str, path: str, port: int, obj: Any = None) -> bytes:
    body = json.dumps(obj).encode() if obj is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            # no node ports: the node port range (2,768 ports) would cap the run
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                     "allocateLoadBalancerNodePorts": False, "selector": {"app": name}}}


async def _call(port: int, method: str, path: str, obj: Any = None) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        return await RawConnection(stream).request(_request(method, path, port, obj))


# ---------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_apiserver(tmp: Path) -> tuple[trio.Process, int, Path]:
    kubeconfig = tmp / "kubeconfig"
    proc, port = await start_apiserver("--crd", str(CRD_DIR), "--kubeconfig-out",
                                       str(kubeconfig), timeout_s=STARTUP_TIMEOUT_S)
    return proc, port, kubeconfig


async def _start_allocator(kubeconfig: Path, metrics_port: int) -> trio.Process:
    cmd = [sys.executable, "-m", "purelb", "allocator", "--kubeconfig", str(kubeconfig),
           "--namespace", INSTALL_NS, "--host", "127.0.0.1", "--port", str(metrics_port),
           "--kube-qps", "0", "--log-level", "warning", "--identity", "bench"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURELB_")}
    return await trio.lowlevel.open_process(cmd, env=env, stdout=subprocess.DEVNULL)


async def _wait_ready(metrics_port: int) -> float:
    began = trio.current_time()
    with trio.fail_after(STARTUP_TIMEOUT_S):
        while True:
            try:
                status, _ = await _call(metrics_port, "GET", "/readyz")
                if status == 200:
                    return trio.current_time() - began
            except OSError:
                pass
            await trio.sleep(0.02)


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------- watching


class _Ingress:
    """When each Service's ingress first appeared (generator clock)."""

    def __init__(self, bar: Any) -> None:
        self.seen: dict[str, float] = {}
        self._bar = bar
        self._moved = trio.Event()

    def feed(self, line: bytes) -> None:
        if b'"ingress"' not in line:
            return
        obj = fastjson.loads(line)["object"]
        name = obj["metadata"]["name"]
        if name in self.seen or not ((obj.get("status") or {}).get("loadBalancer") or {}).get(
                "ingress"):
            return
        self.seen[name] = trio.current_time()
        self._bar.update(1)
        self._moved.set()
        self._moved = trio.Event()

    async def wait_for(self, names: list[str]) -> None:
        with trio.fail_after(CATCH_UP_TIMEOUT_S):
            while any(n not in self.seen for n in names):
                await self._moved.wait()


async def _watch(port: int, rv: str, ingress: _Ingress, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            (f"GET /api/v1/namespaces/{NAMESPACE}/services?watch=true&resourceVersion={rv}"
             f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode())
        task_status.started()
        buf = b""
        head_done = False
        while chunk := await stream.receive_some(1 << 20):
            buf += chunk
            if not head_done:
                if HEAD_END not in buf:
                    continue
                buf = buf.split(HEAD_END, 1)[1]
                head_done = True
            # chunked transfer: size lines are hex digits, event lines are JSON objects
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    ingress.feed(line)


# ---------------------------------------------------------------------- phases


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _create(conn: RawConnection, port: int, name: str, created: dict[str, float]) -> None:
    created[name] = trio.current_time()
    status, body = await conn.request(
        _request("POST", f"/api/v1/namespaces/{NAMESPACE}/services", port, _service(name)))
    if status != 201:
        raise RuntimeError(f"creating Service {name} failed: HTTP {status} {body[:200]!r}")


async def _burst(port: int, names: list[str], clients: int, created: dict[str, float]) -> None:
    async def client(mine: list[str]) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = RawConnection(stream)
            for name in mine:
                await _create(conn, port, name, created)

    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(client, names[c::clients])


async def _paced(port: int, names: list[str], rate: float, created: dict[str, float]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = RawConnection(stream)
        start = trio.current_time()
        for i, name in enumerate(names):
            await trio.sleep_until(start + i / rate)
            await _create(conn, port, name, created)


@dataclass(slots=True)
class _CpuMark:
    """CPU seconds of the allocator, the API server and this process at one moment."""

    allocator: float
    apiserver: float
    generator: float

    @classmethod
    def take(cls, alloc: trio.Process, api: trio.Process) -> _CpuMark:
        return cls(cpu_seconds(alloc.pid), cpu_seconds(api.pid), _own_cpu_s())


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _settle(alloc: trio.Process) -> float:
    """Wait until the allocator's CPU stops moving (it finished the phase's tail work)."""
    began = trio.current_time()
    with trio.move_on_after(SETTLE_TIMEOUT_S):
        last = cpu_seconds(alloc.pid)
        while True:
            await trio.sleep(SETTLE_WINDOW_S)
            now = cpu_seconds(alloc.pid)
            if now - last <= SETTLE_IDLE_CPU_S:
                break
            last = now
    return max(0.0, trio.current_time() - began - SETTLE_WINDOW_S)


def _phase(name: str, names: list[str], created: dict[str, float], ingress: _Ingress,
           before: _CpuMark, after: _CpuMark, rss_mb: float, creates_s: float,
           settle_s: float) -> PhaseResult:
    latencies = sorted((ingress.seen[n] - created[n]) * 1000 for n in names)
    first = min(created[n] for n in names)
    last = max(ingress.seen[n] for n in names)
    seconds = last - first
    n = len(names)
    alloc_cpu = after.allocator - before.allocator
    api_cpu = after.apiserver - before.apiserver
    gen_cpu = after.generator - before.generator
    return PhaseResult(
        name=name, services=len(names), seconds=round(seconds, 3),
        services_per_s=round(len(names) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(_percentile(latencies, 50), 2), p90_ms=round(_percentile(latencies, 90), 2),
        p99_ms=round(_percentile(latencies, 99), 2), max_ms=round(latencies[-1], 2),
        allocator_cpu_s=round(alloc_cpu, 3),
        allocator_cpu_pct=round(100 * alloc_cpu / seconds, 1) if seconds > 0 else 0.0,
        allocator_cpu_ms_per_service=round(1000 * alloc_cpu / n, 3),
        allocator_rss_mb=round(rss_mb, 1), creates_s=round(creates_s, 3),
        apiserver_cpu_pct=round(100 * api_cpu / seconds, 1) if seconds > 0 else 0.0,
        apiserver_cpu_ms_per_service=round(1000 * api_cpu / n, 3),
        generator_cpu_ms_per_service=round(1000 * gen_cpu / n, 3),
        total_cpu_ms_per_service=round(1000 * (alloc_cpu + api_cpu + gen_cpu) / n, 3),
        settle_s=round(settle_s, 3),
        latencies_ms=[round(x, 3) for x in latencies])


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    burst_n = QUICK["services"] if args.quick else args.services
    paced_n = QUICK["paced"] if args.quick else args.paced
    total = burst_n + paced_n + 1
    with tempfile.TemporaryDirectory(prefix="purelb-bench-e2e-") as tmp:
        api, port, kubeconfig = await _start_apiserver(Path(tmp))
        alloc: trio.Process | None = None
        try:
            for ns in (INSTALL_NS, NAMESPACE):
                await _call(port, "POST", "/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            status, body = await _call(
                port, "POST", f"/apis/purelb.io/v1/namespaces/{INSTALL_NS}/servicegroups",
                {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
                 "metadata": {"name": "default", "namespace": INSTALL_NS},
                 "spec": {"local": {"v4pools": [{"pool": POOL, "subnet": POOL}]}}})
            if status != 201:
                raise RuntimeError(f"creating the ServiceGroup failed: HTTP {status} {body!r}")
            metrics_port = _free_port()
            alloc = await _start_allocator(kubeconfig, metrics_port)
            startup_s = await _wait_ready(metrics_port)
            rss_idle = _rss_mb(alloc.pid)
            _, listed = await _call(port, "GET", f"/api/v1/namespaces/{NAMESPACE}/services")
            rv = json.loads(listed)["metadata"]["resourceVersion"]
            created: dict[str, float] = {}
            with tqdm(total=total, desc="bench e2e", unit="svc", file=sys.stderr,
                      disable=args.no_progress) as bar:
                ingress = _Ingress(bar)
                async with trio.open_nursery() as watchers:
                    await watchers.start(_watch, port, rv, ingress)
                    burst_names = [f"burst-{i}" for i in range(burst_n)]
                    before, t0 = _CpuMark.take(alloc, api), trio.current_time()
                    await _burst(port, burst_names, args.clients, created)
                    creates_s = trio.current_time() - t0
                    await ingress.wait_for(burst_names)
                    settle_s = await _settle(alloc)  # the paced phase starts from quiet
                    burst = _phase("burst", burst_names, created, ingress, before,
                                   _CpuMark.take(alloc, api), _rss_mb(alloc.pid), creates_s,
                                   settle_s)
                    paced_names = [f"paced-{i}" for i in range(paced_n)]
                    before, t0 = _CpuMark.take(alloc, api), trio.current_time()
                    await _paced(port, paced_names, args.rate, created)
                    creates_s = trio.current_time() - t0
                    await ingress.wait_for(paced_names)
                    settle_s = await _settle(alloc)
                    paced = _phase("paced", paced_names, created, ingress, before,
                                   _CpuMark.take(alloc, api), _rss_mb(alloc.pid), creates_s,
                                   settle_s)
                    # restart with every Service in place: the startup barrier's cost
                    await _stop(alloc)
                    alloc = await _start_allocator(kubeconfig, metrics_port)
                    restart_ready_s = await _wait_ready(metrics_port)
                    t0 = trio.current_time()
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    async with stream:
                        await _create(RawConnection(stream), port, "after-restart", created)
                    await ingress.wait_for(["after-restart"])
                    first_after_s = trio.current_time() - t0
                    rss_restarted = _rss_mb(alloc.pid)
                    watchers.cancel_scope.cancel()
        finally:
            if alloc is not None:
                await _stop(alloc)
            await _stop(api)
    from purelb import fast

    return {
        "schema": SCHEMA,
        "quick": bool(args.quick),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "note": "shared with other workloads; treat small differences as noise"},
        "hot_path": fast.IMPLEMENTATION,
        "clients": args.clients,
        "rate": args.rate,
        "phases": [asdict(burst), asdict(paced)],
        "startup": {"first_start_ready_s": round(startup_s, 3),
                    "restart_ready_s": round(restart_ready_s, 3),
                    "restart_services": burst_n + paced_n,
                    "first_allocation_after_restart_ms": round(first_after_s * 1000, 2)},
        "allocator_rss_mb": {"idle": round(rss_idle, 1),
                             "after_burst": burst.allocator_rss_mb,
                             "end": paced.allocator_rss_mb,
                             "restarted_with_all": round(rss_restarted, 1)},
        "targets": TARGETS,
    }


def _print(report: dict[str, Any]) -> None:
    print(f"bench e2e  (hot path: {report['hot_path']}; {report['machine']['cpus']} CPUs, "
          f"{report['machine']['note']})")
    print(f"{'phase':8} {'services':>8} {'seconds':>8} {'svc/s':>8} {'p50 ms':>8} "
          f"{'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'alloc CPU':>10} {'RSS MB':>7} "
          f"{'API CPU':>8} {'creates s':>9} {'alloc ms/svc':>12}")
    for p in report["phases"]:
        print(f"{p['name']:8} {p['services']:>8} {p['seconds']:>8.2f} {p['services_per_s']:>8.1f} "
              f"{p['p50_ms']:>8.2f} {p['p90_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['max_ms']:>8.1f} "
              f"{p['allocator_cpu_pct']:>9.1f}% {p['allocator_rss_mb']:>7.1f} "
              f"{p['apiserver_cpu_pct']:>7.1f}% {p['creates_s']:>9.2f} "
              f"{p['allocator_cpu_ms_per_service']:>12.2f}")
    cpus = report["machine"]["cpus"] or 1
    print("CPU ms per Service (allocator + API server + this generator = total; "
          f"{cpus} cores / total = the rate this machine can sustain):")
    for p in report["phases"]:
        total = p["total_cpu_ms_per_service"]
        bound = 1000 * cpus / total if total > 0 else 0.0
        print(f"  {p['name']:8} {p['allocator_cpu_ms_per_service']:.3f} + "
              f"{p['apiserver_cpu_ms_per_service']:.3f} + "
              f"{p['generator_cpu_ms_per_service']:.3f} = {total:.3f} ms -> "
              f"{bound:,.0f} Services/s; allocator alone: "
              f"{1000 / max(p['allocator_cpu_ms_per_service'], 1e-9):,.0f} Services/s per core;"
              f" allocator idle {p['settle_s']:.2f} s after the last ingress")
    s = report["startup"]
    print(f"startup: ready in {s['first_start_ready_s']:.2f} s (empty); restart with "
          f"{s['restart_services']} Services ready in {s['restart_ready_s']:.2f} s, first new "
          f"allocation {s['first_allocation_after_restart_ms']:.1f} ms later")
    r = report["allocator_rss_mb"]
    print(f"allocator RSS MB: idle {r['idle']}, after burst {r['after_burst']}, end {r['end']}, "
          f"restarted with all {r['restarted_with_all']}")
    t = report["targets"]
    print(f"targets: >= {t['services_per_s']:.0f} svc/s burst; p50 <= {t['p50_ms_at_100_per_s']} "
          f"ms at 100/s; RSS <= {t['rss_mb_at_10k']} MB at 10k Services")


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for p in report["phases"]:
        lat = p["latencies_ms"]
        axes[0].plot(lat, [i / max(1, len(lat) - 1) for i in range(len(lat))],
                     label=f"{p['name']} ({p['services']} svc)")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("create -> ingress (ms)")
    axes[0].set_ylabel("fraction of Services")
    axes[0].set_title("latency CDF")
    axes[0].legend()
    axes[1].bar([p["name"] for p in report["phases"]],
                [p["services_per_s"] for p in report["phases"]])
    axes[1].axhline(report["targets"]["services_per_s"], color="red", linestyle="--",
                    label="target")
    axes[1].set_ylabel("Services/s (create -> ingress)")
    axes[1].set_title("throughput")
    axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    for name in ("services", "paced", "clients"):
        if getattr(args, name) < 1:
            print(f"purelb bench e2e: --{name} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if not args.rate > 0:
        print(f"purelb bench e2e: --rate must be > 0, got {args.rate}", file=sys.stderr)
        return 2
    report = trio.run(_main, args)
    _print(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"json: {args.json}")
    if args.plot is not None:
        write_plot(report, args.plot)
        print(f"chart: {args.plot}")
    return 0
