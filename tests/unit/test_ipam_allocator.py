"""Allocator behaviour outside the scenario table: misuse, placement, stats, NetBox feed."""

from __future__ import annotations

import ipaddress

import pytest

import purelb.model
from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import ExternalRequest, Outcome
from purelb.ipam.index import AddressIndex, placement_for
from purelb.model import PoolType, ServiceKey, parse_service_group
from tests.unit._ipam_helpers import check_invariants, netbox_sg, pool, sg, svc

A = ipaddress.ip_address


def ready(groups: list) -> Allocator:
    alloc = Allocator()
    alloc.set_config(groups)
    alloc.import_services([])
    return alloc


def test_reconcile_before_import_is_refused_as_misuse() -> None:
    alloc = Allocator()
    alloc.set_config([])
    with pytest.raises(RuntimeError, match="startup barrier"):
        alloc.reconcile(svc("a"))


def test_import_before_config_and_twice_are_refused_as_misuse() -> None:
    alloc = Allocator()
    with pytest.raises(RuntimeError, match="set_config"):
        alloc.import_services([])
    alloc.set_config([])
    alloc.import_services([])
    with pytest.raises(RuntimeError, match="once"):
        alloc.import_services([])


def test_placement_default_aggregation_is_the_subnet_prefix() -> None:
    groups = [
        parse_service_group(
            sg("default", v4=[pool("192.168.1.240/29", "192.168.1.0/24")],
               v6=[pool("fd00::/120", "fd00::/64", "/128")])
        ),
        parse_service_group(netbox_sg("nb", v4prefix="10.99.0.0/24", aggregation="/32")),
    ]
    index = AddressIndex(groups)
    local4 = index.placement(A("192.168.1.241"))
    assert local4 is not None
    assert (local4.group, local4.pool_type, str(local4.subnet), local4.prefix_length) == (
        "default", PoolType.LOCAL, "192.168.1.0/24", 24)
    local6 = index.placement(A("fd00::5"))
    assert local6 is not None and local6.prefix_length == 128
    nb = index.placement(A("10.99.0.7"))
    assert nb is not None and (nb.group, nb.pool_type, nb.prefix_length) == (
        "nb", PoolType.NETBOX, 32)
    # inside the subnet but outside every pool: not ours
    assert index.placement(A("192.168.1.1")) is None
    assert placement_for(A("fd00::1:0"), groups) is None


def test_stats_are_exact_for_an_ipv6_slash_64() -> None:
    alloc = ready([sg("default", v6=[pool("fd00::/64", "fd00::/64")])])
    alloc.reconcile(svc("a", families=("IPv6",)))
    (stat,) = alloc.stats()
    assert (stat.family, stat.size, stat.in_use, stat.available) == (6, 2**64, 1, 2**64 - 1)


def test_port_conflict_on_a_huge_pool_answers_without_searching() -> None:
    """A key bound to an address with a port clash fails at once (PureLB walked the /64)."""
    alloc = ready([sg("default", v6=[pool("fd00::/64", "fd00::/64")])])
    alloc.reconcile(svc("a", families=("IPv6",), key="k"))
    decision = alloc.reconcile(svc("b", families=("IPv6",), key="k"))
    assert decision.failure is not None and decision.failure.reason == "port_conflict"
    assert alloc.stats()[0].in_use == 1


def test_netbox_require_dual_stack_waits_for_both_families_and_rolls_back() -> None:
    alloc = ready([netbox_sg("default", v4prefix="10.99.0.0/24", v6prefix="fd99::/64")])
    service = svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack")
    requeue = alloc.offer_external("default", [A("10.99.0.9")])
    assert requeue == ()
    decision = alloc.reconcile(service)
    assert decision.outcome is Outcome.PENDING_EXTERNAL
    assert [(r.group, r.family) for r in decision.external_requests] == [("default", 6)]
    assert not alloc.holdings(service.key)  # the IPv4 offer went back on offer
    assert alloc.offer_external("default", [A("fd99::9")]) == ("ns/a",)
    decision = alloc.reconcile(service)
    assert decision.outcome is Outcome.OK
    assert decision.ingress == ("10.99.0.9", "fd99::9")
    assert decision.annotations_set[purelb.model.annotations.POOL_TYPE] == "netbox"
    released = alloc.release(service.key).released
    assert {(str(r.address), r.pool_type) for r in released} == {
        ("10.99.0.9", PoolType.NETBOX), ("fd99::9", PoolType.NETBOX)}
    check_invariants(alloc)


def test_offer_to_a_local_group_is_a_usage_error() -> None:
    alloc = ready([sg("default", v4=[pool("10.0.0.0/30", "10.0.0.0/24")])])
    with pytest.raises(ValueError, match="not a NetBox group"):
        alloc.offer_external("default", [A("10.0.0.1")])


