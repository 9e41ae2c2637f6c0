"""Gossip wire format: the message types and their compact binary encoding (``struct``).

This module owns the *plaintext* inside a sealed datagram (``_crypto`` owns the envelope).
It is pure: bytes in, frozen dataclasses out. No pickle, no msgpack, no eval.

Plaintext layout (all integers big-endian)::

    sender   u8 length + UTF-8 node name     who sealed it (authenticated by the AEAD)
    epoch    u64                             sender's incarnation at process start
    seq      u64                             sender's datagram counter (replay window)
    count    u8                              messages that follow
    count x  type u8 | length u16 | body     one message; unknown types are skipped

Every length is checked against the bytes left and the :class:`GossipLimits` before it is
used, so a hostile length can neither over-read nor make us allocate more than one
datagram's worth. Decoding failures raise :class:`PacketRejected` with ``reason="malformed"``.

Message types are an append-only enum (:class:`MessageType`); each message class below says
who sends it and why, and ``Swim._dispatch`` handles each type in one ``match``.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import NamedTuple, NewType

from ..errors import PacketRejected
from ._reasons import RejectReason
from ._timings import DEFAULT_LIMITS, GossipLimits

#: PureLB's gossip port (memberlist era, research/purelb.md 5.2), TCP-free here.
DEFAULT_PORT = 7934

NodeName = NewType("NodeName", str)
"""A member's identity: the Kubernetes node name."""

Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


class Address(NamedTuple):
    """A gossip endpoint: canonical IP text and UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class MessageType(enum.IntEnum):
    """Wire ids of the message types. ONLY APPEND TO THIS LIST; never renumber or reuse."""

    PING = 1
    INDIRECT_PING = 2
    ACK = 3
    NACK = 4
    SUSPECT = 5
    ALIVE = 6
    DEAD = 7
    PUSH_PULL = 8


class MemberState(enum.IntEnum):
    """A member's state as gossiped. Wire values: append only."""

    ALIVE = 0
    """Answering probes (or refuted its last suspicion)."""
    SUSPECT = 1
    """A probe failed; dead unless it refutes before its suspicion timeout."""
    DEAD = 2
    """Declared dead after an unrefuted suspicion."""
    LEFT = 3
    """Left gracefully (announced its own departure)."""


@dataclass(frozen=True, slots=True)
class MemberMeta:
    """What a member gossips about itself besides liveness."""

    subnets: tuple[Subnet, ...] = ()
    """Networks of the node's interfaces: addresses it can hold (research/purelb.md 5.1)."""
    ready: bool = True
    """False while the node's agent is not ready to announce (it then never wins)."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. Sent by the prober to ``target``; answered with :class:`Ack`."""

    seq: int
    target: NodeName


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """"Please probe ``target`` for me." Sent by a prober whose direct probe timed out to
    ``indirect_checks`` members; they ping the target and relay the :class:`Ack`, or send a
    :class:`Nack` when ``want_nack`` and the target stayed silent (Lifeguard)."""

    seq: int
    target: NodeName
    target_addr: Address
    want_nack: bool = True


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a :class:`Ping` (or relayed answer to an :class:`IndirectPing`)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """Sent by an indirect prober when the target did not answer it in time: tells the
    requester that the relay path works, so its own health is fine (Lifeguard)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """Broadcast: ``source`` failed to probe ``node`` at ``incarnation``."""

    node: NodeName
    incarnation: int
    source: NodeName


@dataclass(frozen=True, slots=True)
class Alive:
    """Broadcast: ``node`` is alive at ``incarnation`` with this address and metadata.
    Sent by a member about itself on join, on metadata change and to refute a suspicion."""

    node: NodeName
    incarnation: int
    addr: Address
    meta: MemberMeta


@dataclass(frozen=True, slots=True)
class Dead:
    """Broadcast: ``source`` declares ``node`` dead at ``incarnation``; ``source == node``
    means a graceful leave."""

    node: NodeName
    incarnation: int
    source: NodeName


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One member's full state inside a :class:`PushPull`."""

    node: NodeName
    incarnation: int
    state: MemberState
    addr: Address
    meta: MemberMeta


@dataclass(frozen=True, slots=True)
class PushPull:
    """Anti-entropy: a chunk of the sender's full member table. A chunk with
    ``reply_wanted`` asks the receiver to answer with its own table (join and periodic
    push-pull); replies have it unset so the exchange stops after one round trip."""

    reply_wanted: bool
    states: tuple[StateEntry, ...] = field(default=())


Message = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | PushPull


@dataclass(frozen=True, slots=True)
class Plaintext:
    """A decoded datagram: who sent it, its replay counters and its messages."""

    sender: NodeName
    epoch: int
    seq: int
    messages: tuple[Message, ...]


_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_MSG_HEADER = struct.Struct("!BH")
_U64_MAX = 2**64 - 1
_U32_MAX = 2**32 - 1

#: Bytes of the plaintext header besides the sender name: name length, epoch, seq, count.
PLAINTEXT_FIXED_BYTES = 1 + 8 + 8 + 1
#: Bytes a message adds around its body: type and length.
MESSAGE_OVERHEAD_BYTES = _MSG_HEADER.size
#: Most messages in one datagram (one count byte).
MAX_MESSAGES_PER_PACKET = 255


