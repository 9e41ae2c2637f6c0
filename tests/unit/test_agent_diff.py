"""The address diff: ownership by IFA_PROTO, refresh rules, determinism."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from purelb.agent.diff import diff_addresses, needs_refresh
from purelb.agent.records import (
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    IFA_F_PERMANENT,
    AddressInfo,
    AddrSpec,
)

OURS = 0x7A


def have(index: int, cidr: str, *, proto: int = OURS, flags: int = IFA_F_PERMANENT,
         valid: int | None = None, preferred: int | None = None) -> AddressInfo:  # fmt: skip
    return AddressInfo(
        index=index,
        interface=ipaddress.ip_interface(cidr),
        flags=flags,
        proto=proto,
        valid_lft_s=valid,
        preferred_lft_s=preferred,
    )


def want(index: int, cidr: str, **kw: object) -> AddrSpec:
    return AddrSpec(index=index, interface=ipaddress.ip_interface(cidr), **kw)  # type: ignore[arg-type]


@dataclass
class Case:
    desc: str
    wanted: list[AddrSpec]
    present: list[AddressInfo]
    add: list[str]
    delete: list[str]
    foreign: list[str]
    unchanged: int


CASES = [
    Case("nothing wanted, nothing ours: no work", [], [have(1, "10.0.0.1/24", proto=0)],
         [], [], [], 0),
    Case("a missing address is added", [want(2, "192.0.2.1/32")], [], ["192.0.2.1/32"], [], [], 0),
    Case("our unwanted address is deleted", [], [have(2, "192.0.2.1/32")],
         [], ["192.0.2.1/32"], [], 0),
    Case("a hand-added address is never deleted", [], [have(2, "192.0.2.9/32", proto=0)],
         [], [], [], 0),
    Case("an address marked by another program is never deleted", [],
         [have(2, "192.0.2.9/32", proto=0x10)], [], [], [], 0),
    Case("a wanted address someone else configured is left alone and reported",
         [want(2, "192.0.2.9/32")], [have(2, "192.0.2.9/32", proto=0)],
         [], [], ["192.0.2.9/32"], 0),
    Case("the same address on another interface does not count",
         [want(2, "192.0.2.9/32")], [have(3, "192.0.2.9/32")],
         ["192.0.2.9/32"], ["192.0.2.9/32"], [], 0),
    Case("an owned address present as wanted is unchanged",
         [want(2, "192.0.2.1/32")], [have(2, "192.0.2.1/32")], [], [], [], 1),
    Case("an owned address with another prefix is deleted then re-added",
         [want(2, "192.0.2.1/24")], [have(2, "192.0.2.1/32")],
         ["192.0.2.1/24"], ["192.0.2.1/32"], [], 0),
    Case("a missing managed flag forces a replace",
         [want(2, "fd00::1/128", flags=IFA_F_NODAD)], [have(2, "fd00::1/128")],
         ["fd00::1/128"], [], [], 0),
    Case("IPv4 NODAD is not compared (the kernel drops it)",
         [want(2, "192.0.2.1/32", flags=IFA_F_NODAD)], [have(2, "192.0.2.1/32")], [], [], [], 1),
    Case("a lifetime below half is refreshed",
         [want(2, "192.0.2.1/24", valid_lft_s=300)],
         [have(2, "192.0.2.1/24", valid=149, preferred=149)],
         ["192.0.2.1/24"], [], [], 0),
    Case("a lifetime above half is kept",
         [want(2, "192.0.2.1/24", valid_lft_s=300)],
         [have(2, "192.0.2.1/24", valid=151, preferred=151)],
         [], [], [], 1),
    Case("a finite address made permanent is replaced",
         [want(2, "192.0.2.1/24")], [have(2, "192.0.2.1/24", valid=200, preferred=200)],
         ["192.0.2.1/24"], [], [], 0),
    Case("a deprecated IPv6 address stays deprecated",
         [want(2, "fd00::1/64", valid_lft_s=300, preferred_lft_s=0)],
         [have(2, "fd00::1/64", valid=290, preferred=0)], [], [], [], 1),
    Case("IPv6 made preferred again is replaced",
         [want(2, "fd00::1/64", valid_lft_s=300, preferred_lft_s=0)],
         [have(2, "fd00::1/64", valid=290, preferred=290)], ["fd00::1/64"], [], [], 0),
    Case("foreign /24 and our /32 of one address: only ours is managed",
         [], [have(2, "192.0.2.1/24", proto=0), have(2, "192.0.2.1/32")],
         [], ["192.0.2.1/32"], [], 0),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_diff_addresses_follows_the_ownership_table(case: Case) -> None:
    wanted = tuple(case.wanted)
    present = tuple(case.present)
    d = diff_addresses(wanted, present, proto=OURS)
    assert [str(s.interface) for s in d.add] == case.add
    assert [str(a.interface) for a in d.delete] == case.delete
    assert [str(s.interface) for s in d.foreign] == case.foreign
    assert d.unchanged == case.unchanged
    assert all(a.proto == OURS for a in d.delete), "only our own addresses are ever deleted"
    assert (tuple(case.wanted), tuple(case.present)) == (wanted, present), "inputs untouched"
    # Determinism: input order does not matter.
    assert diff_addresses(wanted[::-1], present[::-1], proto=OURS) == d


def test_diff_addresses_rejects_an_address_wanted_twice_with_different_prefixes() -> None:
    with pytest.raises(ValueError, match="wanted twice"):
        diff_addresses([want(2, "192.0.2.1/32"), want(2, "192.0.2.1/24")], [], proto=OURS)


def test_diff_is_empty_after_applying_it() -> None:
    """Verify that applying a diff to a simulated kernel leaves nothing to do (idempotence)."""
    wanted = [want(2, f"192.0.2.{i}/32") for i in range(1, 50)] + [
        want(3, "fd00::5/64", flags=IFA_F_NODAD | IFA_F_NOPREFIXROUTE)
    ]
    present = [have(2, "192.0.2.1/32"), have(2, "192.0.2.200/32"), have(2, "10.1.1.1/8", proto=0)]
    d = diff_addresses(wanted, present, proto=OURS)
    kernel = {(a.index, a.interface) : a for a in present}  # fmt: skip
    for a in d.delete:
        del kernel[(a.index, a.interface)]
    for s in d.add:
        kernel[(s.index, s.interface)] = have(
            s.index, str(s.interface), flags=s.flags | IFA_F_PERMANENT
        )
    again = diff_addresses(wanted, kernel.values(), proto=OURS)
    assert again.ops == 0 and again.unchanged == len(wanted)


def test_needs_refresh_is_false_for_a_matching_permanent_address() -> None:
    spec = want(1, "fd00::1/128", flags=IFA_F_NODAD)
    assert not needs_refresh(spec, have(1, "fd00::1/128", flags=IFA_F_PERMANENT | IFA_F_NODAD))
