"""ServiceGroup (``purelb.io/v1``): parsed once into frozen values, validated with field paths.

A group has exactly one of ``spec.local`` (address pools we allocate from) or
``spec.netbox`` (an external IPAM we ask). Pools of one family keep PureLB's order --
``v4pools`` entries, then the singular ``v4pool``, then a legacy top-level ``pool`` of that
family -- because "lowest first" allocation walks them in that order.

Refused: pool outside its subnet, family mismatch, bad aggregation, pools overlapping in one
group (:func:`parse_service_group`) or across groups, and duplicate names
(:func:`validate_service_groups`, which is symmetric where PureLB's test was one-sided).
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from purelb.model import _fields as f
from purelb.model._addresses import (
    AddressRange,
    IPNetwork,
    family_name,
    parse_aggregation,
    parse_cidr,
    parse_range,
)
from purelb.model._errors import InvalidField, Reason

API_VERSION = "purelb.io/v1"
KIND = "ServiceGroup"

#: DNS-1123 subdomain, the rule for Kubernetes object names
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: Kubernetes caps object names at 253 characters
MAX_NAME_LENGTH = 253


class PoolType(StrEnum):
    """Where a group's addresses come from (the ``purelb.io/pool-type`` annotation value)."""

    LOCAL = "local"
    """From ``spec.local`` pools, allocated in-process."""
    NETBOX = "netbox"
    """From a NetBox IPAM, requested over its REST API by the daemon."""


@dataclass(frozen=True, slots=True)
class AddressPool:
    """One ``{pool, subnet, aggregation}`` entry."""

    range: AddressRange
    subnet: IPNetwork
    aggregation: int | None
    """``/N`` as N, or ``None`` for ``default`` (the subnet's prefix length)."""
    path: str
    """Where it was written, e.g. ``spec.local.v4pools[1]`` (for messages)."""

    @property
    def family(self) -> int:
        return self.range.family

    @property
    def prefix_length(self) -> int:
        """The prefix an allocated address carries on an interface (aggregation or subnet)."""
        return self.subnet.prefixlen if self.aggregation is None else self.aggregation


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalSpec:
    """``spec.local``: pools we allocate from ourselves."""

    pools: tuple[AddressPool, ...]
    """IPv4 pools then IPv6 pools, each family in PureLB's order."""
    balance_pools: bool = False
    """Beyond PureLB v1: take the least-used range first instead of the lowest address."""
    avoid_buggy_ips: bool = False
    """Beyond PureLB: never hand out IPv4 addresses ending in .0 or .255 (old stacks drop them)."""

    @property
    def families(self) -> frozenset[int]:
        return frozenset(p.family for p in self.pools)


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A key inside a Secret in the group's namespace (the NetBox API token)."""

    name: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NetboxSpec:
    """``spec.netbox``: addresses requested from a NetBox IPAM one at a time."""

    url: str
    tenant: str
    aggregation: int | None = None
    token_secret_ref: SecretKeyRef | None = None
    v4prefix: ipaddress.IPv4Network | None = None
    v6prefix: ipaddress.IPv6Network | None = None
    v4prefix_id: int | None = None
    """``v4prefix`` given as NetBox's numeric prefix id (its CIDR is unknown here, so its
    addresses cannot be placed by value: no ``purelb.io/addresses`` in it)."""
    v6prefix_id: int | None = None

    @property
    def prefixes(self) -> tuple[IPNetwork, ...]:
        return tuple(p for p in (self.v4prefix, self.v6prefix) if p is not None)

    def prefix_ref(self, family: int) -> str | None:
        """What to look the family's NetBox prefix up by: its CIDR or its id."""
        net = self.v4prefix if family == 4 else self.v6prefix
        ident = self.v4prefix_id if family == 4 else self.v6prefix_id
        return str(net) if net is not None else (str(ident) if ident is not None else None)

    @property
    def has_prefix(self) -> bool:
        """A prefix source (else the legacy reserved-address flow)."""
        return bool(self.prefixes) or self.v4prefix_id is not None or self.v6prefix_id is not None

    @property
    def families(self) -> frozenset[int]:
        """The families of the configured prefixes; without prefixes NetBox decides (both)."""
        fams = {p.version for p in self.prefixes}
        fams |= {4} if self.v4prefix_id is not None else set()
        fams |= {6} if self.v6prefix_id is not None else set()
        return frozenset(fams) if fams else frozenset((4, 6))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceGroup:
    """A validated ServiceGroup."""

    name: str
    namespace: str = ""
    local: LocalSpec | None = None
    netbox: NetboxSpec | None = None
    generation: int = field(default=0, compare=False)
    """``metadata.generation``; not part of equality (a no-op edit must not rebuild pools)."""
    raw_pools: tuple[str, ...] = field(default=(), compare=False)
    """Pool strings as written, for ``status.addresses``."""
    created: str = field(default="", compare=False)
    """``metadata.creationTimestamp`` (RFC 3339, sorts as text): when two groups overlap,
    the older keeps its pools, so adding a bad group never disables a working one."""
    was_valid: bool = field(default=False, compare=False)
    """``status.conditions[Valid]`` was ``True``: the allocator accepted it before. Such a
    group wins an overlap against one that was not (creation times tie within a second)."""

    def __post_init__(self) -> None:
        if (self.local is None) == (self.netbox is None):
            raise ValueError(f"ServiceGroup {self.name!r} needs exactly one of local / netbox")

    @property
    def pool_type(self) -> PoolType:
        return PoolType.LOCAL if self.local is not None else PoolType.NETBOX

    @property
    def families(self) -> frozenset[int]:
        return self.local.families if self.local is not None else self.netbox.families  # type: ignore[union-attr]

    @property
    def pools(self) -> tuple[AddressPool, ...]:
        """Local pools; a NetBox group has none (its prefixes are in ``netbox``)."""
        return self.local.pools if self.local is not None else ()

    def __repr__(self) -> str:
        return f"ServiceGroup({self.namespace}/{self.name}, {self.pool_type.value})"


