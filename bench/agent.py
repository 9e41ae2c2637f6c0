"""``purelb bench agent``: netlink address operations per second, writer vs ``ip -batch``.

In a fresh network namespace (removed afterwards, also on failure) it times:

- the NetlinkWriter reconciling N addresses onto the virtual interface (add), a no-op
  reconcile of the same set, and a reconcile back to nothing (delete);
- the same N adds and deletes through ``ip -n NS -batch FILE``, the reference, in the same run;
- both again with the N addresses spread over ``--spread`` interfaces.

The spread matters because the kernel walks an interface's address list on every IPv4
add (and IPv6 deletes walk the FIB), so per-interface cost grows with the count: with
10,000 on one interface the kernel itself is the limit for both tools. Spread over ten
interfaces it is not, and the figure is the writer's own rate.

Needs root (namespaces). Prints a table; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import trio

from purelb.agent.netlink import NetlinkWriter
from purelb.agent.records import AddressKind, AddrSpec
from purelb.agent.settings import AgentSettings, VirtualKind

V4_BASE = ipaddress.IPv4Address("10.64.0.0")
V6_BASE = ipaddress.IPv6Address("fd00:b:e:c::")


@dataclass
class Figure:
    tool: str
    layout: str
    op: str
    count: int
    seconds: float
    user_cpu_s: float
    sys_cpu_s: float

    @property
    def ops_per_s(self) -> float:
        return self.count / self.seconds if self.seconds else float("inf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=10_000, help="addresses (default 10000)")
    parser.add_argument("--family", type=int, choices=(4, 6), default=4)
    parser.add_argument(
        "--spread", type=int, default=10, help="interfaces for the spread layout (default 10)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--e2e", action="store_true",
                        help="instead: create->address, failover, RSS and idle CPU of real "
                             "agents in a namespace cluster (bench/agent_e2e.py)")
    parser.add_argument("--trials", type=int, default=20, help="--e2e failover trials (20)")
    parser.add_argument("--creates", type=int, default=30, help="--e2e Services created (30)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="--e2e seconds of idle CPU measurement (10)")


def _addresses(family: int, count: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    if family == 4:
        return [ipaddress.IPv4Interface((int(V4_BASE) + i, 32)) for i in range(count)]
    return [ipaddress.IPv6Interface((int(V6_BASE) + i, 128)) for i in range(count)]


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def _make_ns(name: str, interfaces: list[str]) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    _ip(name, "link", "set", "lo", "up")
    for ifname in interfaces:
        _ip(name, "link", "add", ifname, "type", "ifb")
        _ip(name, "link", "set", ifname, "up")


def _del_ns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _timed(fn) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), os.times()
    fn()
    t1, c1 = time.perf_counter(), os.times()
    # children_* covers `ip`; the writer runs in this process.
    user = (c1.user - c0.user) + (c1.children_user - c0.children_user)
    system = (c1.system - c0.system) + (c1.children_system - c0.children_system)
    return t1 - t0, user, system


def _bench_writer(ns: str, layout: str, placed: list[tuple[str, object]]) -> list[Figure]:
    out: list[Figure] = []

    async def main() -> None:
        settings = AgentSettings(virtual_kind=VirtualKind.EXISTING)
        async with await NetlinkWriter.open(ns, settings) as nl:
            index = {link.name: link.index for link in await nl.dump_links()}
            specs = [
                settings.spec_for(AddressKind.VIRTUAL, index[ifname], iface)  # type: ignore[arg-type]
                for ifname, iface in placed
            ]
            for op, want in (("add", specs), ("noop", specs), ("delete", [])):
                result: list = []

                async def step(want: list[AddrSpec] = want, result: list = result) -> None:
                    result.append(await nl.reconcile(want))

                t0, c0 = time.perf_counter(), os.times()
                await step()
                t1, c1 = time.perf_counter(), os.times()
                (r,) = result
                if not r.ok:
                    raise SystemExit(f"writer {op}: {len(r.errors)} refused, first: {r.errors[0]}")
                out.append(
                    Figure("writer", layout, op, len(placed), t1 - t0,
                           c1.user - c0.user, c1.system - c0.system)
                )  # fmt: skip

    trio.run(main)
    return out


def _bench_ip(ns: str, layout: str, placed: list[tuple[str, object]]) -> list[Figure]:
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="purelb-bench-") as tmp:
        for op, verb in (("add", "add"), ("delete", "del")):
            path = os.path.join(tmp, f"{op}.batch")
            with open(path, "w") as f:
                for ifname, iface in placed:
                    extra = " nodad" if verb == "add" and iface.version == 6 else ""  # type: ignore[attr-defined]
                    f.write(f"address {verb} {iface} dev {ifname}{extra}\n")
            secs, user, system = _timed(lambda p=path: _ip(ns, "-batch", p))
            out.append(Figure("ip -batch", layout, op, len(placed), secs, user, system))
    return out


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("purelb bench agent needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.e2e:
        from bench.agent_e2e import run_e2e

        if args.trials < 1 or args.creates < 1:
            print("--trials and --creates must be >= 1", file=sys.stderr)
            return 2
        return run_e2e(trials=args.trials, creates=args.creates, idle_s=args.idle,
                       json_path=args.json)
    if args.count < 1 or args.spread < 1:
        print("--count and --spread must be >= 1", file=sys.stderr)
        return 2
    addrs = _addresses(args.family, args.count)
    spread = [f"lb{i}" for i in range(args.spread)]
    layouts = {
        "1 interface": [("kube-lb0", a) for a in addrs],
        f"{args.spread} interfaces": [(spread[i % args.spread], a) for i, a in enumerate(addrs)],
    }
    figures: list[Figure] = []
    ns = f"pla{os.getpid()}b"
    for layout, placed in layouts.items():
        interfaces = sorted({ifname for ifname, _ in placed})
        for tool in (_bench_writer, _bench_ip):
            _make_ns(ns, interfaces)
            try:
                figures += tool(ns, layout, placed)
            finally:
                _del_ns(ns)
    print(f"IPv{args.family}, {args.count} addresses (kernel {os.uname().release})")
    print(
        f"{'tool':<10} {'layout':<14} {'op':<7} {'seconds':>8} {'ops/s':>9} {'user':>6} {'sys':>6}"
    )
    for f in figures:
        print(
            f"{f.tool:<10} {f.layout:<14} {f.op:<7} {f.seconds:8.3f} {f.ops_per_s:9.0f} "
            f"{f.user_cpu_s:6.2f} {f.sys_cpu_s:6.2f}"
        )
    ratios = {}
    for layout in layouts:
        for op in ("add", "delete"):
            w = next(f for f in figures if (f.tool, f.layout, f.op) == ("writer", layout, op))
            r = next(f for f in figures if (f.tool, f.layout, f.op) == ("ip -batch", layout, op))
            ratios[f"{layout} {op}"] = w.ops_per_s / r.ops_per_s
            print(f"writer / ip -batch, {layout}, {op}: {ratios[f'{layout} {op}']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "family": args.family,
                    "count": args.count,
                    "kernel": os.uname().release,
                    "figures": [asdict(x) | {"ops_per_s": x.ops_per_s} for x in figures],
                    "writer_over_ip_batch": ratios,
                },
                f,
                indent=2,
            )
    return 0
