"""NetBox ServiceGroups end to end: the pure Allocator + NetboxDriver against a real NetBox.

``Cluster`` plays the allocator daemon: it keeps Services as values, applies each
Decision (ingress, annotations) the way the daemon writes them, hands the decision to the
driver and reconciles whatever is requeued, until nothing moves.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Iterable
from typing import Any

import pytest
import trio

from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import Event, FailureReason
from purelb.ipam.netbox import NetboxClient, Owner, RetryPolicy
from purelb.ipam.netbox_driver import NetboxDriver
from purelb.model import Service, ServiceKey
from tests.unit._ipam_helpers import netbox_sg, svc

pytestmark = pytest.mark.root

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, rng=random.Random(2))
MAX_ROUNDS = 200


class Cluster:
    def __init__(self, groups: list[dict[str, Any]], token: str) -> None:
        self.alloc = Allocator()
        self.config = self.alloc.set_config(groups)
        assert not self.config.rejected, self.config.rejected
        self.driver = NetboxDriver(lambda _g: token, retry=FAST_RETRY)
        self.driver.configure(self.alloc.groups.values())
        self.services: dict[ServiceKey, Service] = {}
        self.events: dict[ServiceKey, list[Event]] = {}
        self.failures: dict[ServiceKey, FailureReason | None] = {}
        self.retry: dict[ServiceKey, float] = {}

    async def start(self, services: Iterable[Service] = ()) -> Any:
        for s in services:
            self.services[s.key] = s
        self.alloc.import_services(self.services.values())
        report = await self.driver.sync(self.alloc, {k: s.uid for k, s in self.services.items()})
        await self.settle(list(self.services))
        return report

    async def put(self, service: Service) -> Service:
        old = self.services.get(service.key)
        if old is not None:  # keep what we wrote (status, our annotations)
            ours = {
                k: v
                for k, v in old.annotations.items()
                if k.startswith("purelb.io/allocated") or k == "purelb.io/pool-type"
            }
            service = dataclasses.replace(
                service, ingress=old.ingress, annotations={**ours, **service.annotations}
            )
        self.services[service.key] = service
        await self.settle([service.key])
        return self.services[service.key]

    async def delete(self, key: str) -> None:
        self.services.pop(ServiceKey(key), None)
        await self.settle([ServiceKey(key)])

    async def settle(self, keys: list[ServiceKey]) -> None:
        queue = list(keys)
        for _ in range(MAX_ROUNDS):
            if not queue:
                return
            key = queue.pop(0)
            current = self.services.get(key)
            decision = (
                self.alloc.reconcile(current) if current is not None else self.alloc.release(key)
            )
            if current is not None and decision.has_writes:
                annotations = {
                    k: v
                    for k, v in {**current.annotations, **decision.annotations_set}.items()
                    if k not in decision.annotations_remove
                }
                current = dataclasses.replace(
                    current,
                    ingress=decision.ingress if decision.ingress is not None else current.ingress,
                    annotations=annotations,
                )
                self.services[key] = current
            result = await self.driver.handle(self.alloc, decision, current)
            self.events.setdefault(key, []).extend(decision.events)
            self.events[key].extend(result.events)
            self.failures[key] = result.failure or (
                decision.failure.reason if decision.failure else None
            )
            if result.retry_after is not None:
                self.retry[key] = result.retry_after
            else:
                self.retry.pop(key, None)
            for k in sorted(set(decision.requeue) | result.requeue):
                if k not in queue:
                    queue.append(k)
        raise AssertionError(f"did not settle in {MAX_ROUNDS} rounds: {queue}")

    def ingress(self, name: str, ns: str = "ns") -> tuple[str, ...]:
        return self.services[ServiceKey(f"{ns}/{name}")].ingress

    def reasons(self, name: str, ns: str = "ns") -> list[str]:
        return [e.reason for e in self.events.get(ServiceKey(f"{ns}/{name}"), [])]


def S(name: str, uid: str = "", **kw: Any) -> Service:
    return dataclasses.replace(svc(name, **kw), uid=uid or f"uid-{name}")


def group(server, scope, **kw: Any) -> dict[str, Any]:
    return netbox_sg("default", url=server.url, tenant=scope.tenant, **kw)


def nb_records(scope, **params: Any) -> dict[str, dict[str, Any]]:
    """address (no mask) -> raw record, for everything of the test's tenant."""
    return {
        r["address"].split("/")[0]: r for r in scope.admin.addresses(tenant=scope.tenant, **params)
    }


