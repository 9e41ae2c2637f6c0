"""Gratuitous ARP (IPv4) and unsolicited Neighbor Advertisements (IPv6).

When a local address moves to this node, LAN neighbours still map it to the old node's
MAC for 23-53 s unless told (research/netns-bird.md section 3). The kernel does not tell
them: adding an IPv4 address sends no GARP, and a ``nodad`` IPv6 address sends no NA. So
the agent sends them itself, from raw sockets opened inside the node's namespace:

- IPv4: an ARP request and an ARP reply, both broadcast, sender = target = the address,
  sender MAC = the NIC's MAC (PureLB sends the same pair; some neighbours only take one).
- IPv6: an NA to ff02::1 with the Override flag (and not Solicited, as RFC 4861 7.2.6
  requires for unsolicited ones) and a target link-layer address option, hop limit 255
  (receivers drop NDP with any other). The kernel fills in the ICMPv6 checksum.

Frame encoders are pure (``arp_frame``, ``na_message``) and tested byte for byte.
Receivers only *update* existing entries unless configured otherwise (``arp_accept=1``;
``accept_untracked_na=1`` plus forwarding for IPv6), which is all a failover needs.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from typing import final

import trio

from .netns import open_socket
from .records import IPAddress

LOGGER = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_HTYPE_ETHER = 1
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST_MAC = b"\xff" * 6
#: Shortest Ethernet frame without FCS; NIC drivers pad, veth and bridges do not.
ETH_MIN_FRAME_BYTES = 60

ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
#: RFC 4861: receivers discard Neighbor Discovery packets whose hop limit is not 255.
ND_HOP_LIMIT = 255
ALL_NODES_V6 = "ff02::1"

#: IPV6_PKTINFO (RFC 3542) lets one socket pick the source address and interface per send.
_IN6_PKTINFO = struct.Struct("=16sI")

StillWins = Callable[[], bool]
"""Checked before each send: does this node still hold the address? False stops the run."""


def _mac(mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {mac.hex(':')!r}")
    return mac


def arp_frame(mac: bytes, address: ipaddress.IPv4Address, *, op: int = ARP_REQUEST) -> bytes:
    """A broadcast gratuitous ARP frame (Ethernet header included, padded to 60 bytes).

    Request: target MAC zero (RFC 5227 announcement); reply: target MAC = sender MAC.
    """
    if op not in (ARP_REQUEST, ARP_REPLY):
        raise ValueError(f"ARP op {op} is neither request (1) nor reply (2)")
    sha = _mac(mac)
    ip = address.packed
    tha = b"\0" * 6 if op == ARP_REQUEST else sha
    arp = struct.pack("!HHBBH6s4s6s4s", ARP_HTYPE_ETHER, ETH_P_IP, 6, 4, op, sha, ip, tha, ip)
    frame = BROADCAST_MAC + sha + struct.pack("!H", ETH_P_ARP) + arp
    return frame.ljust(ETH_MIN_FRAME_BYTES, b"\0")


def na_message(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """The ICMPv6 part of an unsolicited NA (checksum 0: the kernel computes it)."""
    head = struct.pack("!BBHI", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, _mac(mac))
    return head + address.packed + option


@final
class Announcer:
    """Raw sockets for GARP and unsolicited NA inside one namespace.

    Open once with ``await Announcer.open(netns)``; ``announce`` is safe to call from
    several tasks (each send is one datagram).
    """

    def __init__(self, arp: trio.socket.SocketType, icmp6: trio.socket.SocketType) -> None:
        self._arp = arp
        self._icmp6 = icmp6

    @classmethod
    async def open(cls, netns: str | None = None) -> Announcer:
        arp = await open_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        icmp6 = None
        try:
            icmp6 = await open_socket(
                netns, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6
            )
            icmp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
            icmp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ND_HOP_LIMIT)
            icmp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        except BaseException:
            arp.close()
            if icmp6 is not None:
                icmp6.close()
            raise
        return cls(arp, icmp6)

    async def aclose(self) -> None:
        self._arp.close()
        self._icmp6.close()

    async def __aenter__(self) -> Announcer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send_once(self, *, ifname: str, index: int, mac: bytes, address: IPAddress) -> int:
        """Send one announcement round for ``address``; returns the packets sent."""
        if isinstance(address, ipaddress.IPv4Address):
            for op in (ARP_REQUEST, ARP_REPLY):
                await self._arp.sendto(arp_frame(mac, address, op=op), (ifname, ETH_P_ARP))
            return 2
        # The source is the address itself (any of the NIC's addresses is allowed); it is
        # nodad, so never tentative, and the kernel accepts it as a source at once.
        pktinfo = _IN6_PKTINFO.pack(address.packed, index)
        await self._icmp6.sendmsg(
            [na_message(mac, address)],
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
            0,
            (ALL_NODES_V6, 0, 0, index),
        )
        return 1

    async def announce(
        self,
        *,
        ifname: str,
        index: int,
        mac: bytes,
        address: IPAddress,
        count: int,
        interval_s: float,
        still_wins: StillWins = lambda: True,
        initial_delay_s: float = 0.0,
    ) -> int:
        """Send ``count`` announcement rounds ``interval_s`` apart; return rounds sent.

        ``still_wins`` is checked before every round; once it answers False the run stops,
        so a node that lost the address in the meantime never advertises it again.
        A send that fails (interface gone, address removed) is logged and the run goes on,
        as PureLB does: the next round may succeed.
        """
        sent = 0
        if initial_delay_s:
            await trio.sleep(initial_delay_s)
        for i in range(count):
            if i:
                await trio.sleep(interval_s)
            if not still_wins():
                LOGGER.info("event=announce_stopped address=%s reason=lost_election", address)
                break
            try:
                await self.send_once(ifname=ifname, index=index, mac=mac, address=address)
            except OSError as exc:
                LOGGER.warning(
                    "event=announce_failed address=%s interface=%s errno=%s: %s; next in %s s",
                    address,
                    ifname,
                    exc.errno,
                    exc.strerror,
                    interval_s,
                )
                continue
            sent += 1
        return sent
