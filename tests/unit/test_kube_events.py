"""EventRecorder: creation, series aggregation within the window, best-effort failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
import trio

from purelb.kube import (
    ClientSettings,
    ClusterConfig,
    EventOutcome,
    EventRecorder,
    EventSettings,
    EventType,
    KubeClient,
)

CFG = ClusterConfig(server="http://api.test", token="t", source="test")
SVC = {"apiVersion": "v1", "kind": "Service",
       "metadata": {"name": "web", "namespace": "a", "uid": "u-web", "resourceVersion": "3"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-n1"}}
SETTINGS = EventSettings(reporting_controller="purelb.io/allocator",
                         reporting_instance="allocator-0", aggregation_window_s=360.0)


class FakeEventsApi:
    """Just enough of events.k8s.io/v1: create and merge-patch, failing loudly otherwise."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], dict] = {}
        self.calls: list[str] = []
        self.fail_next: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        assert parts[:4] == ["", "apis", "events.k8s.io", "v1"], request.url
        ns = parts[5]
        self.calls.append(request.method)
        if self.fail_next:
            code, self.fail_next = self.fail_next, None
            return httpx.Response(code, json={"kind": "Status", "code": code, "reason": "X"})
        if request.method == "POST":
            body = json.loads(request.content)
            self.events[(ns, body["metadata"]["name"])] = body
            return httpx.Response(201, json=body)
        if request.method == "PATCH":
            assert request.headers["Content-Type"] == "application/merge-patch+json"
            key = (ns, parts[7])
            if key not in self.events:
                return httpx.Response(404, json={"kind": "Status", "code": 404,
                                                 "reason": "NotFound"})
            self.events[key].update(json.loads(request.content))
            return httpx.Response(200, json=self.events[key])
        raise AssertionError(f"unexpected {request.method} {request.url}")


class Wall:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
async def api_and_recorder():
    api = FakeEventsApi()
    async with KubeClient(CFG, settings=ClientSettings(rate_limit=None),
                          transport=httpx.MockTransport(api)) as client:
        yield api, EventRecorder(client, SETTINGS, now=Wall())


async def test_first_event_is_created_with_the_v1_fields(api_and_recorder):
    api, rec = api_and_recorder
    out = await rec.emit(SVC, type=EventType.NORMAL, reason="AddressAssigned",
                         action="Allocate", note="assigned 10.0.0.1 from pool default")
    assert out is EventOutcome.CREATED
    (ns, name), ev = next(iter(api.events.items()))
    assert ns == "a" and name.startswith("web.")
    assert ev["eventTime"] == "2026-11-26T08:00:00.123456Z"
    assert ev["regarding"] == {"apiVersion": "v1", "kind": "Service", "name": "web",
                               "namespace": "a", "uid": "u-web", "resourceVersion": "3"}
    assert ev["reportingController"] == "purelb.io/allocator"
    assert ev["type"] == "Normal" and "series" not in ev


async def test_repeats_within_the_window_patch_the_series_count(api_and_recorder, autojump_clock):
    api, rec = api_and_recorder
    kw = {"type": EventType.WARNING, "reason": "PoolExhausted", "action": "Allocate",
          "note": "no address left in pool a"}
    assert await rec.emit(SVC, **kw) is EventOutcome.CREATED
    for _ in range(3):
        await trio.sleep(100)
        assert await rec.emit(SVC, **kw) is EventOutcome.SERIES_UPDATED
    assert len(api.events) == 1
    ev = next(iter(api.events.values()))
    assert ev["series"]["count"] == 4
    # A different note is a different series.
    assert await rec.emit(SVC, **{**kw, "note": "other"}) is EventOutcome.CREATED
    # After a quiet period longer than the window, a new Event starts.
    await trio.sleep(361)
    assert await rec.emit(SVC, **kw) is EventOutcome.CREATED
    assert len(api.events) == 3
    assert api.calls == ["POST", "PATCH", "PATCH", "PATCH", "POST", "POST"]


async def test_series_of_an_expired_event_starts_a_new_event(api_and_recorder):
    api, rec = api_and_recorder
    kw = {"type": EventType.NORMAL, "reason": "R", "action": "A", "note": "n"}
    await rec.emit(NODE, **kw)
    assert next(iter(api.events))[0] == "default", "cluster-scoped objects report in default"
    api.events.clear()  # TTL expired on the server
    assert await rec.emit(NODE, **kw) is EventOutcome.CREATED
    assert api.calls == ["POST", "PATCH", "POST"]


async def test_api_failure_is_reported_not_raised(api_and_recorder):
    api, rec = api_and_recorder
    api.fail_next = 500
    out = await rec.emit(SVC, type=EventType.NORMAL, reason="R", action="A", note="n")
    assert out is EventOutcome.FAILED


async def test_bad_arguments_are_programming_errors(api_and_recorder):
    _, rec = api_and_recorder
    with pytest.raises(ValueError, match="reason"):
        await rec.emit(SVC, type=EventType.NORMAL, reason="", action="A", note="n")
    with pytest.raises(ValueError, match="without kind and name"):
        await rec.emit({"metadata": {}}, type=EventType.NORMAL, reason="R", action="A",
                       note="n")


async def test_long_notes_are_truncated_to_the_api_limit(api_and_recorder):
    api, rec = api_and_recorder
    await rec.emit(SVC, type=EventType.NORMAL, reason="R", action="A", note="é" * 2000)
    assert len(next(iter(api.events.values()))["note"].encode()) <= 1024
