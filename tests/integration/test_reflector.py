"""The reflector against the real API server, with every fault the server can inject.

Each scenario starts a reflector plus a consumer that rebuilds state from the Change
events alone (:class:`Mirror`), injects one fault while objects are created, modified
and deleted, and then requires three things: the reflector's cache equals the server's
list, the consumer's rebuilt state equals it too, and every deleted object reached the
consumer as DELETED. The matrix runs on memory and SQLite storage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial

import pytest
import trio

from purelb.apiserver._server import ApiServer, ApiServerConfig, serve_apiserver
from purelb.apiserver.testing import open_test_apiserver
from purelb.kube import (
    ENDPOINT_SLICES,
    ENDPOINTSLICE_BY_SERVICE,
    SERVICES,
    ChangeKind,
    ClusterConfig,
    KubeClient,
    Reflector,
    ReflectorSettings,
)
from tests.kube_support import FAST, Mirror, eventually, open_client, truth, versions

NS = "default"
LOCAL = ReflectorSettings.local()
#: Request targets (path + query) of the reflector's list and watch calls on services.
#: Its lists are paged (``limit=``); the test's own unpaged lists stay fault-free.
LIST_RX = r"/services\?(?!.*watch=1).*limit="
WATCH_RX = r"/services\?.*watch=1"
#: Retry-After the 429 scenarios ask for, in seconds.
RETRY_AFTER_S = 1


@pytest.fixture(params=["memory", "sqlite"])
async def srv(request, tmp_path):
    db = tmp_path / "api.sqlite" if request.param == "sqlite" else None
    async with open_test_apiserver(storage=request.param, db_path=db) as server:
        yield server


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}


async def churn(c: KubeClient, tag: str) -> set[tuple[str, str]]:
    """Delete one, modify one, add one; return the deleted keys."""
    await c.delete(SERVICES, "s1", namespace=NS)
    await c.patch(SERVICES, "s2", {"metadata": {"labels": {"tag": tag}}}, namespace=NS)
    await c.create(SERVICES, service(f"new-{tag}"))
    return {(NS, "s1")}


@dataclass(frozen=True)
class Fault:
    desc: str
    before_start: Callable[[object], None]
    during: Callable[[object, KubeClient], Awaitable[set[tuple[str, str]]]]
    expect_gone: bool = False
    expect_errors: bool = False
    min_elapsed_s: float = 0.0
    min_watches: int = 1


def _nothing(srv) -> None:
    return None


async def _dropped_watches(srv, c):
    deleted = set()
    for i in range(1, 4):
        await eventually(lambda: srv.faults.open_watches >= 1, what="the watch to reconnect")
        srv.faults.drop_watches()
        await c.create(SERVICES, service(f"extra-{i}"))
        await c.delete(SERVICES, f"s{i}", namespace=NS)
        deleted.add((NS, f"s{i}"))
    return deleted


async def _away_then(srv, c, *, compact: bool) -> set[tuple[str, str]]:
    # Keep the reflector disconnected: every watch reconnect fails until we clear, so
    # the deletions below can only reach it through the relist after the 410.
    srv.faults.respond(500, method="GET", path_regex=WATCH_RX, count=10_000)
    srv.faults.drop_watches()
    deleted = await churn(c, "away")
    await c.delete(SERVICES, "s3", namespace=NS)
    if compact:
        srv.store.compact(keep=0)
    srv.faults.clear()
    if not compact:
        srv.faults.expire_next_watch(1)
    return deleted | {(NS, "s3")}


async def _forced_410(srv, c):
    return await _away_then(srv, c, compact=False)


async def _compaction(srv, c):
    return await _away_then(srv, c, compact=True)


def _inject(status: int, rx: str, *, count: int = 2, retry_after: int | None = None):
    def before(srv) -> None:
        srv.faults.respond(status, method="GET", path_regex=rx, count=count,
                           retry_after=retry_after)

    async def during(srv, c):
        before(srv)
        if rx == LIST_RX:
            srv.faults.expire_next_watch(1)  # force a relist that meets the fault
        srv.faults.drop_watches()
        return await churn(c, f"e{status}")

    return before, during


async def _latency(srv, c):
    srv.faults.latency(0.15)
    srv.faults.drop_watches()
    deleted = await churn(c, "slow")
    srv.faults.drop_watches()
    return deleted


FAULTS = [
    Fault("dropped watches", _nothing, _dropped_watches, min_watches=4),
    Fault("forced 410 with deletes while disconnected", _nothing, _forced_410,
          expect_gone=True, expect_errors=True),
    Fault("compaction while disconnected", _nothing, _compaction, expect_gone=True,
          expect_errors=True),
    Fault("409 on list", *_inject(409, LIST_RX), expect_errors=True),
    Fault("409 on watch", *_inject(409, WATCH_RX), expect_errors=True),
    Fault("429 on list honours Retry-After", *_inject(429, LIST_RX, count=1,
                                                      retry_after=RETRY_AFTER_S),
          min_elapsed_s=RETRY_AFTER_S),
    Fault("429 on watch honours Retry-After", *_inject(429, WATCH_RX, count=1,
                                                       retry_after=RETRY_AFTER_S),
          min_elapsed_s=RETRY_AFTER_S),
    Fault("500 on list", *_inject(500, LIST_RX), expect_errors=True),
    Fault("500 on watch", *_inject(500, WATCH_RX), expect_errors=True),
    Fault("latency on every request", _nothing, _latency),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.desc for f in FAULTS])
async def test_reflector_converges_with_no_missed_deletion(srv, fault):
    async with open_client(srv) as writer, open_client(srv, role="reflector") as rc:
        for i in range(5):
            await writer.create(SERVICES, service(f"s{i}"))
        fault.before_start(srv)  # the initial list meets the fault too
        send, receive = trio.open_memory_channel(64)
        mirror = Mirror()
        refl = Reflector(rc, SERVICES, namespace=NS, send_channel=send, settings=LOCAL)
        async with trio.open_nursery() as n:
            n.start_soon(mirror.consume, receive)
            await n.start(refl.run)
            assert len(refl.list()) == 5
            srv.faults.clear()
            start = trio.current_time()
            deleted = await fault.during(srv, writer)
            expected = await truth(writer, SERVICES, NS)
            await eventually(lambda: versions(refl.list()) == expected,
                             what="the reflector cache to equal the server")
            await eventually(lambda: mirror.state == expected,
                             what="the consumer's rebuilt state to equal the server")
            elapsed = trio.current_time() - start
            stats = refl.statistics()
            n.cancel_scope.cancel()
    assert deleted and deleted <= mirror.deleted, "every deletion reached the consumer"
    if fault.expect_gone:
        assert stats.gone >= 1 and stats.lists >= 2, stats
    if fault.expect_errors:
        assert stats.errors >= 1, stats
    assert elapsed >= fault.min_elapsed_s
    assert stats.watches >= fault.min_watches, stats


async def test_reflector_initial_list_retries_transient_errors(srv):
    srv.faults.respond(500, method="GET", path_regex=LIST_RX, count=2)
    srv.faults.respond(429, method="GET", path_regex=LIST_RX, count=1, retry_after=0)
    async with open_client(srv) as c:
        await c.create(SERVICES, service("only"))
        refl = Reflector(c, SERVICES, namespace=NS, settings=LOCAL)
        async with trio.open_nursery() as n:
            await n.start(refl.run)
            assert [o["metadata"]["name"] for o in refl.list()] == ["only"]
            assert refl.statistics().errors == 2
            n.cancel_scope.cancel()


def endpointslice(name: str, svc: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": True},
                           "nodeName": "node-a"}],
            "ports": [{"port": 80, "protocol": "TCP"}]}


async def test_two_reflectors_and_index_lookups(srv):
    async with open_client(srv) as c:
        await c.create(SERVICES, service("web"))
        await c.create(ENDPOINT_SLICES, endpointslice("web-a", "web"))
        svc_refl = Reflector(c, SERVICES, settings=LOCAL)
        eps_refl = Reflector(c, ENDPOINT_SLICES, indexers=ENDPOINTSLICE_BY_SERVICE,
                             settings=LOCAL)
        async with trio.open_nursery() as n:
            await n.start(svc_refl.run)
            await n.start(eps_refl.run)
            assert svc_refl.get(NS, "web") is not None
            assert [o["metadata"]["name"] for o in eps_refl.by_index("service", f"{NS}/web")] \
                == ["web-a"]
            await c.create(ENDPOINT_SLICES, endpointslice("web-b", "web"))
            await c.create(ENDPOINT_SLICES, endpointslice("db-a", "db"))
            await eventually(lambda: len(eps_refl.by_index("service", f"{NS}/web")) == 2,
                             what="web-b in the index")
            await c.patch(ENDPOINT_SLICES, "web-a",
                          {"metadata": {"labels": {"kubernetes.io/service-name": "db"}}},
                          namespace=NS)
            await c.delete(ENDPOINT_SLICES, "web-b", namespace=NS)
            await eventually(lambda: eps_refl.by_index("service", f"{NS}/web") == [],
                             what="web slices gone from the index")
            assert sorted(o["metadata"]["name"]
                          for o in eps_refl.by_index("service", f"{NS}/db")) == ["db-a", "web-a"]
            n.cancel_scope.cancel()


async def test_periodic_resync_and_relist(srv):
    settings = ReflectorSettings(resync_s=0.3, relist_s=0.5, backoff=LOCAL.backoff,
                                 watch_timeout_min_s=5, watch_timeout_max_s=10)
    async with open_client(srv) as c:
        await c.create(SERVICES, service("r"))
        send, receive = trio.open_memory_channel(64)
        mirror = Mirror()
        refl = Reflector(c, SERVICES, namespace=NS, send_channel=send, settings=settings)
        async with trio.open_nursery() as n:
            n.start_soon(mirror.consume, receive)
            await n.start(refl.run)
            await eventually(lambda: refl.statistics().resyncs >= 2
                             and refl.statistics().lists >= 3, what="two resyncs, two relists")
            n.cancel_scope.cancel()
    assert mirror.log.count((ChangeKind.MODIFIED, "r")) >= 2
    assert mirror.log[0] == (ChangeKind.ADDED, "r")


async def test_reflector_survives_an_api_server_restart_on_sqlite(tmp_path):
    """Verify that the reflector rides out a restart of a SQLite-backed server on the same
    port: it backs off while the server is down, then catches up (by watch or relist) with
    the deletions made after the restart."""
    db = tmp_path / "api.sqlite"
    cfg = ApiServerConfig(db_path=db, port=0)
    async with trio.open_nursery() as servers:
        first = trio.CancelScope()

        async def run_first(task_status=trio.TASK_STATUS_IGNORED):
            with first:
                await serve_apiserver(cfg, task_status=task_status)

        port = await servers.start(run_first)
        kube = ClusterConfig(server=f"http://127.0.0.1:{port}", source="test")
        async with KubeClient(kube, settings=FAST) as c:
            for i in range(5):
                await c.create(SERVICES, service(f"s{i}"))
            send, receive = trio.open_memory_channel(64)
            mirror = Mirror()
            refl = Reflector(c, SERVICES, namespace=NS, send_channel=send, settings=LOCAL)
            async with trio.open_nursery() as n:
                n.start_soon(mirror.consume, receive)
                await n.start(refl.run)
                first.cancel()
                await eventually(lambda: refl.statistics().errors >= 1,
                                 what="the reflector to notice the server is gone")
                second = ApiServer(replace(cfg, port=port))
                # Hold the reflector off until the writes below are done.
                second.faults.respond(503, method="GET", path_regex=WATCH_RX, count=10_000)
                second.faults.respond(503, method="GET", path_regex=LIST_RX, count=10_000)
                await servers.start(partial(serve_apiserver, second.config, server=second))
                deleted = await churn(c, "restart")
                second.faults.clear()
                expected = await truth(c, SERVICES, NS)
                await eventually(lambda: versions(refl.list()) == expected
                                 and mirror.state == expected, what="convergence after restart")
                n.cancel_scope.cancel()
        servers.cancel_scope.cancel()
    assert deleted <= mirror.deleted
