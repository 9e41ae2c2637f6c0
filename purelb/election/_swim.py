"""SWIM membership with the Lifeguard extensions, as a sans-I/O state machine.

The machine owns the member table and every protocol timer. It never reads a clock, opens a
socket or draws from global randomness: the driver passes ``now`` into every call, supplies
a seeded :class:`random.Random`, feeds in decoded datagrams with :meth:`Swim.handle`, calls
:meth:`Swim.tick` at :meth:`Swim.next_deadline`, and drains :meth:`Swim.drain_outbox`
(datagrams to send) and :meth:`Swim.drain_events` (membership changes). Every method is
sync-coloured, so a transition is atomic with respect to other trio tasks.

Protocol, per probe period (``probe_interval_s`` scaled by local health):
  1. Ping the next member in a shuffled round-robin order (with the suspicion notice about
     it piggy-backed first, so a suspect refutes at once: Lifeguard's "buddy system").
  2. No ack within ``probe_timeout_s``: ask ``indirect_checks`` members to ping it for us;
     they relay an ack, or a nack when it stays silent.
  3. No ack by the end of the period: broadcast ``Suspect``. The suspicion timeout starts at
     its maximum and shrinks with independent confirmations; the suspect refutes by
     re-announcing itself with a higher incarnation; unrefuted, it becomes ``Dead``.
  Missed acks and missing nacks raise our local-health score (we are probably the slow one),
  which stretches our own probe period and timeout instead of accusing others; successes
  lower it.

State changes spread as broadcasts piggy-backed on every datagram (ping, ack, ...) plus
dedicated gossip rounds, each retransmitted a bounded number of times; periodic push-pull
full-state exchanges (anti-entropy) repair what gossip missed, and push-pulls with members
believed dead heal partitions. Message handlers live in :meth:`Swim._dispatch`, one per
:class:`MessageType`.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, final

from ._suspicion import Suspicion
from ._timings import GossipLimits, GossipTimings
from ._wire import (
    ENVELOPE_OVERHEAD_BYTES,
    PUSH_PULL_OVERHEAD_BYTES,
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
    Plaintext,
    PushPull,
    StateEntry,
    Suspect,
    encode_message,
    encode_state_entry,
    plaintext_header_bytes,
)

_SEQ_MODULUS = 2**32  # probe sequence numbers are u32 on the wire


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A read-only snapshot of one member."""

    name: NodeName
    addr: Address
    incarnation: int
    state: MemberState
    meta: MemberMeta
    since: float
    """Driver time of the last state change."""


