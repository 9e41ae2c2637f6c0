"""The address book: every held address, who holds it, and the sharing rules.

One record per held address: its group (``None`` once it lies in no pool), its sharing key,
its holders with their (protocol, port) pairs, and which holder serves each pair. A reverse
index maps (group, sharing key, family) to the addresses under that key, so "where does
key K live" and "may S join address A" never search. The book knows nothing of pools: the
allocator takes addresses from sources and records them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from purelb.ipam.decision import Failure, FailureReason
from purelb.model import IPAddress, ServiceKey, ServicePort

Slot = tuple[str | None, str, int]
"""(group, sharing key, family)"""

#: distinct port sets the book shares between Services. Most Services of a cluster
#: serve one of a few sets ({TCP/80}, {TCP/443}...), and a one-port frozenset with its
#: ServicePort costs ~0.3 KB; past this many distinct sets new ones are kept unshared, so
#: a cluster of all-different ports costs no more than before.
MAX_SHARED_PORT_SETS = 4096


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


class Holding:
    """Family -> address one Service holds: the dict operations the allocator uses, over
    two slots. One per Service, so its size counts: ~50 bytes against ~220 for a
    one-entry dict. ``dict(holding)`` gives a plain copy.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self) -> None:
        self._v4: IPAddress | None = None
        self._v6: IPAddress | None = None

    def get(self, family: int, default: IPAddress | None = None) -> IPAddress | None:
        ip = self._v4 if family == 4 else self._v6 if family == 6 else None
        return default if ip is None else ip

    def __getitem__(self, family: int) -> IPAddress:
        ip = self.get(family)
        if ip is None:
            raise KeyError(family)
        return ip

    def __setitem__(self, family: int, ip: IPAddress) -> None:
        if ip.version != family:
            raise ValueError(f"{ip} is not an IPv{family} address (this is a bug)")
        if family == 4:
            self._v4 = ip
        else:
            self._v6 = ip

    def __delitem__(self, family: int) -> None:
        if family == 4 and self._v4 is not None:
            self._v4 = None
        elif family == 6 and self._v6 is not None:
            self._v6 = None
        else:
            raise KeyError(family)

    def __contains__(self, family: object) -> bool:
        return (family == 4 and self._v4 is not None) or (family == 6 and self._v6 is not None)

    def items(self) -> list[tuple[int, IPAddress]]:
        """(family, address) pairs, IPv4 first."""
        out = [] if self._v4 is None else [(4, self._v4)]
        if self._v6 is not None:
            out.append((6, self._v6))
        return out

    def keys(self) -> list[int]:
        return [family for family, _ in self.items()]

    def values(self) -> list[IPAddress]:
        return [ip for _, ip in self.items()]

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def __len__(self) -> int:
        return (self._v4 is not None) + (self._v6 is not None)

    def __bool__(self) -> bool:
        return self._v4 is not None or self._v6 is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Holding | dict):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        return f"Holding({dict(self.items())})"


