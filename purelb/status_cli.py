"""``purelb status``: groups, Services, gossip members and the hot path, in one screen.

Works against a cluster or an embedded gateway, through a kubeconfig like kubectl:

- **Groups**: size / in use / available per family, from the ServiceGroup ``status`` the
  allocator writes; for a group without status (no allocator yet) they are computed from
  the pools and the Services' addresses, and marked ``(computed)``.
- **Services**: LoadBalancer Services with their addresses, the group they came from and
  the nodes announcing them (the agent's ``purelb.io/announcing-IPv4/-IPv6`` annotations).
- **Gossip members**: alive / suspect / dead counts read from each agent's ``/metrics``
  (``purelb_gossip_members{state=...}``). The URLs come from ``--metrics URL`` or, for an
  embedded gateway, from ``endpoints.json`` beside the kubeconfig. Gossip is per node and
  never in the API (agents must agree without it), so status reads it where it lives.
- **Plan**: an embedded gateway run with ``--no-netlink`` writes its plan to ``plan.json``
  beside the kubeconfig; it is shown when present.
- **Hot path**: ``purelb.fast.describe()`` of this process (the same build as the daemons).

Table building is pure (:func:`group_rows`, :func:`service_rows`, :func:`parse_members`);
:func:`collect` does the I/O.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from purelb import fast
from purelb.errors import ApiError, ConfigError
from purelb.ipam.index import AddressIndex
from purelb.model import annotations, validate_service_groups
from purelb.model._service_group import ServiceGroup

JSON = Mapping[str, Any]
FAMILIES = (4, 6)
MEMBER_STATES = ("alive", "suspect", "dead", "left")
METRICS_TIMEOUT_S = 2.0
"""A daemon that does not answer /metrics in this long is shown as unreachable."""
ENDPOINTS_FILE = "endpoints.json"
PLAN_FILE = "plan.json"
ANNOUNCING = {4: "purelb.io/announcing-IPv4", 6: "purelb.io/announcing-IPv6"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, default=None, metavar="FILE",
                        help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", default=None)
    parser.add_argument("--metrics", action="append", default=[], metavar="URL",
                        help="an agent's metrics base URL (http://node:7472); repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


# ---------------------------------------------------------------------------- pure part


@dataclass(frozen=True, slots=True)
class GroupRow:
    namespace: str
    name: str
    family: int
    size: int | None
    in_use: int
    available: int | None
    source: str
    """``status`` or ``computed``."""
    note: str = ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)  # counts above 2**53 are decimal strings
    return None


def _pool_size(group: ServiceGroup, family: int) -> int | None:
    if group.local is None:
        return None  # NetBox groups: the size lives in NetBox
    return sum(p.range.size for p in group.local.pools if p.family == family)


def group_rows(groups: Sequence[JSON], services: Sequence[JSON]) -> list[GroupRow]:
    """One row per (group, family): from status when the allocator wrote it, else computed."""
    result = validate_service_groups(list(groups))
    accepted = {(g.namespace, g.name): g for g in result.accepted}
    index = AddressIndex(result.accepted)
    used: dict[tuple[str, int], set[str]] = {}
    for svc in services:
        for ip in _ingress(svc):
            placement = index.placement(ip)
            if placement is not None:
                used.setdefault((placement.group, ip.version), set()).add(str(ip))
    rows: list[GroupRow] = []
    for obj in sorted(groups, key=lambda o: (_meta(o, "namespace"), _meta(o, "name"))):
        ns, name = _meta(obj, "namespace"), _meta(obj, "name")
        status = obj.get("status") or {}
        group = accepted.get((ns, name))
        rejected = next((r for r in result.rejected if r.name == name), None)
        if group is None:
            rows.append(GroupRow(ns, name, 0, None, 0, None, "status",
                                 f"rejected: {rejected.error}" if rejected else "not accepted"))
            continue
        for fam in sorted(group.families):
            key = f"IPv{fam}"
            in_use, available = _int(status.get(f"allocated{key}")), _int(
                status.get(f"available{key}"))
            if in_use is not None:
                size = in_use + available if available is not None else None
                rows.append(GroupRow(ns, name, fam, size, in_use, available, "status"))
                continue
            size = _pool_size(group, fam)
            n = len(used.get((name, fam), ()))
            rows.append(GroupRow(ns, name, fam, size, n,
                                 size - n if size is not None else None, "computed"))
    return rows


@dataclass(frozen=True, slots=True)
class ServiceRow:
    namespace: str
    name: str
    addresses: tuple[str, ...]
    group: str
    announcing: tuple[str, ...]
    note: str = ""


def service_rows(services: Iterable[JSON]) -> list[ServiceRow]:
    rows = []
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        ann = (svc.get("metadata") or {}).get("annotations") or {}
        announcing = tuple(f"{ann[k]} (IPv{fam})" for fam, k in ANNOUNCING.items() if ann.get(k))
        addresses = tuple(str(ip) for ip in _ingress(svc))
        note = "" if addresses else "pending"
        rows.append(ServiceRow(_meta(svc, "namespace"), _meta(svc, "name"), addresses,
                               str(ann.get(annotations.ALLOCATED_FROM, "")), announcing, note))
    return sorted(rows, key=lambda r: (r.namespace, r.name))


def parse_members(metrics_text: str) -> dict[str, int]:
    """``purelb_gossip_members{state="alive"} 3`` lines -> {"alive": 3, ...}."""
    counts: dict[str, int] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("purelb_gossip_members{"):
            continue
        labels, _, value = line.partition("} ")
        state = labels.partition('state="')[2].partition('"')[0]
        try:
            counts[state] = int(float(value))
        except ValueError:
            continue
    return counts


def _meta(obj: JSON, key: str) -> str:
    return str((obj.get("metadata") or {}).get(key) or "")


def _ingress(svc: JSON) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for entry in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        try:
            out.append(ipaddress.ip_address((entry or {}).get("ip", "")))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------------------- I/O part


@dataclass(slots=True)
class Status:
    server: str
    groups: list[GroupRow]
    services: list[ServiceRow]
    members: dict[str, dict[str, int] | str] = field(default_factory=dict)
    """metrics URL -> state counts, or the error text."""
    plan: dict[str, Any] | None = None
    hot_path: str = ""
    gossip_off: bool = False
    """An embedded gateway without peers said so in its endpoints.json."""


async def _scrape(url: str) -> dict[str, int] | str:
    try:
        async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_S, trust_env=False) as http:
            response = await http.get(url.rstrip("/") + "/metrics")
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    counts = parse_members(response.text)
    return counts if counts else "no gossip metrics (gossip off)"


def _side_files(kubeconfig: Path | None) -> tuple[list[str], dict[str, Any] | None, bool]:
    """What an embedded gateway leaves beside its kubeconfig: agent metrics URLs, the
    plan, and whether gossip is off."""
    if kubeconfig is None:
        return [], None, False
    base = kubeconfig.resolve().parent
    urls: list[str] = []
    plan = None
    gossip_off = False
    try:
        endpoints = json.loads((base / ENDPOINTS_FILE).read_text())
        if isinstance(endpoints, dict):
            if isinstance(endpoints.get("agent"), str):
                urls.append(endpoints["agent"])
            gossip_off = endpoints.get("gossip") == "off"
    except (OSError, ValueError):
        pass
    try:
        plan = json.loads((base / PLAN_FILE).read_text())
    except (OSError, ValueError):
        pass
    return urls, plan, gossip_off


async def collect(args: argparse.Namespace) -> Status:
    from purelb.kube import SERVICE_GROUPS, SERVICES, KubeClient, load_config

    kubeconfig = args.kubeconfig
    if kubeconfig is None and os.environ.get("KUBECONFIG"):
        kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    config = load_config(kubeconfig=args.kubeconfig, context=args.context)
    async with KubeClient(config, role="status") as client:
        groups, _ = await client.list_all(SERVICE_GROUPS)
        services, _ = await client.list_all(SERVICES)
    urls, plan, gossip_off = _side_files(kubeconfig)
    status = Status(config.server, group_rows(groups, services), service_rows(services),
                    plan=plan, hot_path=fast.describe(), gossip_off=gossip_off)
    for url in dict.fromkeys([*args.metrics, *urls]):
        status.members[url] = await _scrape(url)
    return status


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(s: Status) -> str:
    out = [f"server: {s.server}", f"hot path: {s.hot_path}", "", "GROUPS"]
    out.append(_table(("NAMESPACE", "NAME", "FAMILY", "SIZE", "IN USE", "AVAILABLE", "FROM"),
                      [(g.namespace, g.name, f"IPv{g.family}" if g.family else "-", _n(g.size),
                        str(g.in_use), _n(g.available), g.note or g.source)
                       for g in s.groups]))
    out += ["", "SERVICES"]
    out.append(_table(("NAMESPACE", "NAME", "ADDRESSES", "GROUP", "ANNOUNCING"),
                      [(r.namespace, r.name, ",".join(r.addresses) or "<pending>",
                        r.group or "-", ", ".join(r.announcing) or "-") for r in s.services]))
    out += ["", "GOSSIP MEMBERS"]
    if not s.members and s.gossip_off:
        out.append("gossip off: a single gateway, which announces every address itself")
    elif not s.members:
        out.append("(no agent metrics endpoint known: pass --metrics URL)")
    for url, counts in s.members.items():
        if isinstance(counts, str):
            out.append(f"{url}: {counts}")
        else:
            out.append(f"{url}: " + " ".join(f"{k}={counts.get(k, 0)}" for k in MEMBER_STATES))
    if s.plan is not None:
        how = ("applied with netlink" if s.plan.get("netlink")
               else "netlink disabled: nothing configured")
        out += ["", f"PLAN (node {s.plan.get('node')}, {how})"]
        out.append(_table(("ADDRESS", "INTERFACE", "KIND", "SERVICES"),
                          [(a["address"], a["interface"], a["kind"], ",".join(a["services"]))
                           for a in s.plan.get("addresses", [])]))
        for w in s.plan.get("warnings", []):
            out.append(f"warning: {w}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        status = trio.run(collect, args)
    except (ConfigError, ApiError) as exc:
        print(f"purelb status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {"server": status.server, "hot_path": status.hot_path,
               "groups": [_asdict(g) for g in status.groups],
               "services": [_asdict(r) for r in status.services],
               "members": status.members, "gossip_off": status.gossip_off,
               "plan": status.plan}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render(status))
    return 0


def _asdict(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}