# --------------------------------------------------------------------------- parsing


def _parse_pool(raw: object, path: str, *, family: int | None) -> AddressPool:
    """One pool entry; ``family`` is the family its field demands (None: legacy, any)."""
    spec = f.mapping(raw, path)
    pool_text = f.string(spec.get("pool"), f"{path}.pool", required=True)
    assert pool_text is not None
    rng = parse_range(pool_text, f"{path}.pool")
    if family is not None and rng.family != family:
        raise InvalidField(
            Reason.FAMILY_MISMATCH,
            f"is {family_name(rng.family)} in an {family_name(family)} field",
            path=f"{path}.pool",
            value=pool_text,
        )
    subnet_text = f.string(spec.get("subnet"), f"{path}.subnet", required=True)
    assert subnet_text is not None
    subnet = parse_cidr(subnet_text, f"{path}.subnet")
    if subnet.version != rng.family:
        raise InvalidField(
            Reason.FAMILY_MISMATCH,
            f"is {family_name(subnet.version)} but pool {pool_text!r} is "
            f"{family_name(rng.family)}",
            path=f"{path}.subnet",
            value=subnet_text,
        )
    if not rng.within(subnet):
        raise InvalidField(
            Reason.POOL_OUTSIDE_SUBNET,
            f"has addresses outside subnet {subnet}",
            path=f"{path}.pool",
            value=pool_text,
        )
    aggregation = parse_aggregation(
        spec.get("aggregation"), f"{path}.aggregation", family=rng.family, floor=subnet.prefixlen
    )
    return AddressPool(range=rng, subnet=subnet, aggregation=aggregation, path=path)


def _check_no_overlap_within(pools: list[AddressPool]) -> None:
    """Pools of one group must not share addresses (PureLB did not check this at all)."""
    ordered = sorted(enumerate(pools), key=lambda ip: (ip[1].family, int(ip[1].range.first)))
    for (i, before), (j, after) in itertools.pairwise(ordered):
        if before.range.overlaps(after.range):
            earlier, later = (before, after) if i < j else (after, before)
            raise InvalidField(
                Reason.OVERLAP,
                f"overlaps pool {earlier.range.text!r} at {earlier.path}",
                path=f"{later.path}.pool",
                value=later.range.text,
            )


