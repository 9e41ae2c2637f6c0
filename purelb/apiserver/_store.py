"""Object storage with one resourceVersion sequence, a bounded change log, and durability.

Design:
- Every write is a *sync* method (no checkpoint), so it is atomic for Trio: it checks
  nothing itself (the REST layer checked preconditions against the same state), assigns
  the next resourceVersion, replaces the object in the in-memory map and appends a
  :class:`Change` to the log. Stored objects are never mutated afterwards.
- Durability is a :class:`Backend`. The memory backend commits at once. A persistent
  backend (SQLite) is fed by :meth:`Store.run_committer`: pending changes are written in
  batches (group commit: one transaction and one fsync for everything that queued while
  the previous batch was on disk), and a writer's HTTP reply waits in
  :meth:`Store.wait_durable` until its change is committed.
- Watchers only ever see committed changes (``committed_rv``), so a change lost to a
  crash was never acknowledged nor delivered. Simplification: reads (get/list) serve the
  in-memory state, which may include a change whose commit is still in flight (a few
  milliseconds); the real server's etcd never shows those.
- The log keeps the last ``history_limit`` changes. A watch from a resourceVersion older
  than the oldest retained change gets 410 Gone, as from a compacted etcd.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import trio

from purelb import fastjson

from ._errors import StatusError

LOG = logging.getLogger(__name__)


class EventType(Enum):
    """The watch event type a change produces."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


ObjKey = tuple[str, str]
"""(namespace, name); namespace is '' for cluster-scoped objects."""


@dataclass(slots=True, eq=False)
class Change:
    """One committed-or-pending write, as watchers will see it."""

    rv: int
    type: EventType
    storage_key: str
    namespace: str
    name: str
    obj: dict[str, Any]
    """The object after the change (for DELETED: its last state with the delete's RV)."""
    prev: dict[str, Any] | None
    """The object before the change, for selector transitions and consistent paging."""
    _obj_json: bytes | None = field(default=None, repr=False)
    _event_json: bytes | None = field(default=None, repr=False)

    def obj_json(self) -> bytes:
        """The object as compact JSON, encoded once for the reply, watchers and the disk."""
        if self._obj_json is None:
            self._obj_json = fastjson.dumps(self.obj)
        return self._obj_json

    def event_json(self) -> bytes:
        """``{"type":..,"object":..}\\n``, serialized once for every watcher."""
        if self._event_json is None:
            self._event_json = (b'{"type":"' + self.type.value.encode() + b'","object":'
                                + self.obj_json() + b"}\n")
        return self._event_json


class Backend(Protocol):
    """Where committed state lives. Methods run in one owner thread (never concurrently)."""

    persistent: bool

    def load(self) -> tuple[list[tuple[str, str, str, dict[str, Any]]], int]:
        """All stored objects as (storage_key, namespace, name, obj) and the last RV."""
        ...

    def write(self, changes: Sequence[Change], rv: int) -> None:
        """Durably apply a batch of changes and record ``rv`` as the sequence head."""
        ...

    def close(self) -> None: ...


class MemoryBackend:
    """Nothing to persist: every change is committed when it is made."""

    persistent = False

    def load(self) -> tuple[list[tuple[str, str, str, dict[str, Any]]], int]:
        return [], 0

    def write(self, changes: Sequence[Change], rv: int) -> None:
        raise AssertionError("MemoryBackend.write is never called; this is a bug")

    def close(self) -> None:
        pass


