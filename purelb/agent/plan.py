"""The agent's plan: which addresses this node puts on which interface. PURE.

Input is plain data the daemon builds from Services, EndpointSlices, ServiceGroups and the
interface dump; output is the desired addresses, the announcements to make and the
annotations to report. No I/O, no clock, no globals: the same input gives the same plan
on every node, which is what makes the election consistent.

Rules (research/purelb.md section 6):

- An address inside a subnet of a selected local interface is *local*: only the node the
  election names (``winner(address)``) adds it, to that interface, with the interface's
  prefix length. ``externalTrafficPolicy: Local`` cannot work there (the one winner may
  have no endpoint), so it is treated as Cluster and a warning is returned; the daemon
  turns the warning into an Event, as PureLB does.
- Any other address is *virtual*: it goes on the virtual interface with the group's
  aggregation (``None`` = the subnet's mask) on every node, or, when its Service has
  ``externalTrafficPolicy: Local``, only on nodes with a healthy local endpoint.
- An address shared by several Services is elected once, by address; a shared virtual
  address ignores ``Local`` (kube-proxy may not forward every sharing Service on a node
  that only has endpoints of one), again with a warning.
- Healthy endpoint = Ready or Serving, and healthy in every slice it appears in.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NewType

from .records import (
    AddressKind,
    AddrSpec,
    IPAddress,
    IPInterface,
    IPNetwork,
    LocalSubnet,
    find_local_subnet,
)
from .settings import AgentSettings

NodeName = NewType("NodeName", str)
ServiceKey = NewType("ServiceKey", str)
"""``namespace/name`` of a Service."""

#: Annotation keys the agent writes on Services it announces locally, per family.
ANNOUNCING_KEYS: Mapping[int, str] = {
    4: "purelb.io/announcing-IPv4",
    6: "purelb.io/announcing-IPv6",
}

Winner = Callable[[IPAddress], NodeName | None]
"""The election: which node announces a local address (None = nobody can)."""


class TrafficPolicy(enum.Enum):
    """A Service's ``spec.externalTrafficPolicy``."""

    CLUSTER = "Cluster"
    """Any node may receive traffic; kube-proxy forwards it to any endpoint."""
    LOCAL = "Local"
    """Only nodes with a local endpoint may receive traffic (source IP is kept)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of an EndpointSlice, reduced to what the plan needs."""

    addresses: tuple[str, ...]
    """Its addresses: the identity by which the same endpoint is found in other slices."""
    node: str | None
    """``nodeName``; None when the slice does not say."""
    ready: bool | None = None
    """``conditions.ready``; None (unknown) counts as ready, as the API documents."""
    serving: bool | None = None
    """``conditions.serving``; None means the same as ``ready``."""

    @property
    def healthy(self) -> bool:
        ready = True if self.ready is None else self.ready
        serving = ready if self.serving is None else self.serving
        return ready or serving


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    name: str
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceInput:
    """A Service that owns (or shares) an address."""

    key: ServiceKey
    traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    slices: tuple[EndpointSlice, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressInput:
    """One PureLB address with its group's subnet and aggregation and its Services."""

    address: IPAddress
    subnet: IPNetwork
    """The ServiceGroup pool's ``subnet``."""
    aggregation: int | None
    """Prefix length on the virtual interface; None = ``default`` = the subnet's."""
    services: tuple[ServiceInput, ...]

    def __post_init__(self) -> None:
        if self.address.version != self.subnet.version:
            raise ValueError(
                f"address {self.address} and its subnet {self.subnet} differ in family"
            )
        bits = self.address.max_prefixlen
        if self.aggregation is not None and not 0 <= self.aggregation <= bits:
            raise ValueError(
                f"aggregation /{self.aggregation} for {self.address} outside /0../{bits}"
            )
        if not self.services:
            raise ValueError(f"address {self.address} has no Service")

    @property
    def virtual_prefixlen(self) -> int:
        return self.subnet.prefixlen if self.aggregation is None else self.aggregation


def parse_aggregation(text: str) -> int | None:
    """``"default"`` (or empty) -> None; ``"/N"`` -> N. ValueError names the bad value."""
    if text in ("", "default"):
        return None
    if text.startswith("/") and text[1:].isdigit():
        return int(text[1:])
    raise ValueError(f"aggregation {text!r} is neither 'default' nor '/N'")


@dataclass(frozen=True, slots=True)
class VirtualInterface:
    name: str
    index: int


@dataclass(frozen=True, slots=True)
class PlanInput:
    node: NodeName
    addresses: tuple[AddressInput, ...]
    local_subnets: tuple[LocalSubnet, ...]
    """From ``interfaces.local_subnets``, in lookup order."""
    virtual_interface: VirtualInterface
    previous_local: frozenset[IPAddress] = frozenset()
    """Local addresses this node held after the previous plan (``Plan.local``): only newly
    won ones are announced."""


@dataclass(frozen=True, slots=True)
class PlannedAddress:
    """An address this node must have."""

    index: int
    interface: IPInterface
    ifname: str
    kind: AddressKind
    services: tuple[ServiceKey, ...]


@dataclass(frozen=True, slots=True)
class Announcement:
    """A local address just won: send GARP (IPv4) or an unsolicited NA (IPv6) for it."""

    index: int
    address: IPAddress
    ifname: str


class WarningReason(enum.Enum):
    """Why the plan did not do exactly what a Service asked; becomes a Warning Event."""

    LOCAL_POLICY_ON_LOCAL_ADDRESS = "LocalAddressIgnoresTrafficPolicyLocal"
    """ETP Local on an address in a local subnet: one elected node cannot honour it."""
    LOCAL_POLICY_ON_SHARED_ADDRESS = "SharedAddressIgnoresTrafficPolicyLocal"
    """ETP Local on an address several Services share: announced as Cluster."""


@dataclass(frozen=True, slots=True)
class PlanWarning:
    service: ServiceKey
    address: IPAddress
    reason: WarningReason
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    addresses: tuple[PlannedAddress, ...]
    """Everything this node must have, sorted by (interface index, address)."""
    announce: tuple[Announcement, ...]
    """Local addresses won since the previous plan."""
    warnings: tuple[PlanWarning, ...]
    annotations: Mapping[ServiceKey, Mapping[str, str]]
    """Per input Service, the ANNOUNCING_KEYS this node reports (``node,interface,address``);
    empty when this node announces none of its local addresses."""
    local: frozenset[IPAddress]
    """Local addresses held by this plan; pass as the next ``previous_local``."""

    def specs(self, settings: AgentSettings) -> tuple[AddrSpec, ...]:
        """The writer's input: each address with the options of its kind."""
        return tuple(settings.spec_for(a.kind, a.index, a.interface) for a in self.addresses)


def _ip_key(ip: IPAddress) -> tuple[int, bytes]:
    # IPv4 and IPv6 addresses do not compare with each other; this orders both.
    return (ip.version, ip.packed)


def healthy_endpoint_nodes(slices: Iterable[EndpointSlice]) -> frozenset[str]:
    """Nodes with at least one endpoint that is healthy in every slice it appears in."""
    healthy: dict[str, bool] = {}
    nodes: dict[str, set[str]] = {}
    for sl in slices:
        for ep in sl.endpoints:
            for addr in ep.addresses:
                healthy[addr] = healthy.get(addr, True) and ep.healthy
                if ep.node:
                    nodes.setdefault(addr, set()).add(ep.node)
    return frozenset(n for addr, ok in healthy.items() if ok for n in nodes.get(addr, ()))


def plan(inp: PlanInput, winner: Winner) -> Plan:
    """Compute this node's addresses. Deterministic; input order does not matter.

    Raises:
        ValueError: the same address appears twice in ``inp.addresses``.
    """
    seen: dict[IPAddress, AddressInput] = {}
    for a in inp.addresses:
        if a.address in seen:
            raise ValueError(
                f"address {a.address} listed twice (services "
                f"{[s.key for s in seen[a.address].services]} and {[s.key for s in a.services]});"
                " merge the Services of a shared address into one AddressInput"
            )
        seen[a.address] = a
    vif = inp.virtual_interface
    out: list[PlannedAddress] = []
    announce: list[Announcement] = []
    warnings: list[PlanWarning] = []
    reports: dict[ServiceKey, dict[int, list[str]]] = {}
    local: set[IPAddress] = set()
    for a in sorted(seen.values(), key=lambda x: _ip_key(x.address)):
        keys = tuple(sorted({s.key for s in a.services}))
        for s in a.services:
            reports.setdefault(s.key, {})
        sub = find_local_subnet(a.address, inp.local_subnets)
        if sub is not None:
            for s in a.services:
                if s.traffic_policy is TrafficPolicy.LOCAL:
                    warnings.append(
                        PlanWarning(
                            s.key,
                            a.address,
                            WarningReason.LOCAL_POLICY_ON_LOCAL_ADDRESS,
                            f"{a.address} is in local subnet {sub.network} on {sub.ifname}: "
                            "externalTrafficPolicy Local is treated as Cluster",
                        )
                    )
            if winner(a.address) != inp.node:
                continue
            iface = ipaddress.ip_interface((a.address, sub.network.prefixlen))
            out.append(PlannedAddress(sub.index, iface, sub.ifname, AddressKind.LOCAL, keys))
            local.add(a.address)
            if a.address not in inp.previous_local:
                announce.append(Announcement(sub.index, a.address, sub.ifname))
            value = f"{inp.node},{sub.ifname},{a.address}"
            for s in a.services:
                reports[s.key].setdefault(a.address.version, []).append(value)
            continue
        wants_local = [s for s in a.services if s.traffic_policy is TrafficPolicy.LOCAL]
        if wants_local and len(a.services) > 1:
            for s in wants_local:
                warnings.append(
                    PlanWarning(
                        s.key,
                        a.address,
                        WarningReason.LOCAL_POLICY_ON_SHARED_ADDRESS,
                        f"{a.address} is shared by {len(a.services)} Services: "
                        "externalTrafficPolicy Local is treated as Cluster",
                    )
                )
        elif wants_local and inp.node not in healthy_endpoint_nodes(wants_local[0].slices):
            continue
        iface = ipaddress.ip_interface((a.address, a.virtual_prefixlen))
        out.append(PlannedAddress(vif.index, iface, vif.name, AddressKind.VIRTUAL, keys))
    annotations = {
        key: {ANNOUNCING_KEYS[fam]: " ".join(vals) for fam, vals in sorted(per.items())}
        for key, per in sorted(reports.items())
    }
    return Plan(
        addresses=tuple(sorted(out, key=lambda p: (p.index, *_ip_key(p.interface.ip)))),
        announce=tuple(sorted(announce, key=lambda n: (n.index, *_ip_key(n.address)))),
        warnings=tuple(sorted(warnings, key=lambda w: (w.service, *_ip_key(w.address)))),
        annotations=annotations,
        local=frozenset(local),
    )
