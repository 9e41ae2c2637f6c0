"""The address book: every held address, who holds it, and the sharing rules.

One record per held address: its group (``None`` once it lies in no pool), its sharing key,
its holders with their (protocol, port) pairs, and which holder serves each pair. A reverse
index maps (group, sharing key, family) to the addresses under that key, so "where does
key K live" and "may S join address A" never search. The book knows nothing of pools: the
allocator takes addresses from sources and records them here.
"""

from __future__ import annotations

from purelb.ipam.decision import Failure, FailureReason
from purelb.model import IPAddress, ServiceKey, ServicePort

Slot = tuple[str | None, str, int]
"""(group, sharing key, family)"""


class Refusal(Exception):
    """An allocation step failed for ``failure``; the reconcile rolls back what it took."""

    def __init__(self, reason: FailureReason, message: str, group: str | None = None) -> None:
        super().__init__(message)
        self.failure = Failure(reason, message)
        self.group = group
        """The group the Service waits on (requeued when something frees there)."""


def sort_key(ip: IPAddress) -> tuple[int, int]:
    """Total order over both families (IPv4 first), for deterministic choices."""
    return (ip.version, int(ip))


class HeldAddress:
    """One held address (mutable; owned by the book)."""

    __slots__ = ("group", "holders", "ip", "key", "ports")

    def __init__(self, ip: IPAddress, group: str | None, key: str) -> None:
        self.ip = ip
        self.group = group
        self.key = key
        self.holders: dict[ServiceKey, frozenset[ServicePort]] = {}
        self.ports: dict[ServicePort, ServiceKey] = {}

    def others(self, service: ServiceKey) -> list[ServiceKey]:
        return [h for h in self.holders if h != service]

    def __repr__(self) -> str:
        holders = sorted(self.holders)
        return f"HeldAddress({self.ip}, group={self.group!r}, key={self.key!r}, {holders})"


