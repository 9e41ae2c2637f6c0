"""The allocator's reconcile logic against a small fake Writer (no API server).

The fake keeps Services as the API would (resourceVersions, 409 on a stale one) and
records every write, so each test states exactly which writes a situation costs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from purelb.controllers.allocator_metrics import AllocatorMetrics
from purelb.controllers.allocator_reconcile import (
    Marker,
    QueueKey,
    Reconciler,
    ReconcileResult,
    parse_services,
    slim_service,
)
from purelb.controllers.workqueue import WorkQueue
from purelb.ipam.allocator import AllocatorSettings
from purelb.ipam.decision import Event
from purelb.kube import Conflict, NotFound
from purelb.model import ServiceKey, parse_service

JSON = dict[str, Any]
KEY = ServiceKey("default/web")
GROUP = {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
         "metadata": {"name": "default", "namespace": "purelb-system", "generation": 1},
         "spec": {"local": {"v4pool": {"pool": "10.0.0.0/30", "subnet": "10.0.0.0/24"}}}}


def service(name: str = "web", **spec: Any) -> JSON:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}",
                         "resourceVersion": "1", "annotations": {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP",
                                                        "targetPort": 8080, "nodePort": 30080}],
                     "selector": {"app": name}, **spec},
            "status": {"loadBalancer": {}}}


class FakeWriter:
    """The API as the writer sees it: versions, compare-and-set, a write log."""

    def __init__(self, objects: dict[str, JSON]) -> None:
        self.objects = objects
        self.rv = 100
        self.log: list[tuple[str, str]] = []
        self.conflicts_left = 0
        self.events: list[tuple[str, str]] = []
        self.group_status: dict[str, JSON] = {}

    def _bump(self, obj: JSON) -> JSON:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    def _current(self, svc: JSON) -> JSON:
        name = svc["metadata"]["name"]
        cur = self.objects.get(name)
        if cur is None:
            raise NotFound(f"{name} not found")
        if self.conflicts_left or cur["metadata"]["resourceVersion"] != \
                svc["metadata"]["resourceVersion"]:
            self.conflicts_left = max(0, self.conflicts_left - 1)
            raise Conflict(f"{name} changed")
        return cur

    async def patch_annotations(self, svc: JSON, set_: Mapping[str, str],
                                remove: Sequence[str]) -> JSON:
        cur = self._current(svc)
        ann = cur["metadata"].setdefault("annotations", {})
        ann.update(set_)
        for k in remove:
            ann.pop(k, None)
        self.log.append(("annotations", svc["metadata"]["name"]))
        return self._bump(cur)

    async def write_ingress(self, svc: JSON, ingress: list[JSON]) -> JSON:
        cur = self._current(svc)
        cur.setdefault("status", {})["loadBalancer"] = {"ingress": ingress}
        self.log.append(("status", svc["metadata"]["name"]))
        return self._bump(cur)

    async def read_service(self, namespace: str, name: str) -> JSON | None:
        self.log.append(("read", name))
        cur = self.objects.get(name)
        return copy.deepcopy(cur) if cur is not None else None

    async def emit(self, regarding: JSON, event: Event, *, action: str) -> None:
        self.events.append((regarding["metadata"]["name"], event.reason))

    async def write_group_status(self, group: JSON, status: JSON) -> None:
        self.group_status[group["metadata"]["name"]] = status


def make(objects: dict[str, JSON], cache: dict[str, JSON] | None = None
         ) -> tuple[Reconciler, FakeWriter, dict[str, JSON]]:
    writer = FakeWriter(objects)
    cache = cache if cache is not None else {k: copy.deepcopy(v) for k, v in objects.items()}
    groups = [copy.deepcopy(GROUP)]
    queue: WorkQueue[QueueKey] = WorkQueue()
    rec = Reconciler(settings=AllocatorSettings(), writer=writer,
                     services=lambda ns, name: cache.get(name), groups=lambda: groups,
                     queue=queue, metrics=AllocatorMetrics(lambda: None, lambda: 0),
                     conflict_retries=3, now=lambda: "2026-01-01T00:00:00.000000Z")
    rec.barrier(groups, rec.listing(groups).add(parse_services(objects.values())))
    return rec, writer, cache


async def test_a_new_service_costs_one_patch_one_status_write_and_one_event():
    rec, writer, _ = make({"web": service()})
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert writer.log == [("annotations", "web"), ("status", "web")]
    assert writer.objects["web"]["status"]["loadBalancer"]["ingress"] == [
        {"ip": "10.0.0.0", "ipMode": "VIP"}]
    assert writer.events == [("web", "AddressAssigned")]


async def test_a_conflict_rereads_recomputes_and_keeps_the_events_of_the_first_decision():
    rec, writer, _ = make({"web": service()})
    writer.conflicts_left = 1
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert writer.log == [("read", "web"), ("annotations", "web"), ("status", "web")]
    assert writer.events == [("web", "AddressAssigned")]


async def test_a_conflict_storm_backs_off_without_losing_the_allocation():
    rec, writer, _ = make({"web": service()})
    writer.conflicts_left = 100
    assert await rec.reconcile(KEY) is ReconcileResult.RETRY
    assert dict(rec.allocator.holdings(KEY)) != {}  # the decision stays; a retry writes it
    writer.conflicts_left = 0
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert writer.objects["web"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "10.0.0.0"


async def test_a_cache_still_behind_our_own_write_is_skipped_not_rewritten():
    rec, writer, cache = make({"web": service()})
    await rec.reconcile(KEY)
    writes = len(writer.log)
    # the cache now sees the annotation patch but not yet the status write
    stale = copy.deepcopy(writer.objects["web"])
    stale["status"] = {"loadBalancer": {}}
    stale["metadata"]["resourceVersion"] = str(writer.rv - 1)
    cache["web"] = stale
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert len(writer.log) == writes and rec.skipped_behind == 1
    cache["web"] = copy.deepcopy(writer.objects["web"])  # caught up: a normal no-op
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert len(writer.log) == writes


async def _drain(rec: Reconciler) -> list[QueueKey]:
    keys = []
    while len(rec.queue):
        key = await rec.queue.get()
        rec.queue.done(key)
        keys.append(key)
    return keys


async def test_the_watch_echoes_of_our_own_writes_are_not_queued():
    rec, writer, _ = make({"web": service()})
    await _drain(rec)
    rec._listed.clear()  # the barrier's versions are no longer news-filters here
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    last = int(writer.objects["web"]["metadata"]["resourceVersion"])
    rec.changed(KEY, str(last - 1))  # the annotation patch's echo
    rec.changed(KEY, str(last))  # the status write's echo
    assert await _drain(rec) == [] and rec.skipped_echoes == 2
    rec.changed(KEY, str(last + 1))  # someone else's edit: news
    assert await _drain(rec) == [KEY]


async def test_a_change_that_is_not_our_echo_is_queued_and_ends_the_echo_filter():
    rec, writer, _ = make({"web": service()})
    await _drain(rec)
    rec._listed.clear()
    await rec.reconcile(KEY)
    last = int(writer.objects["web"]["metadata"]["resourceVersion"])
    rec.changed(KEY, "999")  # e.g. a relist delivered a later version: reconcile it
    assert await _drain(rec) == [KEY]
    rec.changed(KEY, str(last))  # the filter is gone: nothing is swallowed twice
    assert await _drain(rec) == [KEY]


async def test_a_deletion_is_news_even_at_the_version_our_write_produced():
    """After a relist, a deletion carries the last version the cache knew: often the one
    our own status write produced. It must still be queued (and release the address)."""
    rec, writer, cache = make({"web": service()})
    await _drain(rec)
    rec._listed.clear()
    await rec.reconcile(KEY)
    last = writer.objects["web"]["metadata"]["resourceVersion"]
    del writer.objects["web"], cache["web"]
    rec.changed(KEY, last, deleted=True)
    assert await _drain(rec) == [KEY]
    assert await rec.reconcile(KEY) is ReconcileResult.GONE
    assert dict(rec.allocator.holdings(KEY)) == {}


async def test_a_reconcile_skipped_behind_our_write_is_owed_to_the_final_echo():
    """A key queued for another reason while the cache lags is skipped; the echo of our
    final write must then be reconciled, not filtered, or that request would be lost."""
    rec, writer, cache = make({"web": service()})
    await _drain(rec)
    rec._listed.clear()
    await rec.reconcile(KEY)
    last = int(writer.objects["web"]["metadata"]["resourceVersion"])
    stale = copy.deepcopy(writer.objects["web"])
    stale["metadata"]["resourceVersion"] = str(last - 1)
    cache["web"] = stale
    assert await rec.reconcile(KEY) is ReconcileResult.OK and rec.skipped_behind == 1
    rec.changed(KEY, str(last))
    assert await _drain(rec) == [KEY]


async def test_a_service_deleted_under_a_write_is_released_for_the_next_one():
    rec, writer, _ = make({"web": service(), "two": service("two")})
    del writer.objects["web"]
    assert await rec.reconcile(KEY) is ReconcileResult.GONE
    assert dict(rec.allocator.holdings(KEY)) == {}
    assert await rec.reconcile(ServiceKey("default/two")) is ReconcileResult.OK
    assert writer.objects["two"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "10.0.0.0"


async def test_an_unparseable_service_is_reported_and_not_retried():
    bad = service()
    bad["spec"]["ports"] = [{"port": 70000}]
    rec, writer, _ = make({"web": bad})
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert writer.log == []


async def test_group_status_is_written_once_then_only_when_it_changes():
    rec, writer, _ = make({"web": service()})
    groups_obj = GROUP
    await rec.apply_config()
    assert await rec.flush_group_status() == 1
    status = writer.group_status["default"]
    assert status["allocatedIPv4"] == 0 and status["availableIPv4"] == 4
    groups_obj_with_status = {**groups_obj, "status": status}
    rec._groups = lambda: [groups_obj_with_status]  # the cache saw our write
    rec.status_dirty = True
    assert await rec.flush_group_status() == 0
    await rec.reconcile(KEY)
    assert await rec.flush_group_status() == 1
    assert writer.group_status["default"]["allocatedIPv4"] == 1


def test_barrier_backfills_every_service_behind_live_changes():
    """Verify that the barrier's full pass waits behind keys the watches queue meanwhile."""
    rec, _, _ = make({"web": service(), "two": service("two")})
    assert rec.backlog == 3 and len(rec.queue) == 1  # the config marker goes first
    rec.queue.add(ServiceKey("default/new"))
    rec.top_up(2)
    assert len(rec.queue) == 2 and rec.backlog == 4
    rec.top_up(10)
    assert len(rec.queue) == 4 and rec.backlog == 4


