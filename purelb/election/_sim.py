"""A deterministic discrete-event simulation of many :class:`Swim` members.

Used by the unit tests and by ``purelb bench gossip`` (200 members). Each member is a real
:class:`Swim`; only the network is simulated: every datagram is lost with probability
``loss`` and otherwise delivered after a uniform random delay, partitions drop datagrams
between groups, and a killed member neither sends nor receives nor runs timers. Time is a
number advanced by the event queue, so an hour of gossip runs in seconds and a seed gives
the same run every time.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._swim import EventKind, MemberEvent, Swim
from ._timings import DEFAULT_LIMITS, GossipLimits, GossipTimings
from ._wire import Address, MemberMeta, MemberState, NodeName, Plaintext

#: IPv4+UDP header bytes, added to payload sizes for on-the-wire bandwidth figures.
IP_UDP_HEADER_BYTES = 28


@dataclass(slots=True)
class SimNode:
    """One simulated member and its counters."""

    swim: Swim
    addr: Address
    alive: bool = True
    scheduled_at: float = math.inf
    bytes_sent: int = 0
    packets_sent: int = 0
    events: list[MemberEvent] = field(default_factory=list)


class SimNetwork:
    """The simulated LAN. Add members, join them, run, break and heal it."""

    def __init__(self, *, timings: GossipTimings, seed: int, loss: float = 0.0,
                 delay_s: tuple[float, float] = (0.0002, 0.001),
                 limits: GossipLimits = DEFAULT_LIMITS) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        self.timings = timings
        self.limits = limits
        self.loss = loss
        self.delay_s = delay_s
        self.now = 0.0
        self.rng = random.Random(seed)
        self.nodes: dict[NodeName, SimNode] = {}
        self._by_addr: dict[Address, SimNode] = {}
        self._queue: list[tuple[float, int, object]] = []
        self._order = itertools.count()
        self._group: dict[NodeName, int] = {}
        self._extra_delay: dict[NodeName, float] = {}
        self.delivered = 0
        self.dropped = 0

    # -- building ----------------------------------------------------------------------

    def add(self, name: str, *, meta: MemberMeta | None = None,
            incarnation: int = 1) -> SimNode:
        index = len(self.nodes) + 1
        addr = Address(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", 7934)
        swim = Swim(name=NodeName(name), addr=addr, meta=meta or MemberMeta(),
                    incarnation=incarnation, timings=self.timings, limits=self.limits,
                    rng=random.Random(self.rng.random()), now=self.now)
        node = SimNode(swim, addr)
        self.nodes[NodeName(name)] = node
        self._by_addr[addr] = node
        self._reschedule(node)
        return node

    def join(self, name: str, seeds: Iterable[str]) -> None:
        node = self.nodes[NodeName(name)]
        node.swim.join(self.now, [self.nodes[NodeName(s)].addr for s in seeds])
        self._flush(node)

    def kill(self, name: str) -> None:
        """Hard failure: the member stops without a word."""
        self.nodes[NodeName(name)].alive = False

    def leave(self, name: str) -> None:
        node = self.nodes[NodeName(name)]
        node.swim.leave(self.now)
        self._flush(node)

    def restart(self, name: str, *, incarnation: int, seeds: Iterable[str]) -> SimNode:
        """A fresh process for an existing name (new incarnation, same address)."""
        old = self.nodes[NodeName(name)]
        swim = Swim(name=NodeName(name), addr=old.addr, meta=old.swim.local.meta,
                    incarnation=incarnation, timings=self.timings, limits=self.limits,
                    rng=random.Random(self.rng.random()), now=self.now)
        node = SimNode(swim, old.addr)
        self.nodes[NodeName(name)] = node
        self._by_addr[old.addr] = node
        self._reschedule(node)
        self.join(name, seeds)
        return node

    def update_meta(self, name: str, meta: MemberMeta) -> None:
        node = self.nodes[NodeName(name)]
        node.swim.update_meta(self.now, meta)
        self._flush(node)

    def partition(self, *groups: Iterable[str]) -> None:
        """Datagrams between different groups are dropped (members in no group: group 0)."""
        self._group = {NodeName(n): i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self._group = {}

    def slow(self, name: str, extra_delay_s: float) -> None:
        """Delay every datagram to and from ``name`` (an overloaded or badly linked node)."""
        self._extra_delay[NodeName(name)] = extra_delay_s

    # -- running -------------------------------------------------------------------------

    def run_until(self, deadline: float) -> None:
        while self._queue and self._queue[0][0] <= deadline:
            at, _, item = heapq.heappop(self._queue)
            self.now = at
            if isinstance(item, SimNode):
                if item.scheduled_at != at or not item.alive:
                    continue  # superseded by an earlier deadline, or dead
                item.scheduled_at = math.inf
                item.swim.tick(at)
                self._flush(item)
            else:
                dest, src, packet = item  # type: ignore[misc]
                if not dest.alive:
                    continue
                dest.swim.handle(at, src, packet)
                self._flush(dest)
        self.now = max(self.now, deadline)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    # -- observing -----------------------------------------------------------------------

    def view(self, name: str) -> dict[str, MemberState]:
        return {m.name: m.state for m in self.nodes[NodeName(name)].swim.members()}

    def converged(self) -> bool:
        """Every running member sees exactly the running members as alive."""
        running = {n for n, node in self.nodes.items() if node.alive and not node.swim.left}
        for name in running:
            alive = {m.name for m in self.nodes[name].swim.members()
                     if m.state == MemberState.ALIVE}
            if alive != running:
                return False
        return True

    def all_agree(self, name: str, state: MemberState) -> bool:
        """Every running member (other than ``name``) sees ``name`` in ``state``."""
        for other, node in self.nodes.items():
            if other == name or not node.alive or node.swim.left:
                continue
            m = node.swim.member(name)
            if m is None or m.state != state:
                return False
        return True

    def false_deaths(self, killed: Iterable[str] = ()) -> int:
        """DEAD events about members that were running and never killed."""
        gone = {NodeName(k) for k in killed}
        return sum(
            1
            for node in self.nodes.values()
            for ev in node.events
            if ev.kind == EventKind.DEAD and ev.member.name not in gone
        )

    # -- plumbing ------------------------------------------------------------------------

    def _reschedule(self, node: SimNode) -> None:
        deadline = node.swim.next_deadline()
        if deadline < node.scheduled_at:
            node.scheduled_at = deadline
            heapq.heappush(self._queue, (deadline, next(self._order), node))

    def _flush(self, node: SimNode) -> None:
        node.events.extend(node.swim.drain_events())
        sender = node.swim.name
        for out in node.swim.drain_outbox():
            node.packets_sent += 1
            node.bytes_sent += out.wire_bytes(sender) + IP_UDP_HEADER_BYTES
            dest = self._by_addr.get(out.dest)
            if dest is None or self.rng.random() < self.loss:
                self.dropped += 1
                continue
            if self._group and self._group.get(sender, 0) != self._group.get(
                dest.swim.name, 0
            ):
                self.dropped += 1
                continue
            self.delivered += 1
            delay = (self.rng.uniform(*self.delay_s) + self._extra_delay.get(sender, 0.0)
                     + self._extra_delay.get(dest.swim.name, 0.0))
            packet = Plaintext(sender, 0, 0, out.messages)
            heapq.heappush(self._queue, (self.now + delay, next(self._order),
                                         (dest, node.addr, packet)))
        self._reschedule(node)
