"""Pure: compare what Services hold with what NetBox says PureLB holds.

Run at start (after :meth:`Allocator.import_services`), per NetBox (url, tenant): every
address tagged ``purelb`` that no Service holds is an orphan (its Service was deleted while
no allocator ran, or an allocator crashed between the NetBox write and the status write)
and is released; every held address NetBox lost (deleted by hand) is re-claimed for its
holder; a record naming a Service that no longer holds it is relabelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from purelb.ipam.netbox_records import IPRecord
from purelb.model import IPAddress, ServiceKey


@dataclass(frozen=True, slots=True)
class SyncPlan:
    release: tuple[IPRecord, ...]
    """Owned records no Service holds: give back to NetBox."""
    reclaim: tuple[tuple[IPAddress, ServiceKey], ...]
    """Held addresses without a NetBox record: claim again for this holder."""
    relabel: tuple[tuple[IPRecord, ServiceKey], ...]
    """Records whose named owner no longer holds them: name this holder instead."""


def plan_sync(
    holders: Mapping[IPAddress, Sequence[ServiceKey]],
    records: Iterable[IPRecord],
    *,
    keep: Iterable[IPAddress] = (),
) -> SyncPlan:
    """What to do so NetBox and the Services agree (``keep``: offers not yet handed out)."""
    kept = set(keep)
    seen: set[IPAddress] = set()
    release: list[IPRecord] = []
    relabel: list[tuple[IPRecord, ServiceKey]] = []
    for rec in sorted(records, key=lambda r: (r.address.version, int(r.address), r.id)):
        if rec.owner is None:
            continue  # not ours: never touched
        ip = rec.address
        held_by = sorted(holders.get(ip, ()))
        if not held_by:
            if ip not in kept:
                release.append(rec)
            continue
        if ip in seen:
            release.append(rec)  # a duplicate record of a held address (two VRFs...)
            continue
        seen.add(ip)
        if rec.owner.service not in held_by:
            relabel.append((rec, held_by[0]))
    reclaim = [
        (ip, sorted(keys)[0])
        for ip, keys in sorted(holders.items(), key=lambda kv: (kv[0].version, int(kv[0])))
        if keys and ip not in seen
    ]
    return SyncPlan(tuple(release), tuple(reclaim), tuple(relabel))
