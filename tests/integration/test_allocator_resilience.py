"""Restarts, two replicas and API faults: the allocation stays unique and converges.

Lease timings are the ``local()`` preset (3 s lease, 2 s renew deadline, 0.25 s retry),
so failover tests take a few seconds of real time.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from subprocess import DEVNULL

import httpx
import pytest
import trio

from purelb.controllers.allocator import AllocatorDaemon
from purelb.kube import LEASES, SERVICES, KubeApiError
from tests.integration.allocator_support import (
    APP_NS,
    NS,
    PartitionableTransport,
    World,
    check_invariants,
    group,
    ingress,
    open_world,
    running_daemon,
    service,
    settings,
)

POOL = group("default", ("10.2.0.0/24", "10.2.0.0/16"))
#: slack on top of the lease arithmetic for a loaded 2-core machine
FAILOVER_SLACK_S = 3.0


async def create_many(w: World, names: list[str], *, pause_s: float = 0.0) -> None:
    for name in names:
        await w.client.create(SERVICES, service(name))
        if pause_s:
            await trio.sleep(pause_s)


async def converged(w: World, expected: set[str]) -> dict[str, list[str]]:
    """Wait until exactly ``expected`` Services exist, each with one address, no clashes,
    and the ServiceGroup status counts them; return the ingress per Service."""
    problem = ""

    async def check():
        nonlocal problem
        services = await w.services()
        names = {k.split("/", 1)[1] for k in services}
        if names != expected:
            problem = f"names differ: missing {expected - names}, extra {names - expected}"
            return None
        bare = sorted(k for k, o in services.items() if len(ingress(o)) != 1)
        if bare:
            problem = f"without exactly one address: {bare[:5]}"
            return None
        if (problems := check_invariants(services)):
            problem = f"invariants: {problems[:3]}"
            return None
        status = await w.group_status("default")
        if status.get("allocatedIPv4") != len(expected):
            problem = f"group status allocatedIPv4={status.get('allocatedIPv4')}"
            return None
        return {k.split("/", 1)[1]: ingress(o) for k, o in services.items()}

    try:
        result = await w.eventually(check, what=f"{len(expected)} Services allocated")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {problem}") from None
    assert check_invariants(await w.services()) == []
    return result


def writes(daemon: AllocatorDaemon) -> float:
    total = 0.0
    for metric in daemon.metrics.registry.collect():
        if metric.name == "purelb_k8s_client_updates":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_restart_in_the_middle_of_churn_loses_and_duplicates_nothing():
    """Verify that Services created while one daemon stops and the next starts all end up
    with one unique address, and no address held before the restart moves."""
    first = [f"a{i}" for i in range(30)]
    second = [f"b{i}" for i in range(20)]
    deleted = first[:8]
    async with open_world(POOL) as w, trio.open_nursery() as churn:
        churn.start_soon(partial(create_many, w, first, pause_s=0.01))
        async with running_daemon(w, settings("a", workers=4)):
            async def some():
                return sum(bool(ingress(o)) for o in (await w.services()).values()) >= 10
            await w.eventually(some, what="10 allocations before the restart")
        # the daemon was cancelled with creations and writes in flight
        before = {k.split("/", 1)[1]: ingress(o) for k, o in (await w.services()).items()
                  if ingress(o)}
        churn.start_soon(partial(create_many, w, second, pause_s=0.01))
        async with running_daemon(w, settings("b", workers=4)):
            for name in deleted:
                await _until_accepted(w.client.delete, SERVICES, name, namespace=APP_NS)
            after = await converged(w, set(first[8:]) | set(second))
        for name, ips in before.items():
            if name not in deleted:
                assert after[name] == ips, f"{name} moved from {ips} to {after[name]}"


async def test_two_replicas_only_the_leader_writes_and_a_partitioned_leader_is_replaced():
    lease = settings().local().lease
    async with open_world(POOL) as w:
        cut = PartitionableTransport()
        async with running_daemon(w, settings("a", leader_elect=True), transport=cut) as a:
            await w.eventually(_async(a.is_leader), what="a leads")
            async with running_daemon(w, settings("b", leader_elect=True)) as b:
                names = [f"s{i}" for i in range(10)]
                await create_many(w, names)
                await converged(w, set(names))
                assert writes(a) > 0 and writes(b) == 0, "the standby wrote"
                assert not b.is_leader() and b.health.unmet() == ["leading"]
                cut.partitioned = True
                t0 = trio.current_time()
                await w.eventually(_async(b.is_leader), what="b takes over",
                                   timeout_s=lease.lease_duration_s + 10)
                took = trio.current_time() - t0
                assert not a.is_leader(), "two leaders at once"
                assert took <= lease.lease_duration_s + 2 * lease.retry_period_s + \
                    FAILOVER_SLACK_S, f"failover took {took:.2f} s"
                await create_many(w, ["after"])
                await converged(w, {*names, "after"})
                assert writes(b) > 0


def _async(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn()
    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_cli_leader_process_dies_and_the_standby_takes_over(sig):
    """Verify that `purelb allocator` serves /readyz, and that after SIGTERM (lease given
    up: at once) or SIGKILL (lease expires) an in-process standby takes over."""
    lease = settings().local().lease
    async with open_world(POOL) as w:
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PURELB_", "KUBECONFIG"))}
        cmd = [sys.executable, "-m", "purelb", "allocator", "--kubeconfig", str(w.srv.kubeconfig),
               "--namespace", NS, "--host", "127.0.0.1", "--port", str(port), "--identity",
               "proc", "--lease-duration", str(lease.lease_duration_s), "--renew-deadline",
               str(lease.renew_deadline_s), "--retry-period", str(lease.retry_period_s),
               "--kube-qps", "0", "--log-format", "json"]
        proc = await trio.lowlevel.open_process(cmd, env=env, stdout=DEVNULL, stderr=DEVNULL)
        try:
            async with httpx.AsyncClient() as h:
                async def ready():
                    try:
                        r = await h.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.HTTPError:
                        return False
                    return r.status_code == 200
                await w.eventually(ready, what="the process is ready (synced and leading)")
            await create_many(w, ["one"])
            await converged(w, {"one"})
            async with running_daemon(w, settings("standby", leader_elect=True)) as standby:
                assert not standby.is_leader()
                proc.send_signal(sig)
                t0 = trio.current_time()
                await proc.wait()
                if sig == signal.SIGTERM:
                    assert proc.returncode == 0
                await w.eventually(_async(standby.is_leader), what="standby takes over",
                                   timeout_s=lease.lease_duration_s + 10)
                took = trio.current_time() - t0
                bound = (lease.retry_period_s if sig == signal.SIGTERM
                         else lease.lease_duration_s) + 2 * lease.retry_period_s
                assert took <= bound + FAILOVER_SLACK_S, f"takeover took {took:.2f} s"
                if sig == signal.SIGTERM:
                    held = await w.client.get(LEASES, "purelb-allocator", namespace=NS)
                    assert held["spec"]["holderIdentity"] == "standby"
                await create_many(w, ["two"])
                await converged(w, {"one", "two"})
        finally:
            if proc.poll() is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()


@dataclass(frozen=True)
class Fault:
    desc: str
    inject: Callable[[World], None]


def _drop(w: World) -> None:
    w.srv.faults.drop_watches()


def _gone(w: World) -> None:
    w.srv.store.compact(keep=0)
    w.srv.faults.expire_next_watch(4)
    w.srv.faults.drop_watches()


def _conflicts(w: World) -> None:
    w.srv.faults.respond(409, method="PUT", path_regex=r"/services/[^/]+/status", count=40)
    w.srv.faults.respond(409, method="PATCH", path_regex=r"/services/", count=20)


def _throttled(w: World) -> None:
    w.srv.faults.respond(429, method="PUT", path_regex=r"/services/", count=6, retry_after=1)
    w.srv.faults.respond(429, method="PATCH", path_regex=r"/services/", count=6, retry_after=1)


def _errors(w: World) -> None:
    w.srv.faults.respond(500, count=60)


FAULTS = [
    Fault("dropped watches", _drop),
    Fault("410 Gone on every reconnect after a compaction", _gone),
    Fault("a storm of 409 Conflicts on status and annotations", _conflicts),
    Fault("429 Too Many Requests with Retry-After", _throttled),
    Fault("500 errors on every kind of request", _errors),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.desc for f in FAULTS])
async def test_allocation_converges_through_api_faults(fault: Fault):
    async with open_world(POOL) as w, running_daemon(w, settings(workers=4)):
        first = [f"f{i}" for i in range(10)]
        await create_many(w, first)
        fault.inject(w)
        more = [f"g{i}" for i in range(10)]
        for i, name in enumerate(more):
            await _until_accepted(w.client.create, SERVICES, service(name))
            if i % 3 == 0:
                fault.inject(w)
        for name in first[:4]:
            await _until_accepted(w.client.delete, SERVICES, name, namespace=APP_NS)
        w.srv.faults.clear()
        await converged(w, set(first[4:]) | set(more))


async def _until_accepted(fn: Callable[..., Awaitable[object]], *args: object,
                          **kw: object) -> None:
    """The test's own writes go through the faults too: retry them until one lands."""
    while True:
        try:
            await fn(*args, **kw)
            return
        except KubeApiError:
            await trio.sleep(0.05)
