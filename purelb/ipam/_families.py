"""Which address families a Service gets: ``ipFamilyPolicy`` + ``ipFamilies`` (pure).

PureLB reads only ``spec.ipFamilies``; we honour the policy as Kubernetes defines it for
cluster IPs: SingleStack takes the first family, PreferDualStack every family both the
Service (its ``ipFamilies``, when set) and the group have, RequireDualStack both or nothing.
"""

from __future__ import annotations

import ipaddress

from purelb.ipam._book import Refusal
from purelb.ipam.decision import FailureReason
from purelb.model import IPFamilyPolicy, Service, ServiceGroup, family_name

#: the order used for families a Service does not state (IPv4 first, as Kubernetes)
DEFAULT_FAMILY_ORDER = (4, 6)


def declared_families(svc: Service) -> list[int]:
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


def family_order(svc: Service) -> list[int]:
    """Both families, the Service's own first: the order of its ingress entries."""
    declared = declared_families(svc)
    return declared + [f for f in DEFAULT_FAMILY_ORDER if f not in declared]


def families_for(svc: Service, group: ServiceGroup) -> list[int]:
    """Families to allocate from ``group``, in ingress order; Refusal if impossible."""
    available = group.families
    order = family_order(svc)
    policy = svc.ip_family_policy or IPFamilyPolicy.SINGLE_STACK
    if policy is IPFamilyPolicy.SINGLE_STACK:
        declared = declared_families(svc)
        # nothing declared (no ipFamilies, no cluster IP): the group's first family
        family = declared[0] if declared else next(f for f in order if f in available)
        if family not in available:
            raise Refusal(
                FailureReason.FAMILY_UNAVAILABLE,
                f"Service {svc.key}: ServiceGroup {group.name!r} has no "
                f"{family_name(family)} pool",
                group.name,
            )
        return [family]
    if policy is IPFamilyPolicy.REQUIRE_DUAL_STACK:
        missing = [f for f in order if f not in available]
        if missing:
            raise Refusal(
                FailureReason.FAMILY_UNAVAILABLE,
                f"Service {svc.key}: RequireDualStack but ServiceGroup {group.name!r} has no "
                f"{family_name(missing[0])} pool",
                group.name,
            )
        return order
    # PreferDualStack: the families the API server gave the Service (a single-stack cluster
    # fills ipFamilies with one family even for PreferDualStack, and kube-proxy could not
    # forward an address of the other), or every family when nothing is declared.
    declared = declared_families(svc)
    families = [f for f in (declared or order) if f in available]
    if not families:
        raise Refusal(
            FailureReason.FAMILY_UNAVAILABLE,
            f"Service {svc.key}: ServiceGroup {group.name!r} has no "
            f"{'/'.join(family_name(f) for f in declared)} pool",
            group.name,
        )
    return families
