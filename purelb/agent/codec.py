"""rtnetlink message encoding and decoding, without sockets.

Address requests and address dumps are the hot path (a reconcile of 10,000 addresses is
10,000 requests plus a dump of as many), so they are packed and parsed here with ``struct``:
pyroute2's generic ``ifaddrmsg`` encoder costs about 60 us a message, which alone caps a
writer near 15k ops/s. Links and routes are hand-coded too: importing pyroute2 pulls in
asyncio, multiprocessing, sqlite3 and unittest (about 8 MB of the agent's resident memory)
for the few fields read here.
``tests/unit/test_agent_codec.py`` checks the hand codec against pyroute2's classes both
ways, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .records import (
    INFINITY_LIFETIME,
    AddressInfo,
    AddrSpec,
    LinkInfo,
    RouteInfo,
)

# netlink header (include/uapi/linux/netlink.h)
NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

# rtnetlink message types (include/uapi/linux/rtnetlink.h)
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

RT_TABLE_MAIN = 254

# ifaddrmsg and its attributes (include/uapi/linux/if_addr.h)
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags(low byte), scope, index
RTATTR = struct.Struct("=HH")  # len, type
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_CACHEINFO = 6
IFA_FLAGS = 8
IFA_PROTO = 11
CACHEINFO = struct.Struct("=IIII")  # preferred, valid, cstamp, tstamp
U32 = struct.Struct("=I")
ERRNO = struct.Struct("=i")

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}


# ifinfomsg / rtmsg and the attributes read or sent (if_link.h, rtnetlink.h)
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
RTA_DST = 1
RTA_OIF = 4
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTN_UNICAST = 1


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _header(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type, flags, seq, 0) + body


def encode_addr_request(
    spec: AddrSpec, *, seq: int, proto: int, delete: bool = False, replace: bool = True
) -> bytes:
    """One RTM_NEWADDR (create or replace) or RTM_DELADDR request, with NLM_F_ACK.

    Both IFA_LOCAL and IFA_ADDRESS carry the address, as iproute2 sends them for a
    non-point-to-point address; the kernel matches deletes on them. IFA_PROTO marks the
    address as ours (kernel >= 6.3); on delete it is sent too, as a guard.
    """
    iface = spec.interface
    family = _FAMILY[iface.version]
    packed = iface.ip.packed
    body = bytearray(
        IFADDRMSG.pack(family, iface.network.prefixlen, spec.flags & 0xFF, 0, spec.index)
    )
    body += _attr(IFA_LOCAL, packed)
    body += _attr(IFA_ADDRESS, packed)
    if not delete:
        body += _attr(IFA_FLAGS, U32.pack(spec.flags))
        if spec.valid_lft_s is not None:
            preferred = spec.valid_lft_s if spec.preferred_lft_s is None else spec.preferred_lft_s
            body += _attr(IFA_CACHEINFO, CACHEINFO.pack(preferred, spec.valid_lft_s, 0, 0))
    body += _attr(IFA_PROTO, bytes((proto,)))
    if delete:
        msg_type, flags = RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK
    else:
        mode = NLM_F_REPLACE if replace else NLM_F_EXCL
        msg_type, flags = RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode
    return _header(msg_type, flags, seq, bytes(body))


def encode_dump_request(msg_type: int, *, seq: int, family: int = 0) -> bytes:
    """A dump request (GETLINK/GETADDR/GETROUTE) for one address family (0 = all)."""
    if msg_type == RTM_GETLINK:
        body = IFINFOMSG.pack(family, 0, 0, 0, 0)
    elif msg_type == RTM_GETADDR:
        body = IFADDRMSG.pack(family, 0, 0, 0, 0)
    elif msg_type == RTM_GETROUTE:
        body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)  # rtmsg
    else:
        raise ValueError(f"message type {msg_type} is not a dump request this codec knows")
    return _header(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def encode_link_request(
    msg_type: int,
    *,
    seq: int,
    flags: int,
    index: int = 0,
    ifname: str | None = None,
    kind: str | None = None,
    ifi_flags: int = 0,
    ifi_change: int = 0,
) -> bytes:
    """An RTM_NEWLINK/RTM_DELLINK request (strings NUL-terminated, as iproute2 sends them)."""
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, ifi_flags, ifi_change)
    if ifname is not None:
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
    if kind is not None:
        body += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, kind.encode() + b"\0"))
    return _header(msg_type, flags, seq, body)


# Per-device IPv4 settings over netlink (include/uapi/linux/if_link.h, ip.h).
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1
IPV4_DEVCONF_PROMOTE_SECONDARIES = 20


def encode_ipv4_devconf(index: int, *, seq: int, conf: int, value: int) -> bytes:
    """RTM_NEWLINK setting one IPv4 devconf entry (``net.ipv4.conf.IF.*``) of a link.

    Netlink rather than /proc/sys: /proc/sys/net follows the namespace of whoever opens
    it, and this socket already lives in the right one.
    """
    conf_attr = _attr(conf, U32.pack(value))
    inet = _attr(IFLA_INET_CONF, conf_attr)
    af_spec = _attr(IFLA_AF_SPEC, _attr(socket.AF_INET, inet))
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + af_spec
    return _header(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One netlink message cut out of a datagram (payload excludes the 16-byte header)."""

    type: int
    flags: int
    seq: int
    data: bytes
    """The whole message including its header (what pyroute2's classes parse)."""

    @property
    def payload(self) -> bytes:
        return self.data[NLMSG_HDR.size :]

    def error_code(self) -> int:
        """For NLMSG_ERROR: the positive errno, 0 for a plain ACK."""
        if len(self.data) < NLMSG_HDR.size + ERRNO.size:
            raise ValueError(f"NLMSG_ERROR of {len(self.data)} bytes is truncated")
        return -ERRNO.unpack_from(self.data, NLMSG_HDR.size)[0]


