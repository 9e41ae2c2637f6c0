"""NetlinkWriter against the real kernel, inside namespaces this test creates and removes."""

from __future__ import annotations

import errno
import ipaddress
import socket

import agent_ns
import pytest
import trio
from agent_ns import ip, ip_json

from purelb.agent.errors import AddressOpError, LinkOpError, NetnsError
from purelb.agent.interfaces import discover
from purelb.agent.netlink import NetlinkWriter
from purelb.agent.records import AddressKind, AddrSpec
from purelb.agent.settings import AgentSettings, VirtualKind

pytestmark = pytest.mark.root
make_netns = agent_ns.make_netns  # the fixture, shared with the GARP tests

SETTINGS = AgentSettings().local()


def iface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(cidr)


def kernel_addrs(ns: str, dev: str) -> set[str]:
    (link,) = ip_json("addr", "show", "dev", dev, ns=ns)
    return {
        f"{a['local']}/{a['prefixlen']}"
        for a in link["addr_info"]
        if not a["local"].startswith("fe80")
    }


async def test_writer_creates_the_virtual_interface_up_falling_back_to_ifb(make_netns) -> None:
    ns = make_netns()
    settings = AgentSettings(virtual_kind=VirtualKind.DUMMY)
    async with await NetlinkWriter.open(ns, settings) as nl:
        link = await nl.ensure_virtual_interface()
        assert link.name == "kube-lb0" and link.is_up
        assert link.kind in ("dummy", "ifb")  # ifb where the kernel has no dummy driver
        again = await nl.ensure_virtual_interface()
        assert again.index == link.index, "a second call reuses the interface"
    (shown,) = ip_json("-d", "link", "show", "dev", "kube-lb0", ns=ns)
    assert "UP" in shown["flags"]


async def test_writer_accepts_an_existing_interface_of_any_kind(make_netns) -> None:
    ns = make_netns()
    ip("link", "add", "kube-lb0", "type", "bridge", ns=ns)
    for kind in (VirtualKind.EXISTING, VirtualKind.DUMMY, VirtualKind.IFB):
        async with await NetlinkWriter.open(ns, AgentSettings(virtual_kind=kind)) as nl:
            link = await nl.ensure_virtual_interface()
            assert (link.kind, link.is_up) == ("bridge", True)


async def test_existing_kind_without_the_interface_is_a_named_error(make_netns) -> None:
    ns = make_netns()
    settings = AgentSettings(virtual_kind=VirtualKind.EXISTING, virtual_interface="lbx0")
    async with await NetlinkWriter.open(ns, settings) as nl:
        with pytest.raises(LinkOpError, match="'lbx0'") as info:
            await nl.ensure_virtual_interface()
    assert info.value.errno == errno.ENODEV


async def test_reconcile_adds_and_removes_v4_and_v6_and_is_idempotent(make_netns) -> None:
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
        want = [
            SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface("192.0.2.10/32")),
            SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface("192.0.2.11/32")),
            SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface("2001:db8::10/128")),
        ]
        first = await nl.reconcile(want)
        assert first.ok and len(first.diff.add) == 3
        assert kernel_addrs(ns, "kube-lb0") == {
            "192.0.2.10/32",
            "192.0.2.11/32",
            "2001:db8::10/128",
        }
        dumped = [a for a in await nl.dump_addresses() if a.index == lb.index and a.proto > 3]
        assert {a.proto for a in dumped} == {SETTINGS.address_proto}

        second = await nl.reconcile(want)
        assert second.diff.ops == 0 and second.diff.unchanged == 3

        third = await nl.reconcile(want[1:])
        assert [str(a.interface) for a in third.diff.delete] == ["192.0.2.10/32"]
        assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.11/32", "2001:db8::10/128"}

        await nl.remove_owned()
        assert kernel_addrs(ns, "kube-lb0") == set()


