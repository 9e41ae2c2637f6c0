"""Bad input gets a proper Status and never a crash or a partial write."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest
import trio

from purelb.apiserver.testing import TestApiServer

from .apiserver_fixtures import client, srv

__all__ = ["client", "srv"]

SVCS = "/api/v1/namespaces/default/services"
CMS = "/api/v1/namespaces/default/configmaps"
THREE_MIB = 3 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    desc: str
    method: str
    path: str
    code: int
    reason: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    cause_field: str | None = None


def _svc(**over: object) -> bytes:
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"ports": [{"port": 80}]}}
    doc.update(over)
    return json.dumps(doc).encode()


CASES = [
    Case("malformed JSON is a 400", "POST", SVCS, 400, "BadRequest", b'{"kind": "Serv'),
    Case("malformed YAML is a 400", "POST", SVCS, 400, "BadRequest", b"kind: [unclosed",
         {"Content-Type": "application/yaml"}),
    Case("a JSON array is not an object", "POST", SVCS, 400, "BadRequest", b"[1, 2]"),
    Case("an empty body is a 400", "POST", SVCS, 400, "BadRequest", b""),
    Case("wrong apiVersion is a 400", "POST", SVCS, 400, "BadRequest",
         _svc(apiVersion="apps/v1")),
    Case("wrong kind is a 400", "POST", SVCS, 400, "BadRequest", _svc(kind="ConfigMap")),
    Case("an invalid Service name is a 422 on metadata.name", "POST", SVCS, 422, "Invalid",
         _svc(metadata={"name": "Bad_Name"}), cause_field="metadata.name"),
    Case("a Service name must be a DNS-1035 label", "POST", SVCS, 422, "Invalid",
         _svc(metadata={"name": "1web"}), cause_field="metadata.name"),
    Case("an invalid namespace name is a 422", "POST", "/api/v1/namespaces", 422, "Invalid",
         b'{"metadata": {"name": "a.b"}}', cause_field="metadata.name"),
    Case("a missing name is a 422", "POST", CMS, 422, "Invalid", b'{"metadata": {}}',
         cause_field="metadata.name"),
    Case("an invalid label value is a 422", "POST", CMS, 422, "Invalid",
         b'{"metadata": {"name": "x", "labels": {"a": "not valid!"}}}',
         cause_field="metadata.labels"),
    Case("a port out of range is a 422 on the port", "POST", SVCS, 422, "Invalid",
         _svc(spec={"ports": [{"port": 70000}]}), cause_field="spec.ports[0].port"),
    Case("an unknown Service type is a 422", "POST", SVCS, 422, "Invalid",
         _svc(spec={"type": "Magic", "ports": [{"port": 80}]}), cause_field="spec.type"),
    Case("a clusterIP outside the service CIDR is a 422", "POST", SVCS, 422, "Invalid",
         _svc(spec={"clusterIP": "192.0.2.1", "ports": [{"port": 80}]}),
         cause_field="spec.clusterIPs[0]"),
    Case("a resourceVersion on create is a 400", "POST", CMS, 400, "BadRequest",
         b'{"metadata": {"name": "x", "resourceVersion": "5"}}'),
    Case("a body over 3 MiB is a 413", "POST", CMS, 413, "RequestEntityTooLarge",
         b'{"metadata": {"name": "big"}, "data": {"a": "' + b"x" * THREE_MIB + b'"}}'),
    Case("protobuf of an unsupported kind is a 415", "POST", CMS, 415, "UnsupportedMediaType",
         b"k8s\x00", {"Content-Type": "application/vnd.kubernetes.protobuf"}),
    Case("an unknown resource is a 404", "GET", "/api/v1/namespaces/default/widgets", 404,
         "NotFound"),
    Case("an unknown group is a 404", "GET", "/apis/nope.example.com/v1/things", 404,
         "NotFound"),
    Case("an unknown core version is a 404", "GET", "/api/v2/pods", 404, "NotFound"),
    Case("a cluster-scoped resource under a namespace is a 404", "GET",
         "/api/v1/namespaces/default/nodes", 404, "NotFound"),
    Case("PUT on a collection is a 405", "PUT", CMS, 405, "MethodNotAllowed", b"{}"),
    Case("an unparsable label selector is a 400", "GET", f"{CMS}?labelSelector=a%20in%20(b",
         400, "BadRequest"),
    Case("a non-numeric limit is a 400", "GET", f"{CMS}?limit=ten", 400, "BadRequest"),
    Case("a garbage continue token is a 400", "GET", f"{CMS}?continue=%%%", 400, "BadRequest"),
    Case("a non-numeric watch resourceVersion is a 400", "GET",
         f"{CMS}?watch=true&resourceVersion=abc", 400, "BadRequest"),
    Case("an unknown dryRun value is a 400", "POST", f"{CMS}?dryRun=Some", 400, "BadRequest",
         b'{"metadata": {"name": "x"}}'),
    Case("an unknown patch content type is a 415", "PATCH", f"{SVCS}/kubernetes", 415,
         "UnsupportedMediaType", b"{}", {"Content-Type": "text/plain"}),
    Case("a protobuf-only Accept is a 406", "GET", CMS, 406, "NotAcceptable",
         headers={"Accept": "application/vnd.kubernetes.protobuf"}),
    Case("a patch of a missing object is a 404", "PATCH", f"{CMS}/nope", 404, "NotFound",
         b"{}", {"Content-Type": "application/merge-patch+json"}),
    Case("a strict unknown field on a CR is a 400", "POST",
         "/apis/purelb.io/v1/namespaces/default/servicegroups?fieldValidation=Strict", 400,
         "BadRequest",
         b'{"apiVersion": "purelb.io/v1", "kind": "ServiceGroup", "metadata": {"name": "g"},'
         b' "spec": {"local": {}, "bogus": 1}}'),
    Case("a CR violating its schema is a 422 naming the field", "POST",
         "/apis/purelb.io/v1/namespaces/default/servicegroups", 422, "Invalid",
         b'{"apiVersion": "purelb.io/v1", "kind": "ServiceGroup", "metadata": {"name": "g"},'
         b' "spec": {"local": {"v4pool": {"pool": 7, "subnet": "10.0.0.0/8"}}}}',
         cause_field="spec.local.v4pool.pool"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
async def test_bad_input_gets_a_status_and_writes_nothing(
    srv: TestApiServer, client: httpx.AsyncClient, case: Case
) -> None:
    before = srv.store.rv
    r = await client.request(case.method, case.path, content=case.body, headers=case.headers)
    assert r.status_code == case.code, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    status = r.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure" and status["code"] == case.code
    assert status["reason"] == case.reason and status["message"]
    if case.cause_field is not None:
        fields = [c["field"] for c in status["details"]["causes"]]
        assert case.cause_field in fields, fields
    assert srv.store.rv == before, "a rejected request wrote something"
    assert (await client.get("/version")).status_code == 200, "the server stopped answering"


async def test_garbage_http_gets_a_400_and_the_server_keeps_serving(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        reply = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400")
    assert (await client.get("/version")).status_code == 200


async def test_a_client_that_hangs_up_mid_body_leaves_no_trace(
    srv: TestApiServer, client: httpx.AsyncClient
) -> None:
    before = srv.store.rv
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
                              b"Host: x\r\nContent-Length: 100\r\n\r\n{\"metadata\":")
    assert (await client.get("/version")).status_code == 200
    assert srv.store.rv == before
