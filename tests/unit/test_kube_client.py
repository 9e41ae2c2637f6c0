"""KubeClient against httpx.MockTransport: URLs, bodies, retries, error translation."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

import purelb
import purelb.kube
from purelb.kube import (
    SERVICE_GROUPS,
    SERVICES,
    AlreadyExists,
    ApiUnavailable,
    ClientSettings,
    ClusterConfig,
    Conflict,
    KubeClient,
    MalformedResponse,
    NotFound,
    PatchType,
    ServerError,
    TooManyRequests,
    Unauthorized,
    WatchEventType,
)

CFG = ClusterConfig(server="http://api.test", token="tok", namespace="ns1", source="test")
NO_LIMIT = ClientSettings(rate_limit=None)


def status(code: int, reason: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason,
            "message": f"{reason} happened"}


class Recorder:
    """A MockTransport handler that answers from a script and records requests."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return self.answers.pop(0)


def client(handler, settings: ClientSettings = NO_LIMIT, cfg: ClusterConfig = CFG) -> KubeClient:
    return KubeClient(cfg, role="test", settings=settings, transport=httpx.MockTransport(handler))


def ok(obj: dict | None = None) -> httpx.Response:
    return httpx.Response(200, json=obj or {"kind": "Service", "metadata": {"name": "x"}})


def test_public_names_are_sorted_complete_and_exported_once():
    names = purelb.kube.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(names)) == len(names)
    public = {n for n in dir(purelb.kube) if not n.startswith("_")}
    assert public - set(names) == set(), "every public name is listed in __all__"


async def test_verbs_build_the_right_urls_methods_and_bodies():
    rec = Recorder(*[ok() for _ in range(8)])
    async with client(rec) as c:
        await c.get(SERVICES, "web", namespace="a")
        await c.list(SERVICES, label_selector={"app": "web"}, field_selector={"spec.type": "X"},
                     limit=10, continue_token="tok2")
        await c.create(SERVICES, {"metadata": {"name": "web"}})
        await c.replace(SERVICE_GROUPS, {"metadata": {"name": "g", "namespace": "purelb",
                                                      "resourceVersion": "5"}})
        await c.patch(SERVICES, "web", {"metadata": {"labels": {"a": "b"}}}, namespace="a")
        await c.patch_status(SERVICES, "web", [{"op": "test", "path": "/x", "value": 1}],
                             namespace="a", patch_type=PatchType.JSON)
        await c.replace_status(SERVICES, {"metadata": {"name": "web", "namespace": "a"}})
        await c.delete(SERVICES, "web", namespace="a", uid="u1", resource_version="9")
    r = rec.requests
    assert (r[0].method, r[0].url.path) == ("GET", "/api/v1/namespaces/a/services/web")
    assert r[1].url.path == "/api/v1/services"
    assert dict(r[1].url.params) == {"labelSelector": "app=web", "fieldSelector": "spec.type=X",
                                     "limit": "10", "continue": "tok2"}
    assert (r[2].method, r[2].url.path) == ("POST", "/api/v1/namespaces/ns1/services")
    assert (r[3].method, r[3].url.path) == ("PUT",
                                            "/apis/purelb.io/v1/namespaces/purelb/servicegroups/g")
    assert json.loads(r[3].content)["metadata"]["resourceVersion"] == "5"
    assert r[4].headers["Content-Type"] == "application/merge-patch+json"
    assert r[5].headers["Content-Type"] == "application/json-patch+json"
    assert r[5].url.path.endswith("/services/web/status")
    assert (r[6].method, r[6].url.path) == ("PUT", "/api/v1/namespaces/a/services/web/status")
    assert r[7].method == "DELETE"
    assert json.loads(r[7].content)["preconditions"] == {"uid": "u1", "resourceVersion": "9"}
    for req in r:
        assert req.headers["Authorization"] == "Bearer tok"
        assert req.headers["User-Agent"] == f"purelb/{purelb.__version__} (test)"


