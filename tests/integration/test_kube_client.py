"""Every KubeClient verb against the real purelb API server (memory and SQLite storage)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
import trio

from purelb.apiserver.testing import open_test_apiserver
from purelb.controllers.leadership import Action, Elector, LeaseRecord, LeaseTimings
from purelb.kube import (
    EVENTS,
    SERVICES,
    AlreadyExists,
    ApiUnavailable,
    ClusterConfig,
    Conflict,
    EventOutcome,
    EventRecorder,
    EventSettings,
    EventType,
    Gone,
    Invalid,
    KubeClient,
    LeaseObject,
    NotFound,
    PatchType,
    Resource,
    ServerError,
    TooManyRequests,
    WatchEventType,
)
from tests.kube_support import open_client

NS = "default"
CRDS = Resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions",
                kind="CustomResourceDefinition", namespaced=False)
WIDGETS = Resource(group="test.purelb.io", version="v1", plural="widgets", kind="Widget",
                   namespaced=True)


@pytest.fixture(params=["memory", "sqlite"])
async def srv(request, tmp_path):
    db = tmp_path / "api.sqlite" if request.param == "sqlite" else None
    async with open_test_apiserver(storage=request.param, db_path=db) as server:
        yield server


def service(name: str, *, labels: dict | None = None, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}}


async def test_create_get_replace_patch_delete_round_trip(srv):
    async with open_client(srv) as c:
        created = await c.create(SERVICES, service("web", labels={"app": "web"}))
        assert created["metadata"]["uid"]
        got = await c.get(SERVICES, "web", namespace=NS)
        assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

        got["metadata"]["labels"]["tier"] = "front"
        replaced = await c.replace(SERVICES, got)
        assert replaced["metadata"]["labels"]["tier"] == "front"
        with pytest.raises(Conflict):
            await c.replace(SERVICES, got)  # stale resourceVersion

        merged = await c.patch(SERVICES, "web", {"metadata": {"annotations": {"a": "1"}}},
                               namespace=NS)
        assert merged["metadata"]["annotations"] == {"a": "1"}
        jp = await c.patch(SERVICES, "web", [
            {"op": "test", "path": "/metadata/annotations/a", "value": "1"},
            {"op": "replace", "path": "/metadata/annotations/a", "value": "2"}],
            namespace=NS, patch_type=PatchType.JSON)
        assert jp["metadata"]["annotations"] == {"a": "2"}
        with pytest.raises((Conflict, Invalid)):  # a failed JSON-patch test is refused
            await c.patch(SERVICES, "web", [
                {"op": "test", "path": "/metadata/annotations/a", "value": "1"}],
                namespace=NS, patch_type=PatchType.JSON)

        with pytest.raises(Conflict):
            await c.delete(SERVICES, "web", namespace=NS, uid="not-the-uid")
        await c.delete(SERVICES, "web", namespace=NS, uid=created["metadata"]["uid"])
        with pytest.raises(NotFound):
            await c.get(SERVICES, "web", namespace=NS)


async def test_status_subresource_changes_only_status(srv):
    async with open_client(srv) as c:
        await c.create(SERVICES, service("lb"))
        ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
        patched = await c.patch_status(SERVICES, "lb", ingress, namespace=NS)
        assert patched["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}]
        obj = await c.get(SERVICES, "lb", namespace=NS)
        obj["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.11"}]
        obj["spec"]["ports"][0]["port"] = 81  # ignored by the status subresource
        out = await c.replace_status(SERVICES, obj)
        assert out["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.11"}]
        assert out["spec"]["ports"][0]["port"] == 80


async def test_create_twice_is_already_exists_and_invalid_has_causes(srv):
    async with open_client(srv) as c:
        await c.create(SERVICES, service("dup"))
        with pytest.raises(AlreadyExists):
            await c.create(SERVICES, service("dup"))
        with pytest.raises(Invalid) as info:
            await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": "Bad_Name!"}, "spec": {}})
        assert info.value.code == 422


async def test_list_pages_with_limit_and_continue_and_filters_by_selectors(srv):
    async with open_client(srv) as c:
        for i in range(7):
            await c.create(SERVICES, service(f"s{i}", labels={"parity": "even" if i % 2 == 0
                                                               else "odd"}))
        page = await c.list(SERVICES, namespace=NS, limit=3)
        assert len(page["items"]) == 3 and page["metadata"].get("continue")
        items, rv = await c.list_all(SERVICES, namespace=NS, page_size=2)
        assert sorted(o["metadata"]["name"] for o in items) == [f"s{i}" for i in range(7)]
        assert rv
        odd, _ = await c.list_all(SERVICES, namespace=NS, label_selector={"parity": "odd"})
        assert sorted(o["metadata"]["name"] for o in odd) == ["s1", "s3", "s5"]
        one, _ = await c.list_all(SERVICES, namespace=NS, field_selector={"metadata.name": "s4"})
        assert [o["metadata"]["name"] for o in one] == ["s4"]
        expr = {"matchExpressions": [{"key": "parity", "operator": "In", "values": ["even"]}]}
        even, _ = await c.list_all(SERVICES, label_selector=expr)
        assert len(even) == 4


async def test_watch_streams_changes_bookmarks_and_ends_at_timeout(srv):
    async with open_client(srv) as c:
        _, rv = await c.list_all(SERVICES, namespace=NS)
        seen = []
        async with trio.open_nursery() as n:
            async def watcher():
                async with c.watch(SERVICES, namespace=NS, resource_version=rv,
                                   timeout_seconds=1) as stream:
                    async for ev in stream:
                        seen.append((ev.type, ev.object.get("metadata", {}).get("name")))
            n.start_soon(watcher)
            await c.create(SERVICES, service("w1"))
            await c.patch(SERVICES, "w1", {"metadata": {"labels": {"x": "y"}}}, namespace=NS)
            await c.delete(SERVICES, "w1", namespace=NS)
        # the nursery exits only because the server ended the watch after timeoutSeconds
        kinds = [(k, name) for k, name in seen if k is not WatchEventType.BOOKMARK]
        assert kinds == [(WatchEventType.ADDED, "w1"), (WatchEventType.MODIFIED, "w1"),
                         (WatchEventType.DELETED, "w1")]


async def test_watch_from_a_compacted_version_raises_gone(srv):
    async with open_client(srv) as c:
        _, rv = await c.list_all(SERVICES, namespace=NS)
        await c.create(SERVICES, service("g1"))
        await c.create(SERVICES, service("g2"))
        srv.store.compact(keep=0)
        with pytest.raises(Gone):
            async with c.watch(SERVICES, namespace=NS, resource_version=rv) as stream:
                async for _ in stream:
                    pass


async def test_injected_429_is_retried_after_retry_after(srv):
    async with open_client(srv) as c:
        srv.faults.respond(429, method="GET", path_regex="/services", count=1, retry_after=1)
        start = trio.current_time()
        await c.list(SERVICES, namespace=NS)
        assert trio.current_time() - start >= 1.0


async def test_injected_errors_become_typed_exceptions(srv):
    async with open_client(srv) as c:
        srv.faults.respond(500, method="GET", path_regex="/services", count=1)
        with pytest.raises(ServerError):
            await c.list(SERVICES, namespace=NS)
        srv.faults.respond(429, method="POST", count=20, retry_after=0)
        with pytest.raises(TooManyRequests):
            await c.create(SERVICES, service("throttled"))
        srv.faults.clear()


async def test_unreachable_server_is_api_unavailable():
    with socket.socket() as s:  # a port with nothing listening once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ClusterConfig(server=f"http://127.0.0.1:{port}", source="test")
    async with KubeClient(cfg) as dead:
        with pytest.raises(ApiUnavailable, match="unreachable"):
            await dead.get(SERVICES, "x", namespace=NS)


async def test_custom_resources_work_through_the_same_verbs(srv):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.purelb.io"},
        "spec": {"group": "test.purelb.io", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                           "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "properties": {
                                       "spec": {"type": "object", "properties": {
                                           "size": {"type": "integer"}}},
                                       "status": {"type": "object", "properties": {
                                           "ready": {"type": "boolean"}}}}}}}]},
    }
    async with open_client(srv) as c:
        await c.create(CRDS, crd)
        w = {"apiVersion": "test.purelb.io/v1", "kind": "Widget",
             "metadata": {"name": "w", "namespace": NS}, "spec": {"size": 3}}
        await c.create(WIDGETS, w)
        st = await c.patch_status(WIDGETS, "w", {"status": {"ready": True}}, namespace=NS)
        assert st["status"] == {"ready": True} and st["spec"] == {"size": 3}
        with pytest.raises(Invalid):
            await c.patch(WIDGETS, "w", {"spec": {"size": "big"}}, namespace=NS)
        items, _ = await c.list_all(WIDGETS)
        assert [i["metadata"]["name"] for i in items] == ["w"]
        await c.delete(WIDGETS, "w", namespace=NS)


async def test_lease_object_is_compare_and_swap_storage_for_the_elector(srv):
    """Verify that two Electors over LeaseObject never both win, and a stale write is a 409."""
    wall = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    timings = LeaseTimings(lease_duration_s=10, renew_deadline_s=6, retry_period_s=1)
    async with open_client(srv) as c:
        lease_a = LeaseObject(c, name="purelb", namespace=NS)
        lease_b = LeaseObject(c, name="purelb", namespace=NS)
        a, b = Elector("node-a", timings), Elector("node-b", timings)
        assert await lease_a.get() is None
        action, record = a.decide(None, 0.0, wall)
        assert action is Action.CREATE
        created = await lease_a.create(record.to_spec())
        a.written(record, 0.0)
        with pytest.raises(AlreadyExists):
            await lease_b.create(record.to_spec())
        seen = await lease_b.get()
        assert b.decide(LeaseRecord.from_lease(seen), 1.0, wall) == (Action.WAIT, None)
        # a renews; b, still holding the old resourceVersion, loses the race with a 409
        _, renewed = a.decide(LeaseRecord.from_lease(created), 2.0, wall + timedelta(seconds=2))
        rv = created["metadata"]["resourceVersion"]
        await lease_a.replace(renewed.to_spec(), rv)
        _, stolen = b.decide(LeaseRecord.from_lease(seen), 20.0, wall)  # b thinks it expired
        with pytest.raises(Conflict):
            await lease_b.replace(stolen.to_spec(), rv)
        assert (await lease_b.get())["spec"]["holderIdentity"] == "node-a"


async def test_event_recorder_creates_then_patches_a_series(srv):
    async with open_client(srv) as c:
        svc = await c.create(SERVICES, service("ev"))
        rec = EventRecorder(c, EventSettings(reporting_controller="purelb.io/allocator",
                                             reporting_instance="test"))
        kw = {"type": EventType.WARNING, "reason": "PoolExhausted", "action": "Allocate",
              "note": "no free address in pool default"}
        assert await rec.emit(svc, **kw) is EventOutcome.CREATED
        assert await rec.emit(svc, **kw) is EventOutcome.SERIES_UPDATED
        assert await rec.emit(svc, **kw) is EventOutcome.SERIES_UPDATED
        items, _ = await c.list_all(EVENTS, namespace=NS)
        assert len(items) == 1
        assert items[0]["series"]["count"] == 3
        assert items[0]["regarding"]["uid"] == svc["metadata"]["uid"]
