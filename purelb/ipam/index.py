"""Which ServiceGroup (and which of its pools) contains an address: O(log ranges).

Accepted groups never overlap (:func:`purelb.model.validate_service_groups`), so all their
ranges of one family form a sorted list of disjoint intervals and a bisect finds the owner.
The same index answers the node agent's question -- "for this allocated address, what is
the subnet and the prefix length to put on the interface?" -- via :meth:`placement`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from purelb.model import IPAddress, IPNetwork, PoolType, ServiceGroup


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an allocated address belongs, for the node agent."""

    group: str
    pool_type: PoolType
    subnet: IPNetwork
    """The pool's ``subnet`` (NetBox: the ``v4prefix``/``v6prefix``). An agent with an
    interface in this subnet announces the address there ("local"); otherwise on
    ``kube-lb0`` ("virtual")."""
    prefix_length: int
    """``aggregation`` /N, or the subnet's own prefix for ``default``."""


class AddressIndex:
    """Address -> (group, placement) over every accepted group."""

    def __init__(self, groups: Iterable[ServiceGroup]) -> None:
        entries: dict[int, list[tuple[int, int, Placement]]] = {4: [], 6: []}
        for group in groups:
            if group.local is not None:
                for pool in group.local.pools:
                    entries[pool.family].append(
                        (
                            int(pool.range.first),
                            int(pool.range.last),
                            Placement(group.name, PoolType.LOCAL, pool.subnet, pool.prefix_length),
                        )
                    )
            else:
                assert group.netbox is not None
                for prefix in group.netbox.prefixes:
                    length = group.netbox.aggregation
                    entries[prefix.version].append(
                        (
                            int(prefix.network_address),
                            int(prefix.broadcast_address),
                            Placement(
                                group.name,
                                PoolType.NETBOX,
                                prefix,
                                prefix.prefixlen if length is None else length,
                            ),
                        )
                    )
        self._firsts: dict[int, list[int]] = {}
        self._entries: dict[int, list[tuple[int, int, Placement]]] = {}
        for family, items in entries.items():
            items.sort(key=lambda e: e[0])
            self._entries[family] = items
            self._firsts[family] = [e[0] for e in items]

    def placement(self, address: IPAddress) -> Placement | None:
        """The group, subnet and prefix length of ``address``; ``None`` if in no pool."""
        value = int(address)
        firsts = self._firsts[address.version]
        i = bisect.bisect_right(firsts, value)
        if i:
            first, last, placement = self._entries[address.version][i - 1]
            if first <= value <= last:
                return placement
        return None

    def group_of(self, address: IPAddress) -> str | None:
        placement = self.placement(address)
        return placement.group if placement is not None else None


def placement_for(address: IPAddress, groups: Iterable[ServiceGroup]) -> Placement | None:
    """One-shot form of :meth:`AddressIndex.placement` (build an index to ask repeatedly)."""
    return AddressIndex(groups).placement(address)
