"""A coordination.k8s.io/v1 Lease helper: acquire, renew and release one named lease.

This is the storage half of leader election — a compare-and-swap on one object — not the
election loop (that belongs to the allocator). :func:`decide` is the pure rule: what to
do given the current lease, who we are, and the wall-clock time. :class:`LeaseClient`
performs it with ``resourceVersion`` preconditions, so two contenders can never both
win: the loser of a race gets a 409 and reports :attr:`LeaseOutcome.LOST_RACE`.

Lease times are wall-clock (other nodes read them), so ``now`` is injected; clock skew
between nodes shortens or stretches a lease by the skew, as in client-go.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._client import KubeClient
from ._errors import AlreadyExists, Conflict, NotFound
from ._events import micro_time
from ._resources import LEASES


class LeaseOutcome(enum.Enum):
    """Result of :meth:`LeaseClient.acquire`."""

    ACQUIRED = "acquired"
    """We hold the lease now and did not before (created, or took over an expired one)."""
    RENEWED = "renewed"
    """We already held it; renewTime moved forward."""
    HELD_BY_OTHER = "held_by_other"
    """Another holder's lease has not expired; try again later."""
    LOST_RACE = "lost_race"
    """Someone else wrote the lease between our read and our write (409)."""


class LeaseAction(enum.Enum):
    CREATE = "create"
    """No lease exists: create it with us as holder."""
    RENEW = "renew"
    """We hold it: update renewTime."""
    TAKE_OVER = "take_over"
    """Another holder let it expire (or released it): become holder, count a transition."""
    WAIT = "wait"
    """Another holder's lease is still valid."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The parts of a Lease's spec that matter for holding it."""

    holder: str
    duration_s: float
    renew_time: datetime | None
    transitions: int

    def expired(self, now: datetime) -> bool:
        if not self.holder or self.renew_time is None:
            return True
        return now >= self.renew_time + timedelta(seconds=self.duration_s)


def parse_time(value: Any) -> datetime | None:
    """Parse a Kubernetes MicroTime/Time string; ``None`` if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def lease_record(obj: dict[str, Any]) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=float(spec.get("leaseDurationSeconds") or 0),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def decide(record: LeaseRecord | None, identity: str, now: datetime) -> LeaseAction:
    """The pure lease rule (see :class:`LeaseAction`)."""
    if record is None:
        return LeaseAction.CREATE
    if record.holder == identity:
        return LeaseAction.RENEW
    if record.expired(now):
        return LeaseAction.TAKE_OVER
    return LeaseAction.WAIT


class LeaseClient:
    """Acquire/renew/release leases for one identity."""

    def __init__(self, client: KubeClient, *, identity: str,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not identity:
            raise ValueError("lease identity must be a non-empty string (e.g. the pod name)")
        self._client = client
        self.identity = identity
        self._now = now

    def __repr__(self) -> str:
        return f"LeaseClient(identity={self.identity!r})"

    async def acquire(self, name: str, *, namespace: str, duration_s: int
                      ) -> tuple[LeaseOutcome, dict[str, Any] | None]:
        """Try to hold lease ``name`` for ``duration_s``; return the outcome and the lease."""
        if duration_s < 1:
            raise ValueError(f"duration_s must be >= 1, got {duration_s}")
        now = self._now()
        try:
            current: dict[str, Any] | None = await self._client.get(LEASES, name,
                                                                    namespace=namespace)
        except NotFound:
            current = None
        record = lease_record(current) if current is not None else None
        action = decide(record, self.identity, now)
        stamp = micro_time(now)
        if action is LeaseAction.WAIT:
            return LeaseOutcome.HELD_BY_OTHER, current
        if action is LeaseAction.CREATE:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration_s,
                             "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}}
            try:
                return LeaseOutcome.ACQUIRED, await self._client.create(LEASES, body,
                                                                         namespace=namespace)
            except AlreadyExists:
                return LeaseOutcome.LOST_RACE, None
        assert current is not None and record is not None
        spec = dict(current.get("spec") or {})
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = duration_s
        spec["renewTime"] = stamp
        if action is LeaseAction.TAKE_OVER:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = record.transitions + 1
        updated = {**current, "spec": spec}  # keeps metadata.resourceVersion: CAS
        try:
            out = await self._client.replace(LEASES, updated, namespace=namespace)
        except Conflict:
            return LeaseOutcome.LOST_RACE, None
        return (LeaseOutcome.RENEWED if action is LeaseAction.RENEW else LeaseOutcome.ACQUIRED,
                out)

    async def release(self, name: str, *, namespace: str) -> bool:
        """Give the lease up if we hold it (clears the holder); return whether we did."""
        try:
            current = await self._client.get(LEASES, name, namespace=namespace)
        except NotFound:
            return False
        if lease_record(current).holder != self.identity:
            return False
        spec = {**(current.get("spec") or {}), "holderIdentity": None}
        try:
            await self._client.replace(LEASES, {**current, "spec": spec}, namespace=namespace)
        except (Conflict, NotFound):
            return False
        return True
