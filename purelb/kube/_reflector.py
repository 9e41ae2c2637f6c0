"""Reflector: keep a local cache of one resource equal to the server, and tell consumers.

Protocol (the client-go / kopf shape):

1. **List** (paged) and fill the cache; ``nursery.start`` returns once this is done, so
   a consumer can read a complete cache before acting (the startup barrier that stops
   an allocator from handing out an address that is already in use).
2. **Watch** from the list's resourceVersion, with bookmarks (they only advance the
   resourceVersion) and a randomized ``timeoutSeconds`` so many clients do not
   reconnect in step. A stream that ends normally is reopened from the last version.
3. On **410 Gone** (the version was compacted away) **relist** and emit the difference
   between the cache and the new list — adds, updates *and deletes* — so an object
   deleted while we were disconnected still reaches consumers as DELETED.
4. Any other failure: wait with jittered backoff and reconnect (the policy is the pure
   :class:`~._recovery.WatchRecovery`; ``relist_after_failures`` failures in a row, or a
   version the server says is ahead of it, relist instead). Permanent errors
   (401/403/404/422/400) before the first sync raise to the caller of ``nursery.start``
   (a misconfiguration should fail loudly); after it they are logged and retried, so a
   running daemon outlives RBAC edits and API restarts.

Consumers get :class:`Change` values through a bounded trio memory channel they create
(back-pressure: a slow consumer slows the watch, it never loses events), or read the
cache directly. The reflector closes the send channel when it exits. Each ``Change``
is sent after the cache already reflects it.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from purelb.errors import ConfigError

from ._backoff import Backoff, BackoffSettings
from ._cache import Change, ChangeKind, Indexer, Store, object_key
from ._client import KubeClient
from ._errors import (
    BadRequest,
    Forbidden,
    Gone,
    Invalid,
    KubeApiError,
    NotFound,
    Unauthorized,
)
from ._recovery import Step, WatchRecovery
from ._resources import Resource
from ._selectors import LabelSelectorInput
from ._watch import WatchEvent, WatchEventType

LOGGER = logging.getLogger(__name__)

#: Errors that mean "fix the configuration", not "try again soon".
PERMANENT_ERRORS: tuple[type[KubeApiError], ...] = (
    Unauthorized, Forbidden, NotFound, Invalid, BadRequest,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectorSettings:
    """Timings and limits of one reflector."""

    page_size: int = 500
    """Objects per list page (client-go's default); bounds one response's size and memory."""
    watch_timeout_min_s: float = 300.0
    """Lower bound of the random ``timeoutSeconds`` per watch (client-go: 5 min)."""
    watch_timeout_max_s: float = 600.0
    """Upper bound (client-go: 10 min). Randomizing spreads reconnects of many agents."""
    watch_grace_s: float = 30.0
    """How long past ``timeoutSeconds`` we wait for the server to end a watch before we
    assume the connection hung silently (a dead peer behind a NAT) and reconnect."""
    min_healthy_watch_s: float = 1.0
    """A watch that ends sooner than this with no events counts as a failure and backs
    off, so a server that closes watches at once cannot make us spin."""
    relist_after_failures: int = 5
    """Consecutive failed watch attempts after which we relist instead of retrying from
    the same resourceVersion. A server restored from a backup may never accept our
    version again; 5 attempts at the default backoff is about 8 s of trying first."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    """Delays between failed attempts."""
    resync_s: float | None = None
    """Re-deliver every cached object as MODIFIED this often (level-triggered nudge for
    consumers); ``None`` = never. Costs no API calls."""
    relist_s: float | None = None
    """Full relist + diff this often; heals a cache that drifted by a server bug.
    ``None`` = only on 410. Costs one list per period."""

    def __post_init__(self) -> None:
        if self.relist_after_failures < 1:
            raise ConfigError(
                f"relist_after_failures must be >= 1, got {self.relist_after_failures}",
                path="relist_after_failures", value=self.relist_after_failures)
        if self.page_size < 1:
            raise ConfigError(f"page_size must be >= 1, got {self.page_size}",
                              path="page_size", value=self.page_size)
        if not 1 <= self.watch_timeout_min_s <= self.watch_timeout_max_s:
            raise ConfigError(
                f"watch timeouts must satisfy 1 <= min ({self.watch_timeout_min_s}) <= max "
                f"({self.watch_timeout_max_s})", path="watch_timeout_min_s",
                value=self.watch_timeout_min_s)
        for name in ("watch_grace_s", "min_healthy_watch_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}",
                                  path=name, value=getattr(self, name))
        for name in ("resync_s", "relist_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 or None, got {value}", path=name,
                                  value=value)

    @classmethod
    def local(cls) -> ReflectorSettings:
        """Fast preset for loopback tests: short watches and backoff."""
        return replace(
            cls(),
            watch_timeout_min_s=5.0,
            watch_timeout_max_s=10.0,
            watch_grace_s=2.0,
            min_healthy_watch_s=0.2,
            backoff=BackoffSettings(initial_s=0.02, cap_s=0.5),
        )


DEFAULT_REFLECTOR_SETTINGS = ReflectorSettings()


@dataclass(frozen=True, slots=True)
class ReflectorStatistics:
    """A snapshot of a reflector's counters."""

    objects: int
    resource_version: str
    lists: int
    watches: int
    gone: int
    errors: int
    bookmarks: int
    changes_sent: int
    resyncs: int
    last_error: str


class Reflector:
    """List+watch one resource into a :class:`Store`; start with ``nursery.start(r.run)``.

    Args:
        client: an open :class:`KubeClient`.
        resource: what to watch.
        namespace: one namespace, or ``None`` for all (or cluster-scoped).
        label_selector, field_selector: server-side filters for list and watch.
        indexers: named secondary indexes, e.g. :data:`ENDPOINTSLICE_BY_SERVICE`.
        send_channel: where :class:`Change` values go; the reflector closes it on exit.
        settings: timings (:class:`ReflectorSettings`).
        transform: applied to every object before it is cached and sent, to keep only the
            fields a consumer reads (client-go's ``SetTransform``: a controller caching
            10,000 Services needs a fraction of each object). It must keep ``metadata``
            name, namespace, uid and resourceVersion.
    """

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelectorInput | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        indexers: Mapping[str, Indexer] | None = None,
        send_channel: trio.MemorySendChannel[Change] | None = None,
        settings: ReflectorSettings = DEFAULT_REFLECTOR_SETTINGS,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._client = client
        self._transform = transform
        self.resource = resource
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self.store = Store(indexers)
        self._send = send_channel
        self.settings = settings
        self._rng = random.Random()
        self._recovery = WatchRecovery(Backoff(settings.backoff, rng=self._rng),
                                       relist_after=settings.relist_after_failures,
                                       retry_after_cap_s=settings.backoff.cap_s)
        self._rv = ""
        self._started = False
        self._emit_lock = trio.StrictFIFOLock()
        self._counts: dict[str, int] = dict.fromkeys(
            ("lists", "watches", "gone", "errors", "bookmarks", "changes_sent", "resyncs"), 0)
        self._last_error = ""

    # ------------------------------------------------------------------ cache reads

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The cached object or ``None``."""
        return self.store.get(namespace, name)

    def list(self) -> list[dict[str, Any]]:
        """All cached objects, sorted by (namespace, name)."""
        return self.store.list()

    def by_index(self, index_name: str, value: str) -> builtins.list[dict[str, Any]]:
        """Cached objects with ``value`` in index ``index_name``."""
        return self.store.by_index(index_name, value)

    @property
    def resource_version(self) -> str:
        """The resourceVersion the cache is known to be current at."""
        return self._rv

    def statistics(self) -> ReflectorStatistics:
        return ReflectorStatistics(objects=len(self.store), resource_version=self._rv,
                                   last_error=self._last_error, **self._counts)

    def __repr__(self) -> str:
        return (f"Reflector({self.resource.plural}, ns={self._namespace!r}, "
                f"{len(self.store)} objects, rv={self._rv!r})")

    # ------------------------------------------------------------------ task

    async def run(self, *, task_status: trio.TaskStatus[Reflector] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """List, report ready, then watch forever (until cancelled)."""
        if self._started:
            raise RuntimeError(f"{self!r} is already running; a reflector runs once")
        self._started = True
        try:
            initial = await self._initial_list()
            task_status.started(self)
            await self._emit(initial)
            del initial  # one Change per object: not kept for the reflector's lifetime
            async with trio.open_nursery() as nursery:
                if self.settings.resync_s is not None:
                    nursery.start_soon(self._resync_loop)
                await self._watch_loop()
        finally:
            if self._send is not None:
                self._send.close()

    async def _initial_list(self) -> builtins.list[Change]:
        while True:
            try:
                changes = await self._relist()
            except PERMANENT_ERRORS:
                raise
            except KubeApiError as exc:
                step = self._recovery.failed(exc)
                self._note_failure(exc, step, "initial_list")
                await trio.sleep(step.delay_s)
            else:
                self._recovery.relisted()
                return changes

    async def _relist(self) -> builtins.list[Change]:
        self._counts["lists"] += 1
        # Page by page (not list_all): with a transform, only one page of full objects is
        # alive at a time, so a relist of 10,000 objects does not spike memory.
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        rv = ""
        while True:
            page = await self._client.list(
                self.resource, namespace=self._namespace, label_selector=self._label_selector,
                field_selector=self._field_selector, limit=self.settings.page_size,
                continue_token=token)
            items.extend(self._named(page.get("items") or []))
            meta = page.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or None
            if not token:
                break
        changes = self.store.replace_all(items)
        self._rv = rv
        return changes

    async def _watch_loop(self) -> None:
        recovery = self._recovery
        relist_deadline = self._next_relist_deadline()
        step = Step(0.0, relist=False)
        while True:
            if step.delay_s > 0:
                await trio.sleep(step.delay_s)
            try:
                if step.relist or trio.current_time() >= relist_deadline:
                    changes = await self._relist()
                    recovery.relisted()
                    relist_deadline = self._next_relist_deadline()
                    await self._emit(changes)
                healthy = True  # a watch cut by the periodic relist deadline is fine
                with trio.move_on_at(relist_deadline):
                    healthy = await self._watch_once()
                step = recovery.watch_ended(healthy=healthy)
            except KubeApiError as exc:
                step = recovery.failed(exc)
                self._note_failure(exc, step, "relist" if recovery.need_relist else "watch")

    def _note_failure(self, exc: KubeApiError, step: Step, phase: str) -> None:
        self._last_error = str(exc)
        if isinstance(exc, Gone):
            # Our version was compacted away: the relist's diff catches the cache up.
            self._counts["gone"] += 1
            LOGGER.info("event=watch_expired resource=%s rv=%s relisting_in_s=%.3f",
                        self.resource.plural, self._rv, step.delay_s)
            return
        self._counts["errors"] += 1
        log = LOGGER.error if isinstance(exc, PERMANENT_ERRORS) else LOGGER.warning
        log("event=%s_failed resource=%s error=%s next=%s retrying_in_s=%.3f", phase,
            self.resource.plural, exc, "relist" if step.relist else "watch", step.delay_s)

    async def _watch_once(self) -> bool:
        """One watch connection; return whether it was healthy (events or long enough)."""
        s = self.settings
        timeout = self._rng.uniform(s.watch_timeout_min_s, s.watch_timeout_max_s)
        started = trio.current_time()
        events = 0
        self._counts["watches"] += 1
        with trio.move_on_after(timeout + s.watch_grace_s) as hung:
            async with self._client.watch(
                self.resource, namespace=self._namespace, resource_version=self._rv,
                label_selector=self._label_selector, field_selector=self._field_selector,
                timeout_seconds=int(timeout), allow_bookmarks=True,
            ) as stream:
                async for event in stream:
                    events += 1
                    await self._apply(event)
        if hung.cancelled_caught:
            LOGGER.warning("event=watch_hung resource=%s after_s=%.1f reconnecting",
                           self.resource.plural, timeout + s.watch_grace_s)
        return events > 0 or trio.current_time() - started >= s.min_healthy_watch_s

    async def _apply(self, event: WatchEvent) -> None:
        rv = event.resource_version
        if event.type is WatchEventType.BOOKMARK:
            self._counts["bookmarks"] += 1
            if rv:
                self._rv = rv
            return
        obj = event.object
        try:
            key = object_key(obj)  # of the plain object: a transformed one may be costlier
        except ValueError as exc:
            # A server bug must not stop the cache: drop the event, say what it was.
            LOGGER.error("event=watch_event_dropped resource=%s type=%s rv=%s reason=%s",
                         self.resource.plural, event.type.value, rv, exc)
            return
        if self._transform is not None:
            obj = self._transform(obj)
        if event.type is WatchEventType.DELETED:
            self.store.remove(key)
            change = Change(ChangeKind.DELETED, obj)
        else:
            old = self.store.upsert(obj, key=key)
            change = Change(ChangeKind.ADDED if old is None else ChangeKind.MODIFIED, obj)
        if rv:
            self._rv = rv
        await self._emit([change])

    async def _resync_loop(self) -> None:
        assert self.settings.resync_s is not None
        while True:
            await trio.sleep(self.settings.resync_s)
            self._counts["resyncs"] += 1
            async with self._emit_lock:
                for key in sorted(self.store.snapshot()):
                    # Read the object at send time, not from a snapshot taken before a
                    # blocking send: a resync must never re-deliver a stale version after
                    # the watch delivered a newer one.
                    current = self.store.get(*key)
                    if current is not None and not await self._send_one(
                            Change(ChangeKind.MODIFIED, current)):
                        return

    async def _emit(self, changes: builtins.list[Change]) -> None:
        """Send a batch in order; batches never interleave with each other or a resync."""
        async with self._emit_lock:
            for change in changes:
                if not await self._send_one(change):
                    return

    async def _send_one(self, change: Change) -> bool:
        """Send one change; return False once the consumer is gone."""
        if self._send is None:
            return False
        try:
            await self._send.send(change)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            LOGGER.warning("event=consumer_gone resource=%s; cache kept, events dropped",
                           self.resource.plural)
            self._send = None
            return False
        self._counts["changes_sent"] += 1
        return True

    def _named(self, items: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Items that have a name; others are logged and dropped (a server bug)."""
        good = []
        for item in items:
            try:
                object_key(item)
            except ValueError as exc:
                LOGGER.error("event=list_item_dropped resource=%s reason=%s",
                             self.resource.plural, exc)
                continue
            good.append(item if self._transform is None else self._transform(item))
        return good

    def _next_relist_deadline(self) -> float:
        if self.settings.relist_s is None:
            return float("inf")
        return trio.current_time() + self.settings.relist_s
