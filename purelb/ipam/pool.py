"""Address pools: the ranges of a ServiceGroup mapped onto hot-path address spaces.

A ``Pool`` holds one or more ranges (CIDR ``192.168.1.0/24`` or ``from-to``
``10.0.0.5-10.0.0.9``, IPv4 or IPv6, as written in a ServiceGroup), each backed by one
``purelb.fast.AddressSpace`` of exactly its size. Every operation maps an address to
(range, offset) by bisection and lets the address space do the work, so nothing here loops
over addresses: a full /16 or an IPv6 /64 costs the same as a /29.

Semantics follow PureLB's local pools: CIDR ranges include the network and broadcast
addresses (a /29 has 8), a CIDR written with host bits set means its network (as Go's
``net.ParseCIDR``), and the lowest free address is taken across a family's ranges in the
order they were written. Ranges of one pool must not overlap (checked symmetrically, unlike
PureLB's one-sided endpoint test).

Pure logic: no I/O, no clock, no globals.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import final

from purelb import fast
from purelb.errors import AllocationError, ConfigError

__all__ = [
    "AddressInUse",
    "AddressRange",
    "IPAddress",
    "NoFamilyRange",
    "NotAllocated",
    "NotInPool",
    "Pool",
    "PoolError",
    "PoolExhausted",
    "parse_address",
    "parse_range",
    "range_within",
    "require_within",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The last octet of IPv4 addresses some old clients mishandle (``avoid_buggy``): .0 and .255.
_BUGGY_LOW = 0
_BUGGY_HIGH = 255
_FAMILIES = (4, 6)


class PoolError(ConfigError):
    """A range, address or pool definition is invalid; the message names value and reason."""


class PoolExhausted(AllocationError):
    """No free address of the requested family is left in the pool."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="exhausted")


class NoFamilyRange(PoolExhausted):
    """The pool has no range of the requested family at all (so it can never allocate)."""


class AddressInUse(AllocationError):
    """The requested address is already allocated."""

    def __init__(self, message: str, *, address: IPAddress) -> None:
        super().__init__(message, reason="address_in_use")
        self.address = address


class NotInPool(AllocationError):
    """The address lies in none of the pool's ranges."""

    def __init__(self, message: str, *, address: IPAddress) -> None:
        super().__init__(message, reason="not_in_pool")
        self.address = address


class NotAllocated(fast.NotAllocatedError):
    """Releasing an address of the pool that is not allocated."""

    def __init__(self, message: str, *, address: IPAddress, offset: int) -> None:
        super().__init__(message, offset=offset)
        self.address = address


@dataclass(frozen=True, slots=True)
class AddressRange:
    """An inclusive range ``first..last`` of one family, with the text it was parsed from."""

    first: IPAddress
    last: IPAddress
    text: str = field(compare=False)

    @property
    def family(self) -> int:
        return self.first.version

    @property
    def size(self) -> int:
        """Number of addresses, exact (an IPv6 /0 is 2**128)."""
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        return (
            isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and address.version == self.family
            and self.first <= address <= self.last
        )

    def overlaps(self, other: AddressRange) -> bool:
        return (
            self.family == other.family and self.first <= other.last and other.first <= self.last
        )

    def within(self, network: IPNetwork) -> bool:
        """Whether the whole range lies inside ``network``."""
        return (
            network.version == self.family
            and network.network_address <= self.first
            and self.last <= network.broadcast_address
        )

    def __str__(self) -> str:
        return self.text