#: Bytes the sealing envelope adds to every plaintext (header 31 + AEAD tag 16); checked
#: against ``_crypto`` by a test. Kept here so the pure SWIM core can size packets without
#: importing the crypto layer.
ENVELOPE_OVERHEAD_BYTES = 47


def _malformed(what: str) -> PacketRejected:
    return PacketRejected(f"malformed gossip payload: {what}", reason=RejectReason.MALFORMED)


# -- encoding -------------------------------------------------------------------------


def _name(out: bytearray, name: str) -> None:
    raw = name.encode()
    if not 0 < len(raw) <= 255:
        raise ValueError(f"node name {name!r} must be 1..255 UTF-8 bytes")
    out += _U8.pack(len(raw))
    out += raw


def _addr(out: bytearray, addr: Address) -> None:
    ip = ipaddress.ip_address(addr.host)
    out += _U8.pack(ip.version)
    out += ip.packed
    out += _U16.pack(addr.port)


def _meta(out: bytearray, meta: MemberMeta) -> None:
    out += _U8.pack(1 if meta.ready else 0)
    if len(meta.subnets) > 255:
        raise ValueError(f"{len(meta.subnets)} subnets do not fit one count byte")
    out += _U8.pack(len(meta.subnets))
    for net in meta.subnets:
        out += _U8.pack(net.version)
        out += net.network_address.packed
        out += _U8.pack(net.prefixlen)


def _u64(out: bytearray, value: int) -> None:
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{value} does not fit in 64 bits")
    out += _U64.pack(value)


def _u32(out: bytearray, value: int) -> None:
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{value} does not fit in 32 bits")
    out += _U32.pack(value)


def _state_entry(out: bytearray, entry: StateEntry) -> None:
    _name(out, entry.node)
    _u64(out, entry.incarnation)
    out += _U8.pack(entry.state)
    _addr(out, entry.addr)
    _meta(out, entry.meta)


def encode_message(msg: Message) -> bytes:
    """Encode one message with its type and length prefix."""
    body = bytearray()
    match msg:
        case Ping(seq, target):
            kind = MessageType.PING
            _u32(body, seq)
            _name(body, target)
        case IndirectPing(seq, target, target_addr, want_nack):
            kind = MessageType.INDIRECT_PING
            _u32(body, seq)
            _name(body, target)
            _addr(body, target_addr)
            body += _U8.pack(1 if want_nack else 0)
        case Ack(seq):
            kind = MessageType.ACK
            _u32(body, seq)
        case Nack(seq):
            kind = MessageType.NACK
            _u32(body, seq)
        case Suspect(node, incarnation, source):
            kind = MessageType.SUSPECT
            _name(body, node)
            _u64(body, incarnation)
            _name(body, source)
        case Alive(node, incarnation, addr, meta):
            kind = MessageType.ALIVE
            _name(body, node)
            _u64(body, incarnation)
            _addr(body, addr)
            _meta(body, meta)
        case Dead(node, incarnation, source):
            kind = MessageType.DEAD
            _name(body, node)
            _u64(body, incarnation)
            _name(body, source)
        case PushPull(reply_wanted, states):
            kind = MessageType.PUSH_PULL
            body += _U8.pack(1 if reply_wanted else 0)
            if len(states) > 0xFFFF:
                raise ValueError(f"{len(states)} states do not fit one push-pull message")
            body += _U16.pack(len(states))
            for entry in states:
                _state_entry(body, entry)
        case _:
            raise TypeError(f"not a gossip message: {msg!r}")
    if len(body) > 0xFFFF:
        raise ValueError(f"{kind.name} body of {len(body)} bytes exceeds the 16-bit length")
    return _MSG_HEADER.pack(kind, len(body)) + bytes(body)


def encode_state_entry(entry: StateEntry) -> bytes:
    """Encoded size source for push-pull chunking (no message header)."""
    out = bytearray()
    _state_entry(out, entry)
    return bytes(out)


#: Bytes a PushPull message adds besides its entries: header, flag, count.
PUSH_PULL_OVERHEAD_BYTES = MESSAGE_OVERHEAD_BYTES + 1 + 2


def encode_plaintext(
    sender: NodeName, epoch: int, seq: int, encoded_messages: list[bytes] | tuple[bytes, ...]
) -> bytes:
    """Assemble a datagram's plaintext from already encoded messages."""
    if len(encoded_messages) > MAX_MESSAGES_PER_PACKET:
        raise ValueError(f"{len(encoded_messages)} messages exceed {MAX_MESSAGES_PER_PACKET}")
    out = bytearray()
    _name(out, sender)
    _u64(out, epoch)
    _u64(out, seq)
    out += _U8.pack(len(encoded_messages))
    for raw in encoded_messages:
        out += raw
    return bytes(out)


def plaintext_header_bytes(sender: NodeName) -> int:
    """Plaintext bytes used before the first message for this sender."""
    return PLAINTEXT_FIXED_BYTES + len(sender.encode())


