"""Helpers for the allocator daemon's integration tests: a real API server on loopback,
the CRDs from deploy/crds, and daemons running as tasks with real HTTP clients."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import trio

from purelb.apiserver.testing import TestApiServer, open_test_apiserver
from purelb.controllers.allocator import AllocatorDaemon, DaemonSettings
from purelb.kube import (
    EVENTS,
    NAMESPACES,
    SERVICE_GROUPS,
    SERVICES,
    ClientSettings,
    KubeClient,
    load_kubeconfig,
)

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
NS = "purelb-system"
APP_NS = "default"
#: how long a test waits for the daemon to converge on loopback before failing
CONVERGE_TIMEOUT_S = 20.0
#: poll period of a convergence check (reads the API; the daemon runs meanwhile)
POLL_S = 0.05
#: client settings of tests and daemons: no client-side throttle, short timeouts
FAST = ClientSettings(rate_limit=None, connect_timeout_s=5.0, request_timeout_s=10.0)

JSON = dict[str, Any]


def settings(identity: str = "alloc-a", **kw: Any) -> DaemonSettings:
    base = DaemonSettings(identity=identity, namespace=NS, metrics_host="127.0.0.1",
                          metrics_port=0, leader_elect=False).local()
    return replace(base, **kw)


def group(name: str, *pools: tuple[str, str], **local: Any) -> JSON:
    """A ServiceGroup with local pools given as (pool, subnet) pairs."""
    v4 = [{"pool": p, "subnet": s} for p, s in pools if ":" not in p]
    v6 = [{"pool": p, "subnet": s} for p, s in pools if ":" in p]
    spec: JSON = {}
    if v4:
        spec["v4pools"] = v4
    if v6:
        spec["v6pools"] = v6
    spec.update(local)
    return {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
            "metadata": {"name": name, "namespace": NS}, "spec": {"local": spec}}


def service(name: str, *, ports: tuple[int, ...] = (80,), annotations: dict[str, str] | None = None,
            namespace: str = APP_NS, **spec: Any) -> JSON:
    body: JSON = {"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": name, "namespace": namespace,
                               "annotations": dict(annotations or {})},
                  "spec": {"type": "LoadBalancer", "ports": [{"port": p} for p in ports],
                           "selector": {"app": name}}}
    body["spec"].update(spec)
    return body


def ingress(obj: JSON | None) -> list[str]:
    if obj is None:
        return []
    return [i.get("ip", "") for i in
            ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


@dataclass
class World:
    """A running API server with the CRDs, the install namespace and a client."""

    srv: TestApiServer
    client: KubeClient

    async def services(self) -> dict[str, JSON]:
        items, _ = await self.client.list_all(SERVICES)
        return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in items}

    async def svc(self, name: str, namespace: str = APP_NS) -> JSON:
        return await self.client.get(SERVICES, name, namespace=namespace)

    async def group_status(self, name: str) -> JSON:
        return (await self.client.get(SERVICE_GROUPS, name, namespace=NS)).get("status") or {}

    async def events(self, name: str, namespace: str = APP_NS) -> list[tuple[str, str, str]]:
        """(type, reason, note) of every Event regarding object ``name``."""
        items, _ = await self.client.list_all(EVENTS, namespace=namespace)
        return [(e.get("type", ""), e.get("reason", ""), e.get("note", "")) for e in items
                if (e.get("regarding") or {}).get("name") == name]

    async def reasons(self, name: str, namespace: str = APP_NS) -> set[str]:
        return {r for _, r, _ in await self.events(name, namespace)}

    async def eventually(self, check: Callable[[], Any], *, what: str,
                         timeout_s: float = CONVERGE_TIMEOUT_S) -> Any:
        """Await ``check()`` (async, returns truthy when done) until it holds."""
        last: Any = None
        with trio.move_on_after(timeout_s):
            while True:
                last = await check()
                if last:
                    return last
                await trio.sleep(POLL_S)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")

    async def wait_ingress(self, name: str, count: int = 1, namespace: str = APP_NS) -> list[str]:
        async def check() -> list[str] | None:
            ips = ingress(await self.svc(name, namespace))
            return ips if len(ips) == count else None
        return await self.eventually(check, what=f"{count} ingress address(es) on {name}")


@asynccontextmanager
async def open_world(*groups: JSON, history_limit: int | None = None) -> AsyncIterator[World]:
    async with (open_test_apiserver(crd_paths=[CRD_DIR], history_limit=history_limit) as srv,
                open_client(srv) as client):
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NS}})
        for g in groups:
            await client.create(SERVICE_GROUPS, g, namespace=NS)
        yield World(srv, client)


@asynccontextmanager
async def open_client(srv: TestApiServer, *, transport: httpx.AsyncBaseTransport | None = None,
                      role: str = "test") -> AsyncIterator[KubeClient]:
    cfg = load_kubeconfig([Path(srv.kubeconfig)])
    async with KubeClient(cfg, role=role, settings=FAST, transport=transport) as client:
        yield client


@asynccontextmanager
async def running_daemon(world: World, cfg: DaemonSettings | None = None, *,
                         transport: httpx.AsyncBaseTransport | None = None
                         ) -> AsyncIterator[AllocatorDaemon]:
    """A daemon with its own client, cancelled (like SIGTERM) when the block ends."""
    async with (open_client(world.srv, transport=transport, role="allocator") as client,
                trio.open_nursery() as nursery):
        daemon = AllocatorDaemon(client, cfg or settings())
        await nursery.start(daemon.run)
        try:
            yield daemon
        finally:
            nursery.cancel_scope.cancel()


class PartitionableTransport(httpx.AsyncBaseTransport):
    """A real HTTP transport that can be cut off, as a network partition would."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.partitioned = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.partitioned:
            raise httpx.ConnectError("partitioned by the test", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def check_invariants(services: dict[str, JSON]) -> list[str]:
    """Problems with the allocation as written: duplicates outside sharing, bad brands."""
    problems = []
    owners: dict[str, list[str]] = {}
    for key, obj in services.items():
        ips = ingress(obj)
        ann = (obj["metadata"].get("annotations") or {})
        if ips and ann.get("purelb.io/allocated-by") != "PureLB":
            problems.append(f"{key} has ingress {ips} without the brand")
        fams = Counter(ipaddress.ip_address(ip).version for ip in ips)
        if any(n > 1 for n in fams.values()):
            problems.append(f"{key} has two addresses of one family: {ips}")
        for ip in ips:
            owners.setdefault(ip, []).append(key)
    for ip, keys in owners.items():
        if len(keys) > 1:
            share = {(services[k]["metadata"].get("annotations") or {})
                     .get("purelb.io/allow-shared-ip") for k in keys}
            if len(share) != 1 or None in share or "" in share:
                problems.append(f"{ip} is held by {keys} without a common sharing key")
    return problems
