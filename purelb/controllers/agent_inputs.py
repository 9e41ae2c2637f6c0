"""Services, EndpointSlices and ServiceGroups -> the plan's input. PURE.

The agent's caches hold raw API objects; this module turns them into
:class:`purelb.agent.plan.AddressInput` values, once per reconcile, with no I/O. Rules:

- A Service counts when it is ``type: LoadBalancer``, carries the allocator's brand
  (``purelb.io/allocated-by: PureLB``) and has ingress addresses. PureLB's agent filters
  on the brand, not on ``loadBalancerClass``; so do we.
- Each address is placed by the ServiceGroups (``ipam.index.AddressIndex``): the group's
  ``subnet`` and ``aggregation``. An address in no accepted group is skipped and reported
  (the group was deleted, or another allocator wrote it): the agent never guesses a prefix.
- Services sharing an address become one ``AddressInput`` with several Services, so the
  election runs once per address.
- EndpointSlices are read only for ``externalTrafficPolicy: Local`` Services.
- A malformed object is skipped and reported, never raised: one bad Service must not stop
  every other address on the node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from purelb.agent.plan import (
    AddressInput,
    Endpoint,
    EndpointSlice,
    ServiceInput,
    ServiceKey,
    TrafficPolicy,
)
from purelb.agent.records import IPAddress
from purelb.errors import ConfigError
from purelb.ipam.index import AddressIndex
from purelb.model import ServiceGroup, annotations, parse_service, validate_service_groups

JSON = Mapping[str, Any]
SlicesOf = Callable[[str, str], Sequence[JSON]]
"""``(namespace, service name) -> EndpointSlices`` (the reflector's service index)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object or address left out of the plan, and why (logged; Events where useful)."""

    what: str
    reason: str


@dataclass(frozen=True, slots=True)
class Inputs:
    addresses: tuple[AddressInput, ...]
    skipped: tuple[Skipped, ...]
    services: Mapping[ServiceKey, JSON]
    """The Services that made it in, by key (to attach Events and annotations)."""


def parse_groups(objects: Iterable[JSON]) -> tuple[tuple[ServiceGroup, ...], tuple[Skipped, ...]]:
    """The groups the allocator would accept (same cross-checks); the others are skipped."""
    result = validate_service_groups(objects)
    skipped = tuple(Skipped(f"ServiceGroup {r.namespace}/{r.name}", str(r.error))
                    for r in result.rejected)
    return result.accepted, skipped


def parse_endpoint_slice(obj: JSON) -> EndpointSlice:
    """An EndpointSlice reduced to addresses, node and readiness (bad entries dropped)."""
    endpoints = []
    for ep in obj.get("endpoints") or ():
        if not isinstance(ep, Mapping):
            continue
        addrs = tuple(str(a) for a in ep.get("addresses") or () if isinstance(a, str))
        cond = ep.get("conditions") or {}
        ready, serving = cond.get("ready"), cond.get("serving")
        node = ep.get("nodeName")
        endpoints.append(Endpoint(
            addresses=addrs,
            node=node if isinstance(node, str) and node else None,
            ready=ready if isinstance(ready, bool) else None,
            serving=serving if isinstance(serving, bool) else None,
        ))
    return EndpointSlice(str((obj.get("metadata") or {}).get("name", "")), tuple(endpoints))


def build_inputs(services: Iterable[JSON], groups: Sequence[ServiceGroup],
                 slices_of: SlicesOf) -> Inputs:
    """The plan's addresses from cached objects (see the module docstring)."""
    index = AddressIndex(groups)
    by_address: dict[IPAddress, list[ServiceInput]] = {}
    skipped: list[Skipped] = []
    kept: dict[ServiceKey, JSON] = {}
    for obj in services:
        meta = obj.get("metadata") or {}
        what = f"Service {meta.get('namespace')}/{meta.get('name')}"
        try:
            svc = parse_service(obj)
        except ConfigError as exc:
            skipped.append(Skipped(what, str(exc)))
            continue
        if not svc.is_load_balancer or not svc.ingress:
            continue
        if svc.annotations.get(annotations.ALLOCATED_BY) != annotations.BRAND:
            continue
        key = ServiceKey(svc.key)
        policy = (TrafficPolicy.LOCAL if svc.external_traffic_policy == "Local"
                  else TrafficPolicy.CLUSTER)
        slices: tuple[EndpointSlice, ...] = ()
        if policy is TrafficPolicy.LOCAL:
            slices = tuple(parse_endpoint_slice(s) for s in slices_of(svc.namespace, svc.name))
        entry = ServiceInput(key, policy, slices)
        for text in dict.fromkeys(svc.ingress):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                skipped.append(Skipped(what, f"ingress {text!r} is not an IP address"))
                continue
            by_address.setdefault(ip, []).append(entry)
            kept[key] = obj
    addresses: list[AddressInput] = []
    for ip, entries in by_address.items():
        placement = index.placement(ip)
        if placement is None:
            skipped.append(Skipped(f"address {ip}", "in no accepted ServiceGroup pool; "
                                   f"held by {', '.join(sorted(e.key for e in entries))}"))
            continue
        aggregation = (None if placement.prefix_length == placement.subnet.prefixlen
                       else placement.prefix_length)
        addresses.append(AddressInput(ip, placement.subnet, aggregation, tuple(entries)))
    addresses.sort(key=lambda a: (a.address.version, a.address.packed))
    return Inputs(tuple(addresses), tuple(skipped), kept)
