"""``purelb bench ipam``: the allocator at cluster scale (pure, in-process).

Three figures for N Services (default 100,000; a mix of single-stack, RequireDualStack
and shared-address Services over a /15 and a /64):

* **allocate**: N reconciles from empty (the initial fill), in reconciles/s;
* **parse**: N core/v1 Service JSON objects into model values (the edge);
* **import**: a fresh allocator adopting the N written Services -- the startup barrier,
  which must finish in seconds because no allocation may happen before it.

Wall and CPU (process) time are both printed: on a shared machine wall time includes
waiting for a core.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from purelb import fast
from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import Outcome
from purelb.model import Service, parse_service
from purelb.model import annotations as ann

#: one Service in this many is RequireDualStack, one in this many shares an address
DUAL_EVERY = 10
SHARED_EVERY = 10

GROUPS: list[dict[str, Any]] = [
    {
        "metadata": {"name": "default", "namespace": "purelb-system"},
        "spec": {
            "local": {
                "v4pools": [{"pool": "10.0.0.0/15", "subnet": "10.0.0.0/15"}],
                "v6pools": [{"pool": "fd00:1::/64", "subnet": "fd00:1::/64"}],
            }
        },
    }
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", type=int, default=100_000, help="Services (default 100000)")


def service_json(i: int) -> dict[str, Any]:
    """Service ``i`` of the mix, as the API server would return it."""
    annotations: dict[str, str] = {}
    spec: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"protocol": "TCP", "port": 80}]}
    if i % DUAL_EVERY == 1:
        spec["ipFamilies"] = ["IPv4", "IPv6"]
        spec["ipFamilyPolicy"] = "RequireDualStack"
    elif i % SHARED_EVERY == 2:
        # pairs share: (2, 12) under one key, different ports
        annotations[ann.ALLOW_SHARED_IP] = f"key-{i // (2 * SHARED_EVERY)}"
        spec["ports"] = [{"protocol": "TCP", "port": 8000 + (i // SHARED_EVERY) % 2}]
    return {
        "metadata": {"name": f"svc-{i}", "namespace": f"ns-{i % 50}", "annotations": annotations},
        "spec": spec,
    }


def _written(service: Service, alloc: Allocator) -> Service:
    """The Service as the daemon would have written it (ingress + brand)."""
    held = alloc.holdings(service.key)
    annotations = {**service.annotations, ann.ALLOCATED_BY: ann.BRAND}
    return dataclasses.replace(
        service,
        annotations=annotations,
        ingress=tuple(str(held[f]) for f in sorted(held)),
    )


def run(args: argparse.Namespace) -> int:
    n = args.services
    print(f"ipam bench: {n} Services, hot path {fast.IMPLEMENTATION}")
    raw = [service_json(i) for i in range(n)]

    t0, c0 = time.perf_counter(), time.process_time()
    services = [parse_service(obj) for obj in raw]
    parse_s, parse_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"  parse    {parse_s:8.3f} s   {n / parse_s:10.0f} Services/s   (CPU {parse_cpu_s:.3f} s)"
    )

    alloc = Allocator()
    alloc.set_config(GROUPS)
    alloc.import_services([])
    t0, c0 = time.perf_counter(), time.process_time()
    failed = sum(alloc.reconcile(s).outcome is not Outcome.OK for s in services)
    fill_s, fill_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"  allocate {fill_s:8.3f} s   {n / fill_s:10.0f} reconciles/s   "
        f"(CPU {fill_cpu_s:.3f} s; {failed} failed)"
    )

    written = [_written(s, alloc) for s in services]
    fresh = Allocator()
    fresh.set_config(GROUPS)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fresh.import_services(written)
    import_s, import_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"  import   {import_s:8.3f} s   {n / import_s:10.0f} Services/s   "
        f"(CPU {import_cpu_s:.3f} s; {result.services} Services, {result.addresses} addresses, "
        f"{len(result.conflicts)} conflicts)"
    )
    same = fresh.snapshot() == alloc.snapshot()
    print(f"  import reproduces the live state: {same}")
    for stat in fresh.stats():
        print(
            f"  group {stat.group} IPv{stat.family}: {stat.in_use} in use of {stat.size}"
        )
    return 0 if same and not result.conflicts and not failed else 1