def parse_address(value: str | IPAddress) -> IPAddress:
    """An IPv4/IPv6 address from text or an address object; PoolError names bad input."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = value
    elif isinstance(value, str):
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise PoolError(f"{value!r} is not an IP address", value=value) from None
    else:
        raise TypeError(f"an address must be str or ipaddress, not {type(value).__name__}")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise PoolError(f"{value!r}: a scoped IPv6 address (%zone) cannot be pooled", value=value)
    return address


def parse_range(text: str) -> AddressRange:
    """Parse ``a.b.c.d/n``, ``x::/n`` or ``from-to`` (inclusive) as written in a ServiceGroup.

    Raises PoolError naming the text and the reason: not an address, reversed range, mixed
    families, a single address without ``/32``/``/128`` or ``a-a``.
    """
    if not isinstance(text, str):
        raise TypeError(f"a range must be str, not {type(text).__name__}")
    cleaned = text.strip()
    if "/" in cleaned:
        try:
            network = ipaddress.ip_network(cleaned, strict=False)
        except ValueError as exc:
            raise PoolError(f"range {text!r} is not a valid CIDR: {exc}", value=text) from None
        return AddressRange(network.network_address, network.broadcast_address, cleaned)
    if "-" in cleaned:
        low_text, _, high_text = cleaned.partition("-")
        first = _range_end(low_text, text)
        last = _range_end(high_text, text)
        if first.version != last.version:
            raise PoolError(
                f"range {text!r} mixes IPv{first.version} and IPv{last.version} addresses",
                value=text,
            )
        if first > last:
            raise PoolError(f"range {text!r} is reversed: {first} is after {last}", value=text)
        return AddressRange(first, last, f"{first}-{last}")
    raise PoolError(
        f"range {text!r} is neither a CIDR (a.b.c.d/n) nor a from-to range; "
        "write a single address as a.b.c.d/32 or a-a",
        value=text,
    )


def _range_end(part: str, text: str) -> IPAddress:
    try:
        return parse_address(part)
    except PoolError:
        message = f"range {text!r}: {part.strip()!r} is not an IP address"
        raise PoolError(message, value=text) from None


def range_within(range_text: str | AddressRange, subnet_cidr: str) -> bool:
    """Whether a range lies completely inside a subnet (false for different families)."""
    parsed = parse_range(range_text) if isinstance(range_text, str) else range_text
    try:
        subnet = ipaddress.ip_network(subnet_cidr.strip(), strict=False)
    except ValueError as exc:
        message = f"subnet {subnet_cidr!r} is not a valid CIDR: {exc}"
        raise PoolError(message, value=subnet_cidr) from None
    return parsed.within(subnet)


def require_within(range_text: str | AddressRange, subnet_cidr: str) -> AddressRange:
    """The parsed range, or PoolError naming range and subnet when it is not inside."""
    parsed = parse_range(range_text) if isinstance(range_text, str) else range_text
    if not range_within(parsed, subnet_cidr):
        raise PoolError(
            f"range {parsed.text!r} is outside its subnet {subnet_cidr.strip()!r}",
            value=parsed.text,
        )
    return parsed


@final
class Pool:
    """Free/allocated state of the addresses of one or more non-overlapping ranges."""

    __slots__ = ("_by_family", "_firsts", "_name", "_ranges", "_spaces")

    def __init__(self, ranges: Iterable[str | AddressRange], *, name: str = "") -> None:
        if isinstance(ranges, str):
            raise TypeError(f"Pool takes a list of ranges, not one string: [{ranges!r}]")
        parsed = tuple(parse_range(r) if isinstance(r, str) else r for r in ranges)
        if not parsed:
            raise PoolError(f"pool {name!r} has no range", value=[])
        _check_no_overlap(parsed, name)
        self._name = name
        self._ranges = parsed
        self._spaces = tuple(fast.AddressSpace(r.size) for r in parsed)
        # Per family: range indexes in the written order, and sorted (first, index) for bisect.
        self._by_family: dict[int, tuple[int, ...]] = {
            fam: tuple(i for i, r in enumerate(parsed) if r.family == fam) for fam in _FAMILIES
        }
        self._firsts: dict[int, list[tuple[int, int]]] = {
            fam: sorted((int(parsed[i].first), i) for i in self._by_family[fam])
            for fam in _FAMILIES
        }

    def __repr__(self) -> str:
        texts = [r.text for r in self._ranges]
        return f"Pool({texts!r}, name={self._name!r}, in_use={self.in_use()})"

    # -- shape ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def ranges(self) -> tuple[AddressRange, ...]:
        """The ranges in the order given."""
        return self._ranges

    @property
    def families(self) -> frozenset[int]:
        return frozenset(fam for fam in _FAMILIES if self._by_family[fam])

    def size(self, family: int | None = None) -> int:
        """Exact number of addresses (of one family, or all)."""
        return sum(self._ranges[i].size for i in self._indexes(family))

    def in_use(self, family: int | None = None) -> int:
        return sum(self._spaces[i].count for i in self._indexes(family))

    def available(self, family: int | None = None) -> int:
        return self.size(family) - self.in_use(family)

    def range_in_use(self, index: int) -> int:
        """Allocated addresses in ``ranges[index]``."""
        return self._spaces[index].count

    def _indexes(self, family: int | None) -> tuple[int, ...]:
        if family is None:
            return tuple(range(len(self._ranges)))
        if family not in _FAMILIES:
            raise ValueError(f"address family must be 4 or 6, not {family!r}")
        return self._by_family[family]

    # -- lookups -------------------------------------------------------------------------

    def _locate(self, address: IPAddress) -> tuple[int, int] | None:
        """(range index, offset) of an address, or None when no range holds it."""
        value = int(address)
        firsts = self._firsts[address.version]
        pos = bisect.bisect_right(firsts, (value, len(self._ranges))) - 1
        if pos < 0:
            return None
        first, index = firsts[pos]
        offset = value - first
        if offset >= self._ranges[index].size:
            return None
        return index, offset

    def contains(self, address: str | IPAddress) -> bool:
        return self._locate(parse_address(address)) is not None

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return self.contains(address)

    def range_of(self, address: str | IPAddress) -> AddressRange | None:
        """The range holding ``address``, or None."""
        where = self._locate(parse_address(address))
        return None if where is None else self._ranges[where[0]]

    def is_allocated(self, address: str | IPAddress) -> bool:
        where = self._locate(parse_address(address))
        return where is not None and self._spaces[where[0]].is_allocated(where[1])

    def allocated(self, family: int | None = None) -> Iterator[IPAddress]:
        """Allocated addresses: ascending within each range, ranges in the order given."""
        for index in self._indexes(family):
            first = self._ranges[index].first
            for offset in self._spaces[index].iter_allocated():
                yield first + offset

    # -- changes -------------------------------------------------------------------------

    def allocate_lowest(
        self, family: int, *, avoid_buggy: bool = False, balance: bool = False
    ) -> IPAddress:
        """Allocate the lowest free address of ``family``.

        Ranges are tried in the order written (first fit across ranges), or with
        ``balance`` in ascending number of addresses in use (ties: written order), as
        PureLB's ``balancePools``. ``avoid_buggy`` skips IPv4 addresses ending in .0 or
        .255 by jumping ``lowest_free(start)`` past them: at most two jumps per /24 crossed.

        Raises:
            PoolExhausted: nothing free (NoFamilyRange if the pool has no such family).
        """
        indexes = self._indexes(family)
        if not indexes:
            raise NoFamilyRange(f"pool {self._name!r} has no IPv{family} range")
        if balance:
            indexes = tuple(sorted(indexes, key=lambda i: self._spaces[i].count))
        skip_buggy = avoid_buggy and family == 4
        for index in indexes:
            space = self._spaces[index]
            if not skip_buggy:
                if space.count < space.capacity:
                    return self._ranges[index].first + space.allocate_lowest()  # cached, O(1)
                continue
            offset = self._lowest_not_buggy(index)
            if offset is not None:
                space.allocate(offset)
                return self._ranges[index].first + offset
        detail = " (avoiding .0/.255)" if skip_buggy else ""
        raise PoolExhausted(
            f"pool {self._name!r} has no free IPv{family} address{detail}: "
            f"{self.in_use(family)} of {self.size(family)} in use"
        )

    def _lowest_not_buggy(self, index: int) -> int | None:
        """Lowest free offset whose IPv4 address does not end in .0 or .255."""
        space = self._spaces[index]
        base = int(self._ranges[index].first)
        start = 0
        while True:
            offset = space.lowest_free(start)
            if offset is None:
                return offset
            last_octet = (base + offset) & 0xFF
            if last_octet == _BUGGY_LOW:
                start = offset + 1
            elif last_octet == _BUGGY_HIGH:
                start = offset + 2  # .255 and the .0 after it
            else:
                return offset

    def _locate_or_raise(self, parsed: IPAddress) -> tuple[int, int]:
        """(range index, offset) of an address in this pool; NotInPool otherwise."""
        where = self._locate(parsed)
        if where is None:
            raise NotInPool(f"{parsed} is not in pool {self._name!r}", address=parsed)
        return where

    def allocate(self, address: str | IPAddress) -> IPAddress:
        """Allocate exactly ``address``; NotInPool or AddressInUse otherwise."""
        parsed = parse_address(address)
        index, offset = self._locate_or_raise(parsed)
        try:
            self._spaces[index].allocate(offset)
        except fast.OffsetInUse:
            raise AddressInUse(
                f"{parsed} in pool {self._name!r} is already allocated", address=parsed
            ) from None
        return parsed

    def release(self, address: str | IPAddress) -> None:
        """Free ``address``; NotInPool or NotAllocated otherwise."""
        parsed = parse_address(address)
        index, offset = self._locate_or_raise(parsed)
        try:
            self._spaces[index].release(offset)
        except fast.NotAllocatedError:
            raise NotAllocated(
                f"{parsed} in pool {self._name!r} is not allocated, cannot release it",
                address=parsed,
                offset=offset,
            ) from None


def _check_no_overlap(ranges: tuple[AddressRange, ...], name: str) -> None:
    """PoolError naming both ranges when any two overlap (sort + neighbour check)."""
    order = sorted(ranges, key=lambda r: (r.family, int(r.first), int(r.last)))
    for left, right in itertools.pairwise(order):
        if left.overlaps(right):
            raise PoolError(
                f"range {right.text!r} overlaps range {left.text!r} in pool {name!r}",
                value=right.text,
            )
