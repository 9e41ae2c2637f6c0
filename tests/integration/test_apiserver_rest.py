"""The API server's REST semantics over real HTTP, against memory and SQLite storage."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from purelb.apiserver.testing import TestApiServer

from .apiserver_fixtures import JSONPATCH, MERGE, STRATEGIC, client, cm, dumps, srv, svc

__all__ = ["client", "srv"]  # fixtures used by name

CMS = "/api/v1/namespaces/default/configmaps"
SVCS = "/api/v1/namespaces/default/services"


async def test_create_assigns_uid_rv_timestamp_and_returns_201(client: httpx.AsyncClient) -> None:
    r = await client.post(CMS, json=cm("a", x="1"))
    assert r.status_code == 201, r.text
    meta = r.json()["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert meta["namespace"] == "default"
    got = (await client.get(f"{CMS}/a")).json()
    assert got == r.json()


async def test_resource_versions_increase_across_resources(client: httpx.AsyncClient) -> None:
    rvs = []
    for i in range(3):
        rvs.append(int((await client.post(CMS, json=cm(f"c{i}"))).json()["metadata"]
                       ["resourceVersion"]))
        rvs.append(int((await client.post(SVCS, json=svc(f"s{i}"))).json()["metadata"]
                       ["resourceVersion"]))
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)


async def test_create_twice_is_409_already_exists(client: httpx.AsyncClient) -> None:
    await client.post(CMS, json=cm("a"))
    r = await client.post(CMS, json=cm("a"))
    assert r.status_code == 409
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "a" already exists'


async def test_update_with_stale_resource_version_is_409_conflict(
    client: httpx.AsyncClient,
) -> None:
    obj = (await client.post(CMS, json=cm("a", x="1"))).json()
    obj["data"] = {"x": "2"}
    assert (await client.put(f"{CMS}/a", json=obj)).status_code == 200
    obj["data"] = {"x": "3"}
    r = await client.put(f"{CMS}/a", json=obj)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    assert "the object has been modified" in r.json()["message"]
    assert (await client.get(f"{CMS}/a")).json()["data"] == {"x": "2"}


async def test_merge_patch_with_stale_resource_version_is_409(client: httpx.AsyncClient) -> None:
    await client.post(CMS, json=cm("a"))
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"y": "1"}}
    r = await client.patch(f"{CMS}/a", headers=MERGE, content=dumps(stale))
    assert r.status_code == 409


async def test_noop_patch_keeps_resource_version(client: httpx.AsyncClient) -> None:
    rv = (await client.post(CMS, json=cm("a", x="1"))).json()["metadata"]["resourceVersion"]
    r = await client.patch(f"{CMS}/a", headers=MERGE, content=dumps({"data": {"x": "1"}}))
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == rv


async def test_generation_bumps_on_spec_change_only(client: httpx.AsyncClient) -> None:
    created = (await client.post(SVCS, json=svc("web"))).json()
    assert created["metadata"]["generation"] == 1
    r = await client.patch(f"{SVCS}/web", headers=MERGE,
                           content=dumps({"metadata": {"labels": {"x": "y"}}}))
    assert r.json()["metadata"]["generation"] == 1
    r = await client.patch(f"{SVCS}/web", headers=MERGE,
                           content=dumps({"spec": {"selector": {"app": "w"}}}))
    assert r.json()["metadata"]["generation"] == 2


async def test_status_is_ignored_on_main_resource_and_only_status_changes_on_status(
    client: httpx.AsyncClient,
) -> None:
    await client.post(SVCS, json=svc("web", type="LoadBalancer"))
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    r = await client.patch(f"{SVCS}/web", headers=MERGE, content=dumps(ingress))
    assert r.json()["status"] == {"loadBalancer": {}}
    both = {"spec": {"selector": {"x": "y"}}, **ingress}
    r = await client.patch(f"{SVCS}/web/status", headers=MERGE, content=dumps(both))
    assert r.status_code == 200
    assert r.json()["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1"}]
    assert "selector" not in r.json()["spec"]
    assert r.json()["metadata"]["generation"] == 1


async def test_json_patch_and_strategic_patch_on_service_ports(client: httpx.AsyncClient) -> None:
    await client.post(SVCS, json=svc("web", ports=[{"name": "a", "port": 80},
                                                   {"name": "b", "port": 443}]))
    patch = {"spec": {"$setElementOrder/ports": [{"port": 80}],
                      "ports": [{"port": 80, "targetPort": 9090},
                                {"$patch": "delete", "port": 443}]}}
    r = await client.patch(f"{SVCS}/web", headers=STRATEGIC, content=dumps(patch))
    assert r.status_code == 200, r.text
    assert [(p["port"], p["targetPort"]) for p in r.json()["spec"]["ports"]] == [(80, 9090)]
    ops = [{"op": "replace", "path": "/spec/ports/0/name", "value": "http"}]
    r = await client.patch(f"{SVCS}/web", headers=JSONPATCH, content=dumps(ops))
    assert r.json()["spec"]["ports"][0]["name"] == "http"
    bad = [{"op": "remove", "path": "/spec/nothere"}]
    r = await client.patch(f"{SVCS}/web", headers=JSONPATCH, content=dumps(bad))
    assert r.status_code == 422 and r.json()["kind"] == "Status"


async def test_strategic_patch_on_custom_resource_is_415(client: httpx.AsyncClient) -> None:
    path = "/apis/purelb.io/v1/namespaces/default/servicegroups"
    sg = {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup", "metadata": {"name": "g"},
          "spec": {"local": {"v4pool": {"pool": "192.0.2.0/28", "subnet": "192.0.2.0/24"}}}}
    assert (await client.post(path, json=sg)).status_code == 201
    r = await client.patch(f"{path}/g", headers=STRATEGIC, content=dumps({"spec": {}}))
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"


async def test_finalizers_hold_delete_until_removed(client: httpx.AsyncClient) -> None:
    body = cm("f")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await client.post(CMS, json=body)
    r = await client.delete(f"{CMS}/f")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    assert (await client.get(f"{CMS}/f")).status_code == 200
    r = await client.patch(f"{CMS}/f", headers=MERGE,
                           content=dumps({"metadata": {"finalizers": None}}))
    assert r.status_code == 200
    assert (await client.get(f"{CMS}/f")).status_code == 404


async def test_delete_preconditions_are_checked(client: httpx.AsyncClient) -> None:
    obj = (await client.post(CMS, json=cm("a"))).json()
    bad = {"preconditions": {"uid": "nope"}}
    r = await client.request("DELETE", f"{CMS}/a", content=dumps(bad))
    assert r.status_code == 409 and "Precondition failed" in r.json()["message"]
    stale = {"preconditions": {"resourceVersion": "1"}}
    assert (await client.request("DELETE", f"{CMS}/a", content=dumps(stale))).status_code == 409
    good = {"preconditions": {"uid": obj["metadata"]["uid"],
                              "resourceVersion": obj["metadata"]["resourceVersion"]}}
    assert (await client.request("DELETE", f"{CMS}/a", content=dumps(good))).status_code == 200
    assert (await client.get(f"{CMS}/a")).status_code == 404


async def test_dry_run_does_not_persist(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{CMS}?dryRun=All", json=cm("d"))
    assert r.status_code == 201
    assert (await client.get(f"{CMS}/d")).status_code == 404


async def test_namespace_must_exist_and_namespace_is_defaulted(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/api/v1/namespaces/nope/configmaps", json=cm("a"))
    assert r.status_code == 404 and r.json()["message"] == 'namespaces "nope" not found'
    body = cm("a")
    body["metadata"]["namespace"] = "other"
    r = await client.post(CMS, json=body)
    assert r.status_code == 400 and "does not match the namespace" in r.json()["message"]


async def test_deleting_a_namespace_deletes_its_contents(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "tmp"}})
    await client.post("/api/v1/namespaces/tmp/configmaps", json=cm("a"))
    assert (await client.delete("/api/v1/namespaces/tmp")).status_code == 200
    assert (await client.get("/api/v1/namespaces/tmp/configmaps/a")).status_code == 404
    assert (await client.get("/api/v1/namespaces/tmp")).status_code == 404


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=a", ["a1", "a2"]),
        ("app==a,tier!=db", ["a1"]),
        ("app in (a,b)", ["a1", "a2", "b1"]),
        ("app notin (a)", ["b1", "n1"]),
        ("tier", ["a2"]),
        ("!app", ["n1"]),
    ],
    ids=["equals", "double-equals-and-not-equals", "in", "notin", "exists", "not-exists"],
)
async def test_list_filters_by_label_selector(
    client: httpx.AsyncClient, selector: str, expected: list[str]
) -> None:
    for name, labels in [("a1", {"app": "a"}), ("a2", {"app": "a", "tier": "db"}),
                         ("b1", {"app": "b"}), ("n1", {})]:
        await client.post(CMS, json=cm(name, labels))
    r = await client.get(CMS, params={"labelSelector": selector})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == expected


async def test_list_filters_by_field_selector_and_rejects_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    for n in ("a", "b"):
        await client.post(CMS, json=cm(n))
    r = await client.get("/api/v1/configmaps", params={"fieldSelector": "metadata.name=b"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["b"]
    r = await client.get(CMS, params={"fieldSelector": "metadata.namespace!=default"})
    assert r.json()["items"] == []
    r = await client.get(CMS, params={"fieldSelector": "spec.nope=1"})
    assert r.status_code == 400 and "field label not supported" in r.json()["message"]


async def test_paging_is_a_consistent_snapshot(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post(CMS, json=cm(f"p{i}"))
    first = (await client.get(CMS, params={"limit": 2})).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    await client.delete(f"{CMS}/p3")  # after the snapshot: still listed
    token = first["metadata"]["continue"]
    rest = (await client.get(CMS, params={"limit": 10, "continue": token})).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p2", "p3", "p4"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_continue_token_older_than_history_is_410(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    for i in range(3):
        await client.post(CMS, json=cm(f"p{i}"))
    token = (await client.get(CMS, params={"limit": 1})).json()["metadata"]["continue"]
    await client.post(CMS, json=cm("later"))
    srv.store.compact(keep=0)
    r = await client.get(CMS, params={"limit": 1, "continue": token})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"


async def _collect(client: httpx.AsyncClient, url: str, n: int,
                   params: dict[str, str]) -> list[dict]:
    events: list[dict] = []
    async with client.stream("GET", url, params={"watch": "true", **params},
                             timeout=httpx.Timeout(10.0, read=None)) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= n:
                break
    return events


async def test_watch_from_resource_version_sees_later_changes(
    client: httpx.AsyncClient,
) -> None:
    rv = (await client.get(CMS)).json()["metadata"]["resourceVersion"]
    await client.post(CMS, json=cm("w", x="1"))
    await client.patch(f"{CMS}/w", headers=MERGE, content=dumps({"data": {"x": "2"}}))
    await client.delete(f"{CMS}/w")
    events = await _collect(client, CMS, 3, {"resourceVersion": rv})
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


async def test_watch_with_selector_turns_label_changes_into_added_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    rv = (await client.get(CMS)).json()["metadata"]["resourceVersion"]
    await client.post(CMS, json=cm("w"))
    labelled = {"metadata": {"labels": {"k": "v"}}}
    await client.patch(f"{CMS}/w", headers=MERGE, content=dumps(labelled))
    await client.patch(f"{CMS}/w", headers=MERGE, content=dumps({"metadata": {"labels": None}}))
    events = await _collect(client, CMS, 2, {"resourceVersion": rv, "labelSelector": "k=v"})
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


async def test_watch_without_resource_version_starts_with_current_objects(
    client: httpx.AsyncClient,
) -> None:
    await client.post(CMS, json=cm("x"))
    events = await _collect(client, CMS, 1, {})
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "x"


async def test_watch_from_compacted_resource_version_gets_410_error_event(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    rv = (await client.get(CMS)).json()["metadata"]["resourceVersion"]
    await client.post(CMS, json=cm("x"))
    srv.store.compact(keep=0)
    events = await _collect(client, CMS, 1, {"resourceVersion": rv})
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_watch_sends_bookmarks_only_when_allowed_and_ends_at_timeout(
    client: httpx.AsyncClient,
) -> None:
    rv = (await client.get(CMS)).json()["metadata"]["resourceVersion"]
    events = []
    with trio.fail_after(5):
        async with client.stream("GET", CMS, params={
            "watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
            "timeoutSeconds": "2"}, timeout=httpx.Timeout(10.0, read=None)) as resp:
            async for line in resp.aiter_lines():
                if line.strip():
                    events.append(json.loads(line))
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[-1]["object"]["metadata"]["resourceVersion"] == rv
    with trio.fail_after(5):
        async with client.stream("GET", CMS, params={
            "watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"},
            timeout=httpx.Timeout(10.0, read=None)) as resp:
            assert [line async for line in resp.aiter_lines() if line.strip()] == []


async def test_faults_drop_watches_and_expire_next_watch(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    rv = (await client.get(CMS)).json()["metadata"]["resourceVersion"]
    ended = trio.Event()

    async def watch() -> None:
        async with client.stream("GET", CMS, params={"watch": "true", "resourceVersion": rv},
                                 timeout=httpx.Timeout(10.0, read=None)) as resp:
            async for _ in resp.aiter_lines():
                pass
        ended.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await srv.faults.wait_open_watches(1)
            assert srv.faults.drop_watches() == 1
            await ended.wait()
    srv.faults.expire_next_watch()
    events = await _collect(client, CMS, 1, {"resourceVersion": rv})
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
    events = await _collect(client, CMS, 0, {"resourceVersion": rv, "timeoutSeconds": "1"})
    assert events == []


async def test_faults_respond_with_status_and_retry_after(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    srv.faults.respond(429, method="GET", path_regex=r"/configmaps$", count=2, retry_after=3)
    for _ in range(2):
        r = await client.get(CMS)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        assert r.json()["reason"] == "TooManyRequests"
    assert (await client.get(CMS)).status_code == 200
    srv.faults.respond(500, method="POST")
    assert (await client.post(CMS, json=cm("a"))).status_code == 500
    assert (await client.get(f"{CMS}/a")).status_code == 404
    srv.faults.respond(409, path_regex="configmaps/b")
    assert (await client.get(f"{CMS}/b")).status_code == 409
    srv.faults.latency(0.2, path_regex="/version")
    start = trio.current_time()
    await client.get("/version")
    assert trio.current_time() - start >= 0.2
    srv.faults.clear()
    start = trio.current_time()
    await client.get("/version")
    assert trio.current_time() - start < 0.2


async def test_audit_set_records_verbs_per_user(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    await client.post(CMS, json=cm("a"))
    await client.get(f"{CMS}/a")
    await client.patch(f"{SVCS}/nope/status", headers=MERGE, content="{}")
    records = srv.server.audit_records("system:anonymous")
    assert ("create", "", "configmaps", "", "default") in records
    assert ("get", "", "configmaps", "", "default") in records
    assert ("patch", "", "services", "status", "default") in records


async def test_put_creates_missing_objects_only_where_the_real_type_allows(
    client: httpx.AsyncClient,
) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}
    r = await client.put("/apis/coordination.k8s.io/v1/namespaces/default/leases/n1",
                         json=lease)
    assert r.status_code == 201 and r.json()["metadata"]["uid"]
    r = await client.put(f"{CMS}/missing", json=cm("missing"))
    assert r.status_code == 404


async def test_a_watch_is_released_when_its_client_hangs_up(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await stream.send_all(b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\n"
                          b"Host: x\r\n\r\n")
    with trio.fail_after(5):
        await srv.faults.wait_open_watches(1)
        await stream.aclose()
        await srv.faults.wait_watches_at_most(0)
    assert (await client.get("/version")).status_code == 200


async def test_put_of_a_custom_resource_must_carry_a_resource_version(
    client: httpx.AsyncClient,
) -> None:
    path = "/apis/purelb.io/v1/namespaces/default/servicegroups"
    sg = {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup", "metadata": {"name": "g"},
          "spec": {"local": {"v4pool": {"pool": "192.0.2.0/28", "subnet": "192.0.2.0/24"}}}}
    created = (await client.post(path, json=sg)).json()
    r = await client.put(f"{path}/g", json=sg)
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    sg["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    assert (await client.put(f"{path}/g", json=sg)).status_code == 200


async def test_expect_100_continue_gets_an_interim_reply(srv: TestApiServer) -> None:
    body = b'{"metadata": {"name": "c100"}}'
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
                              b"Host: x\r\nContent-Type: application/json\r\n"
                              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        with trio.fail_after(5):
            interim = await stream.receive_some(1024)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(body)
        reply = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in reply:
                reply += await stream.receive_some(65536)
        assert reply.startswith(b"HTTP/1.1 201 ")
