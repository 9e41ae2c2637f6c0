"""The parts of a core/v1 Service the allocator reads, as a frozen value.

Services were validated by the API server, so parsing is mostly typing; still, anything
malformed raises :class:`InvalidField` with its path instead of a ``KeyError`` deep inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

from purelb.model import _fields as f
from purelb.model._addresses import FAMILY_NAMES
from purelb.model._errors import InvalidField, Reason

ServiceKey = NewType("ServiceKey", str)
"""``namespace/name``: identifies a Service across updates."""

#: protocols Kubernetes allows on a Service port
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
MAX_PORT = 65535


class IPFamilyPolicy(StrEnum):
    """``spec.ipFamilyPolicy``."""

    SINGLE_STACK = "SingleStack"
    """One family: the first of ``spec.ipFamilies``."""
    PREFER_DUAL_STACK = "PreferDualStack"
    """Both families when the group has both, else what it has."""
    REQUIRE_DUAL_STACK = "RequireDualStack"
    """Both families or nothing."""


@dataclass(frozen=True, slots=True, order=True)
class ServicePort:
    """A (protocol, port) pair: the unit of port conflicts on a shared address."""

    protocol: str
    port: int


def service_key(namespace: str, name: str) -> ServiceKey:
    return ServiceKey(f"{namespace}/{name}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """What the allocator needs to know about one Service."""

    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""
    type: str = "ClusterIP"
    load_balancer_class: str | None = None
    cluster_ip: str | None = None
    cluster_ips: tuple[str, ...] = ()
    ip_families: tuple[int, ...] = ()
    ip_family_policy: IPFamilyPolicy | None = None
    ports: tuple[ServicePort, ...] = ()
    external_traffic_policy: str = "Cluster"
    allocate_load_balancer_node_ports: bool | None = None
    load_balancer_ip: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    ingress: tuple[str, ...] = ()
    """``status.loadBalancer.ingress[].ip`` in order (hostnames are ignored)."""

    @property
    def key(self) -> ServiceKey:
        return service_key(self.namespace, self.name)

    @property
    def is_load_balancer(self) -> bool:
        return self.type == "LoadBalancer"

    def __repr__(self) -> str:
        return f"Service({self.key}, {self.type}, ingress={list(self.ingress)})"


def _parse_ports(raw: object) -> tuple[ServicePort, ...]:
    ports = []
    for i, item in enumerate(f.sequence(raw, "spec.ports")):
        path = f"spec.ports[{i}]"
        spec = f.mapping(item, path)
        protocol = f.string(spec.get("protocol"), f"{path}.protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise InvalidField(
                Reason.INVALID_PORT,
                f"must be one of {sorted(PROTOCOLS)}",
                path=f"{path}.protocol",
                value=protocol,
            )
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= MAX_PORT:
            raise InvalidField(
                Reason.INVALID_PORT, f"must be an integer 1..{MAX_PORT}", path=f"{path}.port",
                value=port,
            )
        ports.append(ServicePort(protocol, port))
    return tuple(ports)


def parse_service(obj: Mapping[str, Any]) -> Service:
    """Parse a core/v1 Service JSON object or raise :class:`InvalidField`."""
    top = f.mapping(obj, "")
    meta = f.mapping(top.get("metadata"), "metadata")
    spec = f.mapping(top.get("spec"), "spec", required=False)
    status = f.mapping(top.get("status"), "status", required=False)
    name = f.string(meta.get("name"), "metadata.name", required=True)
    assert name is not None
    families = []
    for i, fam in enumerate(f.sequence(spec.get("ipFamilies"), "spec.ipFamilies")):
        if fam not in FAMILY_NAMES:
            raise InvalidField(
                Reason.WRONG_TYPE, "must be IPv4 or IPv6", path=f"spec.ipFamilies[{i}]", value=fam
            )
        families.append(FAMILY_NAMES[fam])
    policy_raw = f.string(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy")
    try:
        policy = IPFamilyPolicy(policy_raw) if policy_raw is not None else None
    except ValueError:
        raise InvalidField(
            Reason.WRONG_TYPE,
            f"must be one of {[p.value for p in IPFamilyPolicy]}",
            path="spec.ipFamilyPolicy",
            value=policy_raw,
        ) from None
    lb = f.mapping(status.get("loadBalancer"), "status.loadBalancer", required=False)
    ingress = []
    for i, entry in enumerate(f.sequence(lb.get("ingress"), "status.loadBalancer.ingress")):
        ip = f.string(
            f.mapping(entry, f"status.loadBalancer.ingress[{i}]").get("ip"),
            f"status.loadBalancer.ingress[{i}].ip",
        )
        if ip is not None:
            ingress.append(ip)
    anlbnp = spec.get("allocateLoadBalancerNodePorts")
    return Service(
        namespace=f.string(meta.get("namespace"), "metadata.namespace") or "default",
        name=name,
        uid=f.string(meta.get("uid"), "metadata.uid") or "",
        resource_version=f.string(meta.get("resourceVersion"), "metadata.resourceVersion") or "",
        type=f.string(spec.get("type"), "spec.type") or "ClusterIP",
        load_balancer_class=f.string(spec.get("loadBalancerClass"), "spec.loadBalancerClass"),
        cluster_ip=f.string(spec.get("clusterIP"), "spec.clusterIP"),
        cluster_ips=tuple(
            x
            for i, item in enumerate(f.sequence(spec.get("clusterIPs"), "spec.clusterIPs"))
            if (x := f.string(item, f"spec.clusterIPs[{i}]")) is not None
        ),
        ip_families=tuple(families),
        ip_family_policy=policy,
        ports=_parse_ports(spec.get("ports")),
        external_traffic_policy=f.string(
            spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy"
        )
        or "Cluster",
        allocate_load_balancer_node_ports=f.boolean(
            anlbnp, "spec.allocateLoadBalancerNodePorts", default=True
        )
        if anlbnp is not None
        else None,
        load_balancer_ip=f.string(spec.get("loadBalancerIP"), "spec.loadBalancerIP"),
        annotations=f.string_map(meta.get("annotations"), "metadata.annotations"),
        ingress=tuple(ingress),
    )
