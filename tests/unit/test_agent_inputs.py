"""The daemon's conversion of cached API objects into the plan's input (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from purelb.agent.plan import TrafficPolicy
from purelb.controllers.agent import annotation_changes
from purelb.controllers.agent_inputs import build_inputs, parse_endpoint_slice, parse_groups

GROUPS = [
    {"metadata": {"name": "lan", "namespace": "purelb-system"},
     "spec": {"local": {"v4pools": [{"pool": "172.31.255.200-172.31.255.210",
                                     "subnet": "172.31.255.0/24", "aggregation": "default"}],
                        "v6pools": [{"pool": "fd00:db8:ff::200-fd00:db8:ff::210",
                                     "subnet": "fd00:db8:ff::/64", "aggregation": "default"}]}}},
    {"metadata": {"name": "virt", "namespace": "purelb-system"},
     "spec": {"local": {"v4pools": [{"pool": "172.31.254.0/24", "subnet": "172.31.254.0/24",
                                     "aggregation": "/32"}]}}},
]


def svc(name, *ips, etp="Cluster", brand="PureLB", type_="LoadBalancer"):
    ann = {"purelb.io/allocated-by": brand} if brand else {}
    return {"metadata": {"name": name, "namespace": "ns", "annotations": ann},
            "spec": {"type": type_, "externalTrafficPolicy": etp},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def slices(mapping):
    return lambda ns, name: mapping.get(f"{ns}/{name}", [])


def groups():
    accepted, skipped = parse_groups(GROUPS)
    assert not skipped
    return accepted


def test_build_inputs_places_addresses_with_their_group_subnet_and_aggregation():
    inp = build_inputs([svc("a", "172.31.255.200", "fd00:db8:ff::200"), svc("b", "172.31.254.7")],
                       groups(), slices({}))
    by_ip = {str(a.address): a for a in inp.addresses}
    assert by_ip["172.31.255.200"].subnet == ipaddress.ip_network("172.31.255.0/24")
    assert by_ip["172.31.255.200"].aggregation is None
    assert by_ip["fd00:db8:ff::200"].virtual_prefixlen == 64
    assert by_ip["172.31.254.7"].aggregation == 32
    assert set(inp.services) == {"ns/a", "ns/b"}


def test_build_inputs_ignores_unbranded_non_lb_and_addressless_services():
    inp = build_inputs([svc("x", "172.31.255.201", brand=None),
                        svc("y", "172.31.255.202", type_="ClusterIP"), svc("z")],
                       groups(), slices({}))
    assert inp.addresses == () and not inp.skipped


def test_build_inputs_merges_services_sharing_an_address_into_one_entry():
    inp = build_inputs([svc("a", "172.31.254.9"), svc("b", "172.31.254.9")], groups(),
                       slices({}))
    (only,) = inp.addresses
    assert sorted(s.key for s in only.services) == ["ns/a", "ns/b"]


def test_build_inputs_skips_an_address_outside_every_group_and_says_so():
    inp = build_inputs([svc("a", "10.9.9.9")], groups(), slices({}))
    assert inp.addresses == ()
    assert "10.9.9.9" in inp.skipped[0].what and "ns/a" in inp.skipped[0].reason


def test_build_inputs_reports_a_malformed_ingress_without_dropping_the_others():
    inp = build_inputs([svc("a", "not-an-ip", "172.31.254.1")], groups(), slices({}))
    assert [str(a.address) for a in inp.addresses] == ["172.31.254.1"]
    assert "not-an-ip" in inp.skipped[0].reason


def test_build_inputs_reads_endpoint_slices_only_for_local_policy():
    eps = {"ns/l": [{"metadata": {"name": "l-1"}, "endpoints": [
        {"addresses": ["10.0.0.1"], "nodeName": "node2", "conditions": {"ready": True}},
        {"addresses": ["10.0.0.2"], "nodeName": "node3", "conditions": {"ready": False,
                                                                      "serving": False}}]}]}
    inp = build_inputs([svc("l", "172.31.254.3", etp="Local"), svc("c", "172.31.254.4")],
                       groups(), slices(eps))
    by_ip = {str(a.address): a.services[0] for a in inp.addresses}
    assert by_ip["172.31.254.3"].traffic_policy is TrafficPolicy.LOCAL
    (sl,) = by_ip["172.31.254.3"].slices
    assert [(e.node, e.healthy) for e in sl.endpoints] == [("node2", True), ("node3", False)]
    assert by_ip["172.31.254.4"].slices == ()


def test_parse_endpoint_slice_drops_malformed_entries_and_keeps_unknown_readiness():
    sl = parse_endpoint_slice({"metadata": {"name": "s"}, "endpoints": [
        "junk", {"addresses": ["10.0.0.1", 5], "conditions": {"ready": "yes"}}]})
    (ep,) = sl.endpoints
    assert ep.addresses == ("10.0.0.1",) and ep.ready is None and ep.healthy


def test_parse_groups_rejects_overlapping_groups_like_the_allocator():
    dup = {**GROUPS[1], "metadata": {"name": "virt2", "namespace": "purelb-system"}}
    accepted, skipped = parse_groups([*GROUPS, dup])
    assert len(accepted) == 2 and "virt2" in skipped[0].what


@pytest.mark.parametrize("etp", ["Cluster", "Local"])
def test_build_inputs_is_independent_of_service_order(etp):
    objs = [svc("a", "172.31.254.1", etp=etp), svc("b", "172.31.255.205"),
            svc("c", "fd00:db8:ff::201")]
    assert build_inputs(objs, groups(), slices({})).addresses == build_inputs(
        list(reversed(objs)), groups(), slices({})).addresses


@pytest.mark.parametrize(("current", "wanted", "sets", "stale"), [
    ({}, {"purelb.io/announcing-IPv4": "n1,eth0,10.0.0.1"},
     {"purelb.io/announcing-IPv4": "n1,eth0,10.0.0.1"}, []),
    ({"purelb.io/announcing-IPv4": "n1,eth0,10.0.0.1"},
     {"purelb.io/announcing-IPv4": "n1,eth0,10.0.0.1"}, {}, []),
    ({"purelb.io/announcing-IPv4": "n1,eth0,10.0.0.1"}, {}, {}, ["purelb.io/announcing-IPv4"]),
    ({"purelb.io/announcing-IPv4": "n2,eth0,10.0.0.1"}, {}, {}, []),
    ({"purelb.io/announcing-IPv6": "n10,eth0,fd00::1"}, {}, {}, []),
], ids=["new value is set", "unchanged value writes nothing", "our stale value is removed",
        "another node's value is left alone", "a node name sharing our prefix is not ours"])
def test_annotation_changes_write_only_differences_and_never_clear_others(
        current, wanted, sets, stale):
    assert annotation_changes(current, wanted, "n1") == (sets, stale)
