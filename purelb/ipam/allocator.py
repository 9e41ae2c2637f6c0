"""The allocator: every address decision, pure and deterministic.

Inputs are parsed values (:class:`~purelb.model.Service`, :class:`~purelb.model.ServiceGroup`);
outputs are :class:`~purelb.ipam.decision.Decision` values the daemon applies. No I/O, no
clock, no globals: the same sequence of calls gives the same decisions.

Life cycle (the daemon drives it)::

    alloc = Allocator(AllocatorSettings())
    alloc.set_config(service_groups)          # again on every ServiceGroup change
    alloc.import_services(all_services)       # the startup barrier: once, before reconcile
    alloc.reconcile(service) -> Decision      # on every Service add/update (and resync)
    alloc.release(key) -> Decision            # on Service delete

State. The address book (``_book``) has one record per held address -- group (``None`` once
it lies in no pool), sharing key, holders and their (protocol, port)s -- and a (group, key,
family) index, so sharing never searches. Each group has an address source (``sources``)
and the address index (``index``) finds a group by address. Every operation costs O(log
pool) or O(ports of the Service); only :meth:`set_config` touches more, and then only the
addresses of groups whose pools changed. A per-group waiting list names the Services to
requeue when something frees.

Rules (see docs/ipam.md for where they differ from PureLB):

* one address per family per Service; families from ``ipFamilyPolicy`` + ``ipFamilies``;
* a reconcile is atomic: either the Service gets everything it asks for or no new address
  is kept (RequireDualStack is never half-allocated by an allocation);
* a held address is never moved because annotations or config changed -- except when the
  Service itself asks for a specific other address (``purelb.io/addresses``), or when its
  own key/port change makes sharing the address illegal (then it leaves the address, the
  other holders keep it);
* shared addresses: same non-empty key, disjoint (protocol, port) pairs, one address per key
  per family per group.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from purelb.errors import AllocationError, ConfigError
from purelb.ipam._book import AddressBook, HeldAddress, Holding, Refusal, sort_key
from purelb.ipam._families import families_for, family_order
from purelb.ipam.decision import (
    RETRY_ON_FREE,
    ConfigResult,
    Decision,
    Event,
    EventType,
    ExternalRequest,
    Failure,
    FailureReason,
    GroupStats,
    ImportConflict,
    ImportEntry,
    ImportResult,
    Outcome,
    Released,
)
from purelb.ipam.index import AddressIndex, Placement
from purelb.ipam.sources import AddressSource, ExternalNeeded, ExternalSource, make_source
from purelb.model import (
    InvalidField,
    IPAddress,
    IPFamilyPolicy,
    PoolType,
    Reason,
    RejectedGroup,
    Service,
    ServiceGroup,
    ServiceKey,
    ServicePort,
    family_name,
    parse_addresses,
    validate_service_groups,
)
from purelb.model import annotations as ann

#: written on ``spec.externalTrafficPolicy`` -- sharing ignores it (see ConfigurationWarning)
ETP_LOCAL = "Local"


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorSettings:
    """What the allocator handles and where it allocates by default."""

    load_balancer_class: str = ann.LOAD_BALANCER_CLASS
    """Services with this ``spec.loadBalancerClass`` are ours (v1 spelling)."""
    default_announcer: bool = True
    """Also handle Services with no class (PureLB: env ``DEFAULT_ANNOUNCER=PureLB``); on by
    default because a bare-metal cluster usually has one load balancer."""
    default_group: str = ann.DEFAULT_GROUP
    """The ServiceGroup used when a Service names none."""


DEFAULT_SETTINGS = AllocatorSettings()


@dataclass(slots=True)
class _Plan:
    """What one Service asks for, resolved against the config."""

    order: list[int]
    """Families wanted, in ingress order."""
    wanted: dict[int, IPAddress | None]
    """Family -> specific address, or ``None`` for "any from ``group``"."""
    group: str | None
    """The group for automatic allocation (``None`` with specific addresses)."""
    warnings: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class _Undo:
    """How to take back one attach inside a failed transaction."""

    address: HeldAddress
    service: ServiceKey
    created: bool


def _failure_reason(exc: AllocationError, default: FailureReason) -> FailureReason:
    """Our stable reason for a pool error (the pool uses the same identifiers)."""
    try:
        return FailureReason(exc.reason)
    except ValueError:
        return default


def _ips(addresses: Iterable[IPAddress]) -> str:
    return ", ".join(str(a) for a in addresses)


class Allocator:
    """Address allocation state and decisions for every ServiceGroup and Service."""

    def __init__(self, settings: AllocatorSettings = DEFAULT_SETTINGS) -> None:
        self.settings = settings
        self._groups: dict[str, ServiceGroup] = {}
        self._rejected: dict[str, RejectedGroup] = {}
        self._sources: dict[str, AddressSource] = {}
        self._index = AddressIndex(())
        self._book = AddressBook()
        self._held: dict[ServiceKey, Holding] = {}
        self._waiting: dict[ServiceKey, str | None] = {}
        self._waiting_by_group: dict[str | None, set[ServiceKey]] = {}
        self._invalid: set[ServiceKey] = set()
        self._configured = False
        self._imported = False

    def __repr__(self) -> str:
        return (
            f"<Allocator groups={len(self._groups)} services={len(self._held)} "
            f"addresses={len(self._book)}>"
        )

    # ------------------------------------------------------------------ configuration

    def set_config(self, groups: Iterable[ServiceGroup | Mapping[str, Any]]) -> ConfigResult:
        """Install a new set of ServiceGroups (parsed or raw JSON); never raises for bad input.

        Unchanged groups keep their pools; addresses of changed or removed groups are placed
        in whichever new group contains them, or kept as orphans (never revoked).
        """
        result = validate_service_groups(groups)
        rejected = list(result.rejected)
        new_groups: dict[str, ServiceGroup] = {}
        new_sources: dict[str, AddressSource] = {}
        for group in result.accepted:
            old = self._groups.get(group.name)
            if old is not None and old == group:
                new_sources[group.name] = self._sources[group.name]
            else:
                try:
                    new_sources[group.name] = make_source(group)
                except ConfigError as exc:  # the pool refused what the model accepted: report
                    rejected.append(
                        RejectedGroup(
                            group.name,
                            group.namespace,
                            InvalidField(
                                Reason.INVALID_RANGE, str(exc), path="spec", value=group.raw_pools
                            ),
                        )
                    )
                    continue
            new_groups[group.name] = group
        stale = [
            name
            for name, source in self._sources.items()
            if new_sources.get(name) is not source
        ]
        unused_offers = [
            Released(ip, name, PoolType.NETBOX)
            for name in stale
            if isinstance(self._sources[name], ExternalSource)
            for ip in self._sources[name].drain_offers()  # type: ignore[union-attr]
        ]
        accepted = tuple(new_groups)
        self._groups = new_groups
        self._sources = new_sources
        self._rejected = {r.name: r for r in rejected if r.name not in new_groups}
        self._index = AddressIndex(new_groups.values())

        rehome = sorted(
            (ip for name in [*stale, None] for ip in self._book.in_group(name)), key=sort_key
        )
        orphaned = []
        for ip in rehome:
            address = self._book[ip]
            old_group = address.group
            new_group = self._index.group_of(ip)
            if new_group is not None:
                try:
                    self._sources[new_group].adopt(ip)
                except AllocationError:  # cannot happen for a free in-pool address: a bug
                    raise AssertionError(f"{ip} in {new_group!r} refused on rehome") from None
            self._book.regroup(address, new_group)
            if new_group is None and old_group is not None:
                orphaned.append(ip)
        self._configured = True
        requeue = sorted(set(self._waiting) | self._invalid)
        return ConfigResult(
            accepted=accepted,
            rejected=tuple(rejected),
            orphaned=tuple(orphaned),
            requeue=tuple(ServiceKey(k) for k in requeue),
            unused_offers=tuple(unused_offers),
        )

    @property
    def groups(self) -> Mapping[str, ServiceGroup]:
        """Accepted groups by name."""
        return dict(self._groups)

    @property
    def rejected(self) -> Mapping[str, RejectedGroup]:
        """Rejected groups by name, with their errors."""
        return dict(self._rejected)

    def placement(self, address: IPAddress) -> Placement | None:
        """Group, subnet and prefix length of an address (for status and the agent)."""
        return self._index.placement(address)

    # ------------------------------------------------------------------ startup barrier

    def import_entry(self, svc: Service) -> ImportEntry | None:
        """What :meth:`import_services` will read of ``svc``; ``None`` if it imports nothing.

        Only Services that are ours, LoadBalancer, branded ``purelb.io/allocated-by:
        PureLB`` and with an ingress are imported. Needs no config: the barrier reduces
        each listed page to entries before the import.
        """
        if not (
            svc.ingress
            and svc.is_load_balancer
            and self._is_ours(svc)
            and svc.annotations.get(ann.ALLOCATED_BY) == ann.BRAND
        ):
            return None
        return ImportEntry(
            key=svc.key,
            ingress=svc.ingress,
            # keys and group names repeat across Services: one copy each
            sharing_key=sys.intern(self._sharing_key(svc)),
            ports=self._book.port_set(svc.ports),
            allocated_from=sys.intern(svc.annotations.get(ann.ALLOCATED_FROM, "")),
        )

    def import_services(self, services: Iterable[Service | ImportEntry]) -> ImportResult:
        """Adopt the addresses already written on Services (once, before any reconcile).

        Services (or their :meth:`import_entry`) are imported in key order; an entry that
        clashes with an earlier one (or cannot be parsed) is reported and its Service
        requeued to be rewritten.
        """
        if not self._configured:
            raise RuntimeError("set_config() must run before import_services()")
        if self._imported:
            raise RuntimeError("import_services() runs once, at startup")
        self._imported = True
        entries = [
            e
            for item in services
            if (e := item if isinstance(item, ImportEntry) else self.import_entry(item))
        ]
        entries.sort(key=lambda e: e.key)
        conflicts: list[ImportConflict] = []
        requeue: list[ServiceKey] = []
        imported = 0
        for entry in entries:
            key = entry.key
            hint = self._legacy_hint(entry.allocated_from)
            failed = False
            for text in entry.ingress:
                try:
                    self._import_one(key, text, entry.sharing_key, entry.ports, hint)
                except Refusal as refusal:
                    conflicts.append(ImportConflict(key, text, refusal.failure))
                    failed = True
            if failed:
                requeue.append(key)
            if key in self._held:
                imported += 1
        return ImportResult(
            services=imported,
            addresses=len(self._book),
            orphans=self._book.in_group(None),
            conflicts=tuple(conflicts),
            requeue=tuple(requeue),
        )

    def _legacy_hint(self, allocated_from: str) -> str | None:
        """The NetBox group without CIDR prefixes a Service's addresses came from, if any.

        Such a group has no ranges, so no address maps to it by value; the
        ``allocated-from`` annotation we wrote says where an imported address belongs.
        """
        name = allocated_from.split(",")[0].strip()
        group = self._groups.get(name)
        if group is not None and group.netbox is not None and not group.netbox.prefixes:
            return name  # no CIDR to place by (legacy flow, or prefixes given by id)
        return None

    def _import_one(
        self,
        key: ServiceKey,
        text: str,
        sharing_key: str,
        ports: frozenset[ServicePort],
        hint: str | None = None,
    ) -> None:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            raise Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: ingress {text!r} is not an IP address",
            ) from None
        held = self._held.get(key, {})
        if ip.version in held:
            raise Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: ingress has two {family_name(ip.version)} addresses "
                f"({held[ip.version]} and {ip})",
            )
        address = self._book.get(ip)
        if address is not None:
            self._book.check_join(key, address, sharing_key, ports, one_per_key=False)
        else:
            group = self._index.group_of(ip) or hint
            if group is not None:
                try:
                    self._sources[group].adopt(ip)
                except AllocationError as exc:
                    raise Refusal(
                        _failure_reason(exc, FailureReason.INVALID_ADDRESS), f"Service {key}: {exc}"
                    ) from None
            address = self._book.add(ip, group, sharing_key)
        self._book.attach(key, address, ports)
        self._held.setdefault(key, Holding())[ip.version] = ip

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, svc: Service) -> Decision:
        """Bring one Service's allocation in line with its spec; return what to write."""
        if not self._imported:
            raise RuntimeError("import_services() must run before reconcile() (startup barrier)")
        key = svc.key
        if not self._is_ours(svc):
            # not ours (any more): forget our state, never write another class's status
            return self._forget(key, Outcome.IGNORED)
        if not svc.is_load_balancer:
            return self._reconcile_not_lb(svc)
        before = dict(self._held.get(key, {}))
        released, touched, events = self._revalidate(svc)
        try:
            plan = self._plan(svc)
        except Refusal as refusal:
            return self._refused(svc, refusal, released, touched, events, None, before)
        return self._apply(svc, plan, released, touched, events, before)

    def _revalidate(self, svc: Service) -> tuple[list[Released], set[str | None], list[Event]]:
        """Phase A: held addresses take the Service's current sharing key and ports.

        Runs before anything else, whatever the rest of the reconcile decides, so our state
        always matches the Service as written (and an import after a restart rebuilds it).
        An address the Service may no longer share with its other holders is released:
        the Service that changed leaves, the others keep it.
        """
        key = svc.key
        sharing_key = self._sharing_key(svc)
        ports = self._book.port_set(svc.ports)
        held = self._held.get(key, {})
        released: list[Released] = []
        touched: set[str | None] = set()
        forced: list[IPAddress] = []
        for _family, ip in sorted(held.items()):
            address = self._book[ip]
            try:
                self._book.check_join(key, address, sharing_key, ports)
            except Refusal:
                forced.append(ip)
            else:
                if self._book.update_holder(key, address, sharing_key, ports):
                    touched.add(address.group)
        for ip in forced:
            del held[ip.version]
            address = self._book[ip]
            touched.add(address.group)
            freed = self._detach(key, address, cancel=False)
            if freed is not None:
                released.append(freed)
        if not held:
            self._held.pop(key, None)
        events = []
        if forced:
            events.append(
                Event(
                    EventType.WARNING,
                    "AddressReleased",
                    f"Service {key}: sharing key {sharing_key!r} or ports no longer allow "
                    f"sharing {_ips(forced)} with its other holders; released it",
                )
            )
        return released, touched, events

    def release(self, key: ServiceKey) -> Decision:
        """The Service was deleted: free its addresses and requeue who waited for them."""
        return self._forget(key, Outcome.RELEASED)

    def _forget(self, key: ServiceKey, outcome: Outcome) -> Decision:
        """Drop every holding and wait of ``key``; requeue Services waiting for what freed."""
        released, touched = self._release_all(key)
        self._clear_waiting(key)
        return Decision(
            service=key,
            outcome=outcome,
            released=tuple(released),
            requeue=self._requeue_for(touched, key),
        )

    def _reconcile_not_lb(self, svc: Service) -> Decision:
        key = svc.key
        released, touched = self._release_all(key)
        self._clear_waiting(key)
        ours = [
            k
            for k in (ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE)
            if k in svc.annotations and (k != ann.ALLOCATED_BY or svc.annotations[k] == ann.BRAND)
        ]
        events: tuple[Event, ...] = ()
        if released:
            events = (
                Event(
                    EventType.NORMAL,
                    "AddressReleased",
                    f"Service {key} is type {svc.type}, no longer LoadBalancer: released "
                    f"{_ips(r.address for r in released)}",
                ),
            )
        return Decision(
            service=key,
            outcome=Outcome.RELEASED if released else Outcome.IGNORED,
            ingress=() if svc.ingress and (ours or released) else None,
            annotations_remove=tuple(ours),
            events=events,
            released=tuple(released),
            requeue=self._requeue_for(touched, key),
        )

    def _plan(self, svc: Service) -> _Plan:
        key = svc.key
        annotations = svc.annotations
        order = family_order(svc)
        text = annotations.get(ann.ADDRESSES, "").strip()
        path = ann.ADDRESSES_PATH
        warnings: list[Event] = []
        if not text and svc.load_balancer_ip:
            text, path = svc.load_balancer_ip, "spec.loadBalancerIP"
            warnings.append(
                Event(
                    EventType.NORMAL,
                    "DeprecationWarning",
                    f"Service {key}: spec.loadBalancerIP is deprecated; use the "
                    f"{ann.ADDRESSES} annotation instead",
                )
            )
        if text:
            return self._plan_specific(svc, text, path, order, warnings)
        name = annotations.get(ann.SERVICE_GROUP, "").strip() or self.settings.default_group
        group = self._groups.get(name)
        if group is None:
            if name in self._rejected:
                raise Refusal(
                    FailureReason.INVALID_GROUP,
                    f"Service {key}: ServiceGroup {name!r} is invalid: "
                    f"{self._rejected[name].error}",
                    name,
                )
            raise Refusal(
                FailureReason.UNKNOWN_GROUP,
                f"Service {key}: ServiceGroup {name!r} does not exist",
                name,
            )
        families = families_for(svc, group)
        return _Plan(families, dict.fromkeys(families), name, warnings)

    def _plan_specific(
        self, svc: Service, text: str, path: str, order: list[int], warnings: list[Event]
    ) -> _Plan:
        key = svc.key
        try:
            wanted = parse_addresses(text, path)
        except InvalidField as exc:
            raise Refusal(FailureReason.INVALID_ADDRESS, f"Service {key}: {exc}") from None
        if ann.SERVICE_GROUP in svc.annotations:
            warnings.append(
                Event(
                    EventType.NORMAL,
                    "ConfigurationWarning",
                    f"Service {key}: {ann.SERVICE_GROUP} is ignored because {path} names "
                    "specific addresses",
                )
            )
        policy = svc.ip_family_policy or IPFamilyPolicy.SINGLE_STACK
        if policy is IPFamilyPolicy.SINGLE_STACK and len(wanted) > 1:
            raise Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: {path} {text!r} names two addresses but ipFamilyPolicy is "
                "SingleStack",
            )
        if policy is IPFamilyPolicy.REQUIRE_DUAL_STACK and len(wanted) < 2:
            raise Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: {path} {text!r} must name an IPv4 and an IPv6 address for "
                "ipFamilyPolicy RequireDualStack",
            )
        for ip in wanted.values():
            placement = self._index.placement(ip)
            if placement is None:
                raise Refusal(
                    FailureReason.NOT_IN_POOL,
                    f"Service {key}: {ip} ({path}) is in no ServiceGroup pool",
                )
        return _Plan(
            [f for f in order if f in wanted],
            {f: wanted[f] for f in order if f in wanted},
            None,
            warnings,
        )

    def _apply(
        self,
        svc: Service,
        plan: _Plan,
        released: list[Released],
        touched: set[str | None],
        events: list[Event],
        before: Mapping[int, IPAddress],
    ) -> Decision:
        key = svc.key
        sharing_key = self._sharing_key(svc)
        ports = self._book.port_set(svc.ports)
        held = self._held.setdefault(key, Holding())

        # Phase A (kept even if B fails): drop families no longer wanted.
        dropped = [ip for family, ip in sorted(held.items()) if family not in plan.wanted]
        for ip in dropped:
            del held[ip.version]
            address = self._book[ip]
            touched.add(address.group)
            freed = self._detach(key, address, cancel=False)
            if freed is not None:
                released.append(freed)
        if dropped:
            events.append(
                Event(
                    EventType.NORMAL,
                    "AddressReleased",
                    f"Service {key} no longer asks for "
                    f"{'/'.join(family_name(ip.version) for ip in dropped)}: released "
                    f"{_ips(dropped)}",
                )
            )

        # Phase B (atomic): get every missing or moved family.
        undo: list[_Undo] = []
        new: dict[int, IPAddress] = {}
        try:
            for family in plan.order:
                current = held.get(family)
                target = plan.wanted[family]
                if current is not None and (target is None or target == current):
                    continue
                if target is None:
                    assert plan.group is not None
                    new[family] = self._attach_auto(
                        key, plan.group, family, sharing_key, ports, undo
                    )
                else:
                    new[family] = self._attach_specific(key, target, sharing_key, ports, undo)
        except Refusal as refusal:
            self._rollback(undo)
            return self._refused(svc, refusal, released, touched, events, plan, before)
        except ExternalNeeded as need:
            self._rollback(undo)
            return self._pending(svc, need, released, touched, events)

        # Phase C: commit; release addresses the Service moved away from.
        moved: list[IPAddress] = []
        for family, ip in new.items():
            old = held.get(family)
            if old is not None:
                moved.append(old)
                address = self._book[old]
                touched.add(address.group)
                freed = self._detach(key, address, cancel=False)
                if freed is not None:
                    released.append(freed)
            held[family] = ip
        if not held:
            del self._held[key]
        if new:
            events.extend(plan.warnings)
            groups = sorted({str(self._book[ip].group) for ip in new.values()})
            events.append(
                Event(
                    EventType.NORMAL,
                    "AddressAssigned",
                    f"Service {key}: assigned {_ips(new.values())} from ServiceGroup "
                    f"{', '.join(groups)}"
                    + (f" (replacing {_ips(moved)})" if moved else ""),
                )
            )
            if sharing_key and svc.external_traffic_policy == ETP_LOCAL:
                events.append(
                    Event(
                        EventType.NORMAL,
                        "ConfigurationWarning",
                        f"Service {key}: externalTrafficPolicy Local is ignored for shared "
                        f"address {_ips(new.values())} (sharing key {sharing_key!r})",
                    )
                )
        self._clear_waiting(key)
        return self._decision(svc, Outcome.OK, events, released, touched)

    # ------------------------------------------------------------------ allocation steps

    def _attach_auto(
        self,
        key: ServiceKey,
        group: str,
        family: int,
        sharing_key: str,
        ports: frozenset[ServicePort],
        undo: list[_Undo],
    ) -> IPAddress:
        if sharing_key:
            bound = self._book.bound(group, sharing_key, family)
            if bound is not None:
                address = self._book[bound]
                self._book.check_join(key, address, sharing_key, ports)
                self._book.attach(key, address, ports)
                undo.append(_Undo(address, key, created=False))
                return bound
        source = self._sources[group]
        try:
            # balancePools spreads unshared addresses only (PureLB bypasses it with a key)
            ip = source.take_lowest(family, balance=not sharing_key)
        except ExternalNeeded:
            raise
        except AllocationError as exc:
            raise Refusal(
                FailureReason.EXHAUSTED,
                f"Service {key}: ServiceGroup {group!r} has no free {family_name(family)} "
                f"address ({exc})",
                group,
            ) from None
        address = self._book.add(ip, group, sharing_key)
        self._book.attach(key, address, ports)
        undo.append(_Undo(address, key, created=True))
        return ip

    def _attach_specific(
        self,
        key: ServiceKey,
        ip: IPAddress,
        sharing_key: str,
        ports: frozenset[ServicePort],
        undo: list[_Undo],
    ) -> IPAddress:
        address = self._book.get(ip)
        if address is not None:
            self._book.check_join(key, address, sharing_key, ports)
            self._book.attach(key, address, ports)
            undo.append(_Undo(address, key, created=False))
            return ip
        group = self._index.group_of(ip)
        assert group is not None, "planned addresses lie in a pool (this is a bug)"
        # a free address: only the one-address-per-key rule can refuse it
        self._book.check_join(key, HeldAddress(ip, group, sharing_key), sharing_key, ports)
        try:
            self._sources[group].take(ip)
        except ExternalNeeded:
            raise  # a NetBox group: the daemon claims ``ip`` there first
        except AllocationError as exc:
            raise Refusal(
                _failure_reason(exc, FailureReason.INVALID_ADDRESS),
                f"Service {key}: {ip} in ServiceGroup {group!r}: {exc}",
                group,
            ) from None
        address = self._book.add(ip, group, sharing_key)
        self._book.attach(key, address, ports)
        undo.append(_Undo(address, key, created=True))
        return ip

    def _detach(self, key: ServiceKey, address: HeldAddress, *, cancel: bool) -> Released | None:
        """Remove ``key`` as a holder; give the address back when nobody holds it.

        ``cancel``: undoing a take inside a failed reconcile (an external address goes
        back on offer instead of back to NetBox).
        """
        if not self._book.detach(key, address):
            return None
        ip, group = address.ip, address.group
        if group is None:
            return Released(ip, None, None)
        source = self._sources[group]
        if cancel:
            source.cancel(ip)
        else:
            source.release(ip)
        return Released(ip, group, source.pool_type)

    def _rollback(self, undo: list[_Undo]) -> None:
        for record in reversed(undo):
            if record.created:
                self._detach(record.service, record.address, cancel=True)
            else:
                self._book.detach(record.service, record.address)

    def _release_all(self, key: ServiceKey) -> tuple[list[Released], set[str | None]]:
        released: list[Released] = []
        touched: set[str | None] = set()
        for _family, ip in sorted(self._held.pop(key, {}).items()):
            address = self._book[ip]
            touched.add(address.group)
            freed = self._detach(key, address, cancel=False)
            if freed is not None:
                released.append(freed)
        return released, touched

    # ------------------------------------------------------------------ outcomes

    def _refused(
        self,
        svc: Service,
        refusal: Refusal,
        released: list[Released],
        touched: set[str | None],
        events: list[Event] | None = None,
        plan: _Plan | None = None,
        before: Mapping[int, IPAddress] | None = None,
    ) -> Decision:
        key = svc.key
        events = list(events or [])
        if plan is not None:
            events.extend(plan.warnings)
        held = self._held.get(key, {})
        if (
            svc.ip_family_policy is IPFamilyPolicy.REQUIRE_DUAL_STACK
            and len(held) == 1
            and dict(held) != dict(before or {})
        ):
            # it lost one family in phase A and could not get it back: both or nothing
            more, more_touched = self._release_all(key)
            released.extend(more)
            touched |= more_touched
        if not self._held.get(key):
            self._held.pop(key, None)
        failure = refusal.failure
        events.append(Event(EventType.WARNING, "AllocationFailed", failure.message))
        if failure.reason in RETRY_ON_FREE:
            self._set_waiting(key, refusal.group)
            outcome = Outcome.FAILED
        else:
            self._clear_waiting(key)
            self._invalid.add(key)
            outcome = Outcome.INVALID
        return self._decision(svc, outcome, events, released, touched, failure=failure)

    def _pending(
        self,
        svc: Service,
        need: ExternalNeeded,
        released: list[Released],
        touched: set[str | None],
        events: list[Event],
    ) -> Decision:
        key = svc.key
        if not self._held.get(key):
            self._held.pop(key, None)
        self._set_waiting(key, need.group)
        return self._decision(
            svc,
            Outcome.PENDING_EXTERNAL,
            events,
            released,
            touched,
            external=(ExternalRequest(need.group, need.family, need.address),),
        )

    def _decision(
        self,
        svc: Service,
        outcome: Outcome,
        events: list[Event],
        released: list[Released],
        touched: set[str | None],
        *,
        failure: Failure | None = None,
        external: tuple[ExternalRequest, ...] = (),
    ) -> Decision:
        """Compare the Service as observed with our state; keep only the differences."""
        key = svc.key
        held = self._held.get(key, {})
        ips = [held[f] for f in family_order(svc) if f in held]
        desired_ingress = tuple(str(ip) for ip in ips)
        observed: list[str] = []
        for text in svc.ingress:
            try:
                observed.append(str(ipaddress.ip_address(text.strip())))
            except ValueError:
                observed.append(text)
        ingress = desired_ingress if tuple(observed) != desired_ingress else None
        to_set: dict[str, str] = {}
        to_remove: list[str] = []
        current = svc.annotations
        if ips:
            groups = [g for g in dict.fromkeys(self._book[ip].group for ip in ips) if g]
            wanted = {ann.ALLOCATED_BY: ann.BRAND}
            if groups:
                wanted[ann.ALLOCATED_FROM] = ", ".join(groups)
                wanted[ann.POOL_TYPE] = self._groups[groups[0]].pool_type.value
            to_set = {k: v for k, v in wanted.items() if current.get(k) != v}
        else:
            to_remove = [
                k for k in (ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE) if k in current
            ]
        if ann.RE_EVALUATE in current:
            to_remove.append(ann.RE_EVALUATE)
        return Decision(
            service=key,
            outcome=outcome,
            ingress=ingress,
            annotations_set=to_set,
            annotations_remove=tuple(to_remove),
            events=tuple(events),
            released=tuple(released),
            requeue=self._requeue_for(touched, key),
            failure=failure,
            external_requests=external,
        )

    # ------------------------------------------------------------------ waiting lists

    def _set_waiting(self, key: ServiceKey, group: str | None) -> None:
        self._clear_waiting(key)
        self._waiting[key] = group
        self._waiting_by_group.setdefault(group, set()).add(key)

    def _clear_waiting(self, key: ServiceKey) -> None:
        self._invalid.discard(key)
        if key in self._waiting:
            group = self._waiting.pop(key)
            members = self._waiting_by_group[group]
            members.discard(key)
            if not members:
                del self._waiting_by_group[group]

    def _requeue_for(self, touched: set[str | None], key: ServiceKey) -> tuple[ServiceKey, ...]:
        """Services waiting on a group where an address or a port just became free."""
        out: set[ServiceKey] = set()
        for group in touched:
            out |= self._waiting_by_group.get(group, set())
        out.discard(key)
        return tuple(sorted(out))

    # ------------------------------------------------------------------ external sources

    def offer_external(self, group: str, addresses: Iterable[IPAddress]) -> tuple[ServiceKey, ...]:
        """The daemon reserved ``addresses`` in ``group``'s NetBox; returns who to requeue."""
        source = self._sources.get(group)
        if not isinstance(source, ExternalSource):
            raise ValueError(f"ServiceGroup {group!r} is not a NetBox group")
        for address in addresses:
            source.offer(address)
        return tuple(sorted(self._waiting_by_group.get(group, ())))

    def offer_specific(self, group: str, address: IPAddress) -> tuple[ServiceKey, ...]:
        """The daemon claimed ``address`` in NetBox for a Service that named it."""
        source = self._sources.get(group)
        if not isinstance(source, ExternalSource):
            raise ValueError(f"ServiceGroup {group!r} is not a NetBox group")
        source.offer(address, specific=True)
        return tuple(sorted(self._waiting_by_group.get(group, ())))

    # ------------------------------------------------------------------ queries

    def _is_ours(self, svc: Service) -> bool:
        if svc.load_balancer_class is None:
            return self.settings.default_announcer
        return svc.load_balancer_class == self.settings.load_balancer_class

    @staticmethod
    def _sharing_key(svc: Service) -> str:
        return svc.annotations.get(ann.ALLOW_SHARED_IP, "").strip()

    def holdings(self, key: ServiceKey) -> Mapping[int, IPAddress]:
        """Family -> address held by a Service (empty if none)."""
        return dict(self._held.get(key, {}))

    def holders(self, address: IPAddress) -> frozenset[ServiceKey]:
        """Services holding ``address``."""
        record = self._book.get(address)
        return frozenset(record.holders) if record is not None else frozenset()

    def ports_of(self, key: ServiceKey, address: IPAddress) -> frozenset[ServicePort]:
        """The (protocol, port)s ``key`` serves on ``address`` (empty if it holds none)."""
        record = self._book.get(address)
        return record.holders.get(key, frozenset()) if record is not None else frozenset()

    def orphans(self) -> tuple[IPAddress, ...]:
        """Held addresses that lie in no pool of the current config."""
        return self._book.in_group(None)

    def waiting(self) -> tuple[ServiceKey, ...]:
        """Services that failed and will be requeued when an address frees."""
        return tuple(sorted(self._waiting))

    def stats(self) -> tuple[GroupStats, ...]:
        """Size, in use and available per group and family (exact integers)."""
        out = []
        for name in sorted(self._groups):
            group, source = self._groups[name], self._sources[name]
            for family in sorted(group.families):
                size, in_use, available = source.counts(family)
                out.append(GroupStats(name, family, group.pool_type, size, in_use, available))
        return tuple(out)

    def snapshot(self) -> tuple[tuple[str, int, str, str | None, str], ...]:
        """Canonical state: (service, family, address, group, sharing key), sorted.

        Two allocators with equal snapshots make the same decisions from here on; the
        restart test compares a live allocator with one rebuilt by :meth:`import_services`.
        """
        rows = []
        for key, held in self._held.items():
            for family, ip in held.items():
                address = self._book[ip]
                rows.append((key, family, str(ip), address.group, address.key))
        return tuple(sorted(rows))

