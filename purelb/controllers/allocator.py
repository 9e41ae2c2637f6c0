"""The allocator daemon: watches -> IPAM -> status, as one Trio nursery.

Tasks (each a child of one nursery, each under :func:`supervise`, so a failure restarts
only that task, with jittered backoff and the reason logged)::

    metrics      /metrics /healthz /readyz          (ready = synced and leading)
    groups       Reflector(ServiceGroups, install namespace) --Change--> dispatcher
    services     Reflector(Services, all namespaces)          --Change--> dispatcher
    election     run_election(LeaseObject, Elector)  -> on_leadership(bool)
    terms        while leading: one Reconciler term (barrier, workers, status flusher)

The dispatcher turns every Change into a queue key of the current term (a Service key,
or :attr:`Marker.CONFIG` for any ServiceGroup change); with no term running, changes only
update the caches — the next term lists everything anyway. Losing the lease cancels the
term at once, and every write is fenced by the elector, so a replica that cannot renew
stops writing ``lease_duration - renew_deadline`` seconds before anyone may take over.

Configuration (:class:`DaemonSettings`) is plain values; ``allocator_cli`` builds it from
flags and environment.
"""

from __future__ import annotations

import logging
import math
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from purelb import fast
from purelb.controllers.allocator_cache import pack_service, unpack
from purelb.controllers.allocator_metrics import AllocatorMetrics
from purelb.controllers.allocator_reconcile import (
    Marker,
    QueueKey,
    Reconciler,
    ReconcileResult,
    ServiceListing,
    parse_services,
)
from purelb.controllers.allocator_writer import KubeWriter, NotLeader
from purelb.controllers.leadership import Elector, LeaseTimings, run_election
from purelb.controllers.supervisor import Backoff, supervise
from purelb.controllers.workqueue import RETRY_BACKOFF, WorkQueue
from purelb.errors import ApiError, ConfigError
from purelb.heap import trim_heap
from purelb.ipam.allocator import Allocator, AllocatorSettings
from purelb.ipam.netbox import NetboxMetrics
from purelb.kube import (
    DEFAULT_REFLECTOR_SETTINGS,
    SECRETS,
    SERVICE_GROUPS,
    SERVICES,
    Change,
    ChangeKind,
    EventRecorder,
    EventSettings,
    KubeClient,
    LeaseObject,
    NotFound,
    Reflector,
    ReflectorSettings,
    Resource,
    micro_time,
)
from purelb.model import ServiceKey, service_key
from purelb.obs import Health, serve_health_and_metrics

LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]

DEFAULT_NAMESPACE = "purelb-system"
"""PureLB's install namespace; ServiceGroups are read from here."""
DEFAULT_METRICS_PORT = 7472
"""PureLB's metrics port (both binaries)."""
DEFAULT_LEASE_NAME = "purelb-allocator"
#: longest the startup NetBox sync may hold up a term's first reconcile (NetBox down: the
#: client's retries alone take ~1 s; a stuck NetBox must not keep local groups waiting)
NETBOX_SYNC_BUDGET_S = 30.0
#: readiness conditions of the daemon
SYNCED, LEADING = "synced", "leading"