def test_a_watch_replaying_the_version_the_barrier_read_queues_nothing():
    rec, _, _ = make({"web": service(), "two": service("two")})
    before = len(rec.queue)
    rec.changed(KEY, "1")  # the reflector's initial list, same version: no news
    assert len(rec.queue) == before
    rec.changed(ServiceKey("default/two"), "7")  # changed since the barrier
    assert len(rec.queue) == before + 1


@pytest.mark.parametrize("spec", [
    {},
    {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
     "clusterIPs": ["10.96.0.1", "fd00::1"], "clusterIP": "10.96.0.1"},
    {"loadBalancerClass": "purelb.io/purelb", "loadBalancerIP": "10.0.0.3",
     "externalTrafficPolicy": "Local", "allocateLoadBalancerNodePorts": False},
], ids=["plain", "dual stack", "class and pinned address"])
def test_slim_service_keeps_everything_parse_service_reads(spec: JSON):
    obj = service(**spec)
    obj["metadata"]["annotations"] = {"purelb.io/allow-shared-ip": "k"}
    obj["metadata"]["labels"] = {"app": "web"}
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ipMode": "VIP"}]}}
    slim = slim_service(obj)
    assert parse_service(slim) == parse_service(obj)
    assert "selector" not in slim["spec"] and "labels" not in slim["metadata"]