class EventKind(enum.Enum):
    """What happened to a member (or to us)."""

    JOINED = "joined"
    """A member we did not know appeared (alive)."""
    UPDATED = "updated"
    """An alive member changed its address or metadata."""
    SUSPECT = "suspect"
    """A member is suspected (dead unless it refutes)."""
    ALIVE = "alive"
    """A suspect, dead or left member is alive again (refuted, rejoined, restarted)."""
    DEAD = "dead"
    """A member was declared dead."""
    LEFT = "left"
    """A member left gracefully."""
    REAPED = "reaped"
    """A dead or left member was forgotten after ``dead_retention_s``."""
    FENCED = "fenced"
    """We cut ourselves off: stop announcing (see :meth:`Swim.is_fenced`)."""
    UNFENCED = "unfenced"
    """We see the others again."""


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """One membership change, in the order it happened."""

    kind: EventKind
    member: MemberInfo
    at: float


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A datagram to send: its destination and its messages (already encoded)."""

    dest: Address
    messages: tuple[Message, ...]
    encoded: tuple[bytes, ...]

    def wire_bytes(self, sender: NodeName) -> int:
        """Bytes on the wire once sealed (without IP/UDP headers)."""
        return (ENVELOPE_OVERHEAD_BYTES + plaintext_header_bytes(sender)
                + sum(len(e) for e in self.encoded))


class SwimObserver(Protocol):
    """Receives measurements (metrics sink); must not call back into the machine."""

    def transition(self, old: MemberState | None, new: MemberState) -> None: ...
    def probe_rtt(self, seconds: float) -> None: ...
    def probe_failed(self) -> None: ...


class _NoObserver:
    def transition(self, old: MemberState | None, new: MemberState) -> None:
        pass

    def probe_rtt(self, seconds: float) -> None:
        pass

    def probe_failed(self) -> None:
        pass


@dataclass(slots=True)
class _Member:
    name: NodeName
    addr: Address
    incarnation: int
    state: MemberState
    meta: MemberMeta
    since: float

    def info(self) -> MemberInfo:
        return MemberInfo(self.name, self.addr, self.incarnation, self.state, self.meta,
                          self.since)


@dataclass(slots=True)
class _Probe:
    target: NodeName
    start: float
    scale: int
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester: Address
    requester_seq: int
    want_nack: bool


@dataclass(slots=True)
class _Broadcast:
    msg: Message
    encoded: bytes
    transmits: int
    order: int


_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


@final
class Swim:
    """The membership state machine of one member. See the module docstring."""

    def __init__(
        self,
        *,
        name: NodeName,
        addr: Address,
        meta: MemberMeta,
        incarnation: int,
        timings: GossipTimings,
        limits: GossipLimits,
        rng: random.Random,
        now: float,
        observer: SwimObserver | None = None,
    ) -> None:
        self.name = name
        self.timings = timings
        self.limits = limits
        self._rng = rng
        self._obs: SwimObserver = observer or _NoObserver()
        self._local = _Member(name, addr, incarnation, MemberState.ALIVE, meta, now)
        self._members: dict[NodeName, _Member] = {name: self._local}
        self._suspicions: dict[NodeName, Suspicion] = {}
        self._probes: dict[int, _Probe] = {}
        self._relays: dict[int, _Relay] = {}
        self._broadcasts: dict[NodeName, _Broadcast] = {}
        self._order = itertools.count()
        self._seq = rng.randrange(_SEQ_MODULUS)
        self._probe_order: list[NodeName] = []
        self._probe_index = 0
        self._awareness = 0
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._outbox: list[Outgoing] = []
        self._events: list[MemberEvent] = []
        self._seeds: tuple[Address, ...] = ()
        self._resynced: dict[NodeName, float] = {}
        self._join_attempt = 0
        self._join_timer_armed = False
        self._join_generation = 0
        self._left = False
        self._lost_everyone = False
        self._joined_once = False
        self._last_contact = now
        self._fenced = False
        self.version = 0
        """Grows by one with every membership event (for level-triggered waiters)."""
        self._header_bytes = ENVELOPE_OVERHEAD_BYTES + plaintext_header_bytes(name)
        self._at(now + rng.random() * timings.probe_interval_s, self._probe_tick)
        self._now = now
        """Driver time of the call being handled (for timers armed deep inside a handler)."""
        self._gossip_armed = True
        self._at(now + timings.gossip_interval_s, self._gossip_tick)
        self._at(now + (0.5 + rng.random()) * timings.push_pull_interval_s, self._push_pull_tick)
        self._at(now + timings.reconnect_interval_s, self._reconnect_tick)

    # -- public queries --------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self._local.incarnation

    @property
    def local(self) -> MemberInfo:
        """Our own entry (address, metadata, incarnation)."""
        return self._local.info()

    @property
    def awareness(self) -> int:
        """Lifeguard local-health score: 0 healthy .. awareness_max - 1."""
        return self._awareness

    @property
    def left(self) -> bool:
        return self._left

    @property
    def joined(self) -> bool:
        """True once another member is alive in our table."""
        return any(m.state in _LIVE for m in self._members.values() if m.name != self.name)

    def members(self) -> tuple[MemberInfo, ...]:
        """Every member we remember (self included), sorted by name."""
        return tuple(m.info() for _, m in sorted(self._members.items()))

    def member(self, name: str) -> MemberInfo | None:
        m = self._members.get(NodeName(name))
        return m.info() if m else None

    def live_count(self) -> int:
        """Alive or suspect members, self included (N in the timing formulas)."""
        return sum(1 for m in self._members.values() if m.state in _LIVE)

    def is_fenced(self, now: float) -> bool:
        """True when we must stop announcing: cut off from a formerly larger membership.

        Either every other member died on us (not left: a graceful leave shrinks the
        cluster legitimately) and none has come back; or we have seeds but never reached
        anyone yet (a lone first member, with no seeds, is not fenced); or others are in
        the table but no datagram from any of them arrived for longer than the minimum
        suspicion timeout,
        i.e. before the others can have declared *us* dead and taken over (they need a
        failed probe period plus that timeout). Any datagram counts, not only acks to our
        probes, so a member whose own probing is slowed by local health does not flap.
        """
        if self._left:
            return True
        others_live = self.live_count() - 1
        if others_live == 0:
            # Alone: fenced if everyone died on us, or if we were told of others (seeds)
            # but have not reached any yet (a node booting inside a partition must not
            # announce what the other side already announces).
            return self._lost_everyone or (bool(self._seeds) and not self._joined_once)
        return now - self._last_contact > self.timings.suspicion_min_s(self.live_count())

    def next_deadline(self) -> float:
        """Driver time of the earliest timer (call :meth:`tick` then); inf after leave."""
        return self._timers[0][0] if self._timers else math.inf

    def drain_outbox(self) -> list[Outgoing]:
        out, self._outbox = self._outbox, []
        return out

    def drain_events(self) -> list[MemberEvent]:
        out, self._events = self._events, []
        return out

    # -- public commands ------------------------------------------------------------------

    def join(self, now: float, seeds: Iterable[Address]) -> None:
        """Push-pull with every seed now, and retry with backoff until someone answers."""
        self._now = now
        self.set_seeds(seeds)
        self._join_attempt = 0
        self._join_generation += 1  # a pending retry of an earlier join() becomes a no-op
        self._join_round(now, self._join_generation)

    def set_seeds(self, seeds: Iterable[Address]) -> None:
        """Replace the seed list (from configuration or discovery); our own address is
        dropped. Seeds are used to join and to rejoin when we find ourselves alone."""
        self._seeds = tuple(dict.fromkeys(s for s in seeds if s != self._local.addr))

    def update_meta(self, now: float, meta: MemberMeta) -> None:
        """Change our metadata and announce it with a new incarnation."""
        self._now = now
        if meta == self._local.meta or self._left:
            return
        self._local.meta = meta
        self._local.incarnation += 1
        self._broadcast(self._alive_self())
        self._emit(EventKind.UPDATED, self._local, now)

    def leave(self, now: float) -> None:
        """Announce a graceful leave to every live member directly, then go quiet."""
        self._now = now
        if self._left:
            return
        notice = Dead(self.name, self._local.incarnation, self.name)
        self._left = True
        self._local.state = MemberState.LEFT
        self._local.since = now
        encoded = encode_message(notice)
        for m in self._members.values():
            if m.name != self.name and m.state in _LIVE:
                self._outbox.append(Outgoing(m.addr, (notice,), (encoded,)))
        self._emit(EventKind.LEFT, self._local, now)

    def handle(self, now: float, src: Address, packet: Plaintext) -> None:
        """Process one authenticated, decoded datagram from ``src``."""
        self._now = now
        if self._left:
            return
        for msg in packet.messages:
            self._dispatch(now, src, packet.sender, msg)
        known = self._members.get(packet.sender)
        if known is not None and known.state in _LIVE:
            self._last_contact = now
        elif now >= self._resynced.get(packet.sender, -math.inf) and not any(
            isinstance(m, PushPull) for m in packet.messages
        ):
            # It knows us but we do not know it as live: we missed its join notice, or a
            # partition is healing. One push-pull repairs our view at once.
            self._resynced[packet.sender] = now + self.timings.resync_unknown_s
            if len(self._resynced) > self.limits.max_members:
                self._resynced = {n: t for n, t in self._resynced.items() if t > now}
            self._send_state(src, reply_wanted=True)
        self._check_fence(now)

    def tick(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        self._now = now
        if self._left:
            self._timers.clear()  # a member that left sends nothing more
            return
        while self._timers and self._timers[0][0] <= now:
            _, _, action = heapq.heappop(self._timers)
            action(now)
        self._check_fence(now)

    # -- dispatch: one handler per message type -------------------------------------------

    def _dispatch(self, now: float, src: Address, sender: NodeName, msg: Message) -> None:
        match msg:
            case Ping():
                self._on_ping(now, src, msg)
            case IndirectPing():
                self._on_indirect_ping(now, src, msg)
            case Ack():
                self._on_ack(now, msg)
            case Nack():
                self._on_nack(msg)
            case Suspect():
                self._on_suspect(now, msg)
            case Alive():
                self._on_alive(now, msg)
            case Dead():
                self._on_dead(now, msg)
            case PushPull():
                self._on_push_pull(now, src, sender, msg)

    def _on_ping(self, now: float, src: Address, msg: Ping) -> None:
        """PING: answer if it is for us (a ping for another name means a stale address)."""
        if msg.target == self.name:
            self._send(src, [Ack(msg.seq)])

    def _on_indirect_ping(self, now: float, src: Address, msg: IndirectPing) -> None:
        """INDIRECT_PING: ping the target for the requester; relay the ack or send a nack."""
        seq = self._next_seq()
        self._relays[seq] = _Relay(src, msg.seq, msg.want_nack)
        self._send(msg.target_addr, [Ping(seq, msg.target)])
        self._at(now + self.timings.probe_timeout_s, lambda t: self._relay_timeout(t, seq))

    def _relay_timeout(self, now: float, seq: int) -> None:
        relay = self._relays.pop(seq, None)
        if relay is not None and relay.want_nack:
            self._send(relay.requester, [Nack(relay.requester_seq)])

    def _on_ack(self, now: float, msg: Ack) -> None:
        """ACK: completes our probe, or is relayed to whoever asked us to probe."""
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._send(relay.requester, [Ack(relay.requester_seq)])
            return
        probe = self._probes.pop(msg.seq, None)
        if probe is None:
            return  # late or duplicate ack (e.g. direct and relayed both arrived)
        self._obs.probe_rtt(now - probe.start)
        self._adjust_awareness(-1)

    def _on_nack(self, msg: Nack) -> None:
        """NACK: an indirect prober is reachable, so our own networking works."""
        probe = self._probes.get(msg.seq)
        if probe is not None:
            probe.nacks += 1

    def _on_suspect(self, now: float, msg: Suspect) -> None:
        """SUSPECT: start (or confirm) a suspicion; about ourselves, refute it."""
        m = self._members.get(msg.node)
        if m is None or msg.incarnation < m.incarnation:
            return
        if msg.node == self.name:
            self._refute(now, msg.incarnation)
            return
        existing = self._suspicions.get(msg.node)
        if m.state == MemberState.SUSPECT and existing is not None:
            if existing.confirm(msg.source):
                self._broadcast(msg)
                self._at(existing.deadline, lambda t: self._suspicion_expired(t, msg.node))
            return
        if m.state != MemberState.ALIVE:
            return
        self._set_state(m, MemberState.SUSPECT, msg.incarnation, now)
        self._broadcast(msg)
        n = self.live_count()
        wanted = self.timings.suspicion_confirmations
        if n - 2 < wanted:
            wanted = 0  # too few members to ever confirm: use the minimum directly
        susp = Suspicion(msg.incarnation, now, wanted, self.timings.suspicion_min_s(n),
                         self.timings.suspicion_max_s(n), msg.source)
        self._suspicions[msg.node] = susp
        self._at(susp.deadline, lambda t: self._suspicion_expired(t, msg.node))

    def _suspicion_expired(self, now: float, node: NodeName) -> None:
        susp = self._suspicions.get(node)
        m = self._members.get(node)
        if susp is None or m is None or m.state != MemberState.SUSPECT:
            return
        if susp.deadline > now or m.incarnation != susp.incarnation:
            return  # a confirmation moved the deadline (another timer entry exists)
        self._on_dead(now, Dead(node, m.incarnation, self.name))

    def _on_alive(self, now: float, msg: Alive) -> None:
        """ALIVE: learn a new member, or accept a newer incarnation of a known one."""
        if msg.node == self.name:
            if msg.incarnation > self._local.incarnation or (
                msg.incarnation == self._local.incarnation
                and (msg.addr != self._local.addr or msg.meta != self._local.meta)
            ):
                self._refute(now, msg.incarnation)  # someone gossips an older self: override
            return
        m = self._members.get(msg.node)
        if m is None:
            if len(self._members) >= self.limits.max_members:
                return
            if self.live_count() == 1:
                self._last_contact = now  # contact starts now, not at construction
            m = _Member(msg.node, msg.addr, msg.incarnation, MemberState.ALIVE, msg.meta, now)
            self._members[msg.node] = m
            self._obs.transition(None, MemberState.ALIVE)
            self._broadcast(msg)
            self._emit(EventKind.JOINED, m, now)
            self._lost_everyone = False
            self._joined_once = True
            return
        if msg.incarnation <= m.incarnation:
            return
        old_state = m.state
        changed = msg.addr != m.addr or msg.meta != m.meta
        m.addr, m.meta = msg.addr, msg.meta
        self._suspicions.pop(msg.node, None)
        self._broadcast(msg)
        if old_state != MemberState.ALIVE:
            if self.live_count() == 1:
                self._last_contact = now
            self._set_state(m, MemberState.ALIVE, msg.incarnation, now)
            self._lost_everyone = False
        else:
            m.incarnation = msg.incarnation
            if changed:
                self._emit(EventKind.UPDATED, m, now)

    def _on_dead(self, now: float, msg: Dead) -> None:
        """DEAD: mark dead (or left when the node announced itself); about us, refute."""
        m = self._members.get(msg.node)
        if m is None or msg.incarnation < m.incarnation:
            return
        if msg.node == self.name:
            if msg.source != self.name:
                self._refute(now, msg.incarnation)
            return
        if m.state not in _LIVE:
            return
        new = MemberState.LEFT if msg.source == msg.node else MemberState.DEAD
        self._suspicions.pop(msg.node, None)
        self._set_state(m, new, msg.incarnation, now)
        self._broadcast(msg)
        if new == MemberState.DEAD and self.live_count() == 1:
            self._lost_everyone = True

    def _on_push_pull(self, now: float, src: Address, sender: NodeName, msg: PushPull) -> None:
        """PUSH_PULL: merge the sender's table; answer with ours if asked."""
        for entry in msg.states:
            match entry.state:
                case MemberState.ALIVE:
                    self._on_alive(now, Alive(entry.node, entry.incarnation, entry.addr,
                                              entry.meta))
                case MemberState.LEFT:
                    self._on_dead(now, Dead(entry.node, entry.incarnation, entry.node))
                case _:
                    # A remote "dead" only makes us suspect: the member gets a chance to
                    # refute (this is how both sides of a healed partition come back).
                    self._on_suspect(now, Suspect(entry.node, entry.incarnation, sender))
        if msg.reply_wanted:
            self._send_state(src, reply_wanted=False)

    # -- timers ----------------------------------------------------------------------------

    def _probe_tick(self, now: float) -> None:
        scale = self._awareness + 1
        self._at(now + self.timings.probe_interval_s * scale, self._probe_tick)
        target = self._next_probe_target()
        if target is None:
            return
        seq = self._next_seq()
        self._probes[seq] = _Probe(target.name, now, scale)
        first: list[Message] = [Ping(seq, target.name)]
        if target.state == MemberState.SUSPECT:
            first.insert(0, Suspect(target.name, target.incarnation, self.name))
        self._send(target.addr, first)
        self._at(now + self.timings.probe_timeout_s * scale,
                 lambda t: self._probe_timeout(t, seq))

    def _probe_timeout(self, now: float, seq: int) -> None:
        probe = self._probes.get(seq)
        if probe is None:
            return
        target = self._members.get(probe.target)
        helpers = [m for m in self._members.values()
                   if m.state == MemberState.ALIVE and m.name not in (self.name, probe.target)]
        if target is not None and helpers:
            chosen = self._rng.sample(helpers, min(self.timings.indirect_checks, len(helpers)))
            probe.nacks_expected = len(chosen)
            for helper in chosen:
                self._send(helper.addr, [IndirectPing(seq, target.name, target.addr, True)])
        self._at(probe.start + self.timings.probe_interval_s * probe.scale,
                 lambda t: self._probe_failed(t, seq))

    def _probe_failed(self, now: float, seq: int) -> None:
        probe = self._probes.pop(seq, None)
        if probe is None:
            return  # acked in time
        self._obs.probe_failed()
        if probe.nacks_expected:
            self._adjust_awareness(probe.nacks_expected - probe.nacks)
        else:
            self._adjust_awareness(1)
        target = self._members.get(probe.target)
        if target is not None and target.state in _LIVE:
            self._on_suspect(now, Suspect(target.name, target.incarnation, self.name))

    def _gossip_tick(self, now: float) -> None:
        if not self._broadcasts:
            # Nothing to spread: stay dormant until _broadcast queues a notice. An idle
            # member then wakes only for probes (memberlist's gossip timer runs always;
            # this halves an idle agent's wakeups).
            self._gossip_armed = False
            return
        self._at(now + self.timings.gossip_interval_s, self._gossip_tick)
        peers = [m for m in self._members.values() if m.name != self.name and m.state in _LIVE]
        for m in self._rng.sample(peers, min(self.timings.gossip_nodes, len(peers))):
            self._send(m.addr, [])

    def _push_pull_tick(self, now: float) -> None:
        self._at(now + self.timings.push_pull_interval_s, self._push_pull_tick)
        peers = [m for m in self._members.values()
                 if m.name != self.name and m.state == MemberState.ALIVE]
        if peers:
            self._send_state(self._rng.choice(peers).addr, reply_wanted=True)

    def _reconnect_tick(self, now: float) -> None:
        """Reach out to one member believed dead, and to the seeds when alone; reap."""
        self._at(now + self.timings.reconnect_interval_s, self._reconnect_tick)
        horizon = now - self.timings.dead_retention_s
        for m in [m for m in self._members.values()
                  if m.state not in _LIVE and m.since < horizon and m.name != self.name]:
            del self._members[m.name]
            self._emit(EventKind.REAPED, m, now)
        dead = [m for m in self._members.values() if m.state == MemberState.DEAD]
        if dead:
            self._send_state(self._rng.choice(dead).addr, reply_wanted=True)
        if self.live_count() == 1 and self._seeds and not self._join_timer_armed:
            self._send_state(self._rng.choice(self._seeds), reply_wanted=True)

    def _join_round(self, now: float, generation: int) -> None:
        if generation != self._join_generation:
            return
        self._join_timer_armed = False
        if self.joined or not self._seeds:
            return
        for seed in self._seeds:
            self._send_state(seed, reply_wanted=True)
        delay = self.timings.join_delay_s(self._join_attempt, self._rng.random())
        self._join_attempt += 1
        self._join_timer_armed = True
        self._at(now + delay, lambda t: self._join_round(t, generation))

    # -- helpers -----------------------------------------------------------------------------

    def _at(self, deadline: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._timers, (deadline, next(self._order), action))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % _SEQ_MODULUS
        return self._seq

    def _next_probe_target(self) -> _Member | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                m = self._members.get(self._probe_order[self._probe_index])
                self._probe_index += 1
                if m is not None and m.state in _LIVE:
                    return m
            self._probe_order = [n for n, m in self._members.items()
                                 if n != self.name and m.state in _LIVE]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _adjust_awareness(self, delta: int) -> None:
        self._awareness = max(0, min(self.timings.awareness_max - 1, self._awareness + delta))

    def _refute(self, now: float, accused: int) -> None:
        self._local.incarnation = max(accused, self._local.incarnation) + 1
        self._broadcast(self._alive_self())
        self._adjust_awareness(1)  # being suspected hints that we are the slow one

    def _alive_self(self) -> Alive:
        return Alive(self.name, self._local.incarnation, self._local.addr, self._local.meta)

    def _set_state(self, m: _Member, new: MemberState, incarnation: int, now: float) -> None:
        old = m.state
        m.state, m.incarnation, m.since = new, incarnation, now
        if old != new:
            self._obs.transition(old, new)
            kind = {
                MemberState.ALIVE: EventKind.ALIVE,
                MemberState.SUSPECT: EventKind.SUSPECT,
                MemberState.DEAD: EventKind.DEAD,
                MemberState.LEFT: EventKind.LEFT,
            }[new]
            self._emit(kind, m, now)

    def _emit(self, kind: EventKind, m: _Member, now: float) -> None:
        self._events.append(MemberEvent(kind, m.info(), now))
        self.version += 1

    def _check_fence(self, now: float) -> None:
        fenced = self.is_fenced(now)
        if fenced != self._fenced:
            self._fenced = fenced
            self._emit(EventKind.FENCED if fenced else EventKind.UNFENCED, self._local, now)

    def _broadcast(self, msg: Suspect | Alive | Dead) -> None:
        """Queue a notice for piggy-backing; a newer notice about a node replaces older."""
        self._broadcasts[msg.node] = _Broadcast(msg, encode_message(msg), 0, next(self._order))
        if not self._gossip_armed:
            self._gossip_armed = True
            self._at(self._now + self.timings.gossip_interval_s, self._gossip_tick)

    def _send(self, dest: Address, primary: list[Message]) -> None:
        """Queue a datagram: the primary messages, then as many broadcasts as fit."""
        encoded = [encode_message(m) for m in primary]
        budget = self.limits.max_packet_bytes - self._header_bytes - sum(map(len, encoded))
        messages = list(primary)
        if self._broadcasts and budget > 0:
            limit = self.timings.retransmit_limit(self.live_count())
            # fewest transmissions first, newest first among equals (memberlist's order)
            queue = sorted(self._broadcasts.values(), key=lambda b: (b.transmits, -b.order))
            for b in queue:
                if len(messages) >= 255:
                    break
                if len(b.encoded) > budget:
                    continue
                budget -= len(b.encoded)
                messages.append(b.msg)
                encoded.append(b.encoded)
                b.transmits += 1
                if b.transmits >= limit:
                    del self._broadcasts[b.msg.node]  # type: ignore[union-attr]
        if messages:
            self._outbox.append(Outgoing(dest, tuple(messages), tuple(encoded)))

    def _send_state(self, dest: Address, *, reply_wanted: bool) -> None:
        """Send our whole table to ``dest`` in datagram-sized PushPull chunks."""
        entries = [StateEntry(m.name, m.incarnation, m.state, m.addr, m.meta)
                   for m in self._members.values()]
        local = StateEntry(self.name, self._local.incarnation, MemberState.ALIVE,
                           self._local.addr, self._local.meta)
        entries = [local] + [e for e in entries if e.node != self.name]
        budget = self.limits.max_packet_bytes - self._header_bytes - PUSH_PULL_OVERHEAD_BYTES
        chunk: list[StateEntry] = []
        used = 0
        first = True
        for entry in entries:
            size = len(encode_state_entry(entry))
            if chunk and used + size > budget:
                self._emit_chunk(dest, chunk, reply_wanted and first)
                first, chunk, used = False, [], 0
            chunk.append(entry)
            used += size
        if chunk:
            self._emit_chunk(dest, chunk, reply_wanted and first)

    def _emit_chunk(self, dest: Address, chunk: list[StateEntry], reply_wanted: bool) -> None:
        msg = PushPull(reply_wanted, tuple(chunk))
        self._outbox.append(Outgoing(dest, (msg,), (encode_message(msg),)))

