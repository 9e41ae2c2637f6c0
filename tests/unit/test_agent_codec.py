"""The hand-written address codec agrees with pyroute2's message classes, both ways."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from purelb.agent import codec
from purelb.agent.records import (
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    IFA_F_PERMANENT,
    AddrSpec,
)

SPECS = [
    AddrSpec(index=3, interface=ipaddress.ip_interface("192.0.2.10/32")),
    AddrSpec(
        index=7,
        interface=ipaddress.ip_interface("172.31.255.200/24"),
        flags=IFA_F_NOPREFIXROUTE,
        valid_lft_s=300,
    ),
    AddrSpec(
        index=2,
        interface=ipaddress.ip_interface("fd00:db8:ff::200/64"),
        flags=IFA_F_NODAD | IFA_F_NOPREFIXROUTE,
        valid_lft_s=300,
        preferred_lft_s=0,
    ),
]


def _pyroute2_decode(data: bytes) -> ifaddrmsg:
    msg = ifaddrmsg(data)
    msg.decode()
    return msg


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: str(s.interface))
def test_encode_addr_request_decodes_with_pyroute2_to_the_same_fields(spec: AddrSpec) -> None:
    data = codec.encode_addr_request(spec, seq=42, proto=0x7A)
    msg = _pyroute2_decode(data)
    assert msg["header"]["type"] == codec.RTM_NEWADDR
    assert msg["header"]["sequence_number"] == 42
    assert msg["header"]["length"] == len(data)
    flags = msg["header"]["flags"]
    assert flags & codec.NLM_F_ACK and flags & codec.NLM_F_CREATE and flags & codec.NLM_F_REPLACE
    assert msg["family"] == (socket.AF_INET if spec.interface.version == 4 else socket.AF_INET6)
    assert msg["prefixlen"] == spec.interface.network.prefixlen
    assert msg["index"] == spec.index
    assert msg.get_attr("IFA_LOCAL") == str(spec.interface.ip)
    assert msg.get_attr("IFA_ADDRESS") == str(spec.interface.ip)
    assert msg.get_attr("IFA_FLAGS") == spec.flags
    assert msg.get_attr("IFA_PROTO") == 0x7A
    cache = msg.get_attr("IFA_CACHEINFO")
    if spec.valid_lft_s is None:
        assert cache is None
    else:
        want_pref = spec.valid_lft_s if spec.preferred_lft_s is None else spec.preferred_lft_s
        assert (cache["ifa_valid"], cache["ifa_preferred"]) == (spec.valid_lft_s, want_pref)


def test_encode_delete_request_carries_address_and_proto_but_no_options() -> None:
    data = codec.encode_addr_request(SPECS[1], seq=1, proto=0x7A, delete=True)
    msg = _pyroute2_decode(data)
    assert msg["header"]["type"] == codec.RTM_DELADDR
    assert msg["header"]["flags"] == codec.NLM_F_REQUEST | codec.NLM_F_ACK
    assert msg.get_attr("IFA_LOCAL") == "172.31.255.200"
    assert msg.get_attr("IFA_CACHEINFO") is None
    assert msg.get_attr("IFA_PROTO") == 0x7A


def _pyroute2_addr(address: str, prefixlen: int, **attrs: object) -> bytes:
    msg = ifaddrmsg()
    ip = ipaddress.ip_address(address)
    msg["family"] = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    msg["prefixlen"] = prefixlen
    msg["flags"] = IFA_F_PERMANENT
    msg["index"] = 9
    msg["attrs"] = [("IFA_ADDRESS", address), *attrs.items()]
    msg["header"]["type"] = codec.RTM_NEWADDR
    msg.encode()
    return bytes(msg.data)


def test_decode_addr_reads_a_pyroute2_encoded_message_with_every_attribute() -> None:
    data = _pyroute2_addr(
        "fd00:db8::5",
        64,
        IFA_FLAGS=IFA_F_PERMANENT | IFA_F_NOPREFIXROUTE,
        IFA_PROTO=0x7A,
        IFA_CACHEINFO={"ifa_preferred": 0, "ifa_valid": 299, "cstamp": 1, "tstamp": 2},
    )
    info = codec.decode_addr(data)
    assert info.index == 9
    assert info.interface == ipaddress.ip_interface("fd00:db8::5/64")
    assert info.flags == IFA_F_PERMANENT | IFA_F_NOPREFIXROUTE
    assert info.proto == 0x7A
    assert (info.valid_lft_s, info.preferred_lft_s) == (299, 0)


def test_decode_addr_defaults_when_proto_flags_and_lifetimes_are_absent() -> None:
    info = codec.decode_addr(_pyroute2_addr("192.0.2.1", 24, IFA_LOCAL="192.0.2.1"))
    assert info.interface == ipaddress.ip_interface("192.0.2.1/24")
    assert info.flags == IFA_F_PERMANENT  # header byte when IFA_FLAGS is missing
    assert info.proto == 0
    assert info.valid_lft_s is None and info.preferred_lft_s is None


def test_decode_addr_maps_infinite_lifetimes_to_none() -> None:
    inf = 0xFFFFFFFF
    data = _pyroute2_addr(
        "192.0.2.1",
        32,
        IFA_CACHEINFO={"ifa_preferred": inf, "ifa_valid": inf, "cstamp": 0, "tstamp": 0},
    )
    info = codec.decode_addr(data)
    assert info.valid_lft_s is None and info.preferred_lft_s is None


def test_decode_addr_rejects_a_message_without_an_address() -> None:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["header"]["type"] = codec.RTM_NEWADDR
    msg.encode()
    with pytest.raises(ValueError, match="without IFA_LOCAL"):
        codec.decode_addr(bytes(msg.data))


def test_split_messages_cuts_a_datagram_and_rejects_a_truncated_one() -> None:
    a = codec.encode_addr_request(SPECS[0], seq=1, proto=0x7A)
    b = codec.encode_addr_request(SPECS[2], seq=2, proto=0x7A)
    msgs = list(codec.split_messages(a + b))
    assert [(m.type, m.seq) for m in msgs] == [(codec.RTM_NEWADDR, 1), (codec.RTM_NEWADDR, 2)]
    assert msgs[1].data == b
    with pytest.raises(ValueError, match="claims"):
        list(codec.split_messages(a + b[:-4]))


def test_error_code_is_the_positive_errno() -> None:
    ack = codec.NLMSG_HDR.pack(36, codec.NLMSG_ERROR, 0, 5, 0) + codec.ERRNO.pack(-17) + bytes(16)
    (msg,) = codec.split_messages(ack)
    assert msg.error_code() == 17


def test_encode_link_request_creates_a_named_link_of_a_kind() -> None:
    data = codec.encode_link_request(
        codec.RTM_NEWLINK, seq=3, flags=codec.NLM_F_REQUEST, ifname="kube-lb0", kind="dummy"
    )
    msg = ifinfmsg(data)
    msg.decode()
    assert msg.get_attr("IFLA_IFNAME") == "kube-lb0"
    assert msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "dummy"


def test_decode_link_reads_name_kind_flags_and_mac() -> None:
    msg = ifinfmsg()
    msg["index"] = 4
    msg["flags"] = 0x1
    msg["attrs"] = [
        ("IFLA_IFNAME", "eth0"),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}),
    ]
    msg["header"]["type"] = codec.RTM_NEWLINK
    msg.encode()
    link = codec.decode_link(bytes(msg.data))
    assert (link.index, link.name, link.kind, link.is_up) == (4, "eth0", "veth", True)
    assert link.mac == bytes.fromhex("020000000001")


def _route(family: int, dst: str | None, dst_len: int, **attrs: object) -> bytes:
    msg = rtmsg()
    msg["family"] = family
    msg["dst_len"] = dst_len
    msg["table"] = 254
    msg["type"] = 1
    msg["attrs"] = ([("RTA_DST", dst)] if dst else []) + list(attrs.items())
    msg["header"]["type"] = codec.RTM_NEWROUTE
    msg.encode()
    return bytes(msg.data)


def test_decode_route_reads_default_and_prefix_routes() -> None:
    default = codec.decode_route(_route(socket.AF_INET, None, 0, RTA_OIF=2, RTA_PRIORITY=100))
    assert default is not None
    assert (str(default.dst), default.oif, default.priority) == ("0.0.0.0/0", 2, 100)
    net = codec.decode_route(_route(socket.AF_INET6, "fd00:db8::", 64, RTA_OIF=5))
    assert net is not None and str(net.dst) == "fd00:db8::/64" and net.family == 6


def test_dump_request_for_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="dump request"):
        codec.encode_dump_request(codec.RTM_NEWADDR, seq=1)


def test_ipv4_devconf_request_is_byte_exact() -> None:
    data = codec.encode_ipv4_devconf(7, seq=1, conf=codec.IPV4_DEVCONF_PROMOTE_SECONDARIES, value=1)
    expected = bytes.fromhex(
        "34000000" "1000" "0500" "01000000" "00000000"   # nlmsghdr: 52 bytes, NEWLINK, REQ|ACK
        "00" "00" "0000" "07000000" "00000000" "00000000"  # ifinfomsg: index 7
        "1400" "1a00"                                    # IFLA_AF_SPEC
        "1000" "0200"                                    #   AF_INET
        "0c00" "0100"                                    #     IFLA_INET_CONF
        "0800" "1400" "01000000"                         #       [20] promote_secondaries = 1
    )  # fmt: skip
    assert data == expected