class AddressBook:
    """Held addresses, per-group membership and the sharing-key index."""

    def __init__(self) -> None:
        self._addresses: dict[IPAddress, HeldAddress] = {}
        self._by_group: dict[str | None, set[IPAddress]] = {}
        # One address per slot in steady state; a config change may merge several into one
        # group (they are never moved), so the *bound* address is the lowest: a pure
        # function of the address set, hence identical after a restart and import.
        self._bindings: dict[Slot, set[IPAddress]] = {}

    def __len__(self) -> int:
        return len(self._addresses)

    def __getitem__(self, ip: IPAddress) -> HeldAddress:
        return self._addresses[ip]

    def get(self, ip: IPAddress) -> HeldAddress | None:
        return self._addresses.get(ip)

    def in_group(self, group: str | None) -> tuple[IPAddress, ...]:
        """Held addresses of a group (``None``: orphans), sorted."""
        return tuple(sorted(self._by_group.get(group, ()), key=sort_key))

    # ------------------------------------------------------------------ membership

    def add(self, ip: IPAddress, group: str | None, key: str) -> HeldAddress:
        """Record a newly taken address (no holders yet)."""
        address = HeldAddress(ip, group, key)
        self._addresses[ip] = address
        self._by_group.setdefault(group, set()).add(ip)
        self._bind(address)
        return address

    def _remove(self, address: HeldAddress) -> None:
        del self._addresses[address.ip]
        members = self._by_group[address.group]
        members.discard(address.ip)
        if not members:
            del self._by_group[address.group]
        self._unbind(address)

    def regroup(self, address: HeldAddress, group: str | None) -> None:
        """Move an address to another group after a config change (never to another owner)."""
        self._unbind(address)
        members = self._by_group[address.group]
        members.discard(address.ip)
        if not members:
            del self._by_group[address.group]
        address.group = group
        self._by_group.setdefault(group, set()).add(address.ip)
        self._bind(address)

    def _bind(self, address: HeldAddress) -> None:
        if address.key:
            slot = (address.group, address.key, address.ip.version)
            self._bindings.setdefault(slot, set()).add(address.ip)

    def _unbind(self, address: HeldAddress) -> None:
        if address.key:
            slot = (address.group, address.key, address.ip.version)
            members = self._bindings.get(slot)
            if members is not None:
                members.discard(address.ip)
                if not members:
                    del self._bindings[slot]

    def bound(self, group: str | None, sharing_key: str, family: int) -> IPAddress | None:
        """The address a key is bound to in a group (the lowest if a merge left several)."""
        members = self._bindings.get((group, sharing_key, family))
        return min(members, key=sort_key) if members else None

    # ------------------------------------------------------------------ sharing rules

    def check_join(
        self,
        service: ServiceKey,
        address: HeldAddress,
        sharing_key: str,
        ports: frozenset[ServicePort],
        *,
        one_per_key: bool = True,
    ) -> None:
        """Raise :class:`Refusal` unless ``service`` may hold ``address`` beside the others.

        Rules: a sole holder may do anything (even change its key); otherwise both keys
        must be equal and non-empty and no (protocol, port) of ``service`` may be served by
        another holder. ``one_per_key`` also refuses when the key already lives on another
        address of the family in the group (off for import, which reproduces what was
        written).
        """
        ip, group = address.ip, address.group
        where = f"ServiceGroup {group!r}" if group is not None else "no ServiceGroup"
        others = address.others(service)
        if others:
            holder = min(others)
            if not sharing_key or not address.key:
                raise Refusal(
                    FailureReason.ADDRESS_IN_USE,
                    f"Service {service}: {ip} ({where}) is held by Service {holder}"
                    + (
                        " without a sharing key"
                        if not address.key
                        else f" (sharing key {address.key!r}; this Service has none)"
                    ),
                    group,
                )
            if sharing_key != address.key:
                raise Refusal(
                    FailureReason.SHARING_KEY_CONFLICT,
                    f"Service {service}: {ip} ({where}) is shared under key "
                    f"{address.key!r}, not {sharing_key!r} (held by {holder})",
                    group,
                )
            clashes = sorted(p for p in ports if address.ports.get(p, service) != service)
            if clashes:
                p = clashes[0]
                raise Refusal(
                    FailureReason.PORT_CONFLICT,
                    f"Service {service}: port {p.protocol}/{p.port} on {ip} ({where}, key "
                    f"{sharing_key!r}) is already used by Service {address.ports[p]}",
                    group,
                )
        if sharing_key and one_per_key:
            members = self._bindings.get((group, sharing_key, ip.version), ())
            elsewhere = [b for b in members if b != ip and self._addresses[b].others(service)]
            if elsewhere and ip not in members:
                raise Refusal(
                    FailureReason.SHARING_KEY_CONFLICT,
                    f"Service {service}: sharing key {sharing_key!r} is bound to "
                    f"{min(elsewhere, key=sort_key)} in ServiceGroup {group!r}, not {ip}",
                    group,
                )

    def attach(
        self, service: ServiceKey, address: HeldAddress, ports: frozenset[ServicePort]
    ) -> None:
        """Add a holder (``check_join`` passed)."""
        address.holders[service] = ports
        for port in ports:
            address.ports[port] = service

    def update_holder(
        self,
        service: ServiceKey,
        address: HeldAddress,
        sharing_key: str,
        ports: frozenset[ServicePort],
    ) -> bool:
        """Apply a kept holder's new ports / key (``check_join`` passed).

        Returns whether something became free (a port, or the old key's binding): then
        Services waiting on this group may now succeed.
        """
        old_ports = address.holders[service]
        freed = bool(old_ports - ports)
        for port in old_ports - ports:
            if address.ports.get(port) == service:
                del address.ports[port]
        for port in ports:
            address.ports[port] = service
        address.holders[service] = ports
        if sharing_key != address.key:
            # legal only for a sole holder: re-key the address and its binding
            freed = freed or bool(address.key)
            self._unbind(address)
            address.key = sharing_key
            self._bind(address)
        return freed

    def detach(self, service: ServiceKey, address: HeldAddress) -> bool:
        """Remove a holder; returns True when nobody holds the address any more (removed)."""
        ports = address.holders.pop(service)
        for port in ports:
            if address.ports.get(port) == service:
                del address.ports[port]
        if address.holders:
            return False
        self._remove(address)
        return True
