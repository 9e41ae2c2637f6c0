"""Which interfaces and subnets this node can serve local addresses on.

Pure functions over netlink dumps (``LinkInfo``, ``AddressInfo``, ``RouteInfo``), plus
``discover`` which takes the dumps from a writer. Rules (research/purelb.md sections 5.1
and 6.1):

- ``local_interface = "default"``: the interface of the default route, separately for
  IPv4 and IPv6 (lowest metric; ties go to the lower interface index).
- otherwise a regular expression, searched (not anchored, like Go's ``MatchString``) in
  the names of all non-loopback interfaces, sorted by name; the virtual interface and
  ``dummy`` links never count.
- every IPv4 network on a chosen interface counts; IPv6 networks too, except link-local
  ones and addresses flagged DADFAILED, DEPRECATED or TENTATIVE.

Unlike PureLB, addresses this agent added itself (marked with its IFA_PROTO) are ignored:
otherwise a VIP left on a NIC whose real address was removed would keep its own subnet
"servable" and pin itself there.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .records import (
    IFA_F_DADFAILED,
    IFA_F_DEPRECATED,
    IFA_F_TENTATIVE,
    AddressInfo,
    IPNetwork,
    LinkInfo,
    LocalSubnet,
    RouteInfo,
)

if TYPE_CHECKING:
    from .netlink import NetlinkWriter

DEFAULT_SELECTOR = "default"

#: IPv6 addresses in these states cannot be used and do not make a subnet servable.
_V6_UNUSABLE = IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE
_V6_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")


def default_route_interfaces(routes: Iterable[RouteInfo]) -> dict[int, int]:
    """Family (4/6) -> interface index of the default route (lowest metric, then index)."""
    best: dict[int, tuple[int, int]] = {}
    for r in routes:
        if r.dst.prefixlen != 0 or r.oif is None:
            continue
        cand = (r.priority, r.oif)
        if r.family not in best or cand < best[r.family]:
            best[r.family] = cand
    return {fam: oif for fam, (_prio, oif) in best.items()}


def select_links(
    links: Sequence[LinkInfo],
    routes: Iterable[RouteInfo],
    *,
    selector: str,
    virtual_interface: str,
) -> dict[int, tuple[LinkInfo, ...]]:
    """Family -> the interfaces whose subnets count, in PureLB's order.

    Raises:
        re.error: ``selector`` is neither "default" nor a valid regular expression
            (config validation should have caught it; the caller reports it).
    """
    by_index = {link.index: link for link in links}
    if selector in ("", DEFAULT_SELECTOR):
        defaults = default_route_interfaces(routes)
        return {
            fam: (by_index[idx],) if idx in by_index else () for fam, idx in defaults.items()
        } | {fam: () for fam in (4, 6) if fam not in defaults}
    pattern = re.compile(selector)
    chosen = tuple(
        sorted(
            (
                link
                for link in links
                if not link.is_loopback
                and link.kind != "dummy"
                and link.name != virtual_interface
                and pattern.search(link.name)
            ),
            key=lambda link: link.name,
        )
    )
    return {4: chosen, 6: chosen}


def usable_network(addr: AddressInfo, *, own_proto: int) -> IPNetwork | None:
    """The network an address makes servable, or None when it does not count."""
    if addr.proto == own_proto:
        return None
    net = addr.interface.network
    if net.version == 6 and (
        addr.flags & _V6_UNUSABLE or net.subnet_of(_V6_LINK_LOCAL)  # type: ignore[arg-type]
    ):
        return None
    return net


def local_subnets(
    links: Sequence[LinkInfo],
    addresses: Iterable[AddressInfo],
    routes: Iterable[RouteInfo],
    *,
    selector: str,
    virtual_interface: str,
    own_proto: int,
) -> tuple[LocalSubnet, ...]:
    """Every subnet this node can serve local addresses in, in lookup order.

    Order: IPv4 then IPv6; within a family, the selected interfaces in PureLB's order
    (by name in regex mode), then networks sorted. ``find_local_subnet`` takes the first
    match, so the order decides which NIC gets an address when subnets overlap.
    """
    selected = select_links(links, routes, selector=selector, virtual_interface=virtual_interface)
    addrs = list(addresses)
    out: list[LocalSubnet] = []
    for fam in (4, 6):
        for link in selected.get(fam, ()):
            nets = {
                net
                for a in addrs
                if a.index == link.index
                and a.family == fam
                and (net := usable_network(a, own_proto=own_proto)) is not None
            }
            out.extend(LocalSubnet(link.name, link.index, n) for n in sorted(nets))  # type: ignore[type-var]
    return tuple(out)


def servable_networks(subnets: Iterable[LocalSubnet]) -> frozenset[IPNetwork]:
    """The networks this node announces to its peers for the subnet-aware election."""
    return frozenset(s.network for s in subnets)


async def discover(
    writer: NetlinkWriter, *, selector: str, virtual_interface: str
) -> tuple[tuple[LinkInfo, ...], tuple[AddressInfo, ...], tuple[LocalSubnet, ...]]:
    """Dump links, addresses and default routes, then select: (links, addresses, subnets)."""
    links = await writer.dump_links()
    addresses = await writer.dump_addresses()
    routes = await writer.dump_routes(socket.AF_INET) + await writer.dump_routes(socket.AF_INET6)
    subnets = local_subnets(
        links,
        addresses,
        routes,
        selector=selector,
        virtual_interface=virtual_interface,
        own_proto=writer.proto,
    )
    return links, addresses, subnets