async def test_hand_added_addresses_survive_reconcile_and_stale_cleanup(make_netns) -> None:
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
    ip("addr", "add", "192.0.2.50/32", "dev", "kube-lb0", ns=ns)
    ip("addr", "add", "2001:db8::50/128", "dev", "kube-lb0", "nodad", ns=ns)
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        mine = SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface("192.0.2.60/32"))
        taken = SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface("192.0.2.50/32"))
        result = await nl.reconcile([mine, taken])
        assert result.diff.foreign == (taken,), "someone else's address is reported, not adopted"
        assert {
            a.proto for a in await nl.dump_addresses() if str(a.interface) == "192.0.2.50/32"
        } == {0}
        await nl.remove_owned()
        assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.50/32", "2001:db8::50/128"}
        foreign = next(a for a in await nl.dump_addresses() if str(a.interface) == "192.0.2.50/32")
        with pytest.raises(ValueError, match="configured by someone else"):
            await nl.delete_address(foreign)
    assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.50/32", "2001:db8::50/128"}


async def test_a_new_writer_removes_addresses_a_previous_run_left(make_netns) -> None:
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
        old = [
            SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface(c))
            for c in ("192.0.2.1/32", "192.0.2.2/32", "2001:db8::2/128")
        ]
        await nl.reconcile(old)
    # The agent "crashed"; a new run wants only one of them back.
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        result = await nl.reconcile(old[1:2])
        assert {str(a.interface) for a in result.diff.delete} == {"192.0.2.1/32", "2001:db8::2/128"}
    assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.2/32"}


async def test_local_address_options_reach_the_kernel(make_netns) -> None:
    ns = make_netns()
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1", ns=ns)
    ip("link", "set", "eth0", "up", ns=ns)
    ip("addr", "add", "172.31.255.1/24", "dev", "eth0", ns=ns)
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        (eth0,) = [link for link in await nl.dump_links() if link.name == "eth0"]
        v4 = SETTINGS.spec_for(AddressKind.LOCAL, eth0.index, iface("172.31.254.9/24"))
        v6 = SETTINGS.spec_for(AddressKind.LOCAL, eth0.index, iface("fd00:db8:fe::9/64"))
        assert (await nl.reconcile([v4, v6])).ok
    (link,) = ip_json("addr", "show", "dev", "eth0", ns=ns)
    by_ip = {a["local"]: a for a in link["addr_info"]}
    assert by_ip["172.31.254.9"].get("noprefixroute") is True
    assert 0 < by_ip["172.31.254.9"]["valid_life_time"] <= 300
    assert by_ip["fd00:db8:fe::9"]["preferred_life_time"] == 0  # deprecated: never a source
    assert by_ip["fd00:db8:fe::9"].get("nodad") is True
    routes = ip("route", "show", ns=ns) + ip("-6", "route", "show", ns=ns)
    assert "172.31.254.0/24" not in routes and "fd00:db8:fe::/64" not in routes


async def test_reconcile_of_ten_thousand_addresses_and_back(make_netns) -> None:
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
        base = int(ipaddress.IPv4Address("10.64.0.0"))
        want = [
            AddrSpec(index=lb.index, interface=ipaddress.IPv4Interface((base + i, 32)))
            for i in range(10_000)
        ]
        added = await nl.reconcile(want)
        assert added.ok and len(added.diff.add) == 10_000
        mine = [a for a in await nl.dump_addresses() if a.proto == SETTINGS.address_proto]
        assert len(mine) == 10_000
        assert (await nl.reconcile(want)).diff.ops == 0
        removed = await nl.remove_owned()
        assert removed.ok and len(removed.diff.delete) == 10_000
        assert not [a for a in await nl.dump_addresses() if a.proto == SETTINGS.address_proto]


async def test_kernel_refusals_name_address_interface_and_errno(make_netns) -> None:
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        with pytest.raises(AddressOpError, match=r"192\.0\.2\.1/32 on \? \(index 999\).*ENODEV"):
            await nl.add_address(AddrSpec(index=999, interface=iface("192.0.2.1/32")))
        lb = await nl.ensure_virtual_interface()
        good = AddrSpec(index=lb.index, interface=iface("192.0.2.2/32"))
        bad = AddrSpec(index=998, interface=iface("192.0.2.3/32"))
        result = await nl.reconcile([good, bad])
        assert [e.errno for e in result.errors] == [errno.ENODEV]
        assert result.errors[0].address == "192.0.2.3/32" and result.errors[0].ifindex == 998
    assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.2/32"}, "the good half was still applied"


async def test_opening_a_missing_namespace_is_a_named_error() -> None:
    with pytest.raises(NetnsError, match="pla-missing-ns"):
        await NetlinkWriter.open("pla-missing-ns", SETTINGS)