def _parse_local(raw: object) -> LocalSpec:
    path = "spec.local"
    spec = f.mapping(raw, path)
    by_family: dict[int, list[AddressPool]] = {4: [], 6: []}
    for fam in (4, 6):
        list_key, single_key = f"v{fam}pools", f"v{fam}pool"
        for i, item in enumerate(f.sequence(spec.get(list_key), f"{path}.{list_key}")):
            by_family[fam].append(_parse_pool(item, f"{path}.{list_key}[{i}]", family=fam))
        if spec.get(single_key) is not None:
            by_family[fam].append(_parse_pool(spec[single_key], f"{path}.{single_key}", family=fam))
    if spec.get("pool") is not None or spec.get("subnet") is not None:
        legacy = _parse_pool(
            {k: spec.get(k) for k in ("pool", "subnet", "aggregation")}, path, family=None
        )
        single_key = f"v{legacy.family}pool"
        if spec.get(single_key) is not None:
            raise InvalidField(
                Reason.LEGACY_CONFLICT,
                f"legacy {family_name(legacy.family)} pool conflicts with {path}.{single_key}",
                path=f"{path}.pool",
                value=spec.get("pool"),
            )
        by_family[legacy.family].append(legacy)
    pools = by_family[4] + by_family[6]
    if not pools:
        raise InvalidField(
            Reason.REQUIRED,
            "has no pools (set v4pool, v6pool, v4pools or v6pools)",
            path=path,
            value=dict(spec),
        )
    _check_no_overlap_within(pools)
    return LocalSpec(
        pools=tuple(pools),
        balance_pools=f.boolean(spec.get("balancePools"), f"{path}.balancePools", default=False),
        avoid_buggy_ips=f.boolean(
            spec.get("avoidBuggyIPs"), f"{path}.avoidBuggyIPs", default=False
        ),
    )


