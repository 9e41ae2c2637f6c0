"""Lease-based leader election (coordination.k8s.io/v1), as client-go does it.

Why it is safe: a standby takes over only after the lease record has not changed for
``lease_duration_s`` *as measured on its own monotonic clock* since it last saw a change,
so clock skew between replicas does not matter. The leader stops considering itself the
leader ``renew_deadline_s`` after its last successful renewal; because
``renew_deadline_s < lease_duration_s``, it stops writing before anyone can take over.
Writers call ``Elector.is_leader()`` right before each write (the fence).

The decision logic (``Elector``) is sync and pure; ``run_election`` drives it against a
three-method ``LeaseApi`` (the Kubernetes client adapts to it).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import trio

from purelb.errors import ApiError, ConfigError
from purelb.kube import micro_time

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTimings:
    """Timings of the election (seconds); defaults are client-go's and PureLB's Helm values."""

    lease_duration_s: float = 15.0
    """How long a standby waits after the last observed change before taking over: the
    worst-case failover time. Shorter fails over faster but costs more API writes."""
    renew_deadline_s: float = 10.0
    """A leader that has not renewed for this long stops writing. Must be < lease_duration_s
    (the gap is the safety margin against a standby taking over while we still write)."""
    retry_period_s: float = 2.0
    """Interval between acquire/renew attempts."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ConfigError(
                "lease timings need 0 < retry_period_s < renew_deadline_s < lease_duration_s, "
                f"got {self.retry_period_s} / {self.renew_deadline_s} / {self.lease_duration_s}",
                path="leaderElection",
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that election reads and writes."""

    holder: str | None
    lease_duration_s: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_s,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


class Action(enum.Enum):
    CREATE = "create"  # no Lease exists: create one naming us
    UPDATE = "update"  # renew ours, or take over an expired one
    WAIT = "wait"  # someone else holds a live lease


class Elector:
    """Pure election state for one candidate; times are monotonic seconds passed in."""

    def __init__(self, identity: str, timings: LeaseTimings = LeaseTimings()) -> None:
        if not identity:
            raise ConfigError("leader election needs a non-empty identity", path="identity")
        self.identity = identity
        self.timings = timings
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        self._last_renew = float("-inf")

    def is_leader(self, now: float) -> bool:
        """True while our last successful renewal is younger than the renew deadline."""
        return now - self._last_renew < self.timings.renew_deadline_s

    def decide(
        self, current: LeaseRecord | None, now: float, wall: datetime
    ) -> tuple[Action, LeaseRecord | None]:
        """Given the Lease as just read (None: absent), what to write, if anything."""
        if current != self._observed:
            self._observed, self._observed_at = current, now
        stamp = micro_time(wall)
        duration = round(self.timings.lease_duration_s)
        if current is None:
            return Action.CREATE, LeaseRecord(self.identity, duration, stamp, stamp, 0)
        if current.holder == self.identity:
            return Action.UPDATE, replace(current, renew_time=stamp, lease_duration_s=duration)
        expired = now - self._observed_at >= max(current.lease_duration_s, 1)
        if current.holder is None or expired:
            return Action.UPDATE, LeaseRecord(
                self.identity, duration, stamp, stamp, current.transitions + 1
            )
        return Action.WAIT, None

    def written(self, record: LeaseRecord, now: float) -> None:
        """Our write of ``record`` succeeded at ``now``."""
        self._observed, self._observed_at = record, now
        self._last_renew = now

    def release(self) -> None:
        """Stop leading at once (shutdown, or a failed renewal we will not retry)."""
        self._last_renew = float("-inf")


class LeaseApi(Protocol):
    """What election needs from the Kubernetes API for one Lease object."""

    async def get(self) -> dict[str, Any] | None: ...
    async def create(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def replace(self, spec: dict[str, Any], resource_version: str) -> dict[str, Any]: ...


async def run_election(
    api: LeaseApi,
    elector: Elector,
    on_change: Callable[[bool], None],
    *,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Acquire and renew forever; ``on_change(leading)`` fires on every transition.

    Ready after the first attempt, won or not. On cancellation a leader gives the lease
    up (holder cleared) so a standby takes over at once instead of after the duration.
    """
    leading = False
    resource_version = ""
    started = False
    try:
        while True:
            now = trio.current_time()
            try:
                lease = await api.get()
                current = LeaseRecord.from_lease(lease) if lease else None
                resource_version = (lease or {}).get("metadata", {}).get("resourceVersion", "")
                action, record = elector.decide(current, now, wall_clock())
                if action is Action.CREATE and record is not None:
                    lease = await api.create(record.to_spec())
                elif action is Action.UPDATE and record is not None:
                    lease = await api.replace(record.to_spec(), resource_version)
                if record is not None:
                    resource_version = lease.get("metadata", {}).get("resourceVersion", "")
                    elector.written(record, trio.current_time())
            except ApiError as exc:
                log.info("lease attempt failed: %s", exc, extra={"event": "lease_attempt_failed"})
            if elector.is_leader(trio.current_time()) != leading:
                leading = not leading
                log.info(
                    "%s leadership",
                    "acquired" if leading else "lost",
                    extra={"event": "leadership", "leading": leading, "identity": elector.identity},
                )
                on_change(leading)
            if not started:
                started = True
                task_status.started()
            await _sleep_until_next(elector, leading)
    finally:
        if leading:
            elector.release()
            on_change(False)
            with trio.move_on_after(elector.timings.retry_period_s, shield=True):
                await _give_up(api, elector, resource_version)


async def _sleep_until_next(elector: Elector, leading: bool) -> None:
    """Sleep one retry period, but wake in time to notice a missed renew deadline."""
    period = elector.timings.retry_period_s
    if leading:
        deadline = elector._last_renew + elector.timings.renew_deadline_s
        await trio.sleep(max(0.0, min(period, deadline - trio.current_time())))
    else:
        await trio.sleep(period)


async def _give_up(api: LeaseApi, elector: Elector, resource_version: str) -> None:
    try:
        lease = await api.get()
        if lease and LeaseRecord.from_lease(lease).holder == elector.identity:
            spec = dict(lease.get("spec") or {})
            spec["holderIdentity"] = None
            await api.replace(spec, lease["metadata"].get("resourceVersion", resource_version))
    except ApiError as exc:
        log.info("could not release the lease: %s", exc)
