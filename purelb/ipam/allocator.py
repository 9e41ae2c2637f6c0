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

State. Each held address has one record: its group (``None`` when it lies in no pool any
more), its sharing key, its holders and which holder serves each (protocol, port). A
reverse index binds (group, sharing key, family) to one address, so sharing never searches.
Every operation costs O(log pool) or O(ports of the Service); only :meth:`set_config`
touches more, and then only the addresses of groups whose pools changed.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from purelb.errors import AllocationError, ConfigError
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
from purelb.model._annotations import ADDRESSES_PATH

#: the (family) order used when a Service states no families at all
DEFAULT_FAMILY_ORDER = (4, 6)
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


class _Refusal(Exception):
    """Internal: an allocation step failed for ``failure``; the transaction rolls back."""

    def __init__(self, reason: FailureReason, message: str, group: str | None = None) -> None:
        super().__init__(message)
        self.failure = Failure(reason, message)
        self.group = group


class _Address:
    """One held address (mutable; owned by the allocator)."""

    __slots__ = ("group", "holders", "ip", "key", "ports")

    def __init__(self, ip: IPAddress, group: str | None, key: str) -> None:
        self.ip = ip
        self.group = group
        self.key = key
        self.holders: dict[ServiceKey, frozenset[ServicePort]] = {}
        self.ports: dict[ServicePort, ServiceKey] = {}

    def others(self, service: ServiceKey) -> list[ServiceKey]:
        return [h for h in self.holders if h != service]


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

    address: _Address
    service: ServiceKey
    created: bool


def _failure_reason(exc: AllocationError, default: FailureReason) -> FailureReason:
    """Our stable reason for a pool error (the pool uses the same identifiers)."""
    try:
        return FailureReason(exc.reason)
    except ValueError:
        return default