async def test_list_all_follows_continue_tokens_and_keeps_the_first_resource_version():
    rec = Recorder(
        ok({"metadata": {"resourceVersion": "10", "continue": "c1"}, "items": [{"n": 1}]}),
        ok({"metadata": {"resourceVersion": "10", "continue": "c2"}, "items": [{"n": 2}]}),
        ok({"metadata": {"resourceVersion": "10"}, "items": [{"n": 3}]}),
    )
    async with client(rec) as c:
        items, rv = await c.list_all(SERVICES, namespace="a", page_size=1)
    assert items == [{"n": 1}, {"n": 2}, {"n": 3}] and rv == "10"
    assert [q.url.params.get("continue") for q in rec.requests] == [None, "c1", "c2"]


@pytest.mark.parametrize(("code", "reason", "cls"), [
    (404, "NotFound", NotFound), (409, "Conflict", Conflict),
    (409, "AlreadyExists", AlreadyExists), (500, "InternalError", ServerError)])
async def test_error_answers_become_typed_errors_with_context(code, reason, cls):
    rec = Recorder(httpx.Response(code, json=status(code, reason)))
    async with client(rec) as c:
        with pytest.raises(cls) as info:
            await c.get(SERVICES, "web", namespace="a")
    assert info.value.context.key == "a/web" and info.value.context.verb == "get"


async def test_transport_failures_become_api_unavailable():
    def boom(request):
        raise httpx.ConnectError("connection refused", request=request)

    async with client(boom) as c:
        with pytest.raises(ApiUnavailable, match="connection refused") as info:
            await c.get(SERVICES, "web", namespace="a")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_non_json_success_is_malformed_response():
    async with client(Recorder(httpx.Response(200, content=b"<html>"))) as c:
        with pytest.raises(MalformedResponse, match="not JSON"):
            await c.get(SERVICES, "web", namespace="a")


async def test_429_is_retried_after_retry_after_seconds(autojump_clock):
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "3"}, json=status(429, "TooMany")),
                   httpx.Response(429, headers={"Retry-After": "2"}),
                   ok())
    async with client(rec) as c:
        start = trio.current_time()
        await c.get(SERVICES, "web", namespace="a")
        assert trio.current_time() - start == pytest.approx(5.0)
    assert len(rec.requests) == 3


async def test_429_gives_up_after_max_retries(autojump_clock):
    rec = Recorder(*[httpx.Response(429, headers={"Retry-After": "1"}) for _ in range(3)])
    async with client(rec, ClientSettings(rate_limit=None, max_throttle_retries=2)) as c:
        with pytest.raises(TooManyRequests) as info:
            await c.create(SERVICES, {"metadata": {"name": "x"}})
    assert info.value.retry_after_s == 1.0 and len(rec.requests) == 3


async def test_503_with_retry_after_is_retried_only_for_reads(autojump_clock):
    busy = {"headers": {"Retry-After": "1"}, "json": status(503, "ServiceUnavailable")}
    rec = Recorder(httpx.Response(503, **busy), ok(), httpx.Response(503, **busy))
    async with client(rec) as c:
        await c.get(SERVICES, "web", namespace="a")
        with pytest.raises(ServerError):
            await c.create(SERVICES, {"metadata": {"name": "x"}})


async def test_401_rereads_a_rotated_token_file_once(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("old")
    cfg = ClusterConfig(server="http://api.test", token_file=token_file, source="test")
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] != "Bearer new":
            return httpx.Response(401, json=status(401, "Unauthorized"))
        return ok()

    async with client(handler, cfg=cfg) as c:
        with pytest.raises(Unauthorized):
            await c.get(SERVICES, "web", namespace="a")  # old token, file unchanged
        token_file.write_text("new")
        await c.get(SERVICES, "web", namespace="a")  # cached "old" -> 401 -> reload -> ok
    assert seen == ["Bearer old", "Bearer old", "Bearer old", "Bearer new"]


async def test_client_lifecycle_misuse_has_clear_messages():
    c = client(Recorder())
    with pytest.raises(RuntimeError, match="before 'async with"):
        await c.get(SERVICES, "x", namespace="a")
    async with c:
        pass
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        await c.__aenter__()


