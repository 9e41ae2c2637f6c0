"""The address book's compact records: holdings, holders and shared port sets."""

from __future__ import annotations

import ipaddress

import pytest

from purelb.ipam._book import MAX_SHARED_PORT_SETS, AddressBook, HeldAddress, Holding, Refusal
from purelb.ipam.decision import FailureReason
from purelb.model import ServiceKey, ServicePort

V4 = ipaddress.ip_address("10.0.0.1")
V6 = ipaddress.ip_address("fd00::1")
A, B, C = ServiceKey("ns/a"), ServiceKey("ns/b"), ServiceKey("ns/c")
HTTP, DNS, SSH = ServicePort("TCP", 80), ServicePort("UDP", 53), ServicePort("TCP", 22)


def test_a_holding_behaves_as_a_family_dict() -> None:
    held = Holding()
    assert not held and dict(held) == {} and held.get(4) is None
    held[6] = V6
    held[4] = V4
    assert list(held) == [4, 6] and len(held) == 2 and dict(held) == {4: V4, 6: V6}
    assert sorted(held.items()) == [(4, V4), (6, V6)]
    del held[4]
    assert dict(held) == {6: V6}
    with pytest.raises(KeyError):
        del held[4]
    with pytest.raises(KeyError):
        held[5]
    with pytest.raises(ValueError, match="not an IPv4"):
        held[4] = V6


def test_sharing_builds_the_port_map_and_a_sole_holder_drops_it() -> None:
    book = AddressBook()
    address = book.add(V4, "default", "k")
    book.attach(A, address, frozenset({HTTP}))
    assert dict(address.holders) == {A: frozenset({HTTP})} and address.others(A) == []
    assert address.port_holder(HTTP) == A and address.port_holder(DNS) is None

    book.check_join(B, address, "k", frozenset({DNS}))
    book.attach(B, address, frozenset({DNS}))
    book.attach(C, address, frozenset({SSH}))
    assert address.others(A) == [B, C]
    assert [address.port_holder(p) for p in (HTTP, DNS, SSH)] == [A, B, C]
    with pytest.raises(Refusal) as refused:
        book.check_join(ServiceKey("ns/d"), address, "k", frozenset({DNS}))
    assert refused.value.failure.reason is FailureReason.PORT_CONFLICT
    assert "already used by Service ns/b" in refused.value.failure.message

    assert book.update_holder(B, address, "k", frozenset({ServicePort("UDP", 54)})) is True
    assert address.port_holder(DNS) is None
    assert book.detach(C, address) is False
    assert book.detach(A, address) is False
    assert dict(address.holders) == {B: frozenset({ServicePort("UDP", 54)})}
    assert address.port_holder(HTTP) is None and address.others(B) == []
    assert book.detach(B, address) is True and book.get(V4) is None


def test_a_sole_holder_may_change_ports_and_unknown_holders_are_refused() -> None:
    address = HeldAddress(V4, "default", "")
    address.add_holder(A, frozenset({HTTP}))
    address.set_ports(A, frozenset({SSH}))
    assert address.port_holder(SSH) == A and address.port_holder(HTTP) is None
    with pytest.raises(KeyError):
        address.set_ports(B, frozenset())
    with pytest.raises(KeyError):
        address.remove_holder(B)


def test_equal_port_sets_are_one_object_up_to_the_cap() -> None:
    book = AddressBook()
    first = book.port_set([HTTP, DNS])
    assert book.port_set((DNS, HTTP)) is first and first == frozenset({HTTP, DNS})
    for port in range(1, MAX_SHARED_PORT_SETS + 2):
        book.port_set([ServicePort("TCP", port)])
    late = [ServicePort("UDP", 9)]
    assert book.port_set(late) == frozenset(late)
    assert book.port_set(late) is not book.port_set(late)  # past the cap: not kept
