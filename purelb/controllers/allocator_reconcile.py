"""One leadership term of the allocator: Service key -> pure decision -> writes.

A :class:`Reconciler` exists while this replica leads. It owns a fresh
:class:`~purelb.ipam.allocator.Allocator` built by :meth:`Reconciler.barrier` — the
startup barrier: the ServiceGroups and *every* Service are listed from the API (not from
a cache that may lag behind the previous leader's last writes), the config is installed
and every PureLB-branded ingress imported; only then is the first key reconciled. This
is the step MetalLB lacked (allocating before the initial load handed one address to
two Services: research/peers.md §2, §6).

``reconcile(key)`` reads the Service from the watch cache, asks the allocator (pure,
sync: no other task sees a half-applied decision), then writes through the
:class:`~purelb.controllers.allocator_writer.Writer`: annotations by merge patch carrying
the resourceVersion the decision saw, then the ingress by a merge patch on /status with
the resourceVersion the patch returned (also compare-and-set). A 409 means the Service
changed under us: re-read it, recompute (the allocator's state already holds what it
decided, so the new decision is only the remaining difference) and write again.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from purelb.controllers.allocator_metrics import AllocatorMetrics
from purelb.controllers.allocator_status import desired_status, group_views, status_patch
from purelb.controllers.allocator_writer import NotLeader, Writer
from purelb.controllers.workqueue import WorkQueue
from purelb.errors import ApiError
from purelb.ipam.allocator import Allocator, AllocatorSettings
from purelb.ipam.decision import ConfigResult, Decision, Event, EventType, ImportEntry
from purelb.ipam.netbox import NetboxMetrics
from purelb.ipam.netbox_driver import NetboxDriver
from purelb.kube import Conflict, NotFound
from purelb.model import (
    InvalidField,
    SecretKeyRef,
    Service,
    ServiceGroup,
    ServiceKey,
    parse_service,
    service_key,
)
from purelb.model import annotations as ann

LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]

#: PureLB's Secret for the NetBox token when a group names none (v0.13: env
#: NETBOX_USER_TOKEN from Secret ``netbox-client``, key ``user-token``)
DEFAULT_NETBOX_SECRET = SecretKeyRef(name="netbox-client", key="user-token")
#: a missing or refused NetBox token is read from its Secret again at most this often
#: (Secrets are not watched; a rotated token is picked up within this time)
NETBOX_TOKEN_REREAD_S = 30.0
#: condition type on a NetBox ServiceGroup's status: can PureLB use that NetBox?
NETBOX_CONDITION = "NetboxReady"


class Marker(enum.Enum):
    """Queue items that are not a Service key."""

    CONFIG = "config"
    """The ServiceGroups changed: install them, then requeue the Services waiting on them."""


QueueKey = ServiceKey | Marker


class ReconcileResult(enum.Enum):
    """How one reconcile ended; the worker acts on it."""

    OK = "ok"
    """Done (including "failed for a reason only a change can cure"): forget its backoff."""
    GONE = "gone"
    """The Service no longer exists; its addresses were released."""
    RETRY = "retry"
    """A transient API error or a conflict storm: retry the key with per-key backoff."""
    NOT_LEADER = "not_leader"
    """A write was fenced off; the term is ending, the next one re-enqueues everything."""


#: Event action per reason (events.k8s.io/v1 requires an action)
EVENT_ACTIONS = {"AddressAssigned": "Allocate", "AddressReleased": "Release",
                 "AllocationFailed": "Allocate", "DeprecationWarning": "Validate",
                 "ConfigurationWarning": "Validate", "ParseFailed": "Validate"}


@dataclass(frozen=True, slots=True)
class BarrierResult:
    groups: int
    services: int
    imported: int
    conflicts: int


@dataclass(slots=True)
class _OwnWrites:
    """The resourceVersions one Service's latest reconcile wrote, until the watch echoes them.

    ``through``: the version the decision read and any intermediate one (never the last).
    A cached copy at one of them predates our own write, whose watch event is on its way:
    reconciling it would only earn a 409 and a re-read. ``last``: the version our final
    write produced; its echo is exactly what the allocator decided, so it is not queued
    (unless a reconcile asked for meanwhile was skipped: then ``last`` is ``None``).
    Versions are compared for equality only (they are opaque strings to clients).
    """

    through: frozenset[str]
    last: str | None


class ServiceListing:
    """What the startup barrier keeps of each Service in its fresh list.

    The daemon parses the list a page at a time and :meth:`add` keeps, per Service, only
    its key and resourceVersion, plus an :class:`~purelb.ipam.decision.ImportEntry` (and
    for NetBox the uid) of those with an ingress to import: ~0.3 KB instead of a parsed Service
    (~1.5 KB), so a restart with 10,000 Services peaks ~12 MB lower, and the memory the
    parsing used is reused page after page instead of fragmented.
    """

    __slots__ = ("_allocator", "_keep_uids", "entries", "uids", "versions")

    def __init__(self, allocator: Allocator, *, keep_uids: bool) -> None:
        self._allocator = allocator
        self._keep_uids = keep_uids
        self.entries: list[ImportEntry] = []
        self.versions: dict[ServiceKey, str] = {}
        """Every listed Service's resourceVersion, in list order."""
        self.uids: dict[ServiceKey, str] = {}
        """uid of each Service with an ingress to import, if a ServiceGroup uses NetBox
        (its records name the owner's uid)."""

    def add(self, services: Iterable[Service]) -> ServiceListing:
        """Keep what the barrier needs of ``services``; returns ``self``."""
        for svc in services:
            entry = self._allocator.import_entry(svc)
            if entry is not None:
                self.entries.append(entry)
                key = entry.key
                if self._keep_uids:
                    self.uids[key] = svc.uid
            else:
                key = svc.key
            self.versions[key] = svc.resource_version
        return self


