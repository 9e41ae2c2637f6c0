"""Wire format: round trips, bounds, and append-only message ids."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from purelb.election import _crypto
from purelb.election._timings import DEFAULT_LIMITS
from purelb.election._wire import (
    ENVELOPE_OVERHEAD_BYTES,
    Address,
    Alive,
    MemberMeta,
    MessageType,
    NodeName,
    Ping,
    decode_plaintext,
    encode_message,
    encode_plaintext,
)
from purelb.errors import PacketRejected
from tests.unit.gossip_helpers import ADDR, SAMPLE_MESSAGES


def test_message_ids_are_append_only():
    """Verify that the wire ids never change (renumbering breaks mixed-version clusters)."""
    assert {t.name: t.value for t in MessageType} == {
        "PING": 1, "INDIRECT_PING": 2, "ACK": 3, "NACK": 4, "SUSPECT": 5, "ALIVE": 6,
        "DEAD": 7, "PUSH_PULL": 8,
    }


def test_envelope_overhead_constant_matches_crypto():
    assert ENVELOPE_OVERHEAD_BYTES == _crypto.ENVELOPE_OVERHEAD_BYTES


@pytest.mark.parametrize("msg", SAMPLE_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(msg):
    raw = encode_plaintext(NodeName("sender"), 5, 6, [encode_message(msg)])
    plain = decode_plaintext(raw)
    assert (plain.sender, plain.epoch, plain.seq, plain.messages) == ("sender", 5, 6, (msg,))


def test_unknown_message_type_is_skipped_and_the_rest_kept():
    """Verify that a newer peer's message type does not poison a compound datagram."""
    unknown = bytes([200, 0, 3]) + b"xyz"
    raw = encode_plaintext(NodeName("s"), 1, 1, [unknown, encode_message(Ping(1, NodeName("a")))])
    assert decode_plaintext(raw).messages == (Ping(1, NodeName("a")),)


@pytest.mark.parametrize(
    ("desc", "mutate"),
    [
        ("a message length beyond the buffer", lambda raw: raw[:-1]),
        ("trailing garbage after the last message", lambda raw: raw + b"\x00"),
        ("a zero-length sender name", lambda raw: b"\x00" + raw[7:]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_decoder_rejects_bad_lengths(desc, mutate):
    raw = encode_plaintext(NodeName("sender"), 1, 1, [encode_message(Ping(1, NodeName("a")))])
    with pytest.raises(PacketRejected) as info:
        decode_plaintext(mutate(raw))
    assert info.value.reason == "malformed"


def test_decoder_rejects_subnet_with_host_bits():
    meta = MemberMeta(subnets=(ipaddress.ip_network("10.0.0.0/24"),))
    raw = bytearray(encode_plaintext(NodeName("s"), 1, 1, [
        encode_message(Alive(NodeName("a"), 1, ADDR, meta))]))
    raw[-2] = 1  # 10.0.0.1/24: the last address byte, before the prefix length
    with pytest.raises(PacketRejected, match="host bits"):
        decode_plaintext(bytes(raw))


def test_decoder_bounds_subnet_count_before_reading():
    meta = MemberMeta(subnets=tuple(ipaddress.ip_network(f"10.{i}.0.0/16") for i in range(40)))
    raw = encode_plaintext(NodeName("s"), 1, 1, [
        encode_message(Alive(NodeName("a"), 1, ADDR, meta))])
    with pytest.raises(PacketRejected, match="exceed the limit"):
        decode_plaintext(raw, DEFAULT_LIMITS)


def test_encoder_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="64 bits"):
        encode_message(Alive(NodeName("a"), 2**64, ADDR, MemberMeta()))
    with pytest.raises(ValueError, match=r"1\.\.255"):
        encode_message(Ping(1, NodeName("x" * 256)))


names = st.text(min_size=1, max_size=20).filter(lambda s: 0 < len(s.encode()) <= 253)


@given(seq=st.integers(0, 2**32 - 1), target=names, host=st.ip_addresses(),
       port=st.integers(1, 65535))
def test_ping_and_alive_round_trip_for_any_value(seq, target, host, port):
    msgs = [Ping(seq, NodeName(target)),
            Alive(NodeName(target), seq, Address(str(host), port), MemberMeta(ready=False))]
    raw = encode_plaintext(NodeName("s"), 1, 1, [encode_message(m) for m in msgs])
    assert decode_plaintext(raw).messages == tuple(msgs)


@given(st.binary(max_size=1500))
def test_decoder_never_crashes_on_arbitrary_bytes(data):
    try:
        decode_plaintext(data)
    except PacketRejected as exc:
        assert exc.reason == "malformed"