def _prefix_id(raw: object) -> int | None:
    """A NetBox prefix id (``42`` or ``"42"``) instead of a CIDR."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    if isinstance(raw, str) and raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return None


def _parse_prefix(raw: object, path: str, family: int) -> IPNetwork | None:
    if _prefix_id(raw) is not None:
        return None
    text = f.string(raw, path)
    if text is None:
        return None
    net = parse_cidr(text, path)
    if net.version != family:
        raise InvalidField(
            Reason.FAMILY_MISMATCH,
            f"is {family_name(net.version)} in an {family_name(family)} field",
            path=path,
            value=text,
        )
    return net


def _parse_netbox(raw: object) -> NetboxSpec:
    path = "spec.netbox"
    spec = f.mapping(raw, path)
    url = f.string(spec.get("url"), f"{path}.url", required=True)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField(
            Reason.INVALID_URL,
            "must be an absolute http:// or https:// URL",
            path=f"{path}.url",
            value=url,
        )
    tenant = f.string(spec.get("tenant"), f"{path}.tenant", required=True)
    assert tenant is not None
    v4prefix = _parse_prefix(spec.get("v4prefix"), f"{path}.v4prefix", 4)
    v6prefix = _parse_prefix(spec.get("v6prefix"), f"{path}.v6prefix", 6)
    aggregation = None
    agg_raw = spec.get("aggregation")
    # one aggregation serves both families: check it against each configured prefix
    for fam, prefix in ((4, v4prefix), (6, v6prefix)):
        if prefix is not None:
            aggregation = parse_aggregation(
                agg_raw, f"{path}.aggregation", family=fam, floor=prefix.prefixlen
            )
    if v4prefix is None and v6prefix is None:
        # no prefix pins the family: accept any length an IPv6 address allows
        aggregation = parse_aggregation(agg_raw, f"{path}.aggregation", family=6, floor=0)
    token_ref = None
    if spec.get("tokenSecretRef") is not None:
        ref_path = f"{path}.tokenSecretRef"
        ref = f.mapping(spec["tokenSecretRef"], ref_path)
        name = f.string(ref.get("name"), f"{ref_path}.name", required=True)
        key = f.string(ref.get("key"), f"{ref_path}.key", required=True)
        assert name is not None and key is not None
        _check_name(name, f"{ref_path}.name")
        token_ref = SecretKeyRef(name=name, key=key)
    return NetboxSpec(
        url=url,
        tenant=tenant,
        aggregation=aggregation,
        token_secret_ref=token_ref,
        v4prefix=v4prefix,  # type: ignore[arg-type]
        v6prefix=v6prefix,  # type: ignore[arg-type]
        v4prefix_id=_prefix_id(spec.get("v4prefix")),
        v6prefix_id=_prefix_id(spec.get("v6prefix")),
    )


def _check_name(name: str, path: str) -> None:
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise InvalidField(
            Reason.INVALID_NAME,
            "is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')",
            path=path,
            value=name,
        )


def parse_service_group(obj: Mapping[str, Any]) -> ServiceGroup:
    """Parse one ServiceGroup object (a JSON dict from the API) or raise :class:`InvalidField`."""
    top = f.mapping(obj, "")
    api_version = top.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be {API_VERSION!r}", path="apiVersion", value=api_version
        )
    kind = top.get("kind")
    if kind is not None and kind != KIND:
        raise InvalidField(Reason.WRONG_TYPE, f"must be {KIND!r}", path="kind", value=kind)
    meta = f.mapping(top.get("metadata"), "metadata")
    name = f.string(meta.get("name"), "metadata.name", required=True)
    assert name is not None
    _check_name(name, "metadata.name")
    namespace = f.string(meta.get("namespace"), "metadata.namespace") or ""
    created = f.string(meta.get("creationTimestamp"), "metadata.creationTimestamp") or ""
    was_valid = _was_valid(top.get("status"))
    generation = meta.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise InvalidField(
            Reason.WRONG_TYPE, "must be an integer", path="metadata.generation", value=generation
        )
    spec = f.mapping(top.get("spec"), "spec")
    has_local, has_netbox = spec.get("local") is not None, spec.get("netbox") is not None
    if has_local and has_netbox:
        raise InvalidField(
            Reason.AMBIGUOUS_SPEC,
            "sets both local and netbox; a ServiceGroup has exactly one",
            path="spec",
            value=sorted(spec),
        )
    if not has_local and not has_netbox:
        raise InvalidField(
            Reason.REQUIRED, "needs one of local or netbox", path="spec", value=dict(spec)
        )
    if has_local:
        local = _parse_local(spec["local"])
        return ServiceGroup(
            name=name,
            namespace=namespace,
            local=local,
            generation=generation,
            raw_pools=tuple(p.range.text for p in local.pools),
            created=created,
            was_valid=was_valid,
        )
    netbox = _parse_netbox(spec["netbox"])
    return ServiceGroup(
        name=name,
        namespace=namespace,
        netbox=netbox,
        generation=generation,
        raw_pools=tuple(str(p) for p in netbox.prefixes),
        created=created,
        was_valid=was_valid,
    )


def _was_valid(status: object) -> bool:
    """Whether ``status.conditions`` holds ``Valid=True`` (written by the allocator)."""
    if not isinstance(status, Mapping):
        return False
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return False
    return any(isinstance(c, Mapping) and c.get("type") == "Valid" and c.get("status") == "True"
               for c in conditions)


# --------------------------------------------------------------------------- cross-group


@dataclass(frozen=True, slots=True)
class RejectedGroup:
    """A ServiceGroup that could not be used, and why."""

    name: str
    namespace: str
    error: InvalidField


@dataclass(frozen=True, slots=True)
class GroupSet:
    """The outcome of validating every ServiceGroup together."""

    accepted: tuple[ServiceGroup, ...]
    """Usable groups, sorted by (namespace, name)."""
    rejected: tuple[RejectedGroup, ...]

    def rejected_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.rejected)


def _group_ranges(group: ServiceGroup) -> list[tuple[AddressRange, str]]:
    """Every address range a group claims, with the path naming it."""
    if group.local is not None:
        return [(p.range, f"{p.path}.pool") for p in group.local.pools]
    assert group.netbox is not None
    out = []
    for fam, prefix in ((4, group.netbox.v4prefix), (6, group.netbox.v6prefix)):
        if prefix is not None:
            rng = AddressRange(prefix.network_address, prefix.broadcast_address, str(prefix))
            out.append((rng, f"spec.netbox.v{fam}prefix"))
    return out


class _IntervalSet:
    """Disjoint accepted ranges of one family, sorted, for O(log n) overlap queries."""

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._items: list[tuple[AddressRange, str]] = []

    def find_overlap(self, rng: AddressRange) -> tuple[AddressRange, str] | None:
        i = bisect.bisect_right(self._firsts, int(rng.last))
        # the only candidate is the last accepted range starting at or before rng.last:
        # accepted ranges are disjoint, so if it ends before rng starts, none overlaps
        if i and self._items[i - 1][0].last >= rng.first:  # same family: comparable
            return self._items[i - 1]
        return None

    def add(self, rng: AddressRange, owner: str) -> None:
        i = bisect.bisect_left(self._firsts, int(rng.first))
        self._firsts.insert(i, int(rng.first))
        self._items.insert(i, (rng, owner))


def validate_service_groups(
    objects: Iterable[Mapping[str, Any] | ServiceGroup],
) -> GroupSet:
    """Parse and cross-check every ServiceGroup; never raises for bad input.

    Groups are considered in this order: those the allocator accepted before (their status
    says ``Valid=True``), then oldest first (``metadata.creationTimestamp``; none = last),
    then (namespace, name) -- so a newcomer that overlaps a working group is the one
    rejected, and a restart decides the same way. A group is rejected when it fails to
    parse, repeats an earlier group's name, or has any pool sharing an address with an
    accepted group's pool (symmetric test: containment counts, not just endpoints).
    """
    parsed: list[ServiceGroup] = []
    rejected: list[RejectedGroup] = []
    for obj in objects:
        if isinstance(obj, ServiceGroup):
            parsed.append(obj)
            continue
        try:
            parsed.append(parse_service_group(obj))
        except InvalidField as exc:
            meta = obj.get("metadata") if isinstance(obj, Mapping) else None
            meta = meta if isinstance(meta, Mapping) else {}
            rejected.append(
                RejectedGroup(str(meta.get("name", "")), str(meta.get("namespace", "")), exc)
            )
    parsed.sort(key=lambda g: (not g.was_valid, g.created == "", g.created, g.namespace, g.name))
    accepted: list[ServiceGroup] = []
    names: dict[str, ServiceGroup] = {}
    intervals = {4: _IntervalSet(), 6: _IntervalSet()}
    for group in parsed:
        if group.name in names:
            first = names[group.name]
            rejected.append(
                RejectedGroup(
                    group.name,
                    group.namespace,
                    InvalidField(
                        Reason.DUPLICATE_NAME,
                        f"repeats the name of ServiceGroup {first.namespace}/{first.name}",
                        path="metadata.name",
                        value=group.name,
                    ),
                )
            )
            continue
        error = None
        for rng, path in _group_ranges(group):
            hit = intervals[rng.family].find_overlap(rng)
            if hit is not None:
                other, owner = hit
                error = InvalidField(
                    Reason.OVERLAP,
                    f"overlaps {other.text!r} of ServiceGroup {owner!r}",
                    path=path,
                    value=rng.text,
                )
                break
        if error is not None:
            rejected.append(RejectedGroup(group.name, group.namespace, error))
            continue
        for rng, _path in _group_ranges(group):
            intervals[rng.family].add(rng, group.name)
        names[group.name] = group
        accepted.append(group)
    return GroupSet(accepted=tuple(accepted), rejected=tuple(rejected))

