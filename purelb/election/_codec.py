"""Datagram pipeline: rate limit -> open envelope -> decode -> replay check (and back).

Pure: the caller passes the time and the source address. The order is deliberate and
cheapest-first: a flood from one source costs a dict lookup, a packet for another cluster
or key costs a header parse, and only packets that authenticate reach the decoder, whose
every length is bounded. Nothing is parsed before the AEAD tag verifies.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import final

from ..errors import PacketRejected
from ._crypto import Envelope, Keyring
from ._reasons import RejectReason
from ._timings import GossipLimits
from ._wire import NodeName, Plaintext, decode_plaintext, encode_plaintext


@final
class ReplayGuard:
    """Per-sender replay protection: (epoch, sliding window of sequence numbers).

    ``epoch`` is the sender's incarnation at process start (it only grows across restarts),
    ``seq`` its datagram counter. A lower epoch is stale; a higher one restarts the window.
    Within an epoch, the highest seq seen and a bitmap of the ``window`` below it are kept,
    as in IPsec's anti-replay window. A sender silent for ``forget_s`` is forgotten, so a
    restarted process whose wall clock stepped back is accepted after that pause.
    """

    __slots__ = ("_forget_s", "_max_senders", "_senders", "_window")

    def __init__(self, *, window: int, max_senders: int, forget_s: float) -> None:
        self._window = window
        self._max_senders = max_senders
        self._forget_s = forget_s
        self._senders: OrderedDict[str, tuple[int, int, int, float]] = OrderedDict()

    def check(self, sender: str, epoch: int, seq: int, now: float) -> None:
        """Accept and record, or raise PacketRejected(REPLAY | STALE)."""
        state = self._senders.get(sender)
        if state is None or epoch > state[0] or now - state[3] > self._forget_s:
            self._remember(sender, (epoch, seq, 1, now))
            return
        known_epoch, top, bitmap, _ = state
        if epoch < known_epoch:
            raise PacketRejected(f"epoch {epoch} of {sender!r} is older than {known_epoch}",
                                 reason=RejectReason.STALE)
        if seq > top:
            shift = seq - top
            bitmap = ((bitmap << shift) | 1) & ((1 << self._window) - 1) if shift < self._window \
                else 1
            self._remember(sender, (epoch, seq, bitmap, now))
            return
        age = top - seq
        if age >= self._window:
            raise PacketRejected(f"seq {seq} of {sender!r} is below the replay window",
                                 reason=RejectReason.STALE)
        bit = 1 << age
        if bitmap & bit:
            raise PacketRejected(f"seq {seq} of {sender!r} was already received",
                                 reason=RejectReason.REPLAY)
        self._remember(sender, (epoch, top, bitmap | bit, now))

    def _remember(self, sender: str, state: tuple[int, int, int, float]) -> None:
        self._senders[sender] = state
        self._senders.move_to_end(sender)
        while len(self._senders) > self._max_senders:
            self._senders.popitem(last=False)


@final
class RateLimiter:
    """Token bucket per source address, least recently seen sources forgotten first."""

    __slots__ = ("_buckets", "_burst", "_max", "_rate")

    def __init__(self, *, rate_per_s: float, burst: int, max_sources: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.get(source, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        self._buckets.move_to_end(source)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed


@final
class PacketCodec:
    """Turns message bytes into sealed datagrams and datagrams back into plaintexts."""

    __slots__ = ("_envelope", "_limiter", "_replay", "epoch", "limits", "node", "seq")

    def __init__(self, *, node: NodeName, epoch: int, cluster: str, keyring: Keyring,
                 limits: GossipLimits) -> None:
        self.node = node
        self.epoch = epoch
        self.seq = 0
        self.limits = limits
        self._envelope = Envelope(cluster, keyring, max_packet_bytes=limits.max_packet_bytes)
        self._replay = ReplayGuard(window=limits.replay_window,
                                   max_senders=2 * limits.max_members,
                                   forget_s=limits.replay_forget_s)
        self._limiter = RateLimiter(rate_per_s=limits.rate_per_source_pps,
                                    burst=limits.rate_burst,
                                    max_sources=limits.rate_tracked_sources)

    @property
    def keyring(self) -> Keyring:
        return self._envelope.keyring

    def set_keyring(self, keyring: Keyring) -> None:
        """Swap keys atomically; packets in flight under a removed key are rejected."""
        self._envelope.keyring = keyring

    def encode(self, encoded_messages: list[bytes] | tuple[bytes, ...]) -> bytes:
        self.seq += 1
        return self._envelope.seal(encode_plaintext(self.node, self.epoch, self.seq,
                                                    encoded_messages))

    def decode(self, packet: bytes, source: str, now: float) -> Plaintext:
        """Raises PacketRejected; its ``reason`` is a :class:`RejectReason`."""
        if not self._limiter.allow(source, now):
            raise PacketRejected(f"rate limit for {source} exceeded",
                                 reason=RejectReason.RATE_LIMITED)
        plain = decode_plaintext(self._envelope.open(packet), self.limits)
        if plain.sender == self.node:
            raise PacketRejected(f"datagram from {source} claims our own name {self.node!r}",
                                 reason=RejectReason.SELF)
        self._replay.check(plain.sender, plain.epoch, plain.seq, now)
        return plain
