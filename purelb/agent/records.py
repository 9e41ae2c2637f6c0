"""Plain records for what netlink reports and what the agent asks of it.

These are the values that cross the boundary between the netlink shell (``netlink.py``,
``codec.py``) and the pure parts (``diff.py``, ``interfaces.py``). They hold no sockets and
no pyroute2 objects, so pure code and tests build them by hand.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# Address flags (include/uapi/linux/if_addr.h). The header byte holds only the low 8 bits;
# IFA_FLAGS carries all 32 (NOPREFIXROUTE does not fit in the byte).
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_HOMEADDRESS = 0x10
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80
IFA_F_MANAGETEMPADDR = 0x100
IFA_F_NOPREFIXROUTE = 0x200

#: The flags the agent sets on purpose and therefore compares when deciding to replace
#: an address. The others (PERMANENT, TENTATIVE, ...) are kernel state, not our request.
MANAGED_FLAGS = IFA_F_NODAD | IFA_F_NOPREFIXROUTE


def managed_flags(version: int) -> int:
    """The managed flags the kernel keeps for a family: IPv4 has no DAD and drops NODAD."""
    return MANAGED_FLAGS if version == 6 else IFA_F_NOPREFIXROUTE


# Kernel-owned IFA_PROTO values (if_addr.h IFAPROT_*): 0 unspec, 1 loopback, 2 router
# advertisement, 3 link-local. Ours must be above these.
IFAPROT_KERNEL_MAX = 3

# Interface flags (include/uapi/linux/if.h).
IFF_UP = 0x1
IFF_LOOPBACK = 0x8

#: A lifetime of "forever" as the kernel encodes it in ifa_cacheinfo.
INFINITY_LIFETIME = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One interface as an RTM_NEWLINK dump reports it."""

    index: int
    name: str
    kind: str | None
    """``IFLA_INFO_KIND`` (``dummy``, ``ifb``, ``veth``, ``bridge``); None for plain NICs."""
    flags: int
    """``ifi_flags`` (IFF_UP, IFF_LOOPBACK, ...)."""
    mac: bytes | None
    """Hardware address (6 bytes on Ethernet); None when the link has none."""

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def is_loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """One address as an RTM_NEWADDR dump reports it."""

    index: int
    interface: IPInterface
    """Address with its prefix length (``192.0.2.10/32``)."""
    flags: int
    """Full flags: IFA_FLAGS when present, else the header byte."""
    proto: int
    """IFA_PROTO; 0 when the kernel did not send one (nobody marked the address)."""
    valid_lft_s: int | None
    """Remaining valid lifetime in seconds; None = forever."""
    preferred_lft_s: int | None
    """Remaining preferred lifetime in seconds; None = forever."""
    scope: int = 0

    @property
    def family(self) -> int:
        return self.interface.version


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One route from the main table, reduced to what interface discovery needs."""

    family: int
    """4 or 6."""
    dst: IPNetwork
    oif: int | None
    """Output interface (the first next hop's for multipath routes)."""
    priority: int
    """Metric; the lowest wins among equal destinations."""


@dataclass(frozen=True, slots=True)
class AddrSpec:
    """An address the agent wants on an interface, with the options it is added with."""

    index: int
    interface: IPInterface
    flags: int = 0
    """Subset of MANAGED_FLAGS (IFA_F_NODAD, IFA_F_NOPREFIXROUTE)."""
    valid_lft_s: int | None = None
    """None = forever. A finite lifetime must be refreshed (the diff does it at half)."""
    preferred_lft_s: int | None = None
    """None = forever; 0 marks an IPv6 address deprecated (not picked as a source)."""

    def __post_init__(self) -> None:
        if self.flags & ~MANAGED_FLAGS:
            raise ValueError(
                f"AddrSpec {self.interface}: flags {self.flags:#x} outside the managed set "
                f"{MANAGED_FLAGS:#x} (NODAD|NOPREFIXROUTE)"
            )
        for name in ("valid_lft_s", "preferred_lft_s"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < INFINITY_LIFETIME:
                raise ValueError(f"AddrSpec {self.interface}: {name}={v} outside [0, 2**32-1)")
        if self.valid_lft_s is None and self.preferred_lft_s is not None:
            raise ValueError(
                f"AddrSpec {self.interface}: a finite preferred lifetime needs a finite valid one"
            )
        if (
            self.valid_lft_s is not None
            and self.preferred_lft_s is not None
            and self.preferred_lft_s > self.valid_lft_s
        ):
            raise ValueError(
                f"AddrSpec {self.interface}: preferred_lft_s={self.preferred_lft_s} exceeds "
                f"valid_lft_s={self.valid_lft_s}"
            )

    @property
    def key(self) -> tuple[int, IPAddress]:
        """Identity on the kernel side: one address per interface (any prefix length)."""
        return (self.index, self.interface.ip)


class AddressKind(enum.Enum):
    """Where an address goes, which decides the options it is added with."""

    LOCAL = "local"
    """On a NIC inside the address's subnet, on the one elected node."""
    VIRTUAL = "virtual"
    """On the virtual interface, for routing software to advertise."""


@dataclass(frozen=True, slots=True, order=True)
class LocalSubnet:
    """A subnet reachable on a selected interface: local addresses in it go there."""

    ifname: str
    index: int
    network: IPNetwork

    @property
    def family(self) -> int:
        return self.network.version

    def __repr__(self) -> str:
        return f"LocalSubnet({self.network} on {self.ifname}#{self.index})"


def find_local_subnet(address: IPAddress, subnets: Iterable[LocalSubnet]) -> LocalSubnet | None:
    """The first subnet containing ``address`` (same family), or None: then it is virtual."""
    for sub in subnets:
        if sub.network.version == address.version and address in sub.network:
            return sub
    return None
