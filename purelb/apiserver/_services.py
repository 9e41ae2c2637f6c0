"""Service defaulting and the clusterIP / nodePort allocators, as the real server does them.

The real kube-apiserver defaults and allocates inside its Service REST storage; this module
is that part. :meth:`ServiceAllocator.plan` is pure with respect to the allocator (it only
reads which values are in use) and returns the defaulted Service plus what to allocate
and release; :meth:`ServiceAllocator.apply` commits that plan once the write is certain,
so a rejected or dry-run write allocates nothing.

Covered: ``type`` default ClusterIP; ports' protocol TCP and targetPort = port;
sessionAffinity, internal/externalTrafficPolicy defaults; ``ipFamilyPolicy`` →
``ipFamilies`` (PreferDualStack and RequireDualStack on a dual-stack service CIDR pair);
clusterIP(s) from the service CIDRs (or the requested ones, checked); nodePorts for
NodePort and LoadBalancer unless ``allocateLoadBalancerNodePorts: false``;
healthCheckNodePort for LoadBalancer with ``externalTrafficPolicy: Local``; on update the
allocated values are carried over when omitted, clusterIP and ``loadBalancerClass`` are
immutable, and node ports are dropped when the type no longer needs them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from purelb import fastjson

from ._errors import Cause, invalid

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12", "fd00:10:96::/112")
"""kubeadm's default IPv4 service range, plus an IPv6 one: a dual-stack cluster."""
DEFAULT_NODE_PORT_RANGE = (30000, 32767)
"""The real server's default --service-node-port-range."""

_FAMILY = {4: "IPv4", 6: "IPv6"}
_NODE_PORT_TYPES = frozenset({"NodePort", "LoadBalancer"})
_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


@dataclass(slots=True)
class Plan:
    """A defaulted Service and the allocation changes writing it implies."""

    obj: dict[str, Any]
    ips_added: set[str] = field(default_factory=set)
    ips_released: set[str] = field(default_factory=set)
    ports_added: set[int] = field(default_factory=set)
    ports_released: set[int] = field(default_factory=set)


