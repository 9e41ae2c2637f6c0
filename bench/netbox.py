"""``purelb bench netbox``: allocation latency per address against a real NetBox.

Times, one address at a time (the way Services arrive):

- ``client``: :meth:`NetboxClient.allocate` -- one ``POST available-ips`` (NetBox picks and
  records the address under its per-prefix lock);
- ``service``: a Service end to end through the pure allocator and the NetboxDriver
  (reconcile -> PENDING_EXTERNAL -> NetBox POST -> offer -> reconcile -> OK);
- ``release``: giving each address back (one DELETE).

NetBox comes from ``--url``/``--token`` (or ``NETBOX_URL``/``NETBOX_TOKEN``), or with
``--start`` from ``scripts/netbox-up.sh`` (root; stopped again afterwards only if it
started it). A tenant and a random prefix are created and removed. Prints p50/p90/max.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import Outcome
from purelb.ipam.netbox import NetboxClient, Owner
from purelb.ipam.netbox_driver import NetboxDriver
from purelb.model import Service, ServiceKey, ServicePort

REPO = Path(__file__).resolve().parents[1]
#: the state dir the real-NetBox tests use (tests/netbox/conftest.py)
DEFAULT_STATE = "/var/tmp/purelb-netbox"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=100, help="addresses per phase (100)")
    parser.add_argument("--url", default=os.environ.get("NETBOX_URL", ""))
    parser.add_argument("--token", default=os.environ.get("NETBOX_TOKEN", ""))
    parser.add_argument(
        "--start", action="store_true", help="start NetBox with scripts/netbox-up.sh (root)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def _summary(name: str, samples: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "phase": name,
        "count": len(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(len(ms) * 0.9) - 1] if ms else 0.0,
        "max_ms": ms[-1] if ms else 0.0,
    }


async def _measure(url: str, token: str, count: int) -> list[dict[str, Any]]:
    admin = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60)
    tenant = f"bench-{secrets.token_hex(3)}"
    (
        await admin.post("/api/tenancy/tenants/", json={"name": tenant, "slug": tenant})
    ).raise_for_status()
    r = secrets.randbelow(2**14)
    cidr = f"10.{128 + (r >> 8)}.{(r & 0xFC)}.0/22"  # >= 2 * count addresses for count <= 500
    pfx = await admin.post("/api/ipam/prefixes/", json={"prefix": cidr, "status": "active"})
    pfx.raise_for_status()
    results = []
    try:
        async with NetboxClient(url, token) as nb:
            prefix = await nb.prefix(cidr)
            await nb.ensure_tag()
            took, records = [], []
            for i in range(count):
                t0 = time.perf_counter()
                records.append(await nb.allocate(prefix, Owner(f"bench/c{i}"), tenant))
                took.append(time.perf_counter() - t0)
            results.append(_summary("client allocate", took))
            took = []
            for rec in records:
                t0 = time.perf_counter()
                await nb.release(rec, legacy=False)
                took.append(time.perf_counter() - t0)
            results.append(_summary("client release", took))

        alloc = Allocator()
        alloc.set_config(
            [
                {
                    "metadata": {"name": "default", "namespace": "purelb-system"},
                    "spec": {"netbox": {"url": url, "tenant": tenant, "v4prefix": cidr}},
                }
            ]
        )
        alloc.import_services([])
        driver = NetboxDriver(lambda _g: token)
        driver.configure(alloc.groups.values())
        took = []
        try:
            for i in range(count):
                svc = Service(
                    namespace="bench",
                    name=f"s{i}",
                    uid=f"u{i}",
                    type="LoadBalancer",
                    ports=(ServicePort("TCP", 80),),
                )
                t0 = time.perf_counter()
                for _ in range(4):
                    decision = alloc.reconcile(svc)
                    if decision.outcome is Outcome.OK:
                        break
                    await driver.handle(alloc, decision, svc)
                took.append(time.perf_counter() - t0)
                svc = dataclasses.replace(svc, ingress=decision.ingress or ())
                assert decision.outcome is Outcome.OK, decision
            results.append(_summary("service end to end", took))
            for i in range(count):
                await driver.handle(alloc, alloc.release(ServiceKey(f"bench/s{i}")), None)
        finally:
            await driver.aclose()
    finally:
        ids = [
            x["id"]
            for x in (
                await admin.get("/api/ipam/ip-addresses/", params={"parent": cidr, "limit": 1000})
            ).json()["results"]
        ]
        if ids:
            await admin.request("DELETE", "/api/ipam/ip-addresses/", json=[{"id": i} for i in ids])
        await admin.delete(f"/api/ipam/prefixes/{pfx.json()['id']}/")
        t = (await admin.get("/api/tenancy/tenants/", params={"slug": tenant})).json()["results"]
        for x in t:
            await admin.delete(f"/api/tenancy/tenants/{x['id']}/")
        await admin.aclose()
    return results


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 500:
        print(f"--count must be 1..500 (one /22), got {args.count}", file=sys.stderr)
        return 2
    url, token, started = args.url, args.token, False
    env_up = {**os.environ, "NETBOX_SEED_DIR": str(REPO / "tests" / "fixtures" / "netbox-seed")}
    if args.start:
        # the test fixture's state and ports, so a warm install is reused
        state = Path(env_up.setdefault("NETBOX_STATE_DIR", DEFAULT_STATE))
        ports = state / "purelb-ports.env"
        if ports.exists():
            for line in ports.read_text().splitlines():
                k, _, v = line.partition("=")
                env_up.setdefault(k, v)
        pidfile = state / "run" / "gunicorn.pid"
        was_running = pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists()
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "netbox-up.sh")],
            capture_output=True,
            text=True,
            env=env_up,
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        env = {}
        for line in proc.stdout.splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = shlex.split(v)[0] if v else ""
        url, token, started = env["NETBOX_URL"], env["NETBOX_TOKEN"], not was_running
    if not url or not token:
        print("need --url and --token (or NETBOX_URL/NETBOX_TOKEN, or --start)", file=sys.stderr)
        return 2
    try:
        results = trio.run(_measure, url, token, args.count)
    finally:
        if started:
            subprocess.run(
                ["bash", str(REPO / "scripts" / "netbox-down.sh")], capture_output=True, env=env_up
            )
    print(f"NetBox {url}, one address at a time, {args.count} per phase")
    print(f"{'phase':<22}{'p50 ms':>9}{'p90 ms':>9}{'max ms':>9}")
    for r in results:
        print(f"{r['phase']:<22}{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{r['max_ms']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
