"""Shared builders for the gossip tests (keys, codecs, sample messages)."""

from __future__ import annotations

import ipaddress

from purelb.election._codec import PacketCodec
from purelb.election._crypto import Keyring
from purelb.election._timings import DEFAULT_LIMITS
from purelb.election._wire import (
    Ack,
    Address,
    Alive,
    Dead,
    IndirectPing,
    MemberMeta,
    MemberState,
    Message,
    Nack,
    NodeName,
    Ping,
    PushPull,
    StateEntry,
    Suspect,
)

SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))
CLUSTER = "test-cluster"

META = MemberMeta(
    subnets=(ipaddress.ip_network("172.31.255.0/24"), ipaddress.ip_network("fd00:db8:ff::/64")),
    ready=True,
)
ADDR = Address("172.31.255.11", 7934)
ADDR6 = Address("fd00:db8:ff::11", 7934)

SAMPLE_MESSAGES: list[Message] = [
    Ping(1, NodeName("b")),
    IndirectPing(2, NodeName("c"), ADDR6, True),
    Ack(3),
    Nack(4),
    Suspect(NodeName("b"), 7, NodeName("a")),
    Alive(NodeName("a"), 2**63, ADDR, META),
    Dead(NodeName("b"), 9, NodeName("b")),
    PushPull(True, (StateEntry(NodeName("a"), 1, MemberState.SUSPECT, ADDR, META),
                    StateEntry(NodeName("ü-node"), 2, MemberState.LEFT, ADDR6, MemberMeta()))),
]


def keyring(**secrets: bytes) -> Keyring:
    return Keyring.from_secrets(secrets or {"k1": SECRET_A})


def codec(name: str, *, epoch: int = 1, cluster: str = CLUSTER,
          ring: Keyring | None = None) -> PacketCodec:
    return PacketCodec(node=NodeName(name), epoch=epoch, cluster=cluster,
                       keyring=ring or keyring(), limits=DEFAULT_LIMITS)
