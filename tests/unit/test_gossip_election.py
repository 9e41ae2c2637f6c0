"""Subnet-aware election, node subnets, timings validation and the public surface."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

import purelb.election as election
from purelb import fast
from purelb.election import _election
from purelb.election._sim import SimNetwork
from purelb.election._subnets import IFA_F_DEPRECATED, InterfaceAddress, serving_subnets
from purelb.election._swim import MemberInfo, Swim
from purelb.election._timings import GossipLimits, GossipTimings, lan, local
from purelb.election._wire import Address, MemberMeta, MemberState, NodeName
from purelb.errors import ConfigError

NET_A = ipaddress.ip_network("172.31.255.0/24")
NET_B = ipaddress.ip_network("172.31.254.0/24")
NET_6 = ipaddress.ip_network("fd00:db8:ff::/64")


def info(name: str, *subnets, state=MemberState.ALIVE, ready=True) -> MemberInfo:
    return MemberInfo(NodeName(name), Address("10.0.0.1", 7934), 1, state,
                      MemberMeta(subnets=tuple(subnets), ready=ready), 0.0)


MEMBERS = [
    info("a", NET_A, NET_6),
    info("b", NET_A),
    info("c", NET_B, NET_6),
    info("d", NET_A, state=MemberState.SUSPECT),
    info("e", NET_A, ready=False),
    info("f", NET_A, state=MemberState.DEAD),
]


@pytest.mark.parametrize(
    ("desc", "address", "expected"),
    [
        ("only alive, ready members with a containing subnet compete", "172.31.255.7",
         ["a", "b"]),
        ("another subnet has its own candidates", "172.31.254.7", ["c"]),
        ("IPv6 addresses match IPv6 subnets only", "fd00:db8:ff::7", ["a", "c"]),
        ("an address nobody can hold has no candidates", "192.0.2.1", []),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_candidates_are_filtered_by_state_readiness_subnet_and_family(desc, address, expected):
    ip = ipaddress.ip_address(address)
    assert _election.candidates(ip, MEMBERS) == expected
    assert election.winner(address, MEMBERS) == fast.winner(str(ip), expected)


def test_winner_is_none_when_no_member_can_hold_the_address():
    assert election.winner("192.0.2.1", MEMBERS) is None


def test_bad_address_names_the_value():
    with pytest.raises(ValueError, match="'nope' is not an IPv4 or IPv6 address"):
        election.winner("nope", MEMBERS)


@given(st.lists(st.ip_addresses(v=4, network="172.31.255.0/24"), min_size=1, max_size=20))
def test_winners_batch_equals_single_winner(addresses):
    assert election.winners(addresses, MEMBERS) == [election.winner(a, MEMBERS)
                                                     for a in addresses]


@given(st.ip_addresses(v=4, network="172.31.255.0/24"))
def test_removing_a_non_winner_never_moves_the_address(address):
    full = [info(n, NET_A) for n in "pqrstu"]
    chosen = election.winner(address, full)
    for gone in full:
        if gone.name == chosen:
            continue
        rest = [m for m in full if m is not gone]
        assert election.winner(address, rest) == chosen


def test_every_simulated_member_elects_the_same_single_winner():
    """Verify that once membership converges, all members agree on one winner per address."""
    net = SimNetwork(timings=lan(), seed=3)
    for i in range(8):
        net.add(f"n{i}", meta=MemberMeta(subnets=(NET_A if i % 2 else NET_B,)))
    for i in range(1, 8):
        net.join(f"n{i}", ["n0"])
    net.run_for(3.0)
    assert net.converged()
    for host in range(1, 40):
        for net_ in (NET_A, NET_B):
            address = str(net_.network_address + host)
            views = {election.winner(address, n.swim.members()) for n in net.nodes.values()}
            assert len(views) == 1
            (chosen,) = views
            assert chosen is not None
            assert ipaddress.ip_address(address) in net.nodes[chosen].swim.member(
                chosen).meta.subnets[0]


def test_serving_subnets_follow_purelb_rules():
    addrs = [
        InterfaceAddress("eth0", "172.31.255.11", 24),
        InterfaceAddress("eth0", "172.31.255.12", 24),  # same network once
        InterfaceAddress("eth0", "fd00:db8:ff::11", 64),
        InterfaceAddress("eth0", "fe80::1", 64),  # link-local: never
        InterfaceAddress("eth0", "fd00:db8:1::5", 64, IFA_F_DEPRECATED),  # deprecated VIP
        InterfaceAddress("kube-lb0", "192.0.2.10", 32),  # host route: a VIP, not a subnet
    ]
    assert serving_subnets(addrs, limit=32) == (NET_A, NET_6)
    assert serving_subnets(addrs, limit=1) == (NET_A,)
    with pytest.raises(ValueError, match=r"eth1: 300\.1\.1\.1/24"):
        serving_subnets([InterfaceAddress("eth1", "300.1.1.1", 24)], limit=4)


@pytest.mark.parametrize(
    ("desc", "changes", "match"),
    [
        ("a negative probe interval", {"probe_interval_s": -1.0}, "probe_interval_s"),
        ("a timeout longer than the period", {"probe_timeout_s": 0.5}, "below probe_interval_s"),
        ("a zero retransmit multiplier", {"retransmit_mult": 0}, "retransmit_mult"),
        ("an empty backoff", {"join_retry_delays_s": ()}, "join_retry_delays_s"),
        ("a jitter above 1", {"join_retry_jitter": 2.0}, "join_retry_jitter"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_timings_raise_config_error_naming_the_field(desc, changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(GossipTimings(), **changes)


def test_invalid_limits_raise_config_error():
    with pytest.raises(ConfigError, match="max_packet_bytes"):
        GossipLimits(max_packet_bytes=100)
    with pytest.raises(ConfigError, match="max_name_bytes"):
        GossipLimits(max_name_bytes=300)
    with pytest.raises(ConfigError, match="cannot hold one member"):
        GossipLimits(max_packet_bytes=600)


def test_largest_member_state_fits_one_datagram_with_default_limits():
    """Verify the bound GossipLimits checks: a member with the longest name and the most
    IPv6 subnets still fits one push-pull chunk, so push-pull never builds an oversize packet."""
    limits = GossipLimits()
    name = NodeName("n" * limits.max_name_bytes)
    subnets = tuple(ipaddress.ip_network(f"fd00:{i:x}::/64") for i in range(limits.max_subnets))
    swim = Swim(name=name, addr=Address("fd00::1", 7934), meta=MemberMeta(subnets=subnets),
                incarnation=2**63, timings=lan(), limits=limits, rng=random.Random(0), now=0.0)
    swim.join(0.0, [Address("fd00::2", 7934)])
    (out,) = swim.drain_outbox()
    assert out.wire_bytes(name) <= limits.max_packet_bytes


def test_local_preset_is_derived_from_lan_and_faster():
    assert local().probe_interval_s < lan().probe_interval_s
    assert local().indirect_checks == lan().indirect_checks
    assert "probe_interval_s=0.15" in repr(lan())


def test_public_surface_is_complete_and_exported_once():
    names = election.__all__
    assert len(names) == len(set(names))
    public = {n for n in dir(election) if not n.startswith("_")
              and not isinstance(getattr(election, n), types.ModuleType)}  # runner, netlink
    assert public == set(names)
    for name in names:
        assert getattr(election, name) is not None