def split_key(key: ServiceKey) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


class Reconciler:
    """Reconcile Services for one leadership term (see module docstring).

    Args:
        settings: what the allocator handles (class, default announcer).
        writer: where decisions go (fenced).
        services: cache lookup ``(namespace, name) -> object or None``.
        groups: the ServiceGroup objects currently in the cache.
        queue: the term's work queue (requeues go there).
        metrics: counters and histograms.
        conflict_retries: re-read/recompute rounds after a 409 before backing off.
        now: wall-clock stamp for condition times (injected: MicroTime string).
        read_secret: ``name -> Secret object or None`` in the install namespace (NetBox
            tokens); without it NetBox groups have no token.
        netbox_metrics: NetBox request metrics (registered once per daemon).
    """

    def __init__(self, *, settings: AllocatorSettings, writer: Writer,
                 services: Callable[[str, str], JSON | None],
                 groups: Callable[[], list[JSON]], queue: WorkQueue[QueueKey],
                 metrics: AllocatorMetrics, conflict_retries: int,
                 now: Callable[[], str],
                 read_secret: Callable[[str], Awaitable[JSON | None]] | None = None,
                 netbox_metrics: NetboxMetrics | None = None) -> None:
        self.allocator = Allocator(settings)
        self._read_secret = read_secret
        self._tokens: dict[str, str | None] = {}
        self._tokens_read_at = -math.inf
        self.netbox = NetboxDriver(lambda g: self._tokens.get(g.name), metrics=netbox_metrics)
        """NetBox I/O for ``spec.netbox`` groups (only the leader's term has one)."""
        self._reported_netbox: dict[str, str] = {}
        self._imported_uids: dict[ServiceKey, str] = {}
        self._settings = settings
        self._writer = writer
        self._services = services
        self._groups = groups
        self.queue = queue
        self._metrics = metrics
        self._conflict_retries = conflict_retries
        self._now = now
        self._reported_rejections: dict[str, str] = {}
        self.status_dirty = True
        self._written: dict[ServiceKey, _OwnWrites] = {}
        # Per Service whose writes' watch events are still on their way: see _OwnWrites.
        self.skipped_behind = 0
        """Reconciles skipped because the cache had not yet seen our own write."""
        self.skipped_echoes = 0
        """Watch events not queued because they only echoed our own writes."""
        self._backfill: deque[ServiceKey] = deque()
        self._listed: dict[ServiceKey, str] = {}
        # resourceVersion of each Service in the barrier's list: a watch event carrying the
        # same version (the reflector's own initial list, replayed) is no news
        # Bulk keys (the barrier's full pass, a periodic resync) wait here and enter the
        # queue only when it runs low, so a Service created meanwhile is not queued behind
        # 10,000 no-op reconciles.

    def __repr__(self) -> str:
        return f"Reconciler({self.allocator!r}, queued={len(self.queue)})"

    # ------------------------------------------------------------------ barrier

    def listing(self, groups: list[JSON]) -> ServiceListing:
        """An empty :class:`ServiceListing` for this term's barrier over ``groups``."""
        # uids only matter to the NetBox sync (a group that then fails to parse just
        # means they were kept for nothing)
        netbox = any(isinstance(g.get("spec"), dict) and g["spec"].get("netbox") is not None
                     for g in groups)
        return ServiceListing(self.allocator, keep_uids=netbox)

    def barrier(self, groups: list[JSON], listed: ServiceListing) -> BarrierResult:
        """Install ``groups`` and import every branded ingress of ``listed`` (fresh lists).

        Sync: nothing can be reconciled half-way through. Backfills every Service, so the
        first pass over the cluster is level-triggered too.
        """
        result = self.allocator.set_config(groups)
        self._metrics.config_loaded.set(1 if result.accepted else 0)
        imported = self.allocator.import_services(listed.entries)
        if any(g.netbox is not None for g in self.allocator.groups.values()):
            self._imported_uids = listed.uids  # the NetBox sync labels records with them
        for conflict in imported.conflicts:
            LOGGER.warning("event=import_conflict service=%s address=%s reason=%s",
                           conflict.service, conflict.address, conflict.failure.message)
        self._metrics.imported.set(imported.services)
        for key in imported.requeue:
            self.queue.add(key)  # their ingress must be rewritten: first in line
        self.backfill(listed.versions)
        self._listed = listed.versions
        self.queue.add(Marker.CONFIG)  # reports rejected groups as events
        return BarrierResult(groups=len(groups), services=len(listed.versions),
                             imported=imported.services, conflicts=len(imported.conflicts))

    def backfill(self, keys: Iterable[ServiceKey]) -> None:
        """Reconcile ``keys`` eventually, after whatever the watches queue meanwhile."""
        self._backfill.extend(keys)

    def changed(self, key: ServiceKey, resource_version: str, *, deleted: bool = False) -> None:
        """A watch saw ``key`` change: queue it, unless the event is no news -- the
        barrier read that same version and the key still waits in the backfill (which
        reconciles it in turn), or the event echoes our own write (see _OwnWrites).

        A deletion is always news: after a relist it carries the last version the cache
        knew, which may well be the one our own write produced.
        """
        if deleted:
            self._listed.pop(key, None)
            self._written.pop(key, None)
            self.queue.add(key)
            return
        if self._listed and self._listed.pop(key, None) == resource_version:
            return
        written = self._written.get(key)
        if written is not None:
            if resource_version in written.through:
                self.skipped_echoes += 1
                return  # the echo of our final write follows
            del self._written[key]
            if resource_version == written.last:
                self.skipped_echoes += 1
                return
        self.queue.add(key)

    def top_up(self, low_water: int) -> None:
        """Move backfill keys into the queue while it holds fewer than ``low_water``."""
        while self._backfill and len(self.queue) < low_water:
            self.queue.add(self._backfill.popleft())

    @property
    def backlog(self) -> int:
        """Keys queued plus keys waiting to be backfilled."""
        return len(self.queue) + len(self._backfill)

    # ------------------------------------------------------------------ NetBox

    async def netbox_start(self) -> None:
        """After the barrier: NetBox clients, then reconcile NetBox with the imported Services
        (orphans released, lost addresses re-claimed). Sync, errors logged, never raised."""
        uids, self._imported_uids = self._imported_uids, {}
        if not any(g.netbox is not None for g in self.allocator.groups.values()):
            return
        await self._netbox_configure()
        report = await self.netbox.sync(self.allocator, uids)
        LOGGER.info("event=netbox_sync released=%d reclaimed=%d relabelled=%d incomplete=%s",
                    len(report.released), len(report.reclaimed), len(report.relabelled),
                    ",".join(report.incomplete) or "-")
        for key, events in sorted(report.events.items()):
            obj = self._services(*split_key(key))
            for event in events:
                if obj is not None:
                    await self._writer.emit(obj, event, action="Reconcile")
        self.status_dirty = True

    async def _netbox_configure(self) -> None:
        groups = list(self.allocator.groups.values())
        tokens: dict[str, str | None] = {}
        for group in groups:
            if group.netbox is not None:
                tokens[group.name] = await self._token(group)
        self._tokens = tokens
        self._tokens_read_at = trio.current_time()
        self.netbox.configure(groups)

    async def _token(self, group: ServiceGroup) -> str | None:
        assert group.netbox is not None
        ref = group.netbox.token_secret_ref or DEFAULT_NETBOX_SECRET
        if self._read_secret is None:
            return None
        try:
            secret = await self._read_secret(ref.name)
        except ApiError as exc:
            LOGGER.warning("event=netbox_token_unreadable group=%s secret=%s error=%s",
                           group.name, ref.name, exc)
            return None
        raw = ((secret or {}).get("data") or {}).get(ref.key)
        if not raw:
            return None
        try:
            return base64.b64decode(raw, validate=True).decode().strip() or None
        except (binascii.Error, UnicodeDecodeError):
            LOGGER.warning("event=netbox_token_invalid group=%s secret=%s key=%s",
                           group.name, ref.name, ref.key)
            return None

    async def _netbox_handle(self, decision: Decision, svc: Service | None) -> list[Event]:
        """Release / fulfil / relabel in NetBox for one decision; requeue and retry keys."""
        if (
            self.netbox.needs_token
            and trio.current_time() - self._tokens_read_at >= NETBOX_TOKEN_REREAD_S
        ):
            await self._netbox_configure()  # the Secret may have been fixed or rotated
        result = await self.netbox.handle(self.allocator, decision, svc)
        for key in sorted(result.requeue):
            self.queue.add(key)
        if result.retry_after is not None and svc is not None:
            self.queue.add_after(svc.key, result.retry_after)
        if result.requeue or result.events:
            self.status_dirty = True
        await self._report_netbox_problems()
        return result.events

    async def _report_netbox_problems(self) -> None:
        """A Warning Event on a NetBox ServiceGroup when its problem first appears."""
        current = {name: p.message for name, p in self.netbox.problems.items()}
        if current == self._reported_netbox:
            return
        by_name = {str((g.get("metadata") or {}).get("name")): g for g in self._groups()}
        for name, message in sorted(current.items()):
            if self._reported_netbox.get(name) == message or name not in by_name:
                continue
            LOGGER.warning("event=netbox_problem group=%s reason=%s", name, message)
            ref = {**by_name[name], "apiVersion": "purelb.io/v1", "kind": "ServiceGroup"}
            await self._writer.emit(ref, Event(EventType.WARNING, "NetboxError", message),
                                    action="Allocate")
        self._reported_netbox = current
        self.status_dirty = True

    def _netbox_condition(self, name: str, generation: int) -> JSON | None:
        group = self.allocator.groups.get(name)
        if group is None or group.netbox is None:
            return None
        problem = self.netbox.problems.get(name)
        if problem is None:
            return {"type": NETBOX_CONDITION, "status": "True", "reason": "Ready",
                    "message": f"NetBox {group.netbox.url} tenant {group.netbox.tenant}",
                    "observedGeneration": generation}
        reason = "".join(w.capitalize() for w in problem.reason.split("_"))
        return {"type": NETBOX_CONDITION, "status": "False", "reason": reason,
                "message": problem.message, "observedGeneration": generation}

    # ------------------------------------------------------------------ config

    async def apply_config(self) -> ConfigResult:
        """Install the cached ServiceGroups; requeue only the Services that were waiting."""
        groups = self._groups()
        result = self.allocator.set_config(groups)
        self._metrics.config_loaded.set(1 if result.accepted else 0)
        if result.unused_offers:  # before the clients of changed groups are replaced
            await self.netbox.release(result.unused_offers)
        if any(g.netbox is not None for g in self.allocator.groups.values()):
            await self._netbox_configure()
        for key in result.requeue:
            self.queue.add(key)
        self.status_dirty = True
        by_name = {str((g.get("metadata") or {}).get("name")): g for g in groups}
        current = {r.name: str(r.error) for r in result.rejected}
        for name, message in sorted(current.items()):
            if self._reported_rejections.get(name) == message or name not in by_name:
                continue
            LOGGER.warning("event=servicegroup_rejected group=%s reason=%s", name, message)
            ref = {**by_name[name], "apiVersion": "purelb.io/v1", "kind": "ServiceGroup"}
            await self._writer.emit(ref, Event(EventType.WARNING, "ParseFailed", message),
                                    action="Validate")
        self._reported_rejections = current
        return result

    async def flush_group_status(self) -> int:
        """Write the status of every group whose status differs; return how many."""
        if self.netbox.unreleased:  # NetBox was down when these were released
            await self.netbox.retry_releases(trio.current_time())
        if not self.status_dirty:
            return 0
        self.status_dirty = False
        alloc = self.allocator
        written = 0
        for obj, view in group_views(self._groups(), alloc.groups, alloc.rejected, alloc.stats()):
            if view.name not in alloc.groups and view.rejected is None:
                # In the cache but not evaluated yet (its CONFIG marker is queued): writing
                # "not accepted" now would flash a false condition; apply_config marks the
                # status dirty once it has judged the group.
                continue
            desired = desired_status(view)
            condition = self._netbox_condition(view.name, view.generation)
            if condition is not None and "conditions" in desired:
                desired["conditions"].append(condition)
            patch = status_patch(obj.get("status"), desired, now=self._now())
            if patch is None:
                continue
            try:
                await self._writer.write_group_status(obj, patch)
            except NotLeader:
                raise
            except NotFound:
                continue  # deleted meanwhile; its DELETED event reconfigures
            except Exception:
                self.status_dirty = True  # try again next flush
                self._metrics.sg_status_writes.labels("error").inc()
                raise
            self._metrics.sg_status_writes.labels("ok").inc()
            written += 1
        return written

    # ------------------------------------------------------------------ services

    async def reconcile(self, key: ServiceKey) -> ReconcileResult:
        namespace, name = split_key(key)
        self._listed.pop(key, None)  # from here on, a watch event for it is news
        obj = self._services(namespace, name)
        if obj is None and self.allocator.holdings(key):
            # Never free an address on the cache's word alone: after a barrier (a fresh
            # list) the cache may still lag behind and lack a Service that exists.
            obj = await self._writer.read_service(namespace, name)
        written = self._written.get(key)
        if obj is not None and written is not None and _rv(obj) in written.through:
            # Queued for another reason while the cache still lags behind our own write:
            # the echo of our final write will reconcile it, so it must not be skipped.
            written.last = None
            self.skipped_behind += 1
            return ReconcileResult.OK
        events: list[Event] = []
        for _attempt in range(self._conflict_retries + 1):
            if obj is None:
                gone = self.allocator.release(key)
                self._account(gone, None)
                await self._netbox_handle(gone, None)
                return ReconcileResult.GONE
            try:
                svc = parse_service(obj)
            except InvalidField as exc:
                LOGGER.warning("event=service_unparseable service=%s reason=%s", key, exc)
                return ReconcileResult.OK  # only an edit of the Service can fix it
            decision = self.allocator.reconcile(svc)
            self._account(decision, svc.annotations)
            events.extend(decision.events)
            events.extend(await self._netbox_handle(decision, svc))
            try:
                obj = await self._write(obj, decision)
            except Conflict:
                self._metrics.conflicts.inc()
                obj = await self._writer.read_service(namespace, name)
                continue
            except NotFound:
                obj = None
                continue
            for event in events:
                await self._writer.emit(obj, event,
                                        action=EVENT_ACTIONS.get(event.reason, "Reconcile"))
            return ReconcileResult.OK
        LOGGER.warning("event=conflict_storm service=%s retries=%d backing_off", key,
                       self._conflict_retries)
        return ReconcileResult.RETRY

    async def _write(self, obj: JSON, decision: Decision) -> JSON:
        passed = [_rv(obj)]
        if decision.annotations_set or decision.annotations_remove:
            obj = await self._writer.patch_annotations(obj, decision.annotations_set,
                                                       decision.annotations_remove)
            passed.append(_rv(obj))
        if decision.ingress is not None:
            obj = await self._writer.write_ingress(obj, decision.ingress_json())
            passed.append(_rv(obj))
        if len(passed) > 1:
            self._written[decision.service] = _OwnWrites(
                through=frozenset(passed[:-1]) - {passed[-1]}, last=passed[-1])
        return obj

    def _account(self, decision: Decision, annotations: Mapping[str, str] | None) -> None:
        for key in decision.requeue:
            self.queue.add(key)
        if decision.has_writes or decision.released:
            self.status_dirty = True
        if decision.failure is not None:
            pool = (annotations or {}).get(ann.SERVICE_GROUP) or self._settings.default_group
            self._metrics.rejected.labels(pool, decision.failure.reason.value).inc()