# -- decoding ---------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over one buffer: every read names what it expected."""

    __slots__ = ("buf", "end", "limits", "pos")

    def __init__(self, buf: bytes | memoryview, limits: GossipLimits, start: int = 0,
                 end: int | None = None) -> None:
        self.buf = buf
        self.pos = start
        self.end = len(buf) if end is None else end
        self.limits = limits

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _malformed(f"{what} needs {n} bytes, {self.end - self.pos} left")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return _U16.unpack(self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack(self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack(self.take(8, what))[0]

    def flag(self, what: str) -> bool:
        value = self.u8(what)
        if value > 1:
            raise _malformed(f"{what} flag is {value}, expected 0 or 1")
        return value == 1

    def name(self, what: str) -> NodeName:
        n = self.u8(f"{what} length")
        if n == 0 or n > self.limits.max_name_bytes:
            raise _malformed(f"{what} length {n} outside 1..{self.limits.max_name_bytes}")
        raw = self.take(n, what)
        try:
            return NodeName(raw.decode())
        except UnicodeDecodeError:
            raise _malformed(f"{what} is not UTF-8") from None

    def ip(self, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        version = self.u8(f"{what} family")
        if version == 4:
            return ipaddress.IPv4Address(self.take(4, what))
        if version == 6:
            return ipaddress.IPv6Address(self.take(16, what))
        raise _malformed(f"{what} family {version}, expected 4 or 6")

    def addr(self, what: str) -> Address:
        ip = self.ip(what)
        port = self.u16(f"{what} port")
        if port == 0:
            raise _malformed(f"{what} port 0")
        return Address(str(ip), port)

    def meta(self) -> MemberMeta:
        ready = self.flag("ready")
        count = self.u8("subnet count")
        if count > self.limits.max_subnets:
            raise _malformed(f"{count} subnets exceed the limit {self.limits.max_subnets}")
        subnets: list[Subnet] = []
        for _ in range(count):
            ip = self.ip("subnet")
            prefix = self.u8("prefix length")
            if prefix > ip.max_prefixlen:
                raise _malformed(f"prefix length {prefix} > {ip.max_prefixlen} for {ip}")
            try:
                subnets.append(ipaddress.ip_network((ip, prefix), strict=True))
            except ValueError:
                raise _malformed(f"subnet {ip}/{prefix} has host bits set") from None
        return MemberMeta(subnets=tuple(subnets), ready=ready)

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise _malformed(f"{self.end - self.pos} trailing bytes after {what}")


def _decode_body(kind: int, r: _Reader) -> Message | None:
    match kind:
        case MessageType.PING:
            msg: Message = Ping(r.u32("seq"), r.name("target"))
        case MessageType.INDIRECT_PING:
            msg = IndirectPing(r.u32("seq"), r.name("target"), r.addr("target address"),
                               r.flag("want_nack"))
        case MessageType.ACK:
            msg = Ack(r.u32("seq"))
        case MessageType.NACK:
            msg = Nack(r.u32("seq"))
        case MessageType.SUSPECT:
            msg = Suspect(r.name("node"), r.u64("incarnation"), r.name("source"))
        case MessageType.ALIVE:
            msg = Alive(r.name("node"), r.u64("incarnation"), r.addr("address"), r.meta())
        case MessageType.DEAD:
            msg = Dead(r.name("node"), r.u64("incarnation"), r.name("source"))
        case MessageType.PUSH_PULL:
            reply = r.flag("reply_wanted")
            count = r.u16("state count")
            if count > r.limits.max_members:
                raise _malformed(f"{count} states exceed max_members {r.limits.max_members}")
            states = []
            for _ in range(count):
                node = r.name("node")
                incarnation = r.u64("incarnation")
                raw_state = r.u8("state")
                try:
                    state = MemberState(raw_state)
                except ValueError:
                    raise _malformed(f"member state {raw_state}") from None
                states.append(StateEntry(node, incarnation, state, r.addr("address"), r.meta()))
            msg = PushPull(reply, tuple(states))
        case _:
            return None  # a newer peer's message type: skip it (length-prefixed)
    r.done(MessageType(kind).name)
    return msg


def decode_plaintext(data: bytes, limits: GossipLimits = DEFAULT_LIMITS) -> Plaintext:
    """Decode an authenticated plaintext. Raises PacketRejected(reason="malformed")."""
    if len(data) > limits.max_packet_bytes:
        raise _malformed(f"{len(data)} bytes exceed max_packet_bytes {limits.max_packet_bytes}")
    r = _Reader(data, limits)
    sender = r.name("sender")
    epoch = r.u64("epoch")
    seq = r.u64("seq")
    count = r.u8("message count")
    messages: list[Message] = []
    for _ in range(count):
        kind = r.u8("message type")
        length = r.u16("message length")
        if r.pos + length > r.end:
            raise _malformed(f"message length {length} exceeds the {r.end - r.pos} bytes left")
        body = _Reader(r.buf, limits, r.pos, r.pos + length)
        msg = _decode_body(kind, body)
        r.pos += length
        if msg is not None:
            messages.append(msg)
    r.done("the last message")
    return Plaintext(sender, epoch, seq, tuple(messages))