class HeldAddress:
    """One held address (mutable; owned by the book).

    :attr:`holders` maps each holding Service to its (protocol, port)s. Holders' port
    sets are disjoint (:meth:`AddressBook.check_join`), so "who serves port P" is a
    function of the holders. Most addresses have one holder: it lives in two slots, and
    the holder dict and the port -> holder map (O(1) port checks) exist only while two or
    more Services share the address -- ~0.4 KB less per Service.
    """

    __slots__ = ("_many", "_one", "_one_ports", "_ports", "group", "ip", "key")

    def __init__(self, ip: IPAddress, group: str | None, key: str) -> None:
        self.ip = ip
        self.group = group
        self.key = key
        self._one: ServiceKey | None = None
        self._one_ports: frozenset[ServicePort] = frozenset()
        self._many: dict[ServiceKey, frozenset[ServicePort]] | None = None
        self._ports: dict[ServicePort, ServiceKey] | None = None

    @property
    def holders(self) -> Mapping[ServiceKey, frozenset[ServicePort]]:
        """Holder -> its (protocol, port)s; read-only (change it through the book)."""
        if self._many is not None:
            return self._many
        return {self._one: self._one_ports} if self._one is not None else {}

    def ports_of(self, service: ServiceKey) -> frozenset[ServicePort]:
        """A holder's (protocol, port)s; ``KeyError`` if it holds no part of the address."""
        if self._many is not None:
            return self._many[service]
        if self._one is None or self._one != service:
            raise KeyError(service)
        return self._one_ports

    def others(self, service: ServiceKey) -> list[ServiceKey]:
        if self._many is not None:
            return [h for h in self._many if h != service]
        return [self._one] if self._one is not None and self._one != service else []

    def port_holder(self, port: ServicePort) -> ServiceKey | None:
        """The Service serving ``port`` on this address, if any."""
        if self._ports is not None:
            return self._ports.get(port)
        return self._one if port in self._one_ports else None

    def add_holder(self, service: ServiceKey, ports: frozenset[ServicePort]) -> None:
        if self._many is None and self._one in (None, service):
            self._one, self._one_ports = service, ports
            return
        if self._many is None:  # now shared: a holder dict and the reverse map
            assert self._one is not None
            self._many = {self._one: self._one_ports}
            self._ports = dict.fromkeys(self._one_ports, self._one)
            self._one, self._one_ports = None, frozenset()
        assert self._ports is not None
        self._many[service] = ports
        for port in ports:
            self._ports[port] = service

    def set_ports(self, service: ServiceKey, ports: frozenset[ServicePort]) -> None:
        """A holder's new (protocol, port)s (disjoint from the others': checked)."""
        if self._many is None:
            if self._one != service:
                raise KeyError(service)
            self._one_ports = ports
            return
        assert self._ports is not None
        old = self._many[service]
        self._many[service] = ports
        for port in old - ports:
            if self._ports.get(port) == service:
                del self._ports[port]
        for port in ports:
            self._ports[port] = service

    def remove_holder(self, service: ServiceKey) -> None:
        if self._many is None:
            if self._one != service:
                raise KeyError(service)
            self._one, self._one_ports = None, frozenset()
            return
        assert self._ports is not None
        ports = self._many.pop(service)
        if len(self._many) == 1:  # a sole holder again: back to the slots
            ((self._one, self._one_ports),) = self._many.items()
            self._many = self._ports = None
            return
        for port in ports:
            if self._ports.get(port) == service:
                del self._ports[port]

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
        self._port_sets: dict[frozenset[ServicePort], frozenset[ServicePort]] = {}

    def __len__(self) -> int:
        return len(self._addresses)

    def __getitem__(self, ip: IPAddress) -> HeldAddress:
        return self._addresses[ip]

    def get(self, ip: IPAddress) -> HeldAddress | None:
        return self._addresses.get(ip)

    def in_group(self, group: str | None) -> tuple[IPAddress, ...]:
        """Held addresses of a group (``None``: orphans), sorted."""
        return tuple(sorted(self._by_group.get(group, ()), key=sort_key))

    def port_set(self, ports: Iterable[ServicePort]) -> frozenset[ServicePort]:
        """``frozenset(ports)``, the same object for every Service with equal ports."""
        wanted = frozenset(ports)
        shared = self._port_sets.get(wanted)
        if shared is not None:
            return shared
        if len(self._port_sets) < MAX_SHARED_PORT_SETS:
            self._port_sets[wanted] = wanted
        return wanted

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
            clashes = sorted(
                p for p in ports if address.port_holder(p) not in (None, service)
            )
            if clashes:
                p = clashes[0]
                raise Refusal(
                    FailureReason.PORT_CONFLICT,
                    f"Service {service}: port {p.protocol}/{p.port} on {ip} ({where}, key "
                    f"{sharing_key!r}) is already used by Service {address.port_holder(p)}",
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
        address.add_holder(service, ports)

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
        freed = bool(address.ports_of(service) - ports)
        address.set_ports(service, ports)
        if sharing_key != address.key:
            # legal only for a sole holder: re-key the address and its binding
            freed = freed or bool(address.key)
            self._unbind(address)
            address.key = sharing_key
            self._bind(address)
        return freed

    def detach(self, service: ServiceKey, address: HeldAddress) -> bool:
        """Remove a holder; returns True when nobody holds the address any more (removed)."""
        address.remove_holder(service)
        if address.holders:
            return False
        self._remove(address)
        return True
