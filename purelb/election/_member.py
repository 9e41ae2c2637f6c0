"""The Trio shell around :class:`Swim`: a UDP socket, a codec, timers and subscribers.

Start it with ``member = await nursery.start(serve_member, config)``: ``started`` is called
once the socket is bound, so the returned :class:`Member` can be queried at once. The
service runs four child tasks in its own nursery:

- *receiver* owns reads: rate limit, open, decode, ``Swim.handle`` (inline: the machine is
  sync and fast, so the reader never waits on a consumer);
- *sender* owns writes: drains a bounded queue (``send_queue_depth``; when full, datagrams
  are dropped and counted, as UDP would);
- *timer* sleeps until ``Swim.next_deadline()`` (woken early when a packet arms an
  earlier timer) and runs ``Swim.tick``;
- *seeder* asks the seed provider for addresses while we are alone.

Resource handling: ``Member.leave()`` announces the departure to every member, waits up
to ``leave_grace_s`` for the queue to drain and ends the service. Cancelling the service
without leaving does the same inside a shielded, bounded scope, so SIGTERM hands over at
once; only SIGKILL leaves the others to detect the failure.

Error handling: a rejected datagram is counted by reason and logged at DEBUG with its
source (never its content); a failing seed provider is logged and retried; socket send
errors are counted. Only bugs and cancellation end the service.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import final

import trio
from prometheus_client import CollectorRegistry

from ..errors import ConfigError, PacketRejected
from . import _election
from ._codec import PacketCodec
from ._crypto import Keyring
from ._metrics import GossipMetrics, ObserverAdapter
from ._seeds import SeedProvider, static_seeds
from ._swim import EventKind, MemberEvent, MemberInfo, Swim
from ._timings import DEFAULT_LIMITS, DEFAULT_TIMINGS, GossipLimits, GossipTimings
from ._wire import Address, MemberMeta, MemberState, NodeName, Subnet

LOGGER = logging.getLogger(__name__)

#: Incarnations start at the wall-clock time in milliseconds, so a restarted member always
#: outranks what the cluster remembers about its previous life (which only grew by small
#: refutation steps) and the replay epoch only grows across restarts.
_MS_PER_S = 1000

_Outbound = tuple[bytes, Address] | trio.Event
"""Send-queue items: a sealed datagram and its destination, or a drain marker."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberConfig:
    """Everything one member needs; validated at construction."""

    name: str
    """Our node name (the Kubernetes node name)."""
    bind: Address
    """Local UDP address to listen on (port 7934 is PureLB's memberlist port)."""
    cluster: str
    """Cluster name: bound into every datagram, so two clusters on one LAN never mix."""
    keyring: Keyring
    """Keys for sealing and opening datagrams (see ``parse_secret_data``)."""
    advertise: Address | None = None
    """Address the others reach us at, when it differs from ``bind`` (e.g. bind 0.0.0.0)."""
    meta: MemberMeta = field(default_factory=MemberMeta)
    """Initial subnets and readiness."""
    seeds: tuple[Address, ...] = ()
    """Static seeds; used when no seed provider is passed to :func:`serve_member`."""
    timings: GossipTimings = DEFAULT_TIMINGS
    limits: GossipLimits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        raw = self.name.encode()
        if not 0 < len(raw) <= self.limits.max_name_bytes:
            raise ConfigError(
                f"member name {self.name!r} must be 1..{self.limits.max_name_bytes} UTF-8 bytes",
                path="name", value=self.name)
        advertised = self.advertise or self.bind
        if ipaddress.ip_address(advertised.host).is_unspecified:
            raise ConfigError(
                f"advertise address {advertised} is unspecified; set advertise to the node's "
                "address when binding to 0.0.0.0 or ::", path="advertise", value=str(advertised))
        if len(self.meta.subnets) > self.limits.max_subnets:
            raise ConfigError(
                f"{len(self.meta.subnets)} subnets exceed max_subnets {self.limits.max_subnets}",
                path="meta.subnets", value=len(self.meta.subnets))


@dataclass(frozen=True, slots=True)
class MembershipView:
    """A consistent snapshot of the membership, as one member sees it."""

    local: NodeName
    version: int
    members: tuple[MemberInfo, ...]
    fenced: bool

    def alive(self) -> tuple[MemberInfo, ...]:
        return tuple(m for m in self.members if m.state == MemberState.ALIVE)

    def winner(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
               ) -> NodeName | None:
        """The member that announces ``address``; None when we are fenced (we then trust
        no view, as PureLB's Winner returns "" when its own lease is unhealthy)."""
        if self.fenced:
            return None
        return _election.winner(address, self.members)

    def should_announce(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
                        ) -> bool:
        return self.winner(address) == self.local

    def winners(self, addresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address]
                ) -> list[NodeName | None]:
        """``winner`` for many addresses at once (one rendezvous per candidate set)."""
        if self.fenced:
            return [None] * len(addresses)
        return _election.winners(addresses, self.members)


