"""Reflector logic against a small in-memory fake API (MockTransport).

The fake keeps an event history like the real server: watches replay history after the
requested resourceVersion, and compaction makes older versions answer 410. The full
fault matrix runs against the real API server in tests/integration/test_reflector.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio.testing

from purelb.kube import (
    SERVICES,
    ChangeKind,
    ClientSettings,
    ClusterConfig,
    Forbidden,
    KubeClient,
    Reflector,
    ReflectorSettings,
)

CFG = ClusterConfig(server="http://api.test", token="t", source="test")


class FakeApi:
    def __init__(self) -> None:
        self.rv = 0
        self.objects: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []
        self.oldest = 0  # watches from below this rv get 410
        self._changed = trio.Event()
        self._drop = trio.Event()
        self.lists = 0
        self.watches = 0
        self.forbid = False
        self.watch_errors: list[tuple[int, dict]] = []

    def _record(self, kind: str, obj: dict) -> None:
        self.history.append((self.rv, kind, obj))
        self._changed.set()
        self._changed = trio.Event()

    def put(self, name: str, value: str = "") -> None:
        self.rv += 1
        kind = "MODIFIED" if name in self.objects else "ADDED"
        obj = {"kind": "Service", "metadata": {"name": name, "namespace": "a",
                                               "uid": f"uid-{name}",
                                               "resourceVersion": str(self.rv)},
               "spec": {"v": value}}
        self.objects[name] = obj
        self._record(kind, obj)

    def delete(self, name: str) -> None:
        self.rv += 1
        obj = self.objects.pop(name)
        self._record("DELETED", {**obj, "metadata": {**obj["metadata"],
                                                     "resourceVersion": str(self.rv)}})

    def bookmark(self) -> None:
        self.rv += 1
        self._record("BOOKMARK", {"kind": "Service",
                                  "metadata": {"resourceVersion": str(self.rv)}})

    def compact(self) -> None:
        self.oldest = self.rv + 1
        self.history.clear()

    def drop_watches(self) -> None:
        self._drop.set()
        self._drop = trio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/namespaces/a/services", request.url
        if self.forbid:
            return httpx.Response(403, json={"kind": "Status", "code": 403, "reason": "Forbidden"})
        params = request.url.params
        if params.get("watch") != "1":
            self.lists += 1
            return httpx.Response(200, json={
                "kind": "ServiceList", "metadata": {"resourceVersion": str(self.rv)},
                "items": sorted(self.objects.values(), key=lambda o: o["metadata"]["name"])})
        self.watches += 1
        if self.watch_errors:
            code, body = self.watch_errors.pop(0)
            return httpx.Response(code, json=body)
        since = int(params["resourceVersion"])
        if since < self.oldest - 1:
            line = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                "reason": "Expired", "message": "too old"}}
            return httpx.Response(200, content=json.dumps(line).encode() + b"\n")
        return httpx.Response(200, content=self._stream(since))

    async def _stream(self, since: int):
        drop = self._drop
        while True:
            # Take the wake-up event before reading history: a change recorded while we
            # are suspended in a yield must still wake us (no lost wake-up).
            changed = self._changed
            pending = [(rv, k, o) for rv, k, o in self.history if rv > since]
            for rv, kind, obj in pending:
                yield json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                since = rv
            if self._changed is not changed:
                continue
            async with trio.open_nursery() as n:
                async def wait(ev, nursery=n):
                    await ev.wait()
                    nursery.cancel_scope.cancel()
                n.start_soon(wait, changed)
                n.start_soon(wait, drop)
            if drop.is_set():
                return


def _versions(objs) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objs}


async def converge(reflector: Reflector, api: FakeApi) -> None:
    # Polling on the (virtual) clock: the condition spans the fake server and the reflector.
    with trio.fail_after(30):
        while _versions(reflector.list()) != _versions(api.objects.values()):  # noqa: ASYNC110
            await trio.sleep(0.05)


@pytest.fixture
async def api_client():
    api = FakeApi()
    async with KubeClient(CFG, settings=ClientSettings(rate_limit=None),
                          transport=httpx.MockTransport(api)) as client:
        yield api, client


async def drain(receive) -> list[tuple[ChangeKind, str]]:
    out = []
    while True:
        try:
            kind, obj = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return out
        out.append((kind, obj["metadata"]["name"]))


async def test_reflector_lists_then_applies_watch_events(api_client, autojump_clock):
    api, client = api_client
    api.put("x")
    api.put("y")
    send, receive = trio.open_memory_channel(100)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send,
                     settings=ReflectorSettings.local())
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        assert [o["metadata"]["name"] for o in refl.list()] == ["x", "y"]
        api.put("z")
        api.put("x", "changed")
        api.bookmark()
        api.delete("y")
        await converge(refl, api)
        await trio.testing.wait_all_tasks_blocked()
        assert refl.resource_version == str(api.rv)
        assert refl.statistics().bookmarks == 1
        n.cancel_scope.cancel()
    assert await drain(receive) == [
        (ChangeKind.ADDED, "x"), (ChangeKind.ADDED, "y"), (ChangeKind.ADDED, "z"),
        (ChangeKind.MODIFIED, "x"), (ChangeKind.DELETED, "y")]


async def test_reflector_relists_on_410_and_emits_deletions_missed_while_away(
        api_client, autojump_clock):
    api, client = api_client
    for name in ("a1", "a2", "a3"):
        api.put(name)
    send, receive = trio.open_memory_channel(100)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send,
                     settings=ReflectorSettings.local())
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        await trio.testing.wait_all_tasks_blocked()
        await drain(receive)
        # Disconnect, change things, compact: the reconnect from the old rv gets 410.
        api.forbid = True  # hold the reflector off while we mutate
        api.drop_watches()
        await trio.testing.wait_all_tasks_blocked()
        api.delete("a1")
        api.put("a2", "new")
        api.put("b1")
        api.compact()
        api.forbid = False
        await converge(refl, api)
        await trio.testing.wait_all_tasks_blocked()
        stats = refl.statistics()
        n.cancel_scope.cancel()
    assert stats.gone >= 1 and stats.lists == 2
    assert await drain(receive) == [
        (ChangeKind.DELETED, "a1"), (ChangeKind.ADDED, "b1"), (ChangeKind.MODIFIED, "a2")]


async def test_reflector_raises_permanent_errors_before_the_first_sync(api_client,
                                                                     autojump_clock):
    api, client = api_client
    api.forbid = True
    refl = Reflector(client, SERVICES, namespace="a", settings=ReflectorSettings.local())
    with pytest.RaisesGroup(Forbidden):
        async with trio.open_nursery() as n:
            await n.start(refl.run)


async def test_reflector_resync_redelivers_the_cache(api_client, autojump_clock):
    api, client = api_client
    api.put("x")
    send, receive = trio.open_memory_channel(100)
    settings = ReflectorSettings(resync_s=10.0, backoff=ReflectorSettings.local().backoff)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send, settings=settings)
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        await trio.sleep(25)
        n.cancel_scope.cancel()
    assert await drain(receive) == [(ChangeKind.ADDED, "x"), (ChangeKind.MODIFIED, "x"),
                                    (ChangeKind.MODIFIED, "x")]
    assert refl.statistics().resyncs == 2 and api.lists == 1


async def test_reflector_closes_the_channel_when_it_stops(api_client, autojump_clock):
    _, client = api_client
    send, receive = trio.open_memory_channel(10)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send,
                     settings=ReflectorSettings.local())
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        n.cancel_scope.cancel()
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()


async def test_reflector_drops_a_nameless_event_and_keeps_going(api_client, autojump_clock):
    api, client = api_client
    send, receive = trio.open_memory_channel(100)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send,
                     settings=ReflectorSettings.local())
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        api.rv += 1
        api._record("ADDED", {"kind": "Service", "metadata": {"resourceVersion": str(api.rv)}})
        api.put("after")
        await converge(refl, api)
        n.cancel_scope.cancel()
    assert await drain(receive) == [(ChangeKind.ADDED, "after")]


async def test_reflector_reconnects_a_watch_that_hangs_past_its_timeout(api_client,
                                                                       autojump_clock):
    """Verify that a server that never ends a quiet watch (a dead peer) is left after
    timeoutSeconds + watch_grace_s and the watch is reopened."""
    api, client = api_client
    settings = ReflectorSettings.local()
    refl = Reflector(client, SERVICES, namespace="a", settings=settings)
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        await trio.sleep(settings.watch_timeout_max_s + settings.watch_grace_s + 0.1)
        assert refl.statistics().watches == 2  # the fake ignores timeoutSeconds
        api.put("late")
        await converge(refl, api)
        n.cancel_scope.cancel()


async def test_resync_never_delivers_a_stale_version_after_a_newer_one(api_client,
                                                                      autojump_clock):
    """Verify that per object the versions a slow consumer sees never go backwards, even
    while resyncs and watch events compete for a full channel."""
    api, client = api_client
    for name in ("x", "y"):
        api.put(name)
    send, receive = trio.open_memory_channel(1)
    settings = ReflectorSettings(resync_s=0.1, backoff=ReflectorSettings.local().backoff)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send, settings=settings)
    seen: dict[str, list[int]] = {"x": [], "y": []}

    async def slow_consumer():
        async for _, obj in receive:
            seen[obj["metadata"]["name"]].append(int(obj["metadata"]["resourceVersion"]))
            await trio.sleep(0.02)

    async with trio.open_nursery() as n:
        n.start_soon(slow_consumer)
        await n.start(refl.run)
        for i in range(20):
            api.put("x" if i % 2 else "y", str(i))
            await trio.sleep(0.02)
        await converge(refl, api)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    assert refl.statistics().resyncs > 5
    for name, versions in seen.items():
        assert versions == sorted(versions), f"{name} went backwards: {versions}"
        assert versions[-1] == int(api.objects[name]["metadata"]["resourceVersion"])


TOO_LARGE = {"kind": "Status", "code": 504, "reason": "Timeout",
             "message": "Too large resource version: 99, current: 7",
             "details": {"causes": [{"reason": "ResourceVersionTooLarge",
                                     "message": "Too large resource version"}]}}
BROKEN = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "x"}


@pytest.mark.parametrize(("desc", "errors", "lists_after"), [
    ("a version ahead of the server relists at once", [(504, TOO_LARGE)], 2),
    ("four failures retry the watch from the same version", [(500, BROKEN)] * 4, 1),
    ("five failures in a row give up the version and relist", [(500, BROKEN)] * 5, 2),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
async def test_reflector_relists_when_its_version_cannot_be_watched(
        api_client, autojump_clock, desc, errors, lists_after):
    api, client = api_client
    api.put("x")
    refl = Reflector(client, SERVICES, namespace="a", settings=ReflectorSettings.local())
    api.watch_errors = list(errors)  # met by the first watches after the initial list
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        await trio.sleep(10)
        assert api.watch_errors == []
        assert api.lists == lists_after
        n.cancel_scope.cancel()


async def test_reflector_transform_slims_listed_and_watched_objects(api_client, autojump_clock):
    """Verify that the transform applies to the initial list and to watch events alike."""
    api, client = api_client
    api.put("x")

    def slim(obj):
        return {"metadata": {k: obj["metadata"][k] for k in ("name", "namespace",
                                                             "resourceVersion")},
                "slim": True}

    send, receive = trio.open_memory_channel(100)
    refl = Reflector(client, SERVICES, namespace="a", send_channel=send,
                     settings=ReflectorSettings.local(), transform=slim)
    async with trio.open_nursery() as n:
        await n.start(refl.run)
        api.put("y")
        await converge(refl, api)
        n.cancel_scope.cancel()
    assert all(o.get("slim") for o in refl.list())
    changes = []
    while True:
        try:
            changes.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert [c.obj["metadata"]["name"] for c in changes] == ["x", "y"]
    assert all(c.obj.get("slim") for c in changes)
