"""Leader election against an in-memory Lease store with real resourceVersion conflicts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.lowlevel

from purelb.controllers.leadership import (
    Action,
    Elector,
    LeaseRecord,
    LeaseTimings,
    run_election,
)
from purelb.errors import ApiError, ConfigError

T = LeaseTimings(lease_duration_s=6, renew_deadline_s=4, retry_period_s=1)
WALL = datetime(2026, 1, 1, tzinfo=UTC)


class LeaseStore:
    """One Lease with optimistic concurrency, and a switch to cut a client off."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.rv = 0

    def client(self, name: str) -> _Client:
        return _Client(self, name)


class _Client:
    def __init__(self, store: LeaseStore, name: str) -> None:
        self.store, self.name, self.partitioned = store, name, False

    def _check(self) -> None:
        if self.partitioned:
            raise ApiError(f"{self.name}: connection refused")

    async def get(self):
        self._check()
        await trio.lowlevel.checkpoint()
        return None if self.store.lease is None else {**self.store.lease}

    async def create(self, spec):
        self._check()
        if self.store.lease is not None:
            raise ApiError("AlreadyExists")
        return self._put(spec)

    async def replace(self, spec, resource_version):
        self._check()
        if (
            self.store.lease is None
            or self.store.lease["metadata"]["resourceVersion"] != resource_version
        ):
            raise ApiError("Conflict")
        return self._put(spec)

    def _put(self, spec):
        self.store.rv += 1
        self.store.lease = {"metadata": {"resourceVersion": str(self.store.rv)}, "spec": dict(spec)}
        return {**self.store.lease}


def test_timings_must_leave_a_safety_margin():
    with pytest.raises(ConfigError, match="renew_deadline_s < lease_duration_s"):
        LeaseTimings(lease_duration_s=5, renew_deadline_s=5, retry_period_s=1)


def test_decide_creates_renews_waits_and_takes_over():
    a = Elector("a", T)
    action, record = a.decide(None, 0.0, WALL)
    assert action is Action.CREATE and record.holder == "a" and record.transitions == 0
    a.written(record, 0.0)
    assert a.is_leader(3.9) and not a.is_leader(4.0)
    b = Elector("b", T)
    assert b.decide(record, 1.0, WALL) == (Action.WAIT, None)
    assert b.decide(record, 6.9, WALL) == (Action.WAIT, None)  # unchanged for 5.9 s only
    action, taken = b.decide(record, 7.0, WALL)
    assert action is Action.UPDATE and taken.holder == "b" and taken.transitions == 1
    again, renewed = a.decide(record, 2.0, WALL)
    assert again is Action.UPDATE and renewed.holder == "a" and renewed.transitions == 0


def test_lease_record_round_trips_through_a_lease_object():
    record = LeaseRecord("a", 15, "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z", 3)
    assert LeaseRecord.from_lease({"spec": record.to_spec()}) == record


async def test_one_leader_and_partitioned_leader_stops_before_takeover(autojump_clock):
    store = LeaseStore()
    events: list[tuple[str, bool, float]] = []

    def tracker(name):
        return lambda leading: events.append((name, leading, trio.current_time()))

    ca, cb = store.client("a"), store.client("b")
    ea, eb = Elector("a", T), Elector("b", T)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_election, ca, ea, tracker("a"))
        await nursery.start(run_election, cb, eb, tracker("b"))
        await trio.sleep(20)
        assert [e[:2] for e in events] == [("a", True)]
        ca.partitioned = True
        cut_at = trio.current_time()
        await trio.sleep(20)
        lost = next(t for n, lead, t in events if n == "a" and not lead)
        won = next(t for n, lead, t in events if n == "b" and lead)
        assert lost < won, "the old leader must stop writing before the standby takes over"
        assert lost - cut_at <= T.renew_deadline_s + 0.01
        assert won - cut_at <= T.lease_duration_s + 2 * T.retry_period_s
        nursery.cancel_scope.cancel()


async def test_graceful_stop_hands_over_within_a_retry_period(autojump_clock):
    store = LeaseStore()
    changes: list[tuple[str, bool, float]] = []
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as a_nursery:
            await a_nursery.start(
                run_election,
                store.client("a"),
                Elector("a", T),
                lambda v: changes.append(("a", v, trio.current_time())),
            )
            await outer.start(
                run_election,
                store.client("b"),
                Elector("b", T),
                lambda v: changes.append(("b", v, trio.current_time())),
            )
            await trio.sleep(5)
            a_nursery.cancel_scope.cancel()
        stopped = trio.current_time()
        # a cleared the holder on its way out (b may already have taken it in the meantime)
        assert store.lease["spec"]["holderIdentity"] in (None, "b")
        await trio.sleep(5)
        won = next(t for n, v, t in changes if n == "b" and v)
        assert won - stopped <= T.retry_period_s + 0.01
        outer.cancel_scope.cancel()