def test_marker_is_not_a_service_key():
    assert Marker.CONFIG != KEY


async def test_a_held_service_missing_from_a_lagging_cache_is_confirmed_not_released():
    """Verify that a cache behind the barrier's fresh list never frees a live address."""
    listed = service()
    listed["metadata"]["annotations"] = {"purelb.io/allocated-by": "PureLB"}
    listed["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}
    rec, writer, _ = make({"web": listed}, cache={})
    assert dict(rec.allocator.holdings(KEY))  # imported by the barrier
    assert await rec.reconcile(KEY) is ReconcileResult.OK
    assert [str(a) for a in rec.allocator.holdings(KEY).values()] == ["10.0.0.2"]
    assert ("read", "web") in writer.log


async def test_a_key_reconciled_from_a_lagging_cache_is_queued_again_by_its_watch_event():
    rec, _, _ = make({"web": service()}, cache={})
    assert await rec.reconcile(KEY) is ReconcileResult.GONE  # not held, not cached
    before = len(rec.queue)
    rec.changed(KEY, "1")  # the cache now sees the version the barrier read
    assert len(rec.queue) == before + 1


async def test_a_group_not_yet_judged_gets_no_status_until_its_config_is_applied():
    """A ServiceGroup the cache has but apply_config has not judged yet must not flash a
    false 'not accepted' condition; once judged, its real reason is written."""
    rec, writer, _ = make({"web": service()})
    default = copy.deepcopy(GROUP)
    default["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    bad = copy.deepcopy(default)
    bad["metadata"].update(name="bad", creationTimestamp="2026-01-02T00:00:00Z")
    bad["spec"]["local"]["v4pool"]["pool"] = "10.0.0.2/31"  # overlaps the older default
    rec._groups = lambda: [default, bad]
    rec.status_dirty = True
    await rec.flush_group_status()
    assert "bad" not in writer.group_status
    await rec.apply_config()
    await rec.flush_group_status()
    assert writer.group_status["bad"]["conditions"][0]["reason"] == "Overlap"


def _branded(name: str, ip: str, uid: str = "") -> JSON:
    obj = service(name)
    obj["metadata"]["uid"] = uid or f"u-{name}"
    obj["metadata"]["annotations"] = {"purelb.io/allocated-by": "PureLB",
                                      "purelb.io/allocated-from": "default"}
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    return obj


def test_the_barrier_listing_keeps_versions_for_all_and_import_entries_for_the_branded():
    objects = {"web": _branded("web", "10.0.0.1"), "new": service("new"),
               "db": _branded("db", "10.0.0.2")}
    rec, _, _ = make({})
    listing = rec.listing([GROUP])
    listing.add(parse_services(objects.values()))
    assert list(listing.versions) == ["default/web", "default/new", "default/db"]
    assert sorted(e.key for e in listing.entries) == ["default/db", "default/web"]
    assert listing.uids == {}  # no NetBox group: no owner labels to write
    entry = next(e for e in listing.entries if e.key == "default/web")
    assert (entry.ingress, entry.sharing_key, entry.allocated_from) == (("10.0.0.1",), "",
                                                                       "default")

    netbox = {"metadata": {"name": "nb"}, "spec": {"netbox": {"url": "https://nb.test"}}}
    with_uids = rec.listing([GROUP, netbox]).add(parse_services(objects.values()))
    assert with_uids.uids == {"default/web": "u-web", "default/db": "u-db"}


def test_a_barrier_listed_page_by_page_imports_like_one_listed_at_once():
    objects = {"web": _branded("web", "10.0.0.1"), "clash": _branded("clash", "10.0.0.1"),
               "new": service("new")}
    by_list, _, _ = make(objects)
    fresh = Reconciler(settings=AllocatorSettings(), writer=FakeWriter({}),
                       services=lambda ns, name: None, groups=lambda: [GROUP],
                       queue=WorkQueue(), metrics=AllocatorMetrics(lambda: None, lambda: 0),
                       conflict_retries=3, now=lambda: "2026-01-01T00:00:00.000000Z")
    listing = fresh.listing([GROUP])
    for obj in objects.values():  # page by page
        listing.add(parse_services([obj]))
    result = fresh.barrier([GROUP], listing)
    assert (result.services, result.imported, result.conflicts) == (3, 1, 1)
    assert fresh.allocator.snapshot() == by_list.allocator.snapshot()
    assert fresh.backlog == by_list.backlog
