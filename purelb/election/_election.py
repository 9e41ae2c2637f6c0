"""Subnet-aware rendezvous election over a membership snapshot (pure).

Only members that could actually hold an address compete for it: alive, ready, and
advertising a subnet of the address's family that contains it (research/purelb.md 5.1).
Among those, rendezvous hashing (``purelb.fast``) with key = the canonical address text
picks the winner, so a member joining or leaving moves only the addresses it wins or loses,
and every member computes the same answer from the same view.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from .. import fast
from ._swim import MemberInfo
from ._wire import MemberState, NodeName

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(address: str | IPAddress) -> IPAddress:
    """Accept an address object or text; raise ValueError naming the bad value."""
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 or IPv6 address") from None


def candidates(address: IPAddress, members: Iterable[MemberInfo]) -> list[NodeName]:
    """Names of members eligible for ``address``, sorted (deterministic input order)."""
    return sorted(
        m.name
        for m in members
        if m.state == MemberState.ALIVE
        and m.meta.ready
        and any(net.version == address.version and address in net for net in m.meta.subnets)
    )


def winner(address: str | IPAddress, members: Iterable[MemberInfo]) -> NodeName | None:
    """The member that announces ``address``, or None when no member can hold it."""
    ip = parse_address(address)
    chosen = fast.winner(str(ip), candidates(ip, members))
    return NodeName(chosen) if chosen is not None else None


def winners(addresses: Sequence[str | IPAddress],
            members: Sequence[MemberInfo]) -> list[NodeName | None]:
    """``winner`` for many addresses, hashing each candidate set once."""
    ips = [parse_address(a) for a in addresses]
    groups: dict[tuple[NodeName, ...], list[int]] = {}
    for index, ip in enumerate(ips):
        groups.setdefault(tuple(candidates(ip, members)), []).append(index)
    result: list[NodeName | None] = [None] * len(ips)
    for names, indexes in groups.items():
        if not names:
            continue
        chosen = fast.winners([str(ips[i]) for i in indexes], list(names))
        for i, name in zip(indexes, chosen, strict=True):
            result[i] = NodeName(name) if name is not None else None
    return result