@pytest.fixture
async def cluster_factory(netbox_server):
    made: list[Cluster] = []

    def make(groups: list[dict[str, Any]], token: str | None = None) -> Cluster:
        c = Cluster(groups, token or netbox_server.token_v1)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.driver.aclose()


async def test_allocate_release_reallocate_and_type_change(
    netbox_server, nb_scope, cluster_factory
):
    nb_scope.add_prefix(nb_scope.v4)
    net = ipaddress.ip_network(nb_scope.v4)
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=nb_scope.v4)])
    await c.start()
    await c.put(S("a"))
    first = str(net.network_address + 1)
    assert c.ingress("a") == (first,)
    rec = nb_records(nb_scope)[first]
    assert rec["description"] == "purelb:ns/a uid=uid-a" and rec["status"]["value"] == "active"
    assert [t["slug"] for t in rec["tags"]] == ["purelb"]
    await c.put(S("b"))
    assert c.ingress("b") == (str(net.network_address + 2),)
    await c.delete("ns/a")
    assert first not in nb_records(nb_scope)  # released in NetBox, not only in memory
    await c.put(S("c"))
    assert c.ingress("c") == (first,)
    # changing the type releases too
    await c.put(S("b", type="ClusterIP"))
    assert c.ingress("b") == ()
    assert set(nb_records(nb_scope)) == {first}
    assert nb_records(nb_scope)[first]["description"] == "purelb:ns/c uid=uid-c"


async def test_dual_stack_v4_and_v6_prefix(netbox_server, nb_scope, cluster_factory):
    nb_scope.add_prefix(nb_scope.v4)
    nb_scope.add_prefix(nb_scope.v6)
    c = cluster_factory(
        [group(netbox_server, nb_scope, v4prefix=nb_scope.v4, v6prefix=nb_scope.v6)]
    )
    await c.start()
    await c.put(S("ds", families=("IPv6", "IPv4"), policy="RequireDualStack"))
    v6 = str(ipaddress.ip_network(nb_scope.v6).network_address + 1)
    v4 = str(ipaddress.ip_network(nb_scope.v4).network_address + 1)
    assert c.ingress("ds") == (v6, v4)
    assert set(nb_records(nb_scope)) == {v4, v6}
    await c.delete("ns/ds")
    assert nb_records(nb_scope) == {}


async def test_specific_address_claimed_if_free(netbox_server, nb_scope, cluster_factory):
    nb_scope.add_prefix(nb_scope.v4)
    base = ipaddress.ip_network(nb_scope.v4).network_address
    taken = f"{base + 70}"
    nb_scope.admin.req(
        "POST", "/api/ipam/ip-addresses/", json={"address": f"{taken}/24", "status": "active"}
    )
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=nb_scope.v4)])
    await c.start()
    await c.put(S("pin", addresses=str(base + 50)))
    assert c.ingress("pin") == (str(base + 50),)
    assert nb_records(nb_scope)[str(base + 50)]["description"] == "purelb:ns/pin uid=uid-pin"
    await c.put(S("auto"))
    assert c.ingress("auto") == (str(base + 1),)  # the claimed address is never offered
    await c.put(S("clash", addresses=taken))
    assert c.ingress("clash") == ()
    assert c.failures[ServiceKey("ns/clash")] is FailureReason.ADDRESS_IN_USE
    assert "AllocationFailed" in c.reasons("clash")
    await c.delete("ns/pin")
    assert str(base + 50) not in nb_records(nb_scope)


async def test_sharing_key_one_record_until_the_last_holder_leaves(
    netbox_server, nb_scope, cluster_factory
):
    nb_scope.add_prefix(nb_scope.v4)
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=nb_scope.v4)])
    await c.start()
    await c.put(S("http", key="k", ports=("TCP/80",)))
    await c.put(S("https", key="k", ports=("TCP/443",)))
    assert c.ingress("http") == c.ingress("https")
    ip = c.ingress("http")[0]
    assert list(nb_records(nb_scope)) == [ip]
    await c.delete("ns/http")
    # the record now names the remaining holder
    assert nb_records(nb_scope)[ip]["description"] == "purelb:ns/https"
    await c.put(S("https", key="k", ports=("TCP/443",)))  # its next reconcile adds the uid
    assert nb_records(nb_scope)[ip]["description"] == "purelb:ns/https uid=uid-https"
    await c.delete("ns/https")
    assert nb_records(nb_scope) == {}