class ServiceAllocator:
    """Which cluster IPs and node ports are in use; picks free ones."""

    def __init__(
        self,
        *,
        cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS,
        node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
    ) -> None:
        nets = [ipaddress.ip_network(c, strict=True) for c in cidrs]
        if not nets or len(nets) > 2 or (len(nets) == 2 and nets[0].version == nets[1].version):
            raise ValueError(f"service CIDRs must be one, or one per family: {cidrs!r}")
        self.cidrs: dict[str, IPNetwork] = {_FAMILY[n.version]: n for n in nets}
        self.primary = _FAMILY[nets[0].version]
        self.node_ports = node_port_range
        self._ips: set[str] = set()
        self._ports: set[int] = set()
        self._ip_cursor: dict[str, int] = dict.fromkeys(self.cidrs, 1)
        self._port_cursor = node_port_range[0]

    @property
    def dual_stack(self) -> bool:
        return len(self.cidrs) == 2

    # ---- bookkeeping ------------------------------------------------------------------
    def rebuild(self, services: list[dict[str, Any]]) -> None:
        """Recompute what is in use from stored Services (at startup)."""
        self._ips.clear()
        self._ports.clear()
        for svc in services:
            self._ips |= _ips_of(svc)
            self._ports |= _ports_of(svc)

    def apply(self, plan: Plan) -> None:
        self._ips -= plan.ips_released
        self._ips |= plan.ips_added
        self._ports -= plan.ports_released
        self._ports |= plan.ports_added

    def release(self, svc: dict[str, Any]) -> None:
        self._ips -= _ips_of(svc)
        self._ports -= _ports_of(svc)

    # ---- planning ---------------------------------------------------------------------
    def plan(self, svc: dict[str, Any], old: dict[str, Any] | None) -> Plan:
        """Default ``svc`` (a new dict; the input is not changed) and allocate for it.

        Raises:
            StatusError: 422 Invalid naming every offending field.
        """
        obj = fastjson.copy_tree(svc)
        name = obj.get("metadata", {}).get("name", "")
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            raise invalid("Service", name,
                          [Cause("FieldValueInvalid", "must be an object", "spec")])
        causes: list[Cause] = []
        old_spec = (old or {}).get("spec", {})
        stype = spec.setdefault("type", "ClusterIP")
        if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{stype}": supported values: "ClusterIP", '
                '"ExternalName", "LoadBalancer", "NodePort"',
                "spec.type",
            ))
            raise invalid("Service", name, causes)
        spec.setdefault("sessionAffinity", "None")
        self._default_ports(spec, causes)
        if old is not None:
            self._carry_over(spec, old_spec, causes)
        if stype == "ExternalName":
            if not spec.get("externalName"):
                causes.append(Cause("FieldValueRequired", "Required value", "spec.externalName"))
            for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if (f == "clusterIP" and spec.get(f) in ("", None)) or f != "clusterIP":
                    spec.pop(f, None)
            if spec.get("clusterIP"):
                causes.append(Cause(
                    "FieldValueInvalid", "must be empty for ExternalName services",
                    "spec.clusterIP",
                ))
        else:
            spec.setdefault("internalTrafficPolicy", "Cluster")
            if stype in _NODE_PORT_TYPES:
                spec.setdefault("externalTrafficPolicy", "Cluster")
            if stype == "LoadBalancer":
                spec.setdefault("allocateLoadBalancerNodePorts", True)
            elif "loadBalancerClass" in spec and spec["loadBalancerClass"] is not None:
                causes.append(Cause(
                    "FieldValueForbidden",
                    "may only be used when `type` is 'LoadBalancer'",
                    "spec.loadBalancerClass",
                ))
        self._check_immutables(spec, old_spec, old, causes)
        if causes:
            raise invalid("Service", name, causes)
        plan = Plan(obj)
        if stype != "ExternalName":
            self._families_and_ips(spec, old_spec, plan, causes)
        self._node_ports(spec, old_spec, plan, causes)
        if causes:
            raise invalid("Service", name, causes)
        if old is not None:
            plan.ips_released = _ips_of(old) - _ips_of(obj)
            plan.ports_released = _ports_of(old) - _ports_of(obj)
        if old is None and not isinstance(obj.get("status"), dict):
            obj["status"] = {"loadBalancer": {}}
        return plan

    @staticmethod
    def _default_ports(spec: dict[str, Any], causes: list[Cause]) -> None:
        ports = spec.get("ports")
        if ports is None:
            if spec["type"] not in ("ExternalName",) and spec.get("clusterIP") != "None":
                causes.append(Cause("FieldValueRequired", "Required value", "spec.ports"))
            return
        if not isinstance(ports, list):
            causes.append(Cause("FieldValueInvalid", "must be a list", "spec.ports"))
            return
        seen_names: set[str] = set()
        seen: set[tuple[int, str]] = set()
        for i, p in enumerate(ports):
            where = f"spec.ports[{i}]"
            if not isinstance(p, dict):
                causes.append(Cause("FieldValueInvalid", "must be an object", where))
                continue
            p.setdefault("protocol", "TCP")
            port = p.get("port")
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                causes.append(Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {port!r}: must be between 1 and 65535, inclusive",
                    f"{where}.port",
                ))
                continue
            if p["protocol"] not in _PROTOCOLS:
                causes.append(Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{p["protocol"]}": supported values: "SCTP", "TCP", "UDP"',
                    f"{where}.protocol",
                ))
            if p.get("targetPort") in (None, 0, ""):
                p["targetPort"] = port
            pname = p.get("name", "")
            if len(ports) > 1 and not pname:
                causes.append(Cause("FieldValueRequired", "Required value", f"{where}.name"))
            if pname and pname in seen_names:
                causes.append(Cause(
                    "FieldValueDuplicate", f'Duplicate value: "{pname}"', f"{where}.name"
                ))
            seen_names.add(pname)
            if (port, p["protocol"]) in seen:
                causes.append(Cause(
                    "FieldValueDuplicate",
                    f'Duplicate value: {{"port":{port},"protocol":"{p["protocol"]}"}}',
                    where,
                ))
            seen.add((port, p["protocol"]))

    @staticmethod
    def _carry_over(spec: dict[str, Any], old_spec: dict[str, Any], causes: list[Cause]) -> None:
        """The real server's patchAllocatedValues: omitted allocated values are kept."""
        if spec["type"] != "ExternalName" and old_spec.get("type") != "ExternalName":
            if not spec.get("clusterIP") and old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            if (
                not spec.get("clusterIPs")
                and old_spec.get("clusterIPs")
                and spec.get("clusterIP") == old_spec.get("clusterIP")
            ):
                spec["clusterIPs"] = list(old_spec["clusterIPs"])
            if not spec.get("ipFamilies") and old_spec.get("ipFamilies"):
                spec["ipFamilies"] = list(old_spec["ipFamilies"])
            if not spec.get("ipFamilyPolicy") and old_spec.get("ipFamilyPolicy"):
                spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
        if spec["type"] in _NODE_PORT_TYPES and old_spec.get("type") in _NODE_PORT_TYPES:
            old_ports = {
                (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                for p in old_spec.get("ports") or []
                if isinstance(p, dict)
            }
            for p in spec.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                    if np:
                        p["nodePort"] = np
            if (
                not spec.get("healthCheckNodePort")
                and old_spec.get("healthCheckNodePort")
                and spec.get("externalTrafficPolicy") == "Local"
            ):
                spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
        # dropTypeDependentFields: a type change removes values only the old type needed.
        if old_spec.get("type") in _NODE_PORT_TYPES and spec["type"] not in _NODE_PORT_TYPES:
            old_nps = {
                p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)
            }
            for p in spec.get("ports") or []:
                if isinstance(p, dict) and p.get("nodePort") in old_nps:
                    p.pop("nodePort", None)
        if spec["type"] != "LoadBalancer" and old_spec.get("type") == "LoadBalancer":
            if spec.get("allocateLoadBalancerNodePorts") == old_spec.get(
                "allocateLoadBalancerNodePorts"
            ):
                spec.pop("allocateLoadBalancerNodePorts", None)
            if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
                spec.pop("loadBalancerClass", None)
            if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
                spec.pop("healthCheckNodePort", None)

    @staticmethod
    def _check_immutables(
        spec: dict[str, Any], old_spec: dict[str, Any], old: dict[str, Any] | None,
        causes: list[Cause],
    ) -> None:
        if old is None:
            return
        types = (spec["type"], old_spec.get("type"))
        if "ExternalName" not in types and old_spec.get("clusterIP") and (
            spec.get("clusterIP") != old_spec.get("clusterIP")
        ):
            causes.append(Cause(
                "FieldValueInvalid",
                f'Invalid value: "{spec.get("clusterIP")}": field is immutable',
                "spec.clusterIP",
            ))
        if (
            old_spec.get("type") == "LoadBalancer"
            and spec["type"] == "LoadBalancer"
            and old_spec.get("loadBalancerClass") != spec.get("loadBalancerClass")
        ):
            causes.append(Cause(
                "FieldValueInvalid",
                f"Invalid value: {_quote(spec.get('loadBalancerClass'))}: field is immutable",
                "spec.loadBalancerClass",
            ))
        old_fams = old_spec.get("ipFamilies") or []
        new_fams = spec.get("ipFamilies") or []
        if "ExternalName" not in types and old_fams and new_fams and old_fams[0] != new_fams[0]:
            causes.append(Cause(
                "FieldValueInvalid",
                f'Invalid value: "{new_fams[0]}": may not change once set',
                "spec.ipFamilies[0]",
            ))

    def _families_and_ips(
        self, spec: dict[str, Any], old_spec: dict[str, Any], plan: Plan, causes: list[Cause]
    ) -> None:
        headless = spec.get("clusterIP") == "None"
        requested: list[str] = list(spec.get("clusterIPs") or [])
        if spec.get("clusterIP") and not requested:
            requested = [spec["clusterIP"]]
        if requested and spec.get("clusterIP") and requested[0] != spec["clusterIP"]:
            causes.append(Cause(
                "FieldValueInvalid",
                "must match the first entry of spec.clusterIPs", "spec.clusterIPs[0]",
            ))
            return
        fams: list[str] = list(spec.get("ipFamilies") or [])
        policy = spec.get("ipFamilyPolicy")
        if policy not in (None, "SingleStack", "PreferDualStack", "RequireDualStack"):
            causes.append(Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "PreferDualStack", '
                '"RequireDualStack", "SingleStack"',
                "spec.ipFamilyPolicy",
            ))
            return
        ip_fams: list[str] = []
        if not headless:
            for i, ip in enumerate(requested):
                try:
                    ip_fams.append(_FAMILY[ipaddress.ip_address(ip).version])
                except ValueError:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{ip}": must be a valid IP address',
                        f"spec.clusterIPs[{i}]",
                    ))
                    return
        if not fams:
            fams = ip_fams[:] if ip_fams else []
        for i, f in enumerate(fams):
            if f not in ("IPv4", "IPv6"):
                causes.append(Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{f}": supported values: "IPv4", "IPv6"',
                    f"spec.ipFamilies[{i}]",
                ))
                return
            if f not in self.cidrs and not (policy == "PreferDualStack" and i > 0):
                causes.append(Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{f}": not configured on this cluster',
                    f"spec.ipFamilies[{i}]",
                ))
                return
        if len(fams) > 2 or len(set(fams)) != len(fams):
            causes.append(Cause("FieldValueInvalid", "must hold at most one entry per IP family",
                                "spec.ipFamilies"))
            return
        if policy is None:
            policy = "RequireDualStack" if len(fams) == 2 or len(requested) == 2 else "SingleStack"
            if len(fams) == 2 or len(requested) == 2:
                causes.append(Cause(
                    "FieldValueInvalid",
                    "must be RequireDualStack or PreferDualStack when multiple IP families "
                    "are specified",
                    "spec.ipFamilyPolicy",
                ))
                return
        if policy == "SingleStack" and (len(fams) > 1 or len(requested) > 1):
            causes.append(Cause(
                "FieldValueInvalid", "must not hold more than one entry for SingleStack",
                "spec.ipFamilies",
            ))
            return
        if not fams:
            fams = [self.primary]
        if policy in ("PreferDualStack", "RequireDualStack") and len(fams) == 1:
            other = "IPv6" if fams[0] == "IPv4" else "IPv4"
            if other in self.cidrs:
                fams.append(other)
            elif policy == "RequireDualStack":
                causes.append(Cause(
                    "FieldValueInvalid",
                    "this cluster is not configured for dual-stack services",
                    "spec.ipFamilyPolicy",
                ))
                return
        fams = [f for f in fams if f in self.cidrs]
        spec["ipFamilyPolicy"] = policy
        spec["ipFamilies"] = fams
        if headless:
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            return
        old_ips = set(old_spec.get("clusterIPs") or [])
        ips: list[str] = []
        for i, fam in enumerate(fams):
            if i < len(requested):
                ip = requested[i]
                if ip_fams[i] != fam:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{ip}": expected an {fam} address (per ipFamilies)',
                        f"spec.clusterIPs[{i}]",
                    ))
                    return
                if ipaddress.ip_address(ip) not in self.cidrs[fam]:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{ip}": provided IP is not in the valid range. '
                        f"The range of valid IPs is {self.cidrs[fam]}",
                        f"spec.clusterIPs[{i}]",
                    ))
                    return
                if ip in self._ips and ip not in old_ips:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{ip}": provided IP is already allocated',
                        f"spec.clusterIPs[{i}]",
                    ))
                    return
                if ip not in old_ips:
                    plan.ips_added.add(ip)
            else:
                ip = self._next_ip(fam, plan.ips_added)
                if ip is None:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f"range {self.cidrs[fam]} is full", f"spec.clusterIPs[{i}]",
                    ))
                    return
                plan.ips_added.add(ip)
            ips.append(ip)
        spec["clusterIP"] = ips[0]
        spec["clusterIPs"] = ips

    def _next_ip(self, fam: str, taken: set[str]) -> str | None:
        net = self.cidrs[fam]
        size = min(net.num_addresses, 1 << 20)
        start = self._ip_cursor[fam]
        for step in range(size):
            off = (start + step) % size
            if off == 0 or (net.version == 4 and off == net.num_addresses - 1):
                continue  # network and broadcast addresses
            ip = str(net.network_address + off)
            if ip not in self._ips and ip not in taken:
                self._ip_cursor[fam] = off + 1
                return ip
        return None

    def _node_ports(
        self, spec: dict[str, Any], old_spec: dict[str, Any], plan: Plan, causes: list[Cause]
    ) -> None:
        stype = spec["type"]
        wants = stype == "NodePort" or (
            stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True)
        )
        lo, hi = self.node_ports
        old_nps = {p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        old_nps.add(old_spec.get("healthCheckNodePort"))
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p, dict):
                continue
            np = p.get("nodePort")
            if np:
                if stype not in _NODE_PORT_TYPES:
                    causes.append(Cause(
                        "FieldValueForbidden",
                        f"may not be used when `type` is '{stype}'",
                        f"spec.ports[{i}].nodePort",
                    ))
                    continue
                if not isinstance(np, int) or not lo <= np <= hi:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {np!r}: provided port is not in the valid range. "
                        f"The range of valid ports is {lo}-{hi}",
                        f"spec.ports[{i}].nodePort",
                    ))
                    continue
                if (np in self._ports and np not in old_nps) or np in plan.ports_added:
                    causes.append(Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {np}: provided port is already allocated",
                        f"spec.ports[{i}].nodePort",
                    ))
                    continue
                if np not in old_nps:
                    plan.ports_added.add(np)
            elif wants:
                new = self._next_port(plan.ports_added)
                if new is None:
                    causes.append(Cause("FieldValueInvalid", "node port range is full",
                                        f"spec.ports[{i}].nodePort"))
                    return
                p["nodePort"] = new
                plan.ports_added.add(new)
        if stype == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            hc = spec.get("healthCheckNodePort")
            if not hc:
                new = self._next_port(plan.ports_added)
                if new is not None:
                    spec["healthCheckNodePort"] = new
                    plan.ports_added.add(new)
            elif hc not in old_nps:
                plan.ports_added.add(hc)
        elif spec.get("healthCheckNodePort") and spec.get("healthCheckNodePort") in old_nps:
            spec.pop("healthCheckNodePort", None)

    def _next_port(self, taken: set[int]) -> int | None:
        lo, hi = self.node_ports
        span = hi - lo + 1
        for step in range(span):
            port = lo + (self._port_cursor - lo + step) % span
            if port not in self._ports and port not in taken:
                self._port_cursor = port + 1 if port < hi else lo
                return port
        return None


def _ips_of(svc: dict[str, Any]) -> set[str]:
    spec = svc.get("spec") or {}
    ips = set(spec.get("clusterIPs") or [])
    if spec.get("clusterIP"):
        ips.add(spec["clusterIP"])
    ips.discard("None")
    ips.discard("")
    return ips


def _ports_of(svc: dict[str, Any]) -> set[int]:
    spec = svc.get("spec") or {}
    ports = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
    ports.add(spec.get("healthCheckNodePort"))
    return {p for p in ports if isinstance(p, int) and p}


def _quote(v: Any) -> str:
    return "null" if v is None else f'"{v}"'