class WatchExpired(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {rv} ({oldest})")
        self.rv = rv
        self.oldest = oldest


DEFAULT_HISTORY_LIMIT = 10_000
"""Changes kept for watch resumption: at 3k writes/s about 3 s, at a cluster's usual
tens of writes/s many minutes, like the real server's 5-minute etcd compaction window."""

MAX_BATCH = 2_000
"""Most changes one SQLite transaction takes; bounds a commit's latency under load."""


class Store:
    """The in-memory state, the change log and the commit pipeline (see module docstring)."""

    def __init__(
        self, backend: Backend | None = None, *, history_limit: int = DEFAULT_HISTORY_LIMIT
    ) -> None:
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, got {history_limit}")
        self.backend: Backend = backend or MemoryBackend()
        self.history_limit = history_limit
        self._objects: dict[str, dict[ObjKey, dict[str, Any]]] = {}
        self._log: list[Change] = []
        self._rv = 0
        self._committed_rv = 0
        self._compacted_rv = 0
        self._pending: list[Change] = []
        self._changed = trio.Event()
        self._pending_event = trio.Event()
        self._failure: str | None = None
        rows, rv = self.backend.load()
        for skey, ns, name, obj in rows:
            self._objects.setdefault(skey, {})[(ns, name)] = obj
        self._rv = self._committed_rv = self._compacted_rv = rv

    # ---- reads -----------------------------------------------------------------------
    @property
    def rv(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    @property
    def committed_rv(self) -> int:
        return self._committed_rv

    @property
    def compacted_rv(self) -> int:
        """Watches must start at or after this resourceVersion."""
        return self._compacted_rv

    def get(self, storage_key: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(storage_key, {}).get((namespace, name))

    def list(self, storage_key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects sorted by (namespace, name), optionally of one namespace."""
        bucket = self._objects.get(storage_key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def snapshot_at(
        self, storage_key: str, namespace: str | None, rv: int
    ) -> dict[ObjKey, dict[str, Any]]:
        """The objects of one resource as they were at ``rv`` (for consistent paging).

        Raises:
            WatchExpired: ``rv`` is older than the retained history.
        """
        if rv < self._compacted_rv:
            raise WatchExpired(rv, self._compacted_rv)
        bucket = self._objects.get(storage_key, {})
        state = {k: v for k, v in bucket.items() if namespace is None or k[0] == namespace}
        start = bisect.bisect_right(self._log, rv, key=lambda c: c.rv)
        for ch in reversed(self._log[start:]):
            if ch.storage_key != storage_key or (
                namespace is not None and ch.namespace != namespace
            ):
                continue
            k = (ch.namespace, ch.name)
            if ch.prev is None:
                state.pop(k, None)
            else:
                state[k] = ch.prev
        return state

    def changes_after(self, rv: int) -> list[Change]:
        """Committed changes with resourceVersion > ``rv``.

        Raises:
            WatchExpired: changes after ``rv`` were already dropped from the log.
        """
        if rv < self._compacted_rv:
            raise WatchExpired(rv, self._compacted_rv)
        start = bisect.bisect_right(self._log, rv, key=lambda c: c.rv)
        end = bisect.bisect_right(self._log, self._committed_rv, key=lambda c: c.rv)
        return self._log[start:end]

    async def wait_changed(self) -> None:
        """Return after the next commit (or :meth:`wake_all`)."""
        await self._changed.wait()

    # ---- writes (sync: atomic under Trio) --------------------------------------------
    def put(
        self, storage_key: str, namespace: str, name: str, obj: dict[str, Any]
    ) -> Change:
        """Store a new or replaced object; stamps metadata.resourceVersion."""
        self._check_writable()
        bucket = self._objects.setdefault(storage_key, {})
        prev = bucket.get((namespace, name))
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        bucket[(namespace, name)] = obj
        etype = EventType.ADDED if prev is None else EventType.MODIFIED
        return self._record(Change(self._rv, etype, storage_key, namespace, name, obj, prev))

    def delete(self, storage_key: str, namespace: str, name: str) -> Change:
        """Remove an object; the DELETED event carries its last state with a new RV."""
        self._check_writable()
        bucket = self._objects.get(storage_key, {})
        prev = bucket.pop((namespace, name))
        self._rv += 1
        last = dict(prev)
        last["metadata"] = {**prev["metadata"], "resourceVersion": str(self._rv)}
        return self._record(
            Change(self._rv, EventType.DELETED, storage_key, namespace, name, last, prev)
        )

    def _record(self, change: Change) -> Change:
        self._log.append(change)
        if len(self._log) > self.history_limit * 2 + 1:
            self._trim(self.history_limit)
        if self.backend.persistent:
            self._pending.append(change)
            self._pending_event.set()
        else:
            self._committed_rv = change.rv
            self._wake()
        return change

    def _trim(self, keep: int) -> None:
        drop = len(self._log) - keep
        if drop <= 0:
            return
        # Never drop a change watchers have not been able to see yet.
        drop = min(drop, bisect.bisect_right(self._log, self._committed_rv, key=lambda c: c.rv))
        if drop > 0:
            self._compacted_rv = self._log[drop - 1].rv
            del self._log[:drop]

    def compact(self, keep: int = 0) -> None:
        """Drop all but the newest ``keep`` changes: older watch RVs then get 410 Gone."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self._trim(keep)
        if keep == 0:
            self._compacted_rv = max(self._compacted_rv, self._committed_rv)

    def wake_all(self) -> None:
        """Wake every waiting watcher (they re-check their stop conditions)."""
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ---- durability -----------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._failure is not None:
            raise StatusError(
                500, "InternalError",
                f"storage failed, the server refuses writes until restarted: {self._failure}",
            )

    async def wait_durable(self, rv: int) -> None:
        """Return once the change with ``rv`` is committed.

        Raises:
            StatusError: 500 when the backend failed (the change may not be on disk).
        """
        while self._committed_rv < rv:
            if self._failure is not None:
                self._check_writable()
            await self._changed.wait()
        if self._failure is not None and self._committed_rv < rv:
            self._check_writable()

    async def run_committer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write pending changes in batches through one owner thread, forever."""
        limiter = trio.CapacityLimiter(1)  # one thread owns the SQLite connection
        task_status.started()
        if not self.backend.persistent:
            await trio.sleep_forever()
        while True:
            await self._pending_event.wait()
            self._pending_event = trio.Event()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                head = batch[-1].rv
                try:
                    await trio.to_thread.run_sync(
                        self.backend.write, batch, head, limiter=limiter,
                        abandon_on_cancel=False,
                    )
                except Exception as exc:  # the disk failed: stop acknowledging writes
                    LOG.exception("event=storage_failed rv=%d", head)
                    self._failure = f"{type(exc).__name__}: {exc}"
                    self._wake()
                    return
                self._committed_rv = head
                self._wake()

    async def flush(self) -> None:
        """Wait until everything written so far is committed."""
        await self.wait_durable(self._rv)

    def close(self) -> None:
        self.backend.close()

