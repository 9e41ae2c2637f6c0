"""Envelope, keyring, replay window, rate limit: what gets in and what never does."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from purelb.election._codec import RateLimiter, ReplayGuard
from purelb.election._crypto import (
    ENVELOPE_VERSION,
    HEADER_BYTES,
    Envelope,
    GossipKey,
    Keyring,
    parse_secret_data,
    secret_data,
)
from purelb.election._reasons import RejectReason
from purelb.election._wire import Ping, encode_message
from purelb.errors import ConfigError, PacketRejected
from tests.unit.gossip_helpers import CLUSTER, SECRET_A, SECRET_B, codec, keyring

PING = [encode_message(Ping(1, "b"))]


def reason_of(fn, *args) -> str:
    with pytest.raises(PacketRejected) as info:
        fn(*args)
    return info.value.reason


def test_sealed_datagram_opens_on_the_peer():
    a, b = codec("a"), codec("b")
    plain = b.decode(a.encode(PING), "10.0.0.1", 0.0)
    assert (plain.sender, plain.epoch, plain.seq) == ("a", 1, 1)


def test_replayed_datagram_is_rejected():
    a, b = codec("a"), codec("b")
    packet = a.encode(PING)
    b.decode(packet, "10.0.0.1", 0.0)
    assert reason_of(b.decode, packet, "10.0.0.1", 0.0) == RejectReason.REPLAY


def test_datagram_from_an_earlier_epoch_is_stale():
    """Verify that a restarted sender's old datagrams are refused once its new epoch is seen."""
    old, new, b = codec("a", epoch=1), codec("a", epoch=2), codec("b")
    recorded = old.encode(PING)
    b.decode(new.encode(PING), "10.0.0.1", 0.0)
    assert reason_of(b.decode, recorded, "10.0.0.1", 0.0) == RejectReason.STALE


def test_foreign_cluster_is_rejected_even_with_the_same_key():
    a, b = codec("a", cluster="other"), codec("b")
    assert reason_of(b.decode, a.encode(PING), "10.0.0.1", 0.0) == RejectReason.FOREIGN_CLUSTER


def test_plaintext_and_truncated_and_oversize_are_rejected():
    b = codec("b")
    assert reason_of(b.decode, b"hello gossip", "h", 0.0) == RejectReason.PLAINTEXT
    assert reason_of(b.decode, b"PG\x01", "h", 0.0) == RejectReason.TRUNCATED
    assert reason_of(b.decode, b"PG" + b"\x00" * 1500, "h", 0.0) == RejectReason.OVERSIZE


def test_unknown_key_and_forged_tag_are_rejected():
    a = codec("a", ring=keyring(k9=SECRET_B))
    b = codec("b")
    assert reason_of(b.decode, a.encode(PING), "h", 0.0) == RejectReason.UNKNOWN_KEY
    packet = bytearray(codec("a").encode(PING))
    packet[-1] ^= 1
    assert reason_of(b.decode, bytes(packet), "h", 0.0) == RejectReason.AUTH_FAILED


def test_header_fields_are_authenticated():
    """Verify that flipping the version byte is caught (version check) and that the nonce
    is bound: changing it makes the tag fail."""
    b = codec("b")
    packet = bytearray(codec("a").encode(PING))
    packet[2] = ENVELOPE_VERSION + 1
    assert reason_of(b.decode, bytes(packet), "h", 0.0) == RejectReason.BAD_VERSION
    packet = bytearray(codec("a").encode(PING))
    packet[HEADER_BYTES - 1] ^= 0xFF
    assert reason_of(b.decode, bytes(packet), "h", 0.0) == RejectReason.AUTH_FAILED


def test_packet_claiming_our_own_name_is_rejected():
    assert reason_of(codec("a").decode, codec("a").encode(PING), "h", 0.0) == RejectReason.SELF


def test_rotation_install_use_remove_never_rejects_a_packet():
    """Verify the rotation steps: both keys installed, primary switched on one side first,
    old key removed last; every packet in between opens."""
    a, b = codec("a"), codec("b")
    both_old_primary = Keyring.from_secrets({"k1": SECRET_A, "k2": SECRET_B}, primary="k1")
    both_new_primary = Keyring.from_secrets({"k1": SECRET_A, "k2": SECRET_B}, primary="k2")
    only_new = Keyring.from_secrets({"k2": SECRET_B})
    for ring_a, ring_b in [
        (both_old_primary, keyring()),          # a installs k2 first
        (both_old_primary, both_old_primary),   # everyone has k2
        (both_new_primary, both_old_primary),   # a sends with k2, b still with k1
        (both_new_primary, both_new_primary),
        (only_new, both_new_primary),           # a removed k1
        (only_new, only_new),
    ]:
        a.set_keyring(ring_a)
        b.set_keyring(ring_b)
        b.decode(a.encode(PING), "ha", 0.0)
        a.decode(b.encode(PING), "hb", 0.0)