def test_specific_address_in_a_netbox_prefix_is_claimed_first() -> None:
    alloc = ready([netbox_sg("default", v4prefix="10.99.0.0/24")])
    decision = alloc.reconcile(svc("a", addresses="10.99.0.5"))
    assert decision.outcome is Outcome.PENDING_EXTERNAL and decision.failure is None
    assert decision.external_requests == (ExternalRequest("default", 4, A("10.99.0.5")),)
    # a claimed specific address is never handed to a Service asking for "any"
    assert alloc.offer_specific("default", A("10.99.0.5")) == (ServiceKey("ns/a"),)
    other = alloc.reconcile(svc("b"))
    assert other.outcome is Outcome.PENDING_EXTERNAL
    assert other.external_requests == (ExternalRequest("default", 4),)
    done = alloc.reconcile(svc("a", addresses="10.99.0.5"))
    assert done.outcome is Outcome.OK and done.ingress == ("10.99.0.5",)
    # a second Service naming it without a sharing key is refused, not re-claimed
    clash = alloc.reconcile(svc("c", addresses="10.99.0.5"))
    assert clash.failure is not None and clash.failure.reason == "address_in_use"
    assert {r.pool_type for r in alloc.release(ServiceKey("ns/a")).released} == {PoolType.NETBOX}
    check_invariants(alloc)


def test_same_calls_give_equal_decisions_and_inputs_are_untouched() -> None:
    groups = [sg("default", v4=[pool("10.0.0.0/29", "10.0.0.0/24")],
                 v6=[pool("fd00::/125", "fd00::/64")])]
    services = [
        svc("a", key="k", ports=("TCP/80",)),
        svc("b", key="k", ports=("TCP/443",)),
        svc("c", families=("IPv6", "IPv4"), policy="RequireDualStack"),
        svc("d", addresses="10.0.0.6"),
    ]
    frozen = [repr(s) + repr(dict(s.annotations)) for s in services]
    runs = []
    for _ in range(2):
        alloc = ready(groups)
        runs.append([alloc.reconcile(s) for s in services] + [alloc.release("ns/a")])
    assert runs[0] == runs[1]
    assert frozen == [repr(s) + repr(dict(s.annotations)) for s in services]


def test_model_exports_are_complete_and_unique() -> None:
    exported = purelb.model.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(purelb.model, name), name
    public = {
        name
        for name, value in vars(purelb.model).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("purelb.")
    }
    assert public <= set(exported), public - set(exported)


def test_ingress_is_written_with_ipmode_vip() -> None:
    alloc = ready([sg("default", v4=[pool("10.0.0.0/30", "10.0.0.0/24")])])
    decision = alloc.reconcile(svc("a"))
    assert decision.has_writes
    assert decision.ingress_json() == [{"ip": "10.0.0.0", "ipMode": "VIP"}]


def test_offers_of_a_replaced_netbox_group_are_handed_back() -> None:
    alloc = ready([netbox_sg("default", v4prefix="10.99.0.0/24")])
    alloc.offer_external("default", [A("10.99.0.9"), A("10.99.0.8")])
    alloc.reconcile(svc("a"))  # takes 10.99.0.8
    result = alloc.set_config([netbox_sg("default", v4prefix="10.99.0.0/24", tenant="t2")])
    assert [(str(r.address), r.group, r.pool_type) for r in result.unused_offers] == [
        ("10.99.0.9", "default", PoolType.NETBOX)]
    assert alloc.holdings("ns/a") == {4: A("10.99.0.8")}  # the held one stays (adopted)
    assert alloc.stats()[0].in_use == 1


def test_import_places_a_legacy_netbox_address_by_its_allocated_from() -> None:
    alloc = Allocator()
    alloc.set_config([netbox_sg("legacy")])  # no prefix: addresses cannot be placed by value
    branded = {
        purelb.model.annotations.ALLOCATED_BY: purelb.model.annotations.BRAND,
        purelb.model.annotations.ALLOCATED_FROM: "legacy",
    }
    result = alloc.import_services(
        [svc("a", group="legacy", ingress=("10.50.0.7",), annotations=branded)]
    )
    assert result.orphans == ()
    released = alloc.release(ServiceKey("ns/a")).released
    assert [(str(r.address), r.group, r.pool_type) for r in released] == [
        ("10.50.0.7", "legacy", PoolType.NETBOX)
    ]


def test_netbox_prefix_by_numeric_id() -> None:
    group = parse_service_group(netbox_sg("byid", v4prefix="42", v6prefix=7))
    assert group.netbox is not None
    assert group.netbox.v4prefix is None and group.netbox.v4prefix_id == 42
    assert group.netbox.prefix_ref(4) == "42" and group.netbox.prefix_ref(6) == "7"
    assert group.families == frozenset({4, 6}) and group.netbox.has_prefix
    cidr = parse_service_group(netbox_sg("bycidr", v4prefix="10.9.0.0/24")).netbox
    assert cidr is not None and cidr.prefix_ref(4) == "10.9.0.0/24" and cidr.prefix_ref(6) is None
