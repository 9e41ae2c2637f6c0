"""Address sources: where one ServiceGroup's addresses come from.

The allocator asks a source for "the next address of family F" or "this address", and
gives addresses back; it never looks inside. Two sources exist:

* :class:`LocalSource` -- ``spec.local`` pools, backed by :class:`purelb.ipam.pool.Pool`
  (O(log) allocate-lowest, no walk over ranges).
* :class:`ExternalSource` -- ``spec.netbox``. Talking to NetBox is I/O, which the pure
  allocator may not do. So the source is fed: the daemon reserves addresses in NetBox and
  *offers* them (:meth:`ExternalSource.offer`); a take with nothing on offer raises
  :class:`ExternalNeeded`, which the allocator turns into a ``PENDING_EXTERNAL`` decision
  carrying an :class:`~purelb.ipam.decision.ExternalRequest`. Released addresses come back
  in ``Decision.released`` with ``pool_type == netbox`` for the daemon to return to NetBox.
  A specific address (``purelb.io/addresses``) is requested the same way: the take raises
  :class:`ExternalNeeded` naming it, and the daemon claims it in NetBox if it is free.
"""

from __future__ import annotations

from typing import Protocol

from purelb.errors import AllocationError
from purelb.ipam.pool import Pool
from purelb.model import IPAddress, PoolType, ServiceGroup


class ExternalNeeded(AllocationError):
    """An external source has no address of the family on offer (not a user error)."""

    def __init__(self, group: str, family: int, address: IPAddress | None = None) -> None:
        what = f"address {address}" if address is not None else f"an IPv{family} address"
        super().__init__(
            f"ServiceGroup {group!r} needs {what} from its external IPAM",
            reason="pending_external",
        )
        self.group = group
        self.family = family
        self.address = address
        """A specific address to claim (``purelb.io/addresses``); ``None``: any."""


class AddressSource(Protocol):
    """One group's address supply. Every method is O(log n) or better in pool size."""

    pool_type: PoolType

    def take_lowest(self, family: int, *, balance: bool) -> IPAddress:
        """A free address of ``family``; raises ``AllocationError`` (``exhausted``...)."""
        ...

    def take(self, address: IPAddress) -> None:
        """Mark a specific free address used; raises ``AllocationError``."""
        ...

    def adopt(self, address: IPAddress) -> None:
        """Import an address a previous run handed out; raises ``AllocationError``."""
        ...

    def release(self, address: IPAddress) -> None:
        """The address is no longer used by anyone."""
        ...

    def cancel(self, address: IPAddress) -> None:
        """Undo a take inside a failed transaction (an external address goes back on offer)."""
        ...

    def counts(self, family: int) -> tuple[int | None, int, int | None]:
        """(size, in use, available); ``None`` when unknown."""
        ...


class LocalSource:
    """``spec.local``: a :class:`Pool` over the group's ranges in configured order."""

    pool_type = PoolType.LOCAL

    def __init__(self, group: ServiceGroup) -> None:
        assert group.local is not None, "LocalSource needs a spec.local group (this is a bug)"
        self._spec = group.local
        self.families = group.families
        self.pool = Pool([p.range.text for p in group.local.pools], name=group.name)

    def take_lowest(self, family: int, *, balance: bool) -> IPAddress:
        return self.pool.allocate_lowest(
            family,
            avoid_buggy=self._spec.avoid_buggy_ips,
            balance=balance and self._spec.balance_pools,
        )

    def take(self, address: IPAddress) -> None:
        self.pool.allocate(address)

    adopt = take

    def release(self, address: IPAddress) -> None:
        self.pool.release(address)

    cancel = release

    def counts(self, family: int) -> tuple[int | None, int, int | None]:
        return (
            self.pool.size(family),
            self.pool.in_use(family),
            self.pool.available(family),
        )


class ExternalSource:
    """``spec.netbox``: addresses offered by the daemon, handed out lowest first."""

    pool_type = PoolType.NETBOX

    def __init__(self, group: ServiceGroup) -> None:
        assert group.netbox is not None, "ExternalSource needs a spec.netbox group (this is a bug)"
        self.name = group.name
        self.families = group.families
        self._offered: dict[int, set[IPAddress]] = {4: set(), 6: set()}
        self._held: dict[int, set[IPAddress]] = {4: set(), 6: set()}
        self._claimed: set[IPAddress] = set()
        """Specific addresses claimed in NetBox for ``purelb.io/addresses``: only
        :meth:`take` of that address hands them out, never :meth:`take_lowest`."""

    def offer(self, address: IPAddress, *, specific: bool = False) -> None:
        """The daemon reserved ``address`` in NetBox; it may now be handed out.

        ``specific``: it was claimed because a Service asked for exactly this address.
        """
        if address not in self._held[address.version]:
            if specific:
                self._claimed.add(address)
            else:
                self._offered[address.version].add(address)

    def offered(self, family: int) -> int:
        return len(self._offered[family])

    def drain_offers(self) -> list[IPAddress]:
        """Take back every unused offer (the group is being replaced), lowest first."""
        out = sorted(self._offered[4]) + sorted(self._offered[6])
        out += sorted(self._claimed, key=lambda a: (a.version, int(a)))
        self._offered = {4: set(), 6: set()}
        self._claimed = set()
        return out

    def take_lowest(self, family: int, *, balance: bool) -> IPAddress:
        # offers are few (one per pending Service), so min() over them is cheap
        if not self._offered[family]:
            raise ExternalNeeded(self.name, family)
        address = min(self._offered[family])
        self._offered[family].discard(address)
        self._held[family].add(address)
        return address

    def take(self, address: IPAddress) -> None:
        """A specific address: usable once the daemon claimed it in NetBox."""
        family = address.version
        if address in self._held[family]:
            raise AllocationError(f"{address} is already in use", reason="address_in_use")
        if address in self._claimed or address in self._offered[family]:
            self._claimed.discard(address)
            self._offered[family].discard(address)
            self._held[family].add(address)
            return
        raise ExternalNeeded(self.name, family, address)

    def adopt(self, address: IPAddress) -> None:
        """Import an address that a previous run got from NetBox."""
        self._offered[address.version].discard(address)
        self._held[address.version].add(address)

    def release(self, address: IPAddress) -> None:
        self._held[address.version].discard(address)

    def cancel(self, address: IPAddress) -> None:
        self._held[address.version].discard(address)
        self._offered[address.version].add(address)

    def counts(self, family: int) -> tuple[int | None, int, int | None]:
        return (None, len(self._held[family]), None)


def make_source(group: ServiceGroup) -> LocalSource | ExternalSource:
    return LocalSource(group) if group.local is not None else ExternalSource(group)
