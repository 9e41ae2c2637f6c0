"""Record Kubernetes Events (events.k8s.io/v1), aggregating repeats into a series.

The same regarding object + type + reason + action + note seen again within
``aggregation_window_s`` does not create a new Event: the existing one gets a PATCH of
``series.count`` and ``series.lastObservedTime``. This keeps a flapping Service from
writing thousands of objects (each Event is an etcd write kept for an hour).

Events are best-effort: an API failure is logged and reported as
:attr:`EventOutcome.FAILED`; it never breaks the caller's reconcile. Wall-clock times
come from the injected ``now`` function; the window uses trio's clock.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import random
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from purelb.errors import ConfigError

from ._client import KubeClient, PatchType
from ._errors import KubeApiError, NotFound
from ._resources import EVENTS

LOGGER = logging.getLogger(__name__)

#: API limits of events.k8s.io/v1 (validation rejects longer values).
MAX_NOTE_BYTES = 1024
MAX_REASON_CHARS = 128
#: Namespace of events about cluster-scoped objects (client-go uses "default" too).
CLUSTER_EVENT_NAMESPACE = "default"


class EventType(enum.Enum):
    NORMAL = "Normal"
    """Expected progress (an address was allocated)."""
    WARNING = "Warning"
    """Something a human should look at (a pool is exhausted)."""


class EventOutcome(enum.Enum):
    """What :meth:`EventRecorder.emit` did."""

    CREATED = "created"
    """A new Event object was created."""
    SERIES_UPDATED = "series_updated"
    """A repeat: the existing Event's series count was patched."""
    FAILED = "failed"
    """The API refused or was unreachable; logged, nothing else happens."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSettings:
    """Who reports events and how repeats are folded."""

    reporting_controller: str
    """``reportingController`` field, e.g. ``purelb.io/allocator``."""
    reporting_instance: str
    """``reportingInstance`` field, e.g. the pod or node name."""
    aggregation_window_s: float = 360.0
    """Repeats closer than this to the previous one join its series. 6 minutes is
    client-go's events/v1 series window (after it a series is considered finished)."""
    max_tracked: int = 4096
    """Distinct series remembered (LRU). Bounds memory when many objects misbehave."""

    def __post_init__(self) -> None:
        if not self.reporting_controller or not self.reporting_instance:
            raise ConfigError("event reporting_controller and reporting_instance must be set",
                              path="reporting_controller", value=self.reporting_controller)
        if not self.aggregation_window_s > 0:
            raise ConfigError(f"aggregation_window_s must be > 0, got {self.aggregation_window_s}",
                              path="aggregation_window_s", value=self.aggregation_window_s)
        if self.max_tracked < 1:
            raise ConfigError(f"max_tracked must be >= 1, got {self.max_tracked}",
                              path="max_tracked", value=self.max_tracked)


@dataclass(slots=True)
class _Series:
    namespace: str
    name: str
    count: int
    last_seen: float


#: bytes of the digest that keys a series: 128 bits, so two different events never
#: share a series in practice (the chance is ~n**2 / 2**129 for n tracked series)
_SERIES_KEY_BYTES = 16


def _series_key(*parts: str) -> bytes:
    """A short fixed-size key for an event's identity (regarding, type, reason, action,
    note). The table holds up to ``max_tracked`` of them; the parts themselves (a uid
    and a ~100-character note) would cost ~0.3 KB per entry instead of ~50 bytes."""
    text = repr(parts).encode()  # unambiguous: no two tuples of strings share a repr
    return hashlib.blake2b(text, digest_size=_SERIES_KEY_BYTES).digest()


def micro_time(when: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 UTC with microseconds."""
    # isoformat pads the year to four digits (glibc's strftime %Y does not)
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def object_reference(obj: dict[str, Any]) -> dict[str, str]:
    """An ObjectReference to ``obj`` (for ``regarding``)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": str(obj.get("apiVersion", "")),
        "kind": str(obj.get("kind", "")),
        "name": str(meta.get("name", "")),
        "namespace": str(meta.get("namespace", "")),
        "uid": str(meta.get("uid", "")),
        "resourceVersion": str(meta.get("resourceVersion", "")),
    }
    if not ref["kind"] or not ref["name"]:
        raise ValueError(f"cannot record an event about an object without kind and name: {ref}")
    return {k: v for k, v in ref.items() if v}


def _truncate_note(note: str) -> str:
    raw = note.encode()
    if len(raw) <= MAX_NOTE_BYTES:
        return note
    return raw[: MAX_NOTE_BYTES - 3].decode(errors="ignore") + "..."


class EventRecorder:
    """Emit Events about objects; one per component (allocator, agent on a node)."""

    def __init__(
        self,
        client: KubeClient,
        settings: EventSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.settings = settings
        self._now = now
        self._series: OrderedDict[bytes, _Series] = OrderedDict()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (f"EventRecorder({self.settings.reporting_controller!r}, "
                f"{len(self._series)} series tracked)")

    async def emit(
        self,
        regarding: dict[str, Any],
        *,
        type: EventType,
        reason: str,
        action: str,
        note: str,
    ) -> EventOutcome:
        """Record that ``action`` happened to ``regarding`` because of ``reason``."""
        for label, value in (("reason", reason), ("action", action)):
            if not value or len(value) > MAX_REASON_CHARS:
                raise ValueError(
                    f"event {label} must be 1..{MAX_REASON_CHARS} chars, got {value!r}")
        ref = object_reference(regarding)
        note = _truncate_note(note)
        key = _series_key(
            ref.get("uid") or f"{ref['kind']}/{ref.get('namespace', '')}/{ref['name']}",
            type.value, reason, action, note)
        now_t = trio.current_time()
        wall = micro_time(self._now())
        series = self._series.get(key)
        if series is not None and now_t - series.last_seen <= self.settings.aggregation_window_s:
            series.count += 1
            series.last_seen = now_t
            self._series.move_to_end(key)
            patch = {"series": {"count": series.count, "lastObservedTime": wall}}
            try:
                await self._client.patch(EVENTS, series.name, patch, namespace=series.namespace,
                                         patch_type=PatchType.MERGE)
                return EventOutcome.SERIES_UPDATED
            except NotFound:
                pass  # the Event expired (TTL 1 h) or was deleted: start a new one
            except KubeApiError as exc:
                LOGGER.warning("event=event_record_failed reason=%s regarding=%s error=%s",
                               reason, ref["name"], exc)
                return EventOutcome.FAILED
        namespace = ref.get("namespace") or CLUSTER_EVENT_NAMESPACE
        name = f"{ref['name']}.{self._rng.getrandbits(64):016x}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": wall,
            "reportingController": self.settings.reporting_controller,
            "reportingInstance": self.settings.reporting_instance,
            "action": action,
            "reason": reason,
            "note": note,
            "type": type.value,
            "regarding": ref,
        }
        try:
            await self._client.create(EVENTS, body, namespace=namespace)
        except KubeApiError as exc:
            LOGGER.warning("event=event_record_failed reason=%s regarding=%s error=%s",
                           reason, ref["name"], exc)
            return EventOutcome.FAILED
        self._series[key] = _Series(namespace=sys.intern(namespace), name=name, count=1,
                                    last_seen=now_t)
        self._series.move_to_end(key)
        while len(self._series) > self.settings.max_tracked:
            self._series.popitem(last=False)
        return EventOutcome.CREATED