async def test_discover_finds_the_default_route_subnets(make_netns) -> None:
    ns = make_netns()
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth9", ns=ns)
    ip("link", "set", "eth0", "up", ns=ns)
    ip("link", "set", "eth9", "up", ns=ns)
    ip("addr", "add", "172.31.255.11/24", "dev", "eth0", ns=ns)
    ip("addr", "add", "fd00:db8:ff::11/64", "dev", "eth0", "nodad", ns=ns)
    ip("addr", "add", "10.99.0.1/16", "dev", "eth9", ns=ns)
    ip("route", "add", "default", "via", "172.31.255.1", ns=ns)
    ip("-6", "route", "add", "default", "via", "fd00:db8:ff::1", ns=ns)
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        await nl.ensure_virtual_interface()
        _links, _addrs, subnets = await discover(
            nl, selector="default", virtual_interface="kube-lb0"
        )
        assert [(s.ifname, str(s.network)) for s in subnets] == [
            ("eth0", "172.31.255.0/24"),
            ("eth0", "fd00:db8:ff::/64"),
        ]
        _l, _a, regex = await discover(nl, selector="^eth", virtual_interface="kube-lb0")
        assert ("eth9", "10.99.0.0/16") in [(s.ifname, str(s.network)) for s in regex]
        v6 = await nl.dump_routes(socket.AF_INET6)
        assert any(r.dst.prefixlen == 0 for r in v6)


async def test_lost_acks_are_healed_by_a_fresh_dump(make_netns, caplog) -> None:
    """Verify that an ACK overflow (ENOBUFS) makes reconcile re-dump and finish the job.

    1024 requests per write against the smallest receive buffer cannot all be acknowledged;
    the kernel still applies them, so the retry finds most already done.
    """
    ns = make_netns()
    tight = AgentSettings(netlink_batch=1024, netlink_rcvbuf_bytes=64 * 1024).local()
    async with await NetlinkWriter.open(ns, tight) as nl:
        lb = await nl.ensure_virtual_interface()
        base = int(ipaddress.IPv4Address("10.80.0.0"))
        want = [
            AddrSpec(index=lb.index, interface=ipaddress.IPv4Interface((base + i, 32)))
            for i in range(2048)
        ]
        result = await nl.reconcile(want)
        assert result.ok
        assert "replies lost" in caplog.text, "the overflow path was exercised"
        mine = [a for a in await nl.dump_addresses() if a.proto == tight.address_proto]
        assert len(mine) == 2048
        assert (await nl.reconcile(want)).diff.ops == 0


async def test_a_reconcile_cancelled_midway_is_healed_by_the_next(make_netns) -> None:
    """Verify that ACKs left in the socket by a cancelled call do not confuse the next one."""
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
        base = int(ipaddress.IPv4Address("10.96.0.0"))
        want = [
            AddrSpec(index=lb.index, interface=ipaddress.IPv4Interface((base + i, 32)))
            for i in range(10_000)
        ]
        # 10,000 adds on one interface take over 1 s (the kernel walks the address list).
        with trio.move_on_after(0.25) as scope:
            await nl.reconcile(want)
        assert scope.cancelled_caught
        partial = [a for a in await nl.dump_addresses() if a.proto == SETTINGS.address_proto]
        assert 0 < len(partial) < 10_000
        result = await nl.reconcile(want)
        assert result.ok and result.diff.unchanged == len(partial)
        assert (await nl.reconcile(want)).diff.ops == 0


async def test_withdrawing_one_aggregated_address_keeps_its_subnet_siblings(make_netns) -> None:
    """Verify promote_secondaries on kube-lb0: deleting the primary /24 keeps the others."""
    ns = make_netns()
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        lb = await nl.ensure_virtual_interface()
        a, b, c = (
            SETTINGS.spec_for(AddressKind.VIRTUAL, lb.index, iface(f"192.0.2.{n}/24"))
            for n in (10, 11, 12)
        )
        assert (await nl.reconcile([a, b, c])).ok
        assert (await nl.reconcile([b, c])).ok
        assert kernel_addrs(ns, "kube-lb0") == {"192.0.2.11/24", "192.0.2.12/24"}
        assert (await nl.reconcile([b, c])).diff.ops == 0
    conf = await trio.run_process(
        ["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.conf.kube-lb0.promote_secondaries"],
        capture_stdout=True,
    )
    assert conf.stdout.strip() == b"1"