def test_secret_data_parses_into_a_keyring_with_greatest_name_primary():
    ring = parse_secret_data(secret_data({"k2026-10": SECRET_A, "k2026-11": SECRET_B}))
    assert [k.name for k in ring.keys] == ["k2026-10", "k2026-11"]
    assert ring.primary.name == "k2026-11"
    explicit = parse_secret_data(secret_data({"a": SECRET_A, "b": SECRET_B}, primary="a"))
    assert explicit.primary.name == "a"


@pytest.mark.parametrize(
    ("desc", "data", "match"),
    [
        ("empty secret", {}, "empty"),
        ("not base64", {"k": "@@@"}, "'k' is not valid base64"),
        ("too short", {"k": base64.b64encode(b"short").decode()}, "need 16"),
        ("primary names a missing key",
         {"k": base64.b64encode(SECRET_A).decode(), "primary": base64.b64encode(b"x").decode()},
         "'x' is not one of"),
        ("duplicate secrets", secret_data({"a": SECRET_A, "b": SECRET_A}), "same secret"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_secret_data_raises_config_error_without_the_secret(desc, data, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_secret_data(data)
    assert base64.b64encode(SECRET_A).decode() not in str(info.value)


def test_key_objects_never_show_material():
    key = GossipKey("k1", SECRET_A)
    ring = keyring()
    env = Envelope(CLUSTER, ring, max_packet_bytes=1400)
    for text in (repr(key), str(key), repr(ring), repr(env)):
        assert SECRET_A.hex() not in text
        assert base64.b64encode(SECRET_A).decode() not in text
        assert "k1" in text


def test_replay_window_accepts_reordering_inside_and_rejects_outside():
    guard = ReplayGuard(window=8, max_senders=4, forget_s=30.0)
    for seq in (5, 3, 4, 10):
        guard.check("a", 1, seq, 0.0)
    with pytest.raises(PacketRejected, match="already"):
        guard.check("a", 1, 4, 0.0)
    with pytest.raises(PacketRejected, match="below the replay window"):
        guard.check("a", 1, 2, 0.0)
    guard.check("a", 1, 9, 0.0)


def test_lower_epoch_is_accepted_only_after_the_sender_was_silent_long_enough():
    """Verify that a restart with a clock stepped back gets in once the old sender has
    been silent for forget_s, and not before."""
    guard = ReplayGuard(window=8, max_senders=4, forget_s=30.0)
    guard.check("a", 1000, 1, 0.0)
    with pytest.raises(PacketRejected, match="older"):
        guard.check("a", 900, 1, 29.0)
    guard.check("a", 900, 1, 31.0)
    with pytest.raises(PacketRejected, match="already"):
        guard.check("a", 900, 1, 31.5)


def test_rate_limiter_drops_a_flood_and_refills():
    limiter = RateLimiter(rate_per_s=10, burst=5, max_sources=2)
    assert sum(limiter.allow("x", 0.0) for _ in range(20)) == 5
    assert limiter.allow("y", 0.0)  # other sources are unaffected
    assert limiter.allow("x", 0.5)  # 0.5 s refills 5 tokens


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzzed_datagrams_never_crash_and_forgeries_never_open(data):
    """Verify that any mutation of a genuine packet is rejected with a stable reason,
    never accepted and never an unexpected exception (the long run is in bench/gossip.py)."""
    a, b = codec("a"), codec("b")
    packet = bytearray(a.encode(PING))
    b.decode(bytes(packet), "h", 0.0)  # the genuine one, now recorded
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "random"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(packet) - 1))
        packet[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        packet = packet[: data.draw(st.integers(0, len(packet) - 1))]
    elif kind == "extend":
        packet += data.draw(st.binary(min_size=1, max_size=64))
    else:
        packet = bytearray(data.draw(st.binary(max_size=1500)))
    with pytest.raises(PacketRejected) as info:
        b.decode(bytes(packet), "h", 0.0)
    assert info.value.reason in set(RejectReason)
