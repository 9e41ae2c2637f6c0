"""Pure diff between the addresses the agent wants and those the kernel has.

Ownership rule: an address is ours when its IFA_PROTO equals the agent's protocol value.
Only ours are ever replaced or deleted. A wanted address that someone else already
configured (same interface, same address, other proto) is left alone and reported as
``foreign``: adding it with REPLACE would silently adopt it, and deleting it later would
take away the operator's address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .records import AddressInfo, AddrSpec, IPAddress, IPInterface, managed_flags


@dataclass(frozen=True, slots=True)
class AddrDiff:
    """What to do to move the kernel to the wanted state. Deletes go first."""

    delete: tuple[AddressInfo, ...]
    """Our addresses that are not wanted (or wanted with another prefix length)."""
    add: tuple[AddrSpec, ...]
    """Wanted addresses that are absent, or ours but with stale options or lifetimes."""
    foreign: tuple[AddrSpec, ...]
    """Wanted addresses already configured by someone else; untouched."""
    unchanged: int
    """Wanted addresses already present and ours with the right options."""

    @property
    def ops(self) -> int:
        return len(self.delete) + len(self.add)


def needs_refresh(spec: AddrSpec, have: AddressInfo) -> bool:
    """True when an owned, present address must be re-sent (options or lifetime stale).

    A finite lifetime is refreshed once less than half of it remains, the same rule as
    PureLB's renewal timer (re-add at half the valid lifetime).
    """
    if have.interface.network.prefixlen != spec.interface.network.prefixlen:
        return True
    mask = managed_flags(spec.interface.version)
    if (have.flags & mask) != (spec.flags & mask):
        return True
    if spec.valid_lft_s is None:
        return have.valid_lft_s is not None or have.preferred_lft_s is not None
    if have.valid_lft_s is None or have.valid_lft_s * 2 < spec.valid_lft_s:
        return True
    want_pref = spec.valid_lft_s if spec.preferred_lft_s is None else spec.preferred_lft_s
    # A preferred lifetime of 0 stays 0; a positive one counts down like the valid one.
    if want_pref == 0:
        return have.preferred_lft_s != 0
    return have.preferred_lft_s is None or have.preferred_lft_s * 2 < want_pref


def diff_addresses(
    wanted: Iterable[AddrSpec], present: Iterable[AddressInfo], *, proto: int
) -> AddrDiff:
    """Compare wanted specs with a full address dump. Pure and deterministic.

    Raises:
        ValueError: two specs name the same address on the same interface.
    """
    want: dict[tuple[int, IPAddress], AddrSpec] = {}
    for spec in wanted:
        if spec.key in want and want[spec.key] != spec:
            raise ValueError(
                f"address {spec.interface.ip} wanted twice on interface {spec.index}: "
                f"{want[spec.key].interface} and {spec.interface}"
            )
        want[spec.key] = spec
    have: dict[tuple[int, IPAddress], list[AddressInfo]] = {}
    for info in present:
        have.setdefault((info.index, info.interface.ip), []).append(info)
    delete: list[AddressInfo] = []
    add: list[AddrSpec] = []
    foreign: list[AddrSpec] = []
    unchanged = 0
    for key, infos in have.items():
        spec = want.get(key)
        for info in infos:
            # Ours and unwanted, or ours with another prefix length: the kernel keys IPv4
            # addresses by (address, prefix), so a replace would leave the old one behind.
            if info.proto == proto and (
                spec is None or info.interface.network.prefixlen != spec.interface.network.prefixlen
            ):
                delete.append(info)
    for key, spec in want.items():
        infos = have.get(key, [])
        mine = [
            i
            for i in infos
            if i.proto == proto
            and i.interface.network.prefixlen == spec.interface.network.prefixlen
        ]
        if mine:
            if needs_refresh(spec, mine[0]):
                add.append(spec)
            else:
                unchanged += 1
        elif any(i.proto != proto for i in infos):
            foreign.append(spec)
        else:
            add.append(spec)
    return AddrDiff(
        delete=tuple(sorted(delete, key=lambda a: _sort_key(a.index, a.interface))),
        add=tuple(sorted(add, key=lambda s: _sort_key(s.index, s.interface))),
        foreign=tuple(sorted(foreign, key=lambda s: _sort_key(s.index, s.interface))),
        unchanged=unchanged,
    )


def _sort_key(index: int, iface: IPInterface) -> tuple[int, int, bytes, int]:
    return (index, iface.version, iface.ip.packed, iface.network.prefixlen)
