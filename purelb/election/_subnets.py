"""Which subnets a node can serve, from its interface addresses (pure).

Rules from PureLB (research/purelb.md 5.1): every IPv4 network of a chosen interface; IPv6
networks except link-local ones and addresses flagged DADFAILED, DEPRECATED or TENTATIVE
(so PureLB-style deprecated IPv6 VIPs and unusable addresses do not count). Host routes
(/32, /128: VIPs on a dummy interface) are never a servable subnet. The netlink read lives
in the agent's shell; this takes plain values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ._wire import Subnet

#: Kernel IFA_F_* flags that make an IPv6 address unusable for deciding what we can serve.
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
_UNUSABLE_V6 = IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address as netlink reports it."""

    ifname: str
    address: str
    prefixlen: int
    flags: int = 0


def serving_subnets(addresses: Iterable[InterfaceAddress], *,
                    limit: int) -> tuple[Subnet, ...]:
    """The distinct networks to advertise, IPv4 first then IPv6, each sorted.

    Raises ValueError naming the address when one is invalid; keeps at most ``limit``
    networks (the gossip limit ``max_subnets``).
    """
    found: set[Subnet] = set()
    for a in addresses:
        try:
            net = ipaddress.ip_interface(f"{a.address}/{a.prefixlen}").network
        except ValueError:
            raise ValueError(f"interface {a.ifname}: {a.address}/{a.prefixlen} is not an "
                             "address with a prefix length") from None
        if net.prefixlen == net.max_prefixlen:
            continue
        if net.version == 6 and (net.is_link_local or a.flags & _UNUSABLE_V6):
            continue
        found.add(net)
    v4 = sorted(n for n in found if n.version == 4)
    v6 = sorted(n for n in found if n.version == 6)
    return tuple([*v4, *v6][:limit])
