"""Address, CIDR, pool-range and aggregation syntax, as ServiceGroups spell them.

A pool is a CIDR (``192.168.1.0/24``; network and broadcast included, host bits ignored like
Go's ``net.ParseCIDR``) or an inclusive ``first-last`` range; a bare address is refused
(write ``/32`` or ``a-a``), as in PureLB. Ranges are kept as integers so containment and
overlap tests are arithmetic, never walks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from purelb.model._errors import InvalidField, Reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: address family -> number of bits (the longest prefix)
FAMILY_BITS: dict[int, int] = {4: 32, 6: 128}
#: Kubernetes ``spec.ipFamilies`` spelling -> our family number
FAMILY_NAMES: dict[str, int] = {"IPv4": 4, "IPv6": 6}


def family_name(family: int) -> str:
    """4 -> ``IPv4``; 6 -> ``IPv6``."""
    return f"IPv{family}"


def address_from_int(value: int, family: int) -> IPAddress:
    """The address ``value`` of ``family`` (``ip_address(5)`` alone would guess IPv4)."""
    return ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value)


def parse_address(text: str, path: str) -> IPAddress:
    """One IPv4 or IPv6 address (no prefix, no zone)."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidField(
            Reason.INVALID_ADDRESS, "is not an IPv4 or IPv6 address", path=path, value=text
        ) from None


def parse_cidr(text: str, path: str) -> IPNetwork:
    """``address/prefix``; host bits are ignored (``10.0.0.7/24`` is ``10.0.0.0/24``)."""
    stripped = text.strip()
    if "/" not in stripped:
        raise InvalidField(
            Reason.INVALID_CIDR, "is not a CIDR (address/prefix)", path=path, value=text
        )
    try:
        return ipaddress.ip_network(stripped, strict=False)
    except ValueError:
        raise InvalidField(
            Reason.INVALID_CIDR, "is not a CIDR (address/prefix)", path=path, value=text
        ) from None


@dataclass(frozen=True, slots=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers."""

    first: int
    last: int
    family: int
    text: str
    """The spelling the user wrote, for messages and ``status.addresses``."""

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, address: IPAddress) -> bool:
        return address.version == self.family and self.first <= int(address) <= self.last

    def overlaps(self, other: AddressRange) -> bool:
        """Symmetric: true when any address lies in both (PureLB only tested endpoints)."""
        return (
            self.family == other.family
            and self.first <= other.last
            and other.first <= self.last
        )

    def first_address(self) -> IPAddress:
        return address_from_int(self.first, self.family)

    def last_address(self) -> IPAddress:
        return address_from_int(self.last, self.family)

    def __repr__(self) -> str:
        return f"AddressRange({self.text!r})"


def parse_range(text: str, path: str) -> AddressRange:
    """A pool: CIDR or ``first-last`` (whitespace around parts is trimmed)."""
    if not isinstance(text, str):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be a string, not {type(text).__name__}", path=path,
            value=text,
        )
    stripped = text.strip()
    if "/" in stripped:
        net = parse_cidr(stripped, path)
        return AddressRange(
            int(net.network_address), int(net.broadcast_address), net.version, stripped
        )
    parts = stripped.split("-")
    if len(parts) != 2:
        raise InvalidField(
            Reason.INVALID_RANGE,
            "is neither a CIDR nor a first-last range (a single address needs /32, /128 or a-a)",
            path=path,
            value=text,
        )
    try:
        first = ipaddress.ip_address(parts[0].strip())
        last = ipaddress.ip_address(parts[1].strip())
    except ValueError:
        raise InvalidField(
            Reason.INVALID_RANGE, "has a part that is not an IP address", path=path, value=text
        ) from None
    if first.version != last.version:
        raise InvalidField(
            Reason.INVALID_RANGE, "mixes IPv4 and IPv6 ends", path=path, value=text
        )
    if int(first) > int(last):
        raise InvalidField(
            Reason.INVALID_RANGE, "starts after it ends", path=path, value=text
        )
    return AddressRange(int(first), int(last), first.version, f"{first}-{last}")


def parse_aggregation(text: object, path: str, *, family: int, floor: int) -> int | None:
    """``default`` -> ``None`` (use the subnet's prefix); ``/N`` -> N.

    N must fit the family (0..32 or 0..128) and be at least ``floor`` (the subnet's prefix
    length): a shorter aggregate would announce addresses outside the subnet we own.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be a string, not {type(text).__name__}", path=path,
            value=text,
        )
    stripped = text.strip()
    if stripped in ("", "default"):
        return None
    bits = FAMILY_BITS[family]
    digits = stripped[1:]
    if not stripped.startswith("/") or not digits.isdigit() or not digits.isascii():
        raise InvalidField(
            Reason.INVALID_AGGREGATION,
            "must be 'default' or '/N' (the slash is required)",
            path=path,
            value=text,
        )
    length = int(digits)
    if length > bits:
        raise InvalidField(
            Reason.INVALID_AGGREGATION,
            f"/{length} is longer than an {family_name(family)} address (max /{bits})",
            path=path,
            value=text,
        )
    if length < floor:
        raise InvalidField(
            Reason.AGGREGATION_TOO_SHORT,
            f"/{length} is shorter than the subnet prefix /{floor}",
            path=path,
            value=text,
        )
    return length