async def test_exhausted_prefix_then_freed(netbox_server, nb_scope, cluster_factory):
    cidr = nb_scope.v4.replace(".0/24", ".0/30")
    nb_scope.add_prefix(cidr)
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=cidr)])
    await c.start()
    for name in ("a", "b", "c"):
        await c.put(S(name))
    assert c.ingress("c") == ()
    assert c.failures[ServiceKey("ns/c")] is FailureReason.EXHAUSTED
    assert "AllocationFailed" in c.reasons("c")
    freed = c.ingress("a")
    await c.delete("ns/a")  # the allocator requeues the waiting Service; it gets the address
    assert c.ingress("c") == freed


async def test_wrong_token_is_a_group_problem_and_warning(netbox_server, nb_scope, cluster_factory):
    nb_scope.add_prefix(nb_scope.v4)
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=nb_scope.v4)], token="0" * 40)
    await c.start()
    await c.put(S("a"))
    assert c.ingress("a") == ()
    assert c.driver.problems["default"].reason == "unauthorized"
    assert "NetboxError" in c.reasons("a")
    assert c.retry[ServiceKey("ns/a")] > 0


async def test_legacy_reserved_flow(netbox_server, nb_scope, cluster_factory):
    base = ipaddress.ip_network(nb_scope.v4).network_address
    for i in (20, 21):
        nb_scope.reserve(f"{base + i}/24")
    c = cluster_factory([group(netbox_server, nb_scope)])
    await c.start()
    for name in ("a", "b", "c"):
        await c.put(S(name, families=("IPv4",), policy="SingleStack"))
    assert {c.ingress("a")[0], c.ingress("b")[0]} == {str(base + 20), str(base + 21)}
    assert c.failures[ServiceKey("ns/c")] is FailureReason.EXHAUSTED
    held_a = c.ingress("a")[0]
    await c.delete("ns/a")
    # back to reserved (not deleted), and the waiting Service got it
    assert c.ingress("c") == (held_a,)
    await c.delete("ns/c")
    rec = nb_records(nb_scope)[held_a]
    assert rec["status"]["value"] == "reserved" and rec["tags"] == [] and not rec["description"]


async def test_restart_rebuild_and_drift(netbox_server, nb_scope, cluster_factory):
    nb_scope.add_prefix(nb_scope.v4)
    cfg = [group(netbox_server, nb_scope, v4prefix=nb_scope.v4)]
    first = cluster_factory(cfg)
    await first.start()
    for name in ("a", "b", "c"):
        await first.put(S(name))
    services = dict(first.services)
    a, b, c_ip = first.ingress("a")[0], first.ingress("b")[0], first.ingress("c")[0]
    # a crashed allocator's orphan: taken in NetBox, never written to a Service
    async with NetboxClient(netbox_server.url, netbox_server.token_v1) as nb:
        prefix = await nb.prefix(nb_scope.v4)
        ghost = await nb.allocate(prefix, Owner("ns/ghost", "uid-ghost"), nb_scope.tenant)
    # while no allocator runs: b's record deleted by hand, Service c deleted
    nb_scope.admin.http.delete(f"/api/ipam/ip-addresses/{nb_records(nb_scope)[b]['id']}/")
    del services[ServiceKey("ns/c")]
    second = cluster_factory(cfg)
    report = await second.start(services.values())
    assert second.ingress("a") == (a,) and second.ingress("b") == (b,)  # nothing moved
    assert sorted(map(str, report.released)) == sorted([str(ghost.address), c_ip])
    assert [str(ip) for ip in report.reclaimed] == [b]
    assert set(nb_records(nb_scope)) == {a, b}
    assert nb_records(nb_scope)[b]["description"] == "purelb:ns/b uid=uid-b"