def split_messages(buf: bytes | memoryview) -> Iterator[RawMessage]:
    """Yield every netlink message in one received datagram."""
    offset = 0
    end = len(buf)
    while offset + NLMSG_HDR.size <= end:
        length, msg_type, flags, seq, _pid = NLMSG_HDR.unpack_from(buf, offset)
        if length < NLMSG_HDR.size or offset + length > end:
            raise ValueError(
                f"netlink message at offset {offset} claims {length} bytes, {end - offset} left"
            )
        yield RawMessage(msg_type, flags, seq, bytes(buf[offset : offset + length]))
        offset += _align(length)


def _lifetime(value: int) -> int | None:
    return None if value == INFINITY_LIFETIME else value


def decode_addr(data: bytes) -> AddressInfo:
    """Parse one RTM_NEWADDR message (header included) into an AddressInfo."""
    family, prefixlen, hflags, scope, index = IFADDRMSG.unpack_from(data, NLMSG_HDR.size)
    version = _VERSION.get(family)
    if version is None:
        raise ValueError(f"RTM_NEWADDR with address family {family}")
    local = address = None
    flags = hflags
    proto = 0
    valid = preferred = None
    offset = NLMSG_HDR.size + IFADDRMSG.size
    end = len(data)
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            raise ValueError(f"rtattr of length {length} in RTM_NEWADDR")
        start = offset + RTATTR.size
        stop = offset + length
        if kind == IFA_LOCAL:
            local = data[start:stop]
        elif kind == IFA_ADDRESS:
            address = data[start:stop]
        elif kind == IFA_FLAGS:
            flags = U32.unpack_from(data, start)[0]
        elif kind == IFA_PROTO:
            proto = data[start]
        elif kind == IFA_CACHEINFO:
            pref, val, _c, _t = CACHEINFO.unpack_from(data, start)
            preferred, valid = _lifetime(pref), _lifetime(val)
        offset += _align(length)
    raw = local if local is not None else address
    if raw is None:
        raise ValueError(f"RTM_NEWADDR for index {index} without IFA_LOCAL or IFA_ADDRESS")
    # (int, prefix) is the fast constructor: ip_interface((IPv4Address, n)) goes through
    # strings and costs 5x more, which shows in a dump of 10,000 addresses.
    cls = ipaddress.IPv4Interface if version == 4 else ipaddress.IPv6Interface
    return AddressInfo(
        index=index,
        interface=cls((int.from_bytes(raw, "big"), prefixlen)),
        flags=flags,
        proto=proto,
        valid_lft_s=valid,
        preferred_lft_s=preferred,
        scope=scope,
    )


def _attrs(data: bytes, offset: int, end: int | None = None) -> dict[int, bytes]:
    """rtattrs from ``offset`` to ``end`` as type -> payload (the first of each type)."""
    out: dict[int, bytes] = {}
    end = len(data) if end is None else end
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:
            raise ValueError(f"rtattr of length {length} at offset {offset} overruns {end}")
        out.setdefault(kind & 0x3FFF, data[offset + RTATTR.size : offset + length])  # no flags
        offset += _align(length)
    return out


def _asciiz(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


def decode_link(data: bytes) -> LinkInfo:
    """Parse one RTM_NEWLINK message (header included)."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, NLMSG_HDR.size)
    attrs = _attrs(data, NLMSG_HDR.size + IFINFOMSG.size)
    if IFLA_IFNAME not in attrs:
        raise ValueError(f"RTM_NEWLINK for index {index} without IFLA_IFNAME")
    kind = None
    if IFLA_LINKINFO in attrs:
        info = _attrs(attrs[IFLA_LINKINFO], 0)
        kind = _asciiz(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
    mac = attrs.get(IFLA_ADDRESS)
    return LinkInfo(index=index, name=_asciiz(attrs[IFLA_IFNAME]), kind=kind, flags=flags,
                    mac=bytes(mac) if mac else None)


def decode_route(data: bytes) -> RouteInfo | None:
    """Parse one RTM_NEWROUTE message; None for routes outside the main unicast table."""
    family, dst_len, _s, _tos, table, _proto, _scope, rtype, _f = RTMSG.unpack_from(
        data, NLMSG_HDR.size)
    attrs = _attrs(data, NLMSG_HDR.size + RTMSG.size)
    if RTA_TABLE in attrs:
        table = U32.unpack(attrs[RTA_TABLE][:4])[0]
    version = _VERSION.get(family)
    if table != RT_TABLE_MAIN or rtype != RTN_UNICAST or version is None:
        return None
    raw = attrs.get(RTA_DST)
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    value = int.from_bytes(raw, "big") if raw else 0
    dst = cls((value, dst_len), strict=False)
    oif: int | None = None
    if RTA_OIF in attrs:
        oif = U32.unpack(attrs[RTA_OIF][:4])[0]
    elif RTA_MULTIPATH in attrs and len(attrs[RTA_MULTIPATH]) >= RTNEXTHOP.size:
        oif = RTNEXTHOP.unpack_from(attrs[RTA_MULTIPATH], 0)[3]
    prio = U32.unpack(attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else 0
    return RouteInfo(family=version, dst=dst, oif=oif, priority=prio)
