"""Address, CIDR, pool-range and aggregation syntax, as ServiceGroups spell them.

Pool syntax itself (CIDR or ``first-last``) belongs to :mod:`purelb.ipam.pool`; this module
only adds the field path to its errors, plus the syntax the pool does not know (subnets,
aggregation, single addresses).
"""

from __future__ import annotations

import ipaddress

from purelb.ipam import pool
from purelb.ipam.pool import AddressRange
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
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidField(
            Reason.INVALID_ADDRESS, "is not an IPv4 or IPv6 address", path=path, value=text
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise InvalidField(
            Reason.INVALID_ADDRESS, "has a %zone; a load balancer address has none", path=path,
            value=text,
        )
    return address


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


def parse_range(text: object, path: str) -> AddressRange:
    """A pool: CIDR or ``first-last`` -- :func:`purelb.ipam.pool.parse_range` with a path."""
    if not isinstance(text, str):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be a string, not {type(text).__name__}", path=path,
            value=text,
        )
    try:
        return pool.parse_range(text)
    except pool.PoolError as exc:
        reason = Reason.INVALID_CIDR if "/" in text else Reason.INVALID_RANGE
        raise InvalidField(reason, str(exc), path=path, value=text) from None


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