def default_identity() -> str:
    """``<hostname>_<random>`` (client-go's shape): unique even for two replicas on one host."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonSettings:
    """Everything the allocator daemon is told; see ``purelb allocator --help``."""

    namespace: str = DEFAULT_NAMESPACE
    """Install namespace: ServiceGroups and the leader Lease live here."""
    identity: str = field(default_factory=default_identity)
    """This replica's name in the Lease and in Events (``reportingInstance``)."""
    metrics_host: str = "0.0.0.0"
    """Bind address of /metrics, /healthz, /readyz (all interfaces: Prometheus scrapes pods)."""
    metrics_port: int = DEFAULT_METRICS_PORT
    allocator: AllocatorSettings = field(default_factory=AllocatorSettings)
    """Which Services are ours (class, default announcer)."""
    leader_elect: bool = True
    """Hold a Lease before writing, so two replicas (a rolling update) never both allocate."""
    lease_name: str = DEFAULT_LEASE_NAME
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    workers: int = 16
    """Concurrent reconciles. Each is ~1 ms of CPU and 2-3 API round trips, so a few
    workers keep the API busy while the allocator's decisions stay serialized (sync)."""
    conflict_retries: int = 5
    """Re-read/recompute rounds after a 409 before the key backs off. Five absorbs a burst
    of edits by another controller; a storm beyond it is retried with backoff."""
    status_interval_s: float = 0.5
    """How often changed ServiceGroup statuses are written. Coalesces a burst of
    allocations into one write per group; counts lag the truth by at most this much."""
    resync_s: float = 600.0
    """Level-triggered resync: every cached Service is reconciled again this often
    (PureLB's informer resync is 10 minutes). A no-op reconcile writes nothing."""
    reflector: ReflectorSettings = DEFAULT_REFLECTOR_SETTINGS
    change_buffer: int = 1024
    """Watch changes buffered between a reflector and the dispatcher (back-pressure beyond)."""
    task_backoff: Backoff = field(default_factory=Backoff)
    """Restart schedule of a failed daemon task."""
    retry_backoff: Backoff = RETRY_BACKOFF
    """Per-key retry schedule after a transient API error."""

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ConfigError("the install namespace must not be empty", path="namespace",
                              value=self.namespace)
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics port must be 0..65535, got {self.metrics_port}",
                              path="port", value=self.metrics_port)
        for name in ("workers", "change_buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", path=name,
                                  value=getattr(self, name))
        if self.conflict_retries < 0:
            raise ConfigError(f"conflict_retries must be >= 0, got {self.conflict_retries}",
                              path="conflict_retries", value=self.conflict_retries)
        for name in ("status_interval_s", "resync_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}", path=name,
                                  value=getattr(self, name))

    def local(self) -> DaemonSettings:
        """These settings with fast timings for loopback tests: short watches, backoff,
        lease (3 s / 2 s / 0.25 s) and status interval; everything else kept."""
        return replace(
            self, reflector=ReflectorSettings.local(), status_interval_s=0.1,
            lease=LeaseTimings(lease_duration_s=3.0, renew_deadline_s=2.0, retry_period_s=0.25),
            task_backoff=Backoff(initial_s=0.05, cap_s=1.0, reset_after_s=5.0),
            retry_backoff=Backoff(initial_s=0.02, cap_s=0.5, reset_after_s=5.0))


@dataclass(slots=True)
class _Term:
    """The state of one leadership term."""

    reconciler: Reconciler
    scope: trio.CancelScope


