"""Builders shared by the IPAM tests: raw ServiceGroup/Service JSON and invariant checks.

Builders produce the JSON the API server would hand us, so every test also goes through
the model's parsers (the edge), never around them.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

from purelb.ipam.allocator import Allocator
from purelb.model import Service, parse_service
from purelb.model import annotations as ann


def pool(text: str, subnet: str, aggregation: str | None = None) -> dict[str, str]:
    out = {"pool": text, "subnet": subnet}
    if aggregation is not None:
        out["aggregation"] = aggregation
    return out


def sg(
    name: str,
    v4: list[dict[str, str]] | None = None,
    v6: list[dict[str, str]] | None = None,
    **local: Any,
) -> dict[str, Any]:
    """A ``purelb.io/v1`` ServiceGroup with ``spec.local`` pools."""
    spec: dict[str, Any] = dict(local)
    if v4:
        spec["v4pools"] = v4
    if v6:
        spec["v6pools"] = v6
    return {
        "apiVersion": "purelb.io/v1",
        "kind": "ServiceGroup",
        "metadata": {"name": name, "namespace": "purelb-system"},
        "spec": {"local": spec},
    }


def netbox_sg(name: str, **netbox: Any) -> dict[str, Any]:
    spec = {"url": "https://netbox.example.test", "tenant": "t1", **netbox}
    return {
        "metadata": {"name": name, "namespace": "purelb-system"},
        "spec": {"netbox": spec},
    }


def svc_json(
    name: str,
    *,
    ns: str = "ns",
    type: str = "LoadBalancer",
    ports: tuple[str, ...] = ("TCP/80",),
    key: str | None = None,
    group: str | None = None,
    addresses: str | None = None,
    lbip: str | None = None,
    families: tuple[str, ...] = (),
    policy: str | None = None,
    cls: str | None = None,
    etp: str | None = None,
    cluster_ip: str | None = None,
    ingress: tuple[str, ...] = (),
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta_ann = dict(annotations or {})
    if key is not None:
        meta_ann[ann.ALLOW_SHARED_IP] = key
    if group is not None:
        meta_ann[ann.SERVICE_GROUP] = group
    if addresses is not None:
        meta_ann[ann.ADDRESSES] = addresses
    spec: dict[str, Any] = {
        "type": type,
        "ports": [
            {"protocol": p.split("/")[0], "port": int(p.split("/")[1])} for p in ports
        ],
    }
    if families:
        spec["ipFamilies"] = list(families)
    if policy:
        spec["ipFamilyPolicy"] = policy
    if cls:
        spec["loadBalancerClass"] = cls
    if etp:
        spec["externalTrafficPolicy"] = etp
    if lbip:
        spec["loadBalancerIP"] = lbip
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "metadata": {"name": name, "namespace": ns, "annotations": meta_ann},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}},
    }


def svc(name: str, **kw: Any) -> Service:
    return parse_service(svc_json(name, **kw))


def check_invariants(alloc: Allocator) -> None:
    """What must hold after every step, whatever the step was."""
    rows = alloc.snapshot()
    by_address: dict[str, list[tuple[str, str]]] = {}
    per_service_family = Counter()
    for service, family, address, _group, key in rows:
        by_address.setdefault(address, []).append((service, key))
        per_service_family[(service, family)] += 1
    # one address per family per Service
    assert all(n == 1 for n in per_service_family.values()), per_service_family
    # an address is shared only under one non-empty key, with disjoint (protocol, port)s
    for address, holders in by_address.items():
        if len(holders) > 1:
            keys = {k for _s, k in holders}
            assert len(keys) == 1 and "" not in keys, (address, holders)
            seen: dict[Any, str] = {}
            for service, _k in holders:
                for port in alloc.ports_of(service, ipaddress.ip_address(address)):
                    assert port not in seen, (address, port, service, seen.get(port))
                    seen[port] = service
    # stats in use equal the distinct addresses per group and family
    truth = Counter()
    for address, _holders in by_address.items():
        group = next(r[3] for r in rows if r[2] == address)
        truth[(group, ipaddress.ip_address(address).version)] += 1
    for stat in alloc.stats():
        assert stat.in_use == truth.get((stat.group, stat.family), 0), (stat, truth)
        if stat.size is not None:
            assert stat.available == stat.size - stat.in_use