async def test_two_allocators_racing_on_one_prefix(netbox_server, nb_scope, cluster_factory):
    nb_scope.add_prefix(nb_scope.v4)
    cfg = [group(netbox_server, nb_scope, v4prefix=nb_scope.v4)]
    one, two = cluster_factory(cfg), cluster_factory(cfg)
    await one.start()
    await two.start()

    async def fill(c: Cluster, prefix: str) -> None:
        for i in range(12):
            await c.put(S(f"{prefix}{i}"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fill, one, "x")
        nursery.start_soon(fill, two, "y")
    got = [one.ingress(f"x{i}")[0] for i in range(12)] + [
        two.ingress(f"y{i}")[0] for i in range(12)
    ]
    assert len(set(got)) == 24, "two allocators were handed the same address"
    assert len(nb_records(nb_scope)) == 24


async def test_netbox_down_services_pending_then_allocated(
    netbox_server, nb_scope, cluster_factory
):
    if netbox_server.env is None:
        pytest.skip("an external NetBox is not stopped by the tests")
    nb_scope.add_prefix(nb_scope.v4)
    c = cluster_factory([group(netbox_server, nb_scope, v4prefix=nb_scope.v4)])
    await c.start()
    await c.put(S("keep"))
    await c.put(S("gone"))
    gone_ip = c.ingress("gone")[0]
    netbox_server.stop_web()
    try:
        await c.put(S("late1"))
        await c.put(S("late2"))
        await c.delete("ns/gone")
        assert c.ingress("late1") == () and c.ingress("late2") == ()
        assert "NetboxUnavailable" in c.reasons("late1")
        assert c.retry[ServiceKey("ns/late1")] > 0
        assert [str(ip) for ip in c.driver.unreleased] == [gone_ip]  # kept, not lost
    finally:
        netbox_server.start_web()
    # the daemon's retry timer fires: reconcile the pending Services again
    await c.settle([ServiceKey("ns/late1"), ServiceKey("ns/late2")])
    assert c.ingress("late1") and c.ingress("late2")
    assert c.driver.unreleased == ()
    records = nb_records(nb_scope)
    assert (
        gone_ip not in records or records[gone_ip]["description"] != "purelb:ns/gone uid=uid-gone"
    )
    assert {c.ingress("keep")[0], c.ingress("late1")[0], c.ingress("late2")[0]} <= set(records)


async def test_legacy_group_survives_restart_and_releases_after_it(
    netbox_server, nb_scope, cluster_factory
):
    base = ipaddress.ip_network(nb_scope.v4).network_address
    nb_scope.reserve(f"{base + 30}/24")
    cfg = [group(netbox_server, nb_scope)]
    first = cluster_factory(cfg)
    await first.start()
    await first.put(S("a", families=("IPv4",), policy="SingleStack"))
    assert first.ingress("a") == (str(base + 30),)
    second = cluster_factory(cfg)
    report = await second.start(first.services.values())
    assert report.released == []  # held by a Service: never an orphan
    assert second.ingress("a") == (str(base + 30),)
    await second.delete("ns/a")  # the legacy address goes back to reserved after a restart
    rec = nb_records(nb_scope)[str(base + 30)]
    assert rec["status"]["value"] == "reserved" and rec["tags"] == []


async def test_prefix_given_by_numeric_id(netbox_server, nb_scope, cluster_factory):
    pid = nb_scope.add_prefix(nb_scope.v4)
    net = ipaddress.ip_network(nb_scope.v4)
    cfg = [group(netbox_server, nb_scope, v4prefix=str(pid))]
    first = cluster_factory(cfg)
    await first.start()
    await first.put(S("a"))
    assert first.ingress("a") == (str(net.network_address + 1),)
    second = cluster_factory(cfg)  # a restart places the address by allocated-from
    report = await second.start(first.services.values())
    assert report.released == [] and report.reclaimed == []
    await second.delete("ns/a")
    assert nb_records(nb_scope) == {}


async def test_lost_address_taken_by_someone_else_is_reported(
    netbox_server, nb_scope, cluster_factory
):
    nb_scope.add_prefix(nb_scope.v4)
    cfg = [group(netbox_server, nb_scope, v4prefix=nb_scope.v4)]
    first = cluster_factory(cfg)
    await first.start()
    await first.put(S("a"))
    ip = first.ingress("a")[0]
    # by hand: our record deleted and the address given to something else
    nb_scope.admin.http.delete(f"/api/ipam/ip-addresses/{nb_records(nb_scope)[ip]['id']}/")
    nb_scope.admin.req(
        "POST",
        "/api/ipam/ip-addresses/",
        json={
            "address": f"{ip}/24",
            "status": "active",
            "description": "router-7",
            "tenant": {"slug": nb_scope.tenant},
        },
    )
    second = cluster_factory(cfg)
    report = await second.start(first.services.values())
    assert report.reclaimed == [] and report.released == []
    drift = report.events[ServiceKey("ns/a")]
    assert [e.reason for e in drift] == ["NetboxDrift"] and ip in drift[0].message
    assert nb_records(nb_scope)[ip]["description"] == "router-7"  # never touched
