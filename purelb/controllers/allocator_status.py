"""ServiceGroup ``status`` as a pure function of the allocator's view (no I/O, no clock).

The daemon writes a group's status only when :func:`status_patch` says it differs from
what the API shows, so a steady cluster causes no status writes at all. Counts are exact:
an IPv6 ``/64`` has 2**64 addresses, more than a JSON number holds without loss (2**53)
and more than a Kubernetes ``integer`` (int64) allows, so a count above
:data:`MAX_EXACT_JSON_INT` is written as a decimal string (the CRD declares the
available counts ``x-kubernetes-int-or-string``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from purelb.ipam.decision import GroupStats
from purelb.model import PoolType, RejectedGroup, ServiceGroup

JSON = dict[str, Any]

#: largest integer every JSON reader keeps exactly (IEEE double mantissa)
MAX_EXACT_JSON_INT = 2**53
#: the condition type that says whether the group parsed and was accepted
VALID = "Valid"
#: status.ipam values (the CRD's printer column "IPAM")
IPAM_NAMES = {PoolType.LOCAL: "local", PoolType.NETBOX: "netbox"}
FAMILY_FIELDS = {4: "IPv4", 6: "IPv6"}


def count(value: int | None) -> int | str | None:
    """A count as JSON: an int while exact, a decimal string beyond 2**53."""
    if value is None:
        return None
    return value if value <= MAX_EXACT_JSON_INT else str(value)


@dataclass(frozen=True, slots=True)
class GroupView:
    """What the status of one group is computed from."""

    name: str
    generation: int
    group: ServiceGroup | None
    """The accepted group, or ``None`` if it was rejected."""
    stats: tuple[GroupStats, ...]
    rejected: RejectedGroup | None


def desired_status(view: GroupView) -> JSON:
    """The status a group should show, without timestamps (compared, then stamped)."""
    if view.rejected is not None or view.group is None:
        message = str(view.rejected.error) if view.rejected is not None else "not accepted"
        reason = str(view.rejected.error.reason) if view.rejected is not None else "Unknown"
        return {"conditions": [{"type": VALID, "status": "False", "reason": _camel(reason),
                                "message": message, "observedGeneration": view.generation}]}
    status: JSON = {"ipam": IPAM_NAMES[view.group.pool_type],
                    "addresses": list(view.group.raw_pools)}
    for stat in view.stats:
        fam = FAMILY_FIELDS[stat.family]
        status[f"allocated{fam}"] = stat.in_use
        available = count(stat.available)
        if available is not None:
            status[f"available{fam}"] = available
    status["conditions"] = [{"type": VALID, "status": "True", "reason": "Accepted",
                             "message": f"{len(view.group.pools)} pool(s) in use",
                             "observedGeneration": view.generation}]
    return status


def status_patch(observed: Mapping[str, Any] | None, desired: JSON, *, now: str) -> JSON | None:
    """The full status to write, or ``None`` when ``observed`` already shows ``desired``.

    ``lastTransitionTime`` of a condition is kept while its status is unchanged and set to
    ``now`` when it flips, as Kubernetes conventions ask.
    """
    observed = dict(observed or {})
    old_conditions = {c.get("type"): c for c in observed.get("conditions") or []
                      if isinstance(c, Mapping)}
    conditions = []
    for cond in desired.get("conditions", []):
        old = old_conditions.get(cond["type"])
        stamp = now
        if old is not None and old.get("status") == cond["status"] and old.get(
                "lastTransitionTime"):
            stamp = old["lastTransitionTime"]
        conditions.append({**cond, "lastTransitionTime": stamp})
    full = {**desired, "conditions": conditions}
    if _comparable(observed) == _comparable(full):
        return None
    return full


def _comparable(status: Mapping[str, Any]) -> JSON:
    out = {k: v for k, v in status.items() if k != "conditions"}
    out["conditions"] = sorted(
        ({k: v for k, v in c.items()} for c in status.get("conditions") or []
         if isinstance(c, Mapping)), key=lambda c: str(c.get("type")))
    return out


def group_views(groups: Iterable[Mapping[str, Any]], accepted: Mapping[str, ServiceGroup],
                rejected: Mapping[str, RejectedGroup], stats: Iterable[GroupStats]
                ) -> list[tuple[Mapping[str, Any], GroupView]]:
    """Pair each ServiceGroup object with the view its status is computed from."""
    by_group: dict[str, list[GroupStats]] = {}
    for stat in stats:
        by_group.setdefault(stat.group, []).append(stat)
    out = []
    for obj in groups:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        group = accepted.get(name)
        if group is not None and group.namespace and meta.get("namespace") not in (
                None, group.namespace):
            group = None  # same name in another namespace: that one won
        out.append((obj, GroupView(name=name, generation=int(meta.get("generation") or 0),
                                   group=group, stats=tuple(by_group.get(name, ())),
                                   rejected=rejected.get(name) if group is None else None)))
    return out


def _camel(reason: str) -> str:
    """``pool_outside_subnet`` -> ``PoolOutsideSubnet`` (condition reasons are CamelCase)."""
    return "".join(part.capitalize() for part in reason.split("_")) or "Unknown"
