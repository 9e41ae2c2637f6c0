"""GARP and unsolicited NA seen by a peer namespace on a veth pair."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import agent_ns
import pytest
import trio
from agent_ns import ip, ip_json, mac_of, set_sysctls

from purelb.agent.garp import ETH_P_ARP, Announcer
from purelb.agent.netlink import NetlinkWriter
from purelb.agent.netns import open_socket
from purelb.agent.records import AddressKind
from purelb.agent.settings import AgentSettings

pytestmark = pytest.mark.root
make_netns = agent_ns.make_netns

SETTINGS = AgentSettings().local()
VIP4 = ipaddress.IPv4Address("172.31.255.200")
VIP6 = ipaddress.IPv6Address("fd00:db8:ff::200")
FAKE_MAC = "02:00:00:00:00:99"
#: Bound on waiting for the peer kernel to process a frame (it takes well under 10 ms).
NEIGH_WAIT_S = 2.0
NEIGH_POLL_S = 0.01


#: Bound on IPv6 coming up on a fresh veth: linkwatch may delay the carrier event ~1 s.
LINK_READY_WAIT_S = 5.0


async def wait_ipv6_ready(ns: str) -> None:
    """Wait for eth0's link-local address: until then the kernel has no ff00::/8 route and
    drops every multicast (Ip6InNoRoutes), the NA included."""
    with trio.fail_after(LINK_READY_WAIT_S):
        while True:
            if ip("-6", "addr", "show", "dev", "eth0", "scope", "link", ns=ns).strip():
                return
            await trio.sleep(NEIGH_POLL_S)


@pytest.fixture
async def lan(make_netns) -> AsyncIterator[tuple[str, str]]:
    """Speaker ns A and peer ns B joined by a veth pair (eth0 on both sides)."""
    a, b = make_netns(), make_netns()
    for ns in (a, b):
        # Before the veth exists, so its IPv6 side starts without DAD (netns-bird.md 1).
        set_sysctls(ns, {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0})
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b, ns=a)
    set_sysctls(b, {"net.ipv4.conf.all.arp_accept": 1, "net.ipv4.conf.eth0.arp_accept": 1})
    for ns, host in ((a, 1), (b, 2)):
        ip("addr", "add", f"172.31.255.{host}/24", "dev", "eth0", ns=ns)
        ip("addr", "add", f"fd00:db8:ff::{host}/64", "dev", "eth0", "nodad", ns=ns)
        ip("link", "set", "eth0", "up", ns=ns)
    for ns in (a, b):
        await wait_ipv6_ready(ns)
    yield a, b


def neigh_mac(ns: str, address: object) -> str | None:
    entries = ip_json("neigh", "show", str(address), "dev", "eth0", ns=ns)
    return entries[0].get("lladdr") if entries else None


async def wait_for_mac(ns: str, address: object, mac: str) -> None:
    """Poll the peer's neighbour table: the kernel offers no event for it to a test."""
    with trio.fail_after(NEIGH_WAIT_S):
        while True:
            if neigh_mac(ns, address) == mac:
                return
            await trio.sleep(NEIGH_POLL_S)


async def add_local_vips(ns: str) -> tuple[int, bytes]:
    async with await NetlinkWriter.open(ns, SETTINGS) as nl:
        (eth0,) = [link for link in await nl.dump_links() if link.name == "eth0"]
        specs = [
            SETTINGS.spec_for(AddressKind.LOCAL, eth0.index, ipaddress.ip_interface((VIP4, 24))),
            SETTINGS.spec_for(AddressKind.LOCAL, eth0.index, ipaddress.ip_interface((VIP6, 64))),
        ]
        assert (await nl.reconcile(specs)).ok
        assert eth0.mac is not None
        return eth0.index, eth0.mac


async def test_gratuitous_arp_creates_the_peer_neighbour_entry_with_our_mac(lan) -> None:
    a, b = lan
    index, mac = await add_local_vips(a)
    assert mac == mac_of(a, "eth0")
    assert neigh_mac(b, VIP4) is None
    async with await Announcer.open(a) as ann:
        rounds = await ann.announce(
            ifname="eth0", index=index, mac=mac, address=VIP4, count=1, interval_s=0
        )
    assert rounds == 1
    await wait_for_mac(b, VIP4, mac.hex(":"))


async def test_gratuitous_arp_overrides_a_stale_entry(lan) -> None:
    a, b = lan
    index, mac = await add_local_vips(a)
    ip("neigh", "replace", str(VIP4), "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale", ns=b)
    assert neigh_mac(b, VIP4) == FAKE_MAC
    async with await Announcer.open(a) as ann:
        await ann.send_once(ifname="eth0", index=index, mac=mac, address=VIP4)
    await wait_for_mac(b, VIP4, mac.hex(":"))


async def test_unsolicited_na_overrides_the_peer_ipv6_neighbour_entry(lan) -> None:
    a, b = lan
    index, mac = await add_local_vips(a)
    ip("-6", "neigh", "replace", str(VIP6), "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale", ns=b)
    assert neigh_mac(b, VIP6) == FAKE_MAC
    async with await Announcer.open(a) as ann:
        rounds = await ann.announce(
            ifname="eth0", index=index, mac=mac, address=VIP6, count=1, interval_s=0
        )
    assert rounds == 1
    await wait_for_mac(b, VIP6, mac.hex(":"))


async def count_arp_frames(ns: str, seconds: float, task_status=trio.TASK_STATUS_IGNORED) -> int:
    sock = await open_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    with sock:
        await sock.bind(("eth0", ETH_P_ARP))
        task_status.started()
        frames = 0
        with trio.move_on_after(seconds):
            while True:
                data = await sock.recv(2048)
                if data[28:32] == VIP4.packed:  # ARP sender protocol address
                    frames += 1
        return frames


async def test_the_predicate_stops_announcements_when_the_address_is_lost(lan) -> None:
    a, b = lan
    index, mac = await add_local_vips(a)
    checks = 0

    def still_wins() -> bool:
        nonlocal checks
        checks += 1
        return checks <= 2  # the election moves away before the third round

    captured: list[int] = []

    async def capture(task_status=trio.TASK_STATUS_IGNORED) -> None:
        captured.append(await count_arp_frames(b, 0.5, task_status=task_status))

    async with trio.open_nursery() as nursery:
        await nursery.start(capture)
        async with await Announcer.open(a) as ann:
            rounds = await ann.announce(
                ifname="eth0",
                index=index,
                mac=mac,
                address=VIP4,
                count=5,
                interval_s=0.01,
                still_wins=still_wins,
            )
    assert rounds == 2 and checks == 3
    assert captured == [4], "two rounds of request + reply reached the peer, no more"
