"""Interface and subnet selection from fixture dumps (research/purelb.md 5.1, 6.1)."""

from __future__ import annotations

import ipaddress

import pytest

from purelb.agent.interfaces import (
    default_route_interfaces,
    local_subnets,
    select_links,
    servable_networks,
)
from purelb.agent.records import (
    IFA_F_DADFAILED,
    IFA_F_DEPRECATED,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    IFF_LOOPBACK,
    IFF_UP,
    AddressInfo,
    LinkInfo,
    LocalSubnet,
    RouteInfo,
    find_local_subnet,
)

OURS = 0x7A
LINKS = (
    LinkInfo(1, "lo", None, IFF_UP | IFF_LOOPBACK, None),
    LinkInfo(2, "eth0", "veth", IFF_UP, bytes(6)),
    LinkInfo(3, "eth1", None, IFF_UP, bytes(6)),
    LinkInfo(4, "kube-lb0", "ifb", IFF_UP, bytes(6)),
    LinkInfo(5, "dummy9", "dummy", IFF_UP, bytes(6)),
    LinkInfo(6, "bond0", "bond", IFF_UP, bytes(6)),
)


def addr(index: int, cidr: str, *, flags: int = IFA_F_PERMANENT, proto: int = 0) -> AddressInfo:
    return AddressInfo(index, ipaddress.ip_interface(cidr), flags, proto, None, None)


ADDRS = (
    addr(1, "127.0.0.1/8"),
    addr(2, "172.31.255.11/24"),
    addr(2, "fd00:db8:ff::11/64"),
    addr(2, "fe80::1/64", proto=3),
    addr(2, "fd00:db8:aa::1/64", flags=IFA_F_TENTATIVE),
    addr(2, "fd00:db8:bb::1/64", flags=IFA_F_DEPRECATED),
    addr(2, "fd00:db8:cc::1/64", flags=IFA_F_DADFAILED),
    addr(2, "172.31.255.200/24", proto=OURS),  # our own local VIP: never counts
    addr(2, "10.9.9.9/32", proto=OURS),
    addr(3, "198.51.100.7/24"),
    addr(3, "2001:db8:3::7/64"),
    addr(4, "192.0.2.10/32", proto=OURS),
    addr(5, "203.0.113.1/24"),
    addr(6, "100.64.0.1/16"),
)


def route(family: int, dst: str, oif: int | None, prio: int = 0) -> RouteInfo:
    return RouteInfo(family, ipaddress.ip_network(dst), oif, prio)


ROUTES = (
    route(4, "0.0.0.0/0", 3, 200),
    route(4, "0.0.0.0/0", 2, 100),  # lower metric wins
    route(4, "172.31.255.0/24", 2),
    route(6, "::/0", 2, 1024),
)


def test_default_route_interfaces_takes_the_lowest_metric_per_family() -> None:
    assert default_route_interfaces(ROUTES) == {4: 2, 6: 2}
    assert default_route_interfaces([route(4, "0.0.0.0/0", 3, 5), route(4, "0.0.0.0/0", 2, 5)]) == {
        4: 2
    }
    assert default_route_interfaces([route(4, "0.0.0.0/0", None)]) == {}


def test_default_selector_gives_the_default_route_nic_per_family() -> None:
    sel = select_links(LINKS, ROUTES, selector="default", virtual_interface="kube-lb0")
    assert [link.name for link in sel[4]] == ["eth0"]
    assert [link.name for link in sel[6]] == ["eth0"]


def test_default_selector_without_a_v6_default_route_selects_nothing_for_v6() -> None:
    sel = select_links(LINKS, ROUTES[:3], selector="", virtual_interface="kube-lb0")
    assert sel[6] == ()


def test_regex_selector_searches_names_sorted_and_skips_dummy_virtual_and_loopback() -> None:
    sel = select_links(LINKS, ROUTES, selector="[0-9]$", virtual_interface="kube-lb0")
    assert [link.name for link in sel[4]] == ["bond0", "eth0", "eth1"]
    sel = select_links(LINKS, ROUTES, selector=".", virtual_interface="kube-lb0")
    assert "kube-lb0" not in [link.name for link in sel[4]]
    assert "dummy9" not in [link.name for link in sel[4]]
    assert "lo" not in [link.name for link in sel[4]]


def test_an_invalid_regex_raises() -> None:
    import re

    with pytest.raises(re.error):
        select_links(LINKS, ROUTES, selector="eth[", virtual_interface="kube-lb0")


def test_local_subnets_skip_link_local_unusable_v6_and_our_own_addresses() -> None:
    subs = local_subnets(
        LINKS, ADDRS, ROUTES, selector="default", virtual_interface="kube-lb0", own_proto=OURS
    )
    assert [str(s.network) for s in subs] == ["172.31.255.0/24", "fd00:db8:ff::/64"]
    assert all(s.ifname == "eth0" and s.index == 2 for s in subs)


def test_local_subnets_in_regex_mode_cover_every_matching_nic() -> None:
    subs = local_subnets(
        LINKS, ADDRS, ROUTES, selector="^eth", virtual_interface="kube-lb0", own_proto=OURS
    )
    assert [(s.ifname, str(s.network)) for s in subs] == [
        ("eth0", "172.31.255.0/24"),
        ("eth1", "198.51.100.0/24"),
        ("eth0", "fd00:db8:ff::/64"),
        ("eth1", "2001:db8:3::/64"),
    ]
    assert servable_networks(subs) == {ipaddress.ip_network(str(s.network)) for s in subs}


def test_find_local_subnet_matches_family_and_takes_the_first() -> None:
    subs = (
        LocalSubnet("eth0", 2, ipaddress.ip_network("10.0.0.0/8")),
        LocalSubnet("eth1", 3, ipaddress.ip_network("10.1.0.0/16")),
        LocalSubnet("eth0", 2, ipaddress.ip_network("fd00::/64")),
    )
    assert find_local_subnet(ipaddress.ip_address("10.1.2.3"), subs) == subs[0]
    assert find_local_subnet(ipaddress.ip_address("fd00::9"), subs) == subs[2]
    assert find_local_subnet(ipaddress.ip_address("192.0.2.1"), subs) is None
