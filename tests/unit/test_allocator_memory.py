"""The allocator's per-Service memory budget (issue 5: 10,000 Services within 60 MB RSS).

tracemalloc counts the Python heap the IPAM state and the Service cache (with the store's
key) keep for 10,000 allocated Services. The bounds leave ~40% headroom over today's
figures (IPAM ~0.38 KB, cache ~0.4 KB per Service; before the layout work 1.2 and 0.9 KB)
and fail on the regressions that matter: one more dict or unshared port set per Service
(+0.2-0.3 KB each), a cache entry kept undeflated (+0.45 KB). Run this file to print
today's figures.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from purelb.controllers.allocator_cache import pack_service
from purelb.ipam.allocator import Allocator
from purelb.kube._cache import Store
from purelb.model import annotations as ann
from purelb.model import parse_service

SERVICES = 10_000
IPAM_BYTES_PER_SERVICE = 550
CACHE_BYTES_PER_SERVICE = 560
GROUP = {"metadata": {"name": "default", "namespace": "purelb-system"},
         "spec": {"local": {"v4pools": [{"pool": "10.128.0.0/14", "subnet": "10.128.0.0/14"}]}}}


def _service(i: int) -> dict[str, Any]:
    """A Service as the API server returns it (the e2e benchmark's shape)."""
    cluster_ip = f"10.96.{i // 256 % 256}.{i % 256}"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"burst-{i}", "namespace": "bench",
                         "uid": f"{i:08x}-5c1e-4b7a-9f0e-3d2c1b0a9f8e",
                         "resourceVersion": str(100_000 + i), "labels": {"app": f"app-{i}"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                     "allocateLoadBalancerNodePorts": False, "selector": {"app": f"app-{i}"},
                     "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def _kept_bytes(fill: Callable[[], object]) -> tuple[int, object]:
    """Heap bytes still allocated after ``fill()`` returns (its result is kept)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = fill()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before, kept


def measure() -> tuple[float, float]:
    """(IPAM, cache) bytes kept per Service after allocating and caching ``SERVICES``."""
    alloc = Allocator()
    alloc.set_config([GROUP])
    alloc.import_services([])

    def allocate() -> None:
        for i in range(SERVICES):
            alloc.reconcile(parse_service(_service(i)))

    def cache() -> Store:
        store = Store()
        for i in range(SERVICES):
            obj = _service(i)
            (ip,) = alloc.holdings(f"bench/burst-{i}").values()  # type: ignore[arg-type]
            obj["metadata"]["annotations"] = {ann.ALLOCATED_BY: ann.BRAND,
                                              ann.ALLOCATED_FROM: "default",
                                              ann.POOL_TYPE: "local"}
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": str(ip), "ipMode": "VIP"}]}}
            store.upsert(pack_service(obj))
        return store

    tracemalloc.start()
    try:
        ipam, _ = _kept_bytes(allocate)
        cached, store = _kept_bytes(cache)
    finally:
        tracemalloc.stop()
    assert len(alloc.snapshot()) == SERVICES and len(store) == SERVICES  # type: ignore[arg-type]
    return ipam / SERVICES, cached / SERVICES


def test_ten_thousand_services_fit_the_per_service_budget() -> None:
    ipam, cached = measure()
    assert ipam <= IPAM_BYTES_PER_SERVICE, f"IPAM keeps {ipam:.0f} B per Service"
    assert cached <= CACHE_BYTES_PER_SERVICE, f"the cache keeps {cached:.0f} B per Service"



if __name__ == "__main__":  # today's figures
    ipam, cached = measure()
    print(f"IPAM {ipam:.0f} B, cache {cached:.0f} B per Service")