#: the Service fields ``purelb.model.parse_service`` reads (and the writer needs)
_META_KEPT = ("name", "namespace", "uid", "resourceVersion", "annotations")
_SPEC_KEPT = ("type", "loadBalancerClass", "clusterIP", "clusterIPs", "ipFamilyPolicy",
              "externalTrafficPolicy", "allocateLoadBalancerNodePorts", "loadBalancerIP")


def slim_service(obj: JSON) -> JSON:
    """The part of a Service the allocator reads: what its watch cache keeps.

    A Service from the API carries selectors, node ports, labels and managedFields the
    allocator never looks at; the cache keeps only this, serialized at once
    (:mod:`~purelb.controllers.allocator_cache`), so nothing here is worth interning. A
    field added to ``parse_service`` must be added here too (a unit test compares them).
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    out_meta: JSON = {k: meta[k] for k in _META_KEPT if k in meta}
    out_spec: JSON = {k: spec[k] for k in _SPEC_KEPT if k in spec}
    if isinstance(spec.get("ipFamilies"), list):
        out_spec["ipFamilies"] = spec["ipFamilies"]
    ports = spec.get("ports")
    if isinstance(ports, list):
        out_spec["ports"] = [{k: p[k] for k in ("protocol", "port") if k in p}
                             if isinstance(p, dict) else p for p in ports]
    elif ports is not None:
        out_spec["ports"] = ports  # malformed: keep it so parsing reports it
    out: JSON = {"metadata": out_meta, "spec": out_spec}
    status = obj.get("status")
    if isinstance(status, dict) and "loadBalancer" in status:
        out["status"] = {"loadBalancer": status["loadBalancer"]}
    return out


def parse_services(objs: Iterable[JSON]) -> list[Service]:
    """Parse Service objects, logging (and skipping) any the model refuses."""
    out = []
    for obj in objs:
        try:
            out.append(parse_service(obj))
        except InvalidField as exc:
            LOGGER.warning("event=service_unparseable service=%s reason=%s", _key_of(obj), exc)
    return out


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _key_of(obj: JSON) -> ServiceKey:
    meta = obj.get("metadata") or {}
    return service_key(str(meta.get("namespace", "")), str(meta.get("name", "")))
