"""GARP and unsolicited-NA frames, byte for byte."""

from __future__ import annotations

import ipaddress

import pytest

from purelb.agent.garp import ARP_REPLY, ARP_REQUEST, arp_frame, na_message

MAC = bytes.fromhex("020000000001")


def test_arp_request_frame_is_a_padded_broadcast_announcement() -> None:
    frame = arp_frame(MAC, ipaddress.IPv4Address("172.31.255.200"), op=ARP_REQUEST)
    expected = bytes.fromhex(
        "ffffffffffff" "020000000001" "0806"   # Ethernet: broadcast, our MAC, ARP
        "0001" "0800" "06" "04" "0001"         # Ethernet/IPv4, request
        "020000000001" "ac1fffc8"              # sender = us, the VIP
        "000000000000" "ac1fffc8"              # target MAC zero, target IP = the VIP
    ) + bytes(18)  # fmt: skip
    assert frame == expected
    assert len(frame) == 60


def test_arp_reply_frame_names_our_mac_as_target_too() -> None:
    frame = arp_frame(MAC, ipaddress.IPv4Address("192.0.2.1"), op=ARP_REPLY)
    assert frame[20:22] == b"\x00\x02"
    assert frame[22:32] == MAC + bytes([192, 0, 2, 1])
    assert frame[32:42] == MAC + bytes([192, 0, 2, 1])


def test_na_message_is_an_unsolicited_override_advert_with_target_lladdr() -> None:
    msg = na_message(MAC, ipaddress.IPv6Address("fd00:db8:ff::200"))
    expected = bytes.fromhex(
        "88" "00" "0000"                        # type 136, code 0, checksum (kernel fills)
        "20000000"                              # R=0 S=0 O=1
        "fd000db800ff00000000000000000200"      # target
        "02" "01" "020000000001"                # option: target link-layer address
    )  # fmt: skip
    assert msg == expected


def test_frames_reject_a_mac_that_is_not_six_bytes() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        arp_frame(b"\x01\x02", ipaddress.IPv4Address("192.0.2.1"))
    with pytest.raises(ValueError, match="6 bytes"):
        na_message(b"\x01" * 8, ipaddress.IPv6Address("::1"))


def test_arp_frame_rejects_an_unknown_op() -> None:
    with pytest.raises(ValueError, match="ARP op 3"):
        arp_frame(MAC, ipaddress.IPv4Address("192.0.2.1"), op=3)