class AllocatorDaemon:
    """Wiring of the allocator (see module docstring). ``await nursery.start(d.run)``."""

    def __init__(self, client: KubeClient, settings: DaemonSettings, *,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self.settings = settings
        self._wall = wall_clock
        self.health = Health(SYNCED, LEADING)
        self.metrics = AllocatorMetrics(self._current_allocator, self._queue_depth)
        self.netbox_metrics = NetboxMetrics(self.metrics.registry)
        self.elector = Elector(settings.identity, settings.lease)
        self._recorder = EventRecorder(client, EventSettings(
            reporting_controller="purelb.io/allocator", reporting_instance=settings.identity),
            now=wall_clock)
        self.writer = KubeWriter(client, self._recorder, fence=self.is_leader,
                                 counters=self.metrics)
        self._reflectors: dict[str, Reflector] = {}
        self._term: _Term | None = None
        self._leading = False
        self._leading_changed = trio.Event()
        self.terms = 0
        """Leadership terms begun (tests and status read it)."""
        self.metrics_port = 0
        """The bound metrics port once running (useful with port 0)."""

    def __repr__(self) -> str:
        return (f"AllocatorDaemon({self.settings.identity!r}, leading={self._leading}, "
                f"term={self._term.reconciler if self._term else None})")

    # ------------------------------------------------------------------ queries

    def is_leader(self) -> bool:
        """The write fence: true only while the lease is ours (always without election)."""
        if not self.settings.leader_elect:
            return True
        return self._leading and self.elector.is_leader(trio.current_time())

    @property
    def reconciler(self) -> Reconciler | None:
        """The current term's reconciler (``None`` while standing by)."""
        return self._term.reconciler if self._term is not None else None

    def _current_allocator(self) -> Allocator | None:
        return self._term.reconciler.allocator if self._term is not None else None

    def _queue_depth(self) -> int:
        return self._term.reconciler.backlog if self._term is not None else 0

    def _wall_stamp(self) -> str:
        return micro_time(self._wall())

    # ------------------------------------------------------------------ the daemon

    async def run(self, *, task_status: trio.TaskStatus[AllocatorDaemon] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until cancelled; ready once every cache has synced (leading or not)."""
        s = self.settings
        LOGGER.info("event=allocator_starting identity=%s namespace=%s leader_elect=%s "
                    "hot_path=%s", s.identity, s.namespace, s.leader_elect, fast.describe())
        async with trio.open_nursery() as nursery:
            self.metrics_port = await nursery.start(partial(
                supervise, "metrics", serve_health_and_metrics, s.metrics_host, s.metrics_port,
                self.health, self.metrics.registry, backoff=s.task_backoff))
            await nursery.start(partial(supervise, "servicegroups", self._watch, SERVICE_GROUPS,
                                        s.namespace, self._on_group_change,
                                        backoff=s.task_backoff))
            await nursery.start(partial(supervise, "services", self._watch, SERVICES, None,
                                        self._on_service_change, backoff=s.task_backoff))
            self.health.set(SYNCED, True)
            self.metrics.synced.set(1)
            LOGGER.info("event=caches_synced servicegroups=%d services=%d",
                        len(self._reflectors["servicegroups"].store),
                        len(self._reflectors["services"].store))
            if s.leader_elect:
                lease = LeaseObject(self._client, name=s.lease_name, namespace=s.namespace)
                election = partial(run_election, wall_clock=self._wall)
                await nursery.start(partial(supervise, "election", election, lease,
                                            self.elector, self._on_leadership,
                                            backoff=s.task_backoff))
            else:
                self._on_leadership(True)
            nursery.start_soon(partial(supervise, "terms", self._terms, backoff=s.task_backoff))
            nursery.start_soon(partial(supervise, "resync", self._resync_loop,
                                       backoff=s.task_backoff))
            task_status.started(self)

    def _on_leadership(self, leading: bool) -> None:
        """Election callback (sync): a lost lease cancels the running term at once.

        Readiness (``leading``) turns true only once the new term's barrier is done, so
        /readyz means "this replica is allocating now"."""
        self._leading = leading
        if not leading:
            self.health.set(LEADING, False)
        self.metrics.leader.set(1 if leading else 0)
        if not leading and self._term is not None:
            LOGGER.warning("event=leadership_lost identity=%s stopping writes",
                           self.settings.identity)
            self._term.scope.cancel()
        self._leading_changed.set()

    async def _terms(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """Run one term per leadership acquisition, forever."""
        task_status.started()
        while True:
            while not self._leading:
                self._leading_changed = trio.Event()
                await self._leading_changed.wait()
            with trio.CancelScope() as scope:
                await self._run_term(scope)

    async def _run_term(self, scope: trio.CancelScope) -> None:
        s = self.settings
        self.terms += 1
        self.metrics.leadership_terms.inc()
        queue: WorkQueue[QueueKey] = WorkQueue(backoff=s.retry_backoff)
        reconciler = Reconciler(
            settings=s.allocator, writer=self.writer,
            services=lambda ns, name: unpack(self._reflectors["services"].get(ns, name)),
            groups=lambda: self._reflectors["servicegroups"].list(), queue=queue,
            metrics=self.metrics, conflict_retries=s.conflict_retries, now=self._wall_stamp,
            read_secret=self._read_secret, netbox_metrics=self.netbox_metrics)
        # Installed before the barrier so changes seen meanwhile are queued (workers start
        # only after it). The barrier reads fresh lists, not the caches: a new leader's
        # cache may still lack the previous leader's last writes, and importing from it
        # could hand an address out twice.
        self._term = _Term(reconciler, scope)
        try:
            began = trio.current_time()
            groups, _ = await self._client.list_all(SERVICE_GROUPS, namespace=s.namespace)
            listed = await self._list_services(reconciler.listing(groups))
            barrier = reconciler.barrier(groups, listed)
            LOGGER.info("event=startup_barrier term=%d groups=%d services=%d imported=%d "
                        "conflicts=%d seconds=%.3f", self.terms, barrier.groups,
                        barrier.services, barrier.imported, barrier.conflicts,
                        trio.current_time() - began)
            del groups, listed  # the caches serve reads from here on
            trim_heap()  # the barrier's pages were freed at once: give the memory back
            with trio.move_on_after(NETBOX_SYNC_BUDGET_S) as budget:
                await reconciler.netbox_start()
            if budget.cancelled_caught:
                LOGGER.warning("event=netbox_sync_timeout seconds=%.0f", NETBOX_SYNC_BUDGET_S)
            self.health.set(LEADING, True)
            async with trio.open_nursery() as nursery:
                for _ in range(s.workers):
                    nursery.start_soon(self._worker, reconciler)
                nursery.start_soon(self._status_loop, reconciler)
        finally:
            queue.shut_down()
            self._term = None
            self.health.set(LEADING, False)
            with trio.CancelScope(shield=True):
                await reconciler.netbox.aclose()

    async def _list_services(self, listing: ServiceListing) -> ServiceListing:
        """Every Service, parsed page by page into ``listing``: one page of full objects
        and parsed Services alive at a time."""
        token: str | None = None
        while True:
            page = await self._client.list(SERVICES, limit=self.settings.reflector.page_size,
                                           continue_token=token)
            listing.add(parse_services(page.get("items") or []))
            token = (page.get("metadata") or {}).get("continue") or None
            del page
            if not token:
                return listing

    async def _worker(self, reconciler: Reconciler) -> None:
        queue = reconciler.queue
        while True:
            reconciler.top_up(self.settings.workers)
            key = await queue.get()
            began = trio.current_time()
            try:
                result = await self._process(reconciler, key)
            finally:
                queue.done(key)
            if result is ReconcileResult.RETRY:
                queue.retry(key)
            else:
                queue.forget(key)
            self.metrics.reconcile_seconds.labels(result.value).observe(
                trio.current_time() - began)

    async def _process(self, reconciler: Reconciler, key: QueueKey) -> ReconcileResult:
        try:
            if key is Marker.CONFIG:
                result = await reconciler.apply_config()
                LOGGER.info("event=config_applied accepted=%s rejected=%s requeued=%d",
                            ",".join(result.accepted) or "-",
                            ",".join(r.name for r in result.rejected) or "-",
                            len(result.requeue))
                return ReconcileResult.OK
            return await reconciler.reconcile(key)
        except NotLeader:
            return ReconcileResult.NOT_LEADER
        except ApiError as exc:
            LOGGER.warning("event=reconcile_failed key=%s error=%s retrying", key, exc)
            return ReconcileResult.RETRY

    async def _status_loop(self, reconciler: Reconciler) -> None:
        while True:
            try:
                await reconciler.flush_group_status()
            except NotLeader:
                pass  # the term is ending
            except ApiError as exc:
                LOGGER.warning("event=group_status_failed error=%s retrying_in_s=%.2f", exc,
                               self.settings.status_interval_s)
            await trio.sleep(self.settings.status_interval_s)

    async def _resync_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
        """Every ``resync_s``, reconcile every cached Service again (level-triggered)."""
        task_status.started()
        while True:
            await trio.sleep(self.settings.resync_s)
            term = self._term
            if term is None:
                continue
            term.reconciler.backfill(_key(obj) for obj in self._reflectors["services"].list())
            term.reconciler.queue.add(Marker.CONFIG)

    async def _read_secret(self, name: str) -> JSON | None:
        """A Secret of the install namespace (NetBox tokens); ``None`` if it does not exist."""
        try:
            return await self._client.get(SECRETS, name, namespace=self.settings.namespace)
        except NotFound:
            return None

    # ------------------------------------------------------------------ watches

    async def _watch(self, resource: Resource, namespace: str | None,
                     on_change: Callable[[Change], None], *,
                     task_status: trio.TaskStatus[Reflector] = trio.TASK_STATUS_IGNORED) -> None:
        """One reflector run with its consumer; ready once it has listed."""
        send, receive = trio.open_memory_channel[Change](self.settings.change_buffer)
        reflector = Reflector(self._client, resource, namespace=namespace, send_channel=send,
                              settings=self.settings.reflector,
                              transform=pack_service if resource is SERVICES else None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._consume, receive, on_change)
            await nursery.start(reflector.run)
            self._reflectors[resource.plural] = reflector
            task_status.started(reflector)

    @staticmethod
    async def _consume(receive: trio.MemoryReceiveChannel[Change],
                       on_change: Callable[[Change], None]) -> None:
        async with receive:
            async for change in receive:
                on_change(change)

    def _on_service_change(self, change: Change) -> None:
        if self._term is not None:
            obj = unpack(change.obj) or {}  # decode a packed entry once
            meta = obj.get("metadata") or {}
            self._term.reconciler.changed(_key(obj), str(meta.get("resourceVersion", "")),
                                          deleted=change.kind is ChangeKind.DELETED)

    def _on_group_change(self, change: Change) -> None:
        if self._term is not None:
            self._term.reconciler.queue.add(Marker.CONFIG)


def _key(obj: JSON) -> ServiceKey:
    meta = obj.get("metadata") or {}
    return service_key(str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def lease_timings(duration_s: float, renew_deadline_s: float, retry_period_s: float
                  ) -> LeaseTimings:
    """LeaseTimings from flags (validated there, named in the error)."""
    for name, value in (("lease-duration", duration_s), ("renew-deadline", renew_deadline_s),
                        ("retry-period", retry_period_s)):
        if not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number of seconds, got {value}",
                              path=name, value=value)
    return LeaseTimings(lease_duration_s=duration_s, renew_deadline_s=renew_deadline_s,
                        retry_period_s=retry_period_s)