def _sort_key(ip: IPAddress) -> tuple[int, int]:
    return (ip.version, int(ip))


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
        self._addresses: dict[IPAddress, _Address] = {}
        self._by_group: dict[str | None, set[IPAddress]] = {}
        self._held: dict[ServiceKey, dict[int, IPAddress]] = {}
        # (group, sharing key, family) -> addresses under that key. One in steady state; a
        # config change may merge several into one group (never moved), so the *bound*
        # address is the lowest: a pure function of the address set, same after a restart.
        self._bindings: dict[tuple[str | None, str, int], set[IPAddress]] = {}
        self._waiting: dict[ServiceKey, str | None] = {}
        self._waiting_by_group: dict[str | None, set[ServiceKey]] = {}
        self._invalid: set[ServiceKey] = set()
        self._configured = False
        self._imported = False

    def __repr__(self) -> str:
        return (
            f"<Allocator groups={len(self._groups)} services={len(self._held)} "
            f"addresses={len(self._addresses)}>"
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
        accepted = tuple(new_groups)
        self._groups = new_groups
        self._sources = new_sources
        self._rejected = {r.name: r for r in rejected if r.name not in new_groups}
        self._index = AddressIndex(new_groups.values())

        rehome: list[IPAddress] = []
        for name in [*stale, None]:
            rehome.extend(self._by_group.pop(name, ()))
        orphaned = []
        for ip in sorted(rehome, key=_sort_key):
            address = self._addresses[ip]
            old_group = address.group
            self._unbind(address)
            new_group = self._index.group_of(ip)
            if new_group is not None:
                try:
                    self._sources[new_group].adopt(ip)
                except AllocationError:  # cannot happen for a free in-pool address: a bug
                    raise AssertionError(f"{ip} in {new_group!r} refused on rehome") from None
            address.group = new_group
            self._by_group.setdefault(new_group, set()).add(ip)
            self._bind(address)
            if new_group is None and old_group is not None:
                orphaned.append(ip)
        self._configured = True
        requeue = sorted(set(self._waiting) | self._invalid)
        return ConfigResult(
            accepted=accepted,
            rejected=tuple(rejected),
            orphaned=tuple(orphaned),
            requeue=tuple(ServiceKey(k) for k in requeue),
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

    def import_services(self, services: Iterable[Service]) -> ImportResult:
        """Adopt the addresses already written on Services (once, before any reconcile).

        Only Services that are ours, LoadBalancer and branded ``purelb.io/allocated-by:
        PureLB`` are imported, in key order; an entry that clashes with an earlier one (or
        cannot be parsed) is reported and its Service requeued to be rewritten.
        """
        if not self._configured:
            raise RuntimeError("set_config() must run before import_services()")
        if self._imported:
            raise RuntimeError("import_services() runs once, at startup")
        self._imported = True
        conflicts: list[ImportConflict] = []
        requeue: list[ServiceKey] = []
        imported = 0
        for svc in sorted(services, key=lambda s: s.key):
            if not (
                svc.ingress
                and svc.is_load_balancer
                and self._is_ours(svc)
                and svc.annotations.get(ann.ALLOCATED_BY) == ann.BRAND
            ):
                continue
            key = svc.key
            sharing_key = self._sharing_key(svc)
            ports = frozenset(svc.ports)
            failed = False
            for text in svc.ingress:
                try:
                    self._import_one(key, text, sharing_key, ports)
                except _Refusal as refusal:
                    conflicts.append(ImportConflict(key, text, refusal.failure))
                    failed = True
            if failed:
                requeue.append(key)
            if key in self._held:
                imported += 1
        return ImportResult(
            services=imported,
            addresses=len(self._addresses),
            orphans=tuple(sorted(self._by_group.get(None, ()), key=_sort_key)),
            conflicts=tuple(conflicts),
            requeue=tuple(requeue),
        )

    def _import_one(
        self, key: ServiceKey, text: str, sharing_key: str, ports: frozenset[ServicePort]
    ) -> None:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            raise _Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: ingress {text!r} is not an IP address",
            ) from None
        held = self._held.get(key, {})
        if ip.version in held:
            raise _Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: ingress has two {family_name(ip.version)} addresses "
                f"({held[ip.version]} and {ip})",
            )
        address = self._addresses.get(ip)
        created = address is None
        if address is None:
            group = self._index.group_of(ip)
            address = _Address(ip, group, sharing_key)
        self._check_join(key, address, sharing_key, ports, one_per_key=False)
        if created:
            if address.group is not None:
                try:
                    self._sources[address.group].adopt(ip)
                except AllocationError as exc:
                    raise _Refusal(
                        _failure_reason(exc, FailureReason.INVALID_ADDRESS), f"Service {key}: {exc}"
                    ) from None
            self._register(address)
        self._attach(key, address, sharing_key, ports)
        self._held.setdefault(key, {})[ip.version] = ip

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, svc: Service) -> Decision:
        """Bring one Service's allocation in line with its spec; return what to write."""
        if not self._imported:
            raise RuntimeError("import_services() must run before reconcile() (startup barrier)")
        key = svc.key
        if not self._is_ours(svc):
            # not ours (any more): forget our state, never write another class's status
            released, touched = self._release_all(key)
            self._clear_waiting(key)
            return Decision(
                service=key,
                outcome=Outcome.IGNORED,
                released=tuple(released),
                requeue=self._requeue_for(touched, key),
            )
        if not svc.is_load_balancer:
            return self._reconcile_not_lb(svc)
        before = dict(self._held.get(key, {}))
        released, touched, events = self._revalidate(svc)
        try:
            plan = self._plan(svc)
        except _Refusal as refusal:
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
        ports = frozenset(svc.ports)
        held = self._held.get(key, {})
        released: list[Released] = []
        touched: set[str | None] = set()
        forced: list[IPAddress] = []
        for _family, ip in sorted(held.items()):
            address = self._addresses[ip]
            try:
                self._check_join(key, address, sharing_key, ports)
            except _Refusal:
                forced.append(ip)
            else:
                if self._update_holder(key, address, sharing_key, ports):
                    touched.add(address.group)
        for ip in forced:
            del held[ip.version]
            address = self._addresses[ip]
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
        released, touched = self._release_all(key)
        self._clear_waiting(key)
        return Decision(
            service=key,
            outcome=Outcome.RELEASED,
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
        order = self._family_order(svc)
        text = annotations.get(ann.ADDRESSES, "").strip()
        path = ADDRESSES_PATH
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
                raise _Refusal(
                    FailureReason.INVALID_GROUP,
                    f"Service {key}: ServiceGroup {name!r} is invalid: "
                    f"{self._rejected[name].error}",
                    name,
                )
            raise _Refusal(
                FailureReason.UNKNOWN_GROUP,
                f"Service {key}: ServiceGroup {name!r} does not exist",
                name,
            )
        families = self._families(svc, group, order)
        return _Plan(families, dict.fromkeys(families), name, warnings)

    def _plan_specific(
        self, svc: Service, text: str, path: str, order: list[int], warnings: list[Event]
    ) -> _Plan:
        key = svc.key
        try:
            wanted = parse_addresses(text, path)
        except InvalidField as exc:
            raise _Refusal(FailureReason.INVALID_ADDRESS, f"Service {key}: {exc}") from None
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
            raise _Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: {path} {text!r} names two addresses but ipFamilyPolicy is "
                "SingleStack",
            )
        if policy is IPFamilyPolicy.REQUIRE_DUAL_STACK and len(wanted) < 2:
            raise _Refusal(
                FailureReason.INVALID_ADDRESS,
                f"Service {key}: {path} {text!r} must name an IPv4 and an IPv6 address for "
                "ipFamilyPolicy RequireDualStack",
            )
        for ip in wanted.values():
            placement = self._index.placement(ip)
            if placement is None:
                raise _Refusal(
                    FailureReason.NOT_IN_POOL,
                    f"Service {key}: {ip} ({path}) is in no ServiceGroup pool",
                )
            if placement.pool_type is not PoolType.LOCAL:
                raise _Refusal(
                    FailureReason.INVALID_ADDRESS,
                    f"Service {key}: {ip} ({path}) lies in NetBox ServiceGroup "
                    f"{placement.group!r}, which picks its own addresses",
                    placement.group,
                )
        return _Plan(
            [f for f in order if f in wanted],
            {f: wanted[f] for f in order if f in wanted},
            None,
            warnings,
        )

    @staticmethod
    def _declared_families(svc: Service) -> list[int]:
        """``spec.ipFamilies``, else the families of the cluster IPs (may be empty)."""
        declared = list(dict.fromkeys(svc.ip_families))
        if not declared:
            for text in (*svc.cluster_ips, svc.cluster_ip or ""):
                try:
                    family = ipaddress.ip_address(text).version
                except ValueError:
                    continue
                if family not in declared:
                    declared.append(family)
        return declared

    def _family_order(self, svc: Service) -> list[int]:
        """The Service's families first, then the rest (IPv4 before IPv6)."""
        declared = self._declared_families(svc)
        return declared + [f for f in DEFAULT_FAMILY_ORDER if f not in declared]

    def _families(self, svc: Service, group: ServiceGroup, order: list[int]) -> list[int]:
        """Families to allocate from ``group`` under the Service's ``ipFamilyPolicy``."""
        available = group.families
        policy = svc.ip_family_policy or IPFamilyPolicy.SINGLE_STACK
        if policy is IPFamilyPolicy.SINGLE_STACK:
            declared = self._declared_families(svc)
            # nothing declared (no ipFamilies, no cluster IP): the group's first family
            family = declared[0] if declared else next(f for f in order if f in available)
            if family not in available:
                raise _Refusal(
                    FailureReason.FAMILY_UNAVAILABLE,
                    f"Service {svc.key}: ServiceGroup {group.name!r} has no "
                    f"{family_name(family)} pool",
                    group.name,
                )
            return [family]
        if policy is IPFamilyPolicy.REQUIRE_DUAL_STACK:
            missing = [f for f in order if f not in available]
            if missing:
                raise _Refusal(
                    FailureReason.FAMILY_UNAVAILABLE,
                    f"Service {svc.key}: RequireDualStack but ServiceGroup {group.name!r} has no "
                    f"{family_name(missing[0])} pool",
                    group.name,
                )
            return order
        return [f for f in order if f in available]

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
        ports = frozenset(svc.ports)
        held = self._held.setdefault(key, {})

        # Phase A (kept even if B fails): drop families no longer wanted.
        dropped = [ip for family, ip in sorted(held.items()) if family not in plan.wanted]
        for ip in dropped:
            del held[ip.version]
            address = self._addresses[ip]
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
        except _Refusal as refusal:
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
                address = self._addresses[old]
                touched.add(address.group)
                freed = self._detach(key, address, cancel=False)
                if freed is not None:
                    released.append(freed)
            held[family] = ip
        if not held:
            del self._held[key]
        if new:
            events.extend(plan.warnings)
            groups = sorted({str(self._addresses[ip].group) for ip in new.values()})
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
            bound = self._bound(group, sharing_key, family)
            if bound is not None:
                address = self._addresses[bound]
                self._check_join(key, address, sharing_key, ports)
                undo.append(self._attach(key, address, sharing_key, ports))
                return bound
        source = self._sources[group]
        try:
            # balancePools spreads unshared addresses only (PureLB bypasses it with a key)
            ip = source.take_lowest(family, balance=not sharing_key)
        except ExternalNeeded:
            raise
        except AllocationError as exc:
            raise _Refusal(
                FailureReason.EXHAUSTED,
                f"Service {key}: ServiceGroup {group!r} has no free {family_name(family)} "
                f"address ({exc})",
                group,
            ) from None
        address = _Address(ip, group, sharing_key)
        self._register(address)
        record = self._attach(key, address, sharing_key, ports)
        record.created = True
        undo.append(record)
        return ip

    def _attach_specific(
        self,
        key: ServiceKey,
        ip: IPAddress,
        sharing_key: str,
        ports: frozenset[ServicePort],
        undo: list[_Undo],
    ) -> IPAddress:
        address = self._addresses.get(ip)
        if address is not None:
            self._check_join(key, address, sharing_key, ports)
            undo.append(self._attach(key, address, sharing_key, ports))
            return ip
        group = self._index.group_of(ip)
        address = _Address(ip, group, sharing_key)
        self._check_join(key, address, sharing_key, ports)
        assert group is not None, "planned addresses lie in a pool (this is a bug)"
        try:
            self._sources[group].take(ip)
        except AllocationError as exc:
            raise _Refusal(
                _failure_reason(exc, FailureReason.INVALID_ADDRESS),
                f"Service {key}: {ip} in ServiceGroup {group!r}: {exc}",
                group,
            ) from None
        self._register(address)
        record = self._attach(key, address, sharing_key, ports)
        record.created = True
        undo.append(record)
        return ip

    def _check_join(
        self,
        key: ServiceKey,
        address: _Address,
        sharing_key: str,
        ports: frozenset[ServicePort],
        *,
        one_per_key: bool = True,
    ) -> None:
        """Raise unless ``key`` may hold ``address`` beside its other holders.

        ``one_per_key``: also refuse when the key already has another address of the family
        in the group (off for import, which reproduces whatever state was written).
        """
        ip, group = address.ip, address.group
        others = address.others(key)
        if others:
            holder = min(others)
            if not sharing_key or not address.key:
                raise _Refusal(
                    FailureReason.ADDRESS_IN_USE,
                    f"Service {key}: {ip} is held by Service {holder}"
                    + (
                        " without a sharing key"
                        if not address.key
                        else f" (sharing key {address.key!r}; this Service has none)"
                    ),
                    group,
                )
            if sharing_key != address.key:
                raise _Refusal(
                    FailureReason.SHARING_KEY_CONFLICT,
                    f"Service {key}: {ip} is shared under key {address.key!r}, not "
                    f"{sharing_key!r} (held by {holder})",
                    group,
                )
            clashes = sorted(
                p for p in ports if address.ports.get(p, key) != key
            )
            if clashes:
                p = clashes[0]
                raise _Refusal(
                    FailureReason.PORT_CONFLICT,
                    f"Service {key}: port {p.protocol}/{p.port} on {ip} (key {sharing_key!r}) "
                    f"is already used by Service {address.ports[p]}",
                    group,
                )
        if sharing_key and one_per_key:
            members = self._bindings.get((group, sharing_key, ip.version), ())
            others = [b for b in members if b != ip and self._addresses[b].others(key)]
            if others and ip not in members:
                bound = min(others, key=_sort_key)
                raise _Refusal(
                    FailureReason.SHARING_KEY_CONFLICT,
                    f"Service {key}: sharing key {sharing_key!r} is bound to {bound} in "
                    f"ServiceGroup {group!r}, not {ip}",
                    group,
                )

    def _register(self, address: _Address) -> None:
        self._addresses[address.ip] = address
        self._by_group.setdefault(address.group, set()).add(address.ip)
        self._bind(address)

    def _bind(self, address: _Address) -> None:
        if address.key:
            slot = (address.group, address.key, address.ip.version)
            self._bindings.setdefault(slot, set()).add(address.ip)

    def _unbind(self, address: _Address) -> None:
        if address.key:
            slot = (address.group, address.key, address.ip.version)
            members = self._bindings.get(slot)
            if members is not None:
                members.discard(address.ip)
                if not members:
                    del self._bindings[slot]

    def _bound(self, group: str | None, sharing_key: str, family: int) -> IPAddress | None:
        """The address a key is bound to in a group (the lowest if a merge left several)."""
        members = self._bindings.get((group, sharing_key, family))
        return min(members, key=_sort_key) if members else None

    def _attach(
        self,
        key: ServiceKey,
        address: _Address,
        sharing_key: str,
        ports: frozenset[ServicePort],
    ) -> _Undo:
        """Add ``key`` as a holder (checks already done); returns how to undo it."""
        assert not address.holders or address.key == sharing_key, "checked by _check_join"
        address.holders[key] = ports
        for port in ports:
            address.ports[port] = key
        return _Undo(address, key, False)

    def _update_holder(
        self,
        key: ServiceKey,
        address: _Address,
        sharing_key: str,
        ports: frozenset[ServicePort],
    ) -> bool:
        """Apply a kept holder's new ports / key (already checked legal).

        Returns whether something became free (a port, or the old key's binding), which is
        when Services waiting on this group may now succeed.
        """
        old_ports = address.holders[key]
        freed = bool(old_ports - ports)
        for port in old_ports - ports:
            if address.ports.get(port) == key:
                del address.ports[port]
        for port in ports:
            address.ports[port] = key
        address.holders[key] = ports
        if sharing_key != address.key:
            # legal only for a sole holder: re-key the address and its binding
            freed = freed or bool(address.key)
            self._unbind(address)
            address.key = sharing_key
            self._bind(address)
        return freed

    def _detach(self, key: ServiceKey, address: _Address, *, cancel: bool) -> Released | None:
        """Remove ``key`` as a holder; free the address when nobody holds it."""
        ports = address.holders.pop(key)
        for port in ports:
            if address.ports.get(port) == key:
                del address.ports[port]
        if address.holders:
            return None
        ip, group = address.ip, address.group
        del self._addresses[ip]
        members = self._by_group.get(group)
        if members is not None:
            members.discard(ip)
            if not members:
                del self._by_group[group]
        self._unbind(address)
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
                ports = record.address.holders.pop(record.service)
                for port in ports:
                    if record.address.ports.get(port) == record.service:
                        del record.address.ports[port]

    def _release_all(self, key: ServiceKey) -> tuple[list[Released], set[str | None]]:
        released: list[Released] = []
        touched: set[str | None] = set()
        for _family, ip in sorted(self._held.pop(key, {}).items()):
            address = self._addresses[ip]
            touched.add(address.group)
            freed = self._detach(key, address, cancel=False)
            if freed is not None:
                released.append(freed)
        return released, touched

    # ------------------------------------------------------------------ outcomes

    def _refused(
        self,
        svc: Service,
        refusal: _Refusal,
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
            external=(ExternalRequest(need.group, need.family),),
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
        order = self._family_order(svc)
        ips = [held[f] for f in order if f in held]
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
            groups = [g for g in dict.fromkeys(self._addresses[ip].group for ip in ips) if g]
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
        record = self._addresses.get(address)
        return frozenset(record.holders) if record is not None else frozenset()

    def ports_of(self, key: ServiceKey, address: IPAddress) -> frozenset[ServicePort]:
        """The (protocol, port)s ``key`` serves on ``address`` (empty if it holds none)."""
        record = self._addresses.get(address)
        return record.holders.get(key, frozenset()) if record is not None else frozenset()

    def orphans(self) -> tuple[IPAddress, ...]:
        """Held addresses that lie in no pool of the current config."""
        return tuple(sorted(self._by_group.get(None, ()), key=_sort_key))

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
                address = self._addresses[ip]
                rows.append((key, family, str(ip), address.group, address.key))
        return tuple(sorted(rows))