async def test_bad_names_and_scopes_fail_before_any_request():
    async with client(Recorder()) as c:
        with pytest.raises(ValueError, match="cannot be used in an API path"):
            await c.get(SERVICES, "../secrets", namespace="a")
        with pytest.raises(ValueError, match="namespaced"):
            await c.get(SERVICES, "web")
        with pytest.raises(TypeError, match="list of operations"):
            await c.patch(SERVICES, "web", {"a": 1}, namespace="a", patch_type=PatchType.JSON)


def _watch_body(*events, split: int = 7):
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    async def chunks():
        for i in range(0, len(data), split):
            yield data[i:i + split]
    return chunks()


async def test_watch_streams_events_split_across_chunks():
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "2"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "3"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "4"}}},
    ]
    rec = Recorder(httpx.Response(200, content=_watch_body(*events)))
    got = []
    async with client(rec) as c, c.watch(SERVICES, namespace="a", resource_version="1",
                                         timeout_seconds=30) as stream:
        async for ev in stream:
            got.append((ev.type, ev.resource_version))
    assert got == [(WatchEventType.ADDED, "2"), (WatchEventType.BOOKMARK, "3"),
                   (WatchEventType.DELETED, "4")]
    assert dict(rec.requests[0].url.params) == {
        "watch": "1", "resourceVersion": "1", "allowWatchBookmarks": "true",
        "timeoutSeconds": "30"}


async def test_watch_error_event_raises_gone():
    events = [{"type": "ERROR", "object": status(410, "Expired")}]
    rec = Recorder(httpx.Response(200, content=_watch_body(*events)))
    async with client(rec) as c, c.watch(SERVICES, resource_version="1") as stream:
        with pytest.raises(purelb.kube.Gone):
            async for _ in stream:
                pass


async def test_watch_stream_broken_mid_event_is_api_unavailable():
    async def chunks():
        yield b'{"type": "ADDED", "obj'

    rec = Recorder(httpx.Response(200, content=chunks()))
    async with client(rec) as c, c.watch(SERVICES) as stream:
        with pytest.raises(ApiUnavailable, match="ended inside an event"):
            async for _ in stream:
                pass


async def test_client_rate_limit_paces_requests(autojump_clock):
    rec = Recorder(*[ok() for _ in range(4)])
    settings = ClientSettings(rate_limit=purelb.kube.RateLimitSettings(qps=2.0, burst=2))
    async with client(rec, settings) as c:
        start = trio.current_time()
        for _ in range(4):
            await c.get(SERVICES, "web", namespace="a")
        assert trio.current_time() - start == pytest.approx(1.0)


async def test_401_after_a_429_still_rereads_the_token(tmp_path, autojump_clock):
    token_file = tmp_path / "token"
    token_file.write_text("old")
    cfg = ClusterConfig(server="http://api.test", token_file=token_file, source="test")
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}),
                   httpx.Response(401, json=status(401, "Unauthorized")), ok())
    async with client(rec, cfg=cfg) as c:
        await c.get(SERVICES, "web", namespace="a")
    assert len(rec.requests) == 3


HTTPX_FAILURES = [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ReadError,
                  httpx.RemoteProtocolError, httpx.WriteError, httpx.PoolTimeout]


@pytest.mark.parametrize("exc_type", HTTPX_FAILURES, ids=lambda t: t.__name__)
async def test_no_httpx_exception_escapes_a_request_or_a_watch(exc_type):
    def fail(request):
        raise exc_type("boom", request=request)

    async with client(fail) as c:
        with pytest.raises(ApiUnavailable):
            await c.list(SERVICES)
        with pytest.raises(ApiUnavailable):
            async with c.watch(SERVICES):
                pass

    async def chunks():
        yield b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n'
        raise exc_type("mid-stream", request=None)

    async with client(Recorder(httpx.Response(200, content=chunks()))) as c, \
            c.watch(SERVICES) as stream:
        with pytest.raises(ApiUnavailable, match="mid-stream"):
            async for _ in stream:
                pass