@dataclass(frozen=True, slots=True)
class MemberStatistics:
    """A frozen snapshot of counters (trio's ``statistics()`` convention)."""

    name: NodeName
    incarnation: int
    local_health: int
    members: int
    alive: int
    fenced: bool
    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    rejected: dict[str, int]
    probes_failed: int
    send_dropped: int
    send_errors: int


@final
class Member:
    """Handle to a running member (returned by ``nursery.start(serve_member, ...)``)."""

    def __init__(self, config: MemberConfig, swim: Swim, codec: PacketCodec,
                 metrics: GossipMetrics, observer: ObserverAdapter,
                 send: trio.MemorySendChannel[_Outbound]) -> None:
        self.config = config
        self.name = NodeName(config.name)
        self._swim = swim
        self._codec = codec
        self._metrics = metrics
        self._send = send
        self._observer = observer
        self._changed = trio.Event()
        self._wake = trio.Event()
        self._timer_target = math.inf
        self._subscribers: list[trio.MemorySendChannel[MemberEvent]] = []
        self._done = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None
        self.packets_sent = self.packets_received = 0
        self.bytes_sent = self.bytes_received = 0
        self.rejected: dict[str, int] = {}
        self.send_dropped = 0
        self.send_errors = 0

    def __repr__(self) -> str:
        return (f"Member(name={self.name!r}, addr={self._swim.local.addr}, "
                f"members={len(self._swim.members())}, left={self._swim.left})")

    # -- queries ------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        return self._swim.local.addr

    @property
    def version(self) -> int:
        return self._swim.version

    def view(self) -> MembershipView:
        now = trio.current_time()
        return MembershipView(self.name, self._swim.version, self._swim.members(),
                              self._swim.is_fenced(now))

    def members(self) -> tuple[MemberInfo, ...]:
        return self._swim.members()

    def member(self, name: str) -> MemberInfo | None:
        return self._swim.member(name)

    @property
    def keyring(self) -> Keyring:
        return self._codec.keyring

    def alive_members(self) -> tuple[MemberInfo, ...]:
        return tuple(m for m in self._swim.members() if m.state == MemberState.ALIVE)

    def is_fenced(self) -> bool:
        return self._swim.is_fenced(trio.current_time())

    def winner(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
               ) -> NodeName | None:
        """Who announces ``address`` (None: nobody can, or we are fenced)."""
        return self.view().winner(address)

    def should_announce(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
                        ) -> bool:
        return self.view().should_announce(address)

    def statistics(self) -> MemberStatistics:
        members = self._swim.members()
        return MemberStatistics(
            name=self.name, incarnation=self._swim.incarnation,
            local_health=self._swim.awareness, members=len(members),
            alive=sum(1 for m in members if m.state == MemberState.ALIVE),
            fenced=self.is_fenced(), packets_sent=self.packets_sent,
            packets_received=self.packets_received, bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received, rejected=dict(self.rejected),
            probes_failed=self._observer.probes_failed, send_dropped=self.send_dropped,
            send_errors=self.send_errors)

    async def wait_stopped(self) -> None:
        """Wait until the service has ended (after :meth:`leave` or cancellation)."""
        await self._done.wait()

    async def wait_changed(self, after_version: int) -> MembershipView:
        """Wait until the membership version exceeds ``after_version``; return the view.

        Level-triggered: a slow caller sees the newest state, never a backlog.
        """
        while self._swim.version <= after_version:
            await self._changed.wait()
        return self.view()

    @contextlib.asynccontextmanager
    async def subscribe(self, *, max_buffer: int = 256
                        ) -> AsyncIterator[trio.MemoryReceiveChannel[MemberEvent]]:
        """Receive every membership event from now on.

        Entering the context and then calling :meth:`view` (with no ``await`` between)
        gives the state plus every later change, with nothing missed in between.

        The buffer is bounded: a subscriber that falls ``max_buffer`` events behind is
        disconnected (its channel ends) rather than stalling gossip; it should re-read
        :meth:`view` and subscribe again.
        """
        send, receive = trio.open_memory_channel[MemberEvent](max_buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    # -- commands ------------------------------------------------------------------------

    def update_meta(self, *, subnets: Iterable[Subnet] | None = None,
                    ready: bool | None = None) -> None:
        """Change what we gossip about ourselves; spread with a new incarnation."""
        old = self._swim.local.meta
        new_subnets = tuple(subnets) if subnets is not None else old.subnets
        if len(new_subnets) > self.config.limits.max_subnets:
            raise ValueError(f"{len(new_subnets)} subnets exceed max_subnets "
                             f"{self.config.limits.max_subnets}")
        meta = MemberMeta(subnets=new_subnets, ready=old.ready if ready is None else ready)
        self._swim.update_meta(trio.current_time(), meta)
        self._flush()

    def set_keyring(self, keyring: Keyring) -> None:
        """Install a new keyring (rotation: add key, then make it primary, then remove)."""
        self._codec.set_keyring(keyring)
        LOGGER.info("event=gossip_keyring keyring=%r", keyring)

    def set_seeds(self, seeds: Sequence[Address]) -> None:
        self._swim.set_seeds(seeds)

    async def leave(self) -> None:
        """Leave gracefully: tell every member, let the datagrams go, end the service."""
        if not self._swim.left:
            self._swim.leave(trio.current_time())
            self._flush()
            drained = trio.Event()
            with contextlib.suppress(trio.WouldBlock):
                self._send.send_nowait(drained)  # the sender sets it once all before it left
            with trio.move_on_after(self.config.timings.leave_grace_s):
                await drained.wait()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel(reason="member left the gossip group")

    # -- plumbing (called by the service tasks) ---------------------------------------------

    def _flush(self) -> None:
        for out in self._swim.drain_outbox():
            data = self._codec.encode(out.encoded)
            try:
                self._send.send_nowait((data, out.dest))
            except trio.WouldBlock:
                self.send_dropped += 1
                self._metrics.send_dropped.inc()
        events = self._swim.drain_events()
        if events:
            self._metrics.set_members(self._swim.members())
            for ev in events:
                self._log_event(ev)
                if ev.kind in (EventKind.FENCED, EventKind.UNFENCED):
                    self._metrics.fenced.set(1 if ev.kind == EventKind.FENCED else 0)
                for sub in list(self._subscribers):
                    try:
                        sub.send_nowait(ev)
                    except trio.WouldBlock:
                        LOGGER.warning("event=gossip_subscriber_dropped reason=buffer_full; "
                                       "it must re-read the view and subscribe again")
                        self._subscribers.remove(sub)
                        sub.close()
                    except trio.BrokenResourceError:
                        self._subscribers.remove(sub)
            self._changed.set()
            self._changed = trio.Event()
        self._metrics.local_health.set(self._swim.awareness)
        if self._swim.next_deadline() < self._timer_target:
            self._wake.set()

    def _log_event(self, ev: MemberEvent) -> None:
        m = ev.member
        level = logging.WARNING if ev.kind in (EventKind.DEAD, EventKind.FENCED) else logging.INFO
        LOGGER.log(level, "event=gossip_%s member=%s addr=%s incarnation=%d", ev.kind.value,
                   m.name, m.addr, m.incarnation)

    def _reject(self, exc: PacketRejected, src: Address) -> None:
        reason = str(exc.reason)
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._metrics.rejected.labels(reason).inc()
        LOGGER.debug("event=gossip_rejected reason=%s source=%s", reason, src)


def _wall_clock_ms(wall_clock: Callable[[], float]) -> int:
    return int(wall_clock() * _MS_PER_S)


async def serve_member(
    config: MemberConfig,
    *,
    seed_provider: SeedProvider | None = None,
    registry: CollectorRegistry | None = None,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[Member] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one gossip member until it leaves or is cancelled (see the module docstring).

    Args:
        seed_provider: async callable returning addresses to join through; defaults to
            the static ``config.seeds``.
        registry: where the metrics are registered (a private registry if None).
        wall_clock: wall time in seconds, only read once for the starting incarnation.
    """
    bind = config.bind
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((bind.host, bind.port))
        port = sock.getsockname()[1]
        advertise = config.advertise or Address(bind.host, port)
        metrics = GossipMetrics(registry if registry is not None else CollectorRegistry())
        observer = ObserverAdapter(metrics)
        incarnation = _wall_clock_ms(wall_clock)
        swim = Swim(name=NodeName(config.name), addr=advertise, meta=config.meta,
                    incarnation=incarnation, timings=config.timings, limits=config.limits,
                    rng=random.Random(int.from_bytes(random.SystemRandom().randbytes(8))),
                    now=trio.current_time(), observer=observer)
        codec = PacketCodec(node=NodeName(config.name), epoch=incarnation,
                            cluster=config.cluster, keyring=config.keyring, limits=config.limits)
        send, receive = trio.open_memory_channel[_Outbound](
            config.limits.send_queue_depth)
        member = Member(config, swim, codec, metrics, observer, send)
        provider = seed_provider or static_seeds(config.seeds)
        try:
            async with trio.open_nursery() as nursery:
                member._cancel_scope = nursery.cancel_scope
                nursery.start_soon(_sender, member, sock, receive)
                nursery.start_soon(_receiver, member, sock)
                nursery.start_soon(_timer, member)
                nursery.start_soon(_seeder, member, provider)
                LOGGER.info("event=gossip_started member=%s addr=%s incarnation=%d",
                            config.name, advertise, incarnation)
                task_status.started(member)
        finally:
            if not swim.left:
                with trio.move_on_after(config.timings.leave_grace_s, shield=True):
                    await _leave_now(member, sock)
            member._done.set()


async def _leave_now(member: Member, sock: trio.socket.SocketType) -> None:
    """Leave on cancellation: send the notices directly (the sender task is gone)."""
    member._swim.leave(trio.current_time())
    for out in member._swim.drain_outbox():
        with contextlib.suppress(OSError):
            await sock.sendto(member._codec.encode(out.encoded), out.dest)
    member._swim.drain_events()


async def _sender(member: Member, sock: trio.socket.SocketType,
                  receive: trio.MemoryReceiveChannel[_Outbound]) -> None:
    async with receive:
        async for item in receive:
            if isinstance(item, trio.Event):
                item.set()  # a drain marker: everything queued before it was sent
                continue
            data, dest = item
            try:
                await sock.sendto(data, (dest.host, dest.port))
            except OSError as exc:
                member.send_errors += 1
                member._metrics.send_errors.inc()
                LOGGER.debug("event=gossip_send_error dest=%s error=%s", dest, exc)
                continue
            member.packets_sent += 1
            member.bytes_sent += len(data)
            member._metrics.packets.labels("sent").inc()
            member._metrics.bytes.labels("sent").inc(len(data))


async def _receiver(member: Member, sock: trio.socket.SocketType) -> None:
    bufsize = member.config.limits.max_packet_bytes + 1  # one more byte reveals oversize
    while True:
        try:
            data, src = await sock.recvfrom(bufsize)
        except OSError as exc:  # e.g. ICMP port unreachable surfacing on Linux
            LOGGER.debug("event=gossip_recv_error error=%s", exc)
            continue
        source = Address(src[0], src[1])
        member.packets_received += 1
        member.bytes_received += len(data)
        member._metrics.packets.labels("received").inc()
        member._metrics.bytes.labels("received").inc(len(data))
        now = trio.current_time()
        try:
            plain = member._codec.decode(data, source.host, now)
        except PacketRejected as exc:
            member._reject(exc, source)
            continue
        member._swim.handle(now, source, plain)
        member._flush()


async def _timer(member: Member) -> None:
    swim = member._swim
    while True:
        member._timer_target = swim.next_deadline()
        with trio.move_on_at(member._timer_target):
            await member._wake.wait()
        member._timer_target = math.inf
        swim.tick(trio.current_time())
        member._flush()
        # _flush saw the target at inf and set the wake event; the loop recomputes the
        # target from next_deadline() anyway, so drop that self-wake (no checkpoint since).
        # Resetting it before the flush made this loop spin at full speed while idle.
        member._wake = trio.Event()


async def _seeder(member: Member, provider: SeedProvider) -> None:
    """Ask for seeds while alone; the state machine does the (re)join attempts."""
    timings = member.config.timings
    last: list[Address] | None = None
    while True:
        if not member._swim.joined:
            try:
                seeds = list(await provider())
            except Exception as exc:  # a provider talks to the API: any failure is retried
                LOGGER.warning("event=gossip_seed_provider_failed error=%r; retrying in %s s",
                               exc, timings.seed_refresh_s)
            else:
                if seeds != last:  # new seeds: start a fresh join (with its own backoff)
                    member._swim.join(trio.current_time(), seeds)
                    last = seeds
                    member._flush()
        await trio.sleep(timings.seed_refresh_s)
