"""Server-side apply (simplified ownership) over HTTP, incl. kubectl apply --server-side."""

from __future__ import annotations

import json

import httpx

from purelb.apiserver.testing import TestApiServer

from .apiserver_fixtures import client, srv

__all__ = ["client", "srv"]

SG = "/apis/purelb.io/v1/namespaces/default/servicegroups"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def _sg(**status: object) -> dict:
    body: dict = {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
                  "metadata": {"name": "g"},
                  "spec": {"local": {"v4pool": {"pool": "192.0.2.0/28",
                                                "subnet": "192.0.2.0/24"}}}}
    if status:
        body["status"] = status
    return body


async def _apply(client: httpx.AsyncClient, path: str, body: dict, manager: str,
                 force: bool = False) -> httpx.Response:
    params = {"fieldManager": manager, **({"force": "true"} if force else {})}
    return await client.patch(path, params=params, headers=APPLY, content=json.dumps(body))


async def test_apply_creates_then_updates_and_records_the_manager(
    client: httpx.AsyncClient,
) -> None:
    r = await _apply(client, f"{SG}/g", _sg(), "tester")
    assert r.status_code == 201, r.text
    mf = r.json()["metadata"]["managedFields"]
    assert mf[0]["manager"] == "tester" and mf[0]["operation"] == "Apply"
    rv = r.json()["metadata"]["resourceVersion"]
    r = await _apply(client, f"{SG}/g", _sg(), "tester")
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == rv, "no-op"
    r = await client.patch(f"{SG}/g", headers=APPLY, content=json.dumps(_sg()))
    assert r.status_code == 400 and "fieldManager" in r.json()["message"]


async def test_status_apply_removes_fields_the_manager_stopped_sending(
    client: httpx.AsyncClient,
) -> None:
    await client.post(SG, json=_sg())
    r = await _apply(client, f"{SG}/g/status",
                     _sg(announce="Local", allocatedIPv4=2, availableIPv4=14), "allocator",
                     force=True)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"announce": "Local", "allocatedIPv4": 2, "availableIPv4": 14}
    r = await _apply(client, f"{SG}/g/status", _sg(announce="Local", allocatedIPv4=3),
                     "allocator", force=True)
    assert r.json()["status"] == {"announce": "Local", "allocatedIPv4": 3}
    assert r.json()["spec"]["local"]["v4pool"]["pool"] == "192.0.2.0/28"


async def test_apply_conflicts_with_another_manager_unless_forced(
    client: httpx.AsyncClient,
) -> None:
    await client.post(SG, json=_sg())
    await _apply(client, f"{SG}/g/status", _sg(announce="Local"), "a")
    r = await _apply(client, f"{SG}/g/status", _sg(announce="Remote"), "b")
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    cause = r.json()["details"]["causes"][0]
    assert cause["reason"] == "FieldManagerConflict" and cause["field"] == ".status.announce"
    r = await _apply(client, f"{SG}/g/status", _sg(announce="Remote"), "b", force=True)
    assert r.status_code == 200 and r.json()["status"]["announce"] == "Remote"
    r = await _apply(client, f"{SG}/g/status", _sg(announce="Remote"), "a")
    assert r.status_code == 200, "agreeing with the current value is not a conflict"


async def test_apply_of_a_service_merges_ports_and_keeps_allocations(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    path = "/api/v1/namespaces/default/services/web"
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "name": "a"},
                                                       {"port": 443, "name": "b"}]}}
    first = (await _apply(client, path, body, "me")).json()
    body["spec"]["ports"] = [{"port": 80, "name": "a"}]
    r = await _apply(client, path, body, "me")
    spec = r.json()["spec"]
    assert [p["port"] for p in spec["ports"]] == [80]
    assert spec["clusterIP"] == first["spec"]["clusterIP"]
    assert spec["ports"][0]["nodePort"] == first["spec"]["ports"][0]["nodePort"]
