"""SWIM + Lifeguard state machine, driven through the deterministic network simulation.

Times asserted here are virtual seconds of the simulation (exact for a seed).
"""

from __future__ import annotations

import ipaddress
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from purelb.election._sim import SimNetwork
from purelb.election._suspicion import Suspicion, suspicion_timeout
from purelb.election._swim import EventKind, Swim
from purelb.election._timings import DEFAULT_LIMITS, lan
from purelb.election._wire import (
    Address,
    Alive,
    Dead,
    MemberMeta,
    MemberState,
    NodeName,
    Plaintext,
    Suspect,
)

DEAD, ALIVE, LEFT = MemberState.DEAD, MemberState.ALIVE, MemberState.LEFT


def cluster(n: int, *, loss: float = 0.0, seed: int = 1, settle_s: float = 2.0) -> SimNetwork:
    net = SimNetwork(timings=lan(), seed=seed, loss=loss)
    for i in range(n):
        net.add(f"n{i}")
    for i in range(1, n):
        net.join(f"n{i}", ["n0"])
    net.run_for(settle_s)
    return net


def time_until(net: SimNetwork, condition, *, limit_s: float, step_s: float = 0.01) -> float:
    start = net.now
    while not condition():
        if net.now - start > limit_s:
            pytest.fail(f"condition not reached within {limit_s} s of simulated time")
        net.run_for(step_s)
    return net.now - start


# -- timer math -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("desc", "confirmations", "wanted", "expected"),
    [
        ("no confirmations wanted: minimum at once", 0, 0, 2.0),
        ("fresh suspicion starts at the maximum", 0, 3, 30.0),
        ("one of three confirmations: log-scaled", 1, 3, 30.0 - 0.5 * 28.0),
        ("all confirmations: minimum", 3, 3, 2.0),
        ("more than wanted never goes below the minimum", 9, 3, 2.0),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_suspicion_timeout_shrinks_with_confirmations(desc, confirmations, wanted, expected):
    assert suspicion_timeout(confirmations, wanted, 2.0, 30.0) == pytest.approx(expected)


def test_suspicion_ignores_the_accuser_and_repeated_confirmers():
    s = Suspicion(incarnation=1, start=10.0, wanted=2, min_s=1.0, max_s=4.0, accuser="a")
    assert s.deadline == 14.0
    assert not s.confirm("a")
    assert s.confirm("b") and not s.confirm("b")
    assert s.confirm("c")
    assert s.deadline == 11.0
    assert not s.confirm("d")  # enough already


def test_lan_defaults_fit_the_one_second_detection_budget():
    t = lan()
    budget = 2 * t.probe_interval_s + t.suspicion_min_s(3) + t.gossip_interval_s
    assert budget <= 1.0
    assert t.suspicion_min_s(100) == pytest.approx(2 * t.suspicion_min_s(10))
    assert t.retransmit_limit(3) == 4 and t.retransmit_limit(200) == 12


# -- membership scenarios ---------------------------------------------------------------------

def test_small_cluster_detects_a_hard_failure_within_one_second():
    net = cluster(3)
    assert net.converged()
    net.kill("n2")
    took = time_until(net, lambda: net.all_agree("n2", DEAD), limit_s=3.0)
    assert took <= 1.0
    assert net.false_deaths(killed=["n2"]) == 0


def test_no_false_death_and_no_suspicion_without_loss():
    net = cluster(30, settle_s=60.0)
    assert net.converged()
    suspicions = [e for n in net.nodes.values() for e in n.events if e.kind == EventKind.SUSPECT]
    assert suspicions == []
    assert net.false_deaths() == 0


def test_two_hundred_members_converge_at_five_percent_loss():
    """Verify 200 members joining through one seed at 5% loss all see each other alive,
    and that transient suspicions under loss are refuted rather than turned into deaths."""
    net = SimNetwork(timings=lan(), seed=7, loss=0.05)
    for i in range(200):
        net.add(f"n{i}")
    for i in range(1, 200):
        net.join(f"n{i}", ["n0"])
    took = time_until(net, net.converged, limit_s=10.0, step_s=0.25)
    assert took <= 2.0
    net.run_for(4.0)
    assert net.converged()
    assert net.false_deaths() == 0


def test_partition_then_heal_restores_a_single_membership():
    net = cluster(10)
    left, right = [f"n{i}" for i in range(5)], [f"n{i}" for i in range(5, 10)]
    net.partition(left, right)
    time_until(net, lambda: all(net.view("n0")[r] == DEAD for r in right)
               and all(net.view("n9")[x] == DEAD for x in left), limit_s=10.0, step_s=0.1)
    net.heal()
    took = time_until(net, net.converged, limit_s=10.0, step_s=0.1)
    # first reconnect push-pull within reconnect_interval_s, then refutations spread
    assert took <= 2 * lan().reconnect_interval_s + 1.0


def test_graceful_leave_is_seen_at_once():
    net = cluster(5)
    net.leave("n3")
    took = time_until(net, lambda: net.all_agree("n3", LEFT), limit_s=1.0, step_s=0.001)
    assert took <= 0.005  # one network delay: the notice goes to every member directly
    net.run_for(5.0)
    assert net.all_agree("n3", LEFT)


def test_restarted_member_is_alive_again_with_a_higher_incarnation():
    net = cluster(4)
    net.kill("n1")
    time_until(net, lambda: net.all_agree("n1", DEAD), limit_s=3.0)
    net.restart("n1", incarnation=1_000, seeds=["n0"])
    time_until(net, net.converged, limit_s=3.0)
    assert net.nodes["n0"].swim.member("n1").incarnation >= 1_000


def test_metadata_change_reaches_every_member():
    net = cluster(6)
    meta = MemberMeta(subnets=(ipaddress.ip_network("192.0.2.0/24"),), ready=False)
    net.update_meta("n4", meta)
    time_until(net, lambda: all(n.swim.member("n4").meta == meta for n in net.nodes.values()),
               limit_s=1.0)


def test_slow_member_raises_its_local_health_instead_of_killing_others():
    """Verify Lifeguard: a member whose round trips (0.24 s) exceed the whole probe period
    stretches its own timeouts (awareness at the ceiling) and never gets a healthy member
    declared dead; only it may be declared dead, which is the detector doing its job."""
    net = cluster(8)
    net.slow("n5", 0.12)
    net.run_for(20.0)
    assert net.nodes["n5"].swim.awareness == lan().awareness_max - 1
    assert all(net.nodes[f"n{i}"].swim.awareness == 0 for i in range(8) if i != 5)
    dead = {e.member.name for n in net.nodes.values() for e in n.events
            if e.kind == EventKind.DEAD}
    assert dead <= {"n5"}


def test_survivor_fences_itself_when_everyone_else_died_but_not_when_they_left():
    net = cluster(3)
    assert not net.nodes["n0"].swim.is_fenced(net.now)
    net.kill("n1")
    net.kill("n2")
    time_until(net, lambda: net.nodes["n0"].swim.is_fenced(net.now), limit_s=3.0)
    net.run_for(3.0)
    assert net.nodes["n0"].swim.is_fenced(net.now)  # stays fenced once both are dead
    kinds = [e.kind for e in net.nodes["n0"].events]
    assert EventKind.FENCED in kinds

    calm = cluster(3, seed=2)
    calm.leave("n1")
    calm.leave("n2")
    calm.run_for(3.0)
    assert not calm.nodes["n0"].swim.is_fenced(calm.now)


def test_member_with_seeds_is_fenced_until_it_first_reaches_someone():
    """Verify that a node booting inside a partition does not announce; a first member
    without seeds (a one-node cluster) does."""
    net = SimNetwork(timings=lan(), seed=4)
    net.add("n0")
    net.add("n1")
    assert not net.nodes["n0"].swim.is_fenced(net.now)
    net.partition(["n0"], ["n1"])
    net.join("n1", ["n0"])
    net.run_for(2.0)
    assert net.nodes["n1"].swim.is_fenced(net.now)
    net.heal()
    time_until(net, lambda: not net.nodes["n1"].swim.is_fenced(net.now), limit_s=6.0)
    assert net.converged()


def test_isolated_member_fences_before_the_others_declare_it_dead():
    net = cluster(5)
    net.partition(["n4"], ["n0", "n1", "n2", "n3"])
    time_until(net, lambda: net.nodes["n4"].swim.is_fenced(net.now), limit_s=3.0, step_s=0.005)
    declared = [e for n in net.nodes.values() for e in n.events
                if e.kind == EventKind.DEAD and e.member.name == "n4"]
    assert declared == []  # nobody has taken over yet
    time_until(net, lambda: net.all_agree("n4", DEAD), limit_s=5.0)
    assert not net.nodes["n0"].swim.is_fenced(net.now)
    net.heal()
    time_until(net, net.converged, limit_s=5.0)
    assert not net.nodes["n4"].swim.is_fenced(net.now)


# -- single-machine rules ---------------------------------------------------------------------

def machine(name: str = "a") -> Swim:
    return Swim(name=NodeName(name), addr=Address("10.0.0.1", 7934), meta=MemberMeta(),
                incarnation=5, timings=lan(), limits=DEFAULT_LIMITS, rng=random.Random(1),
                now=0.0)


def test_suspicion_about_ourselves_is_refuted_with_a_higher_incarnation():
    a = machine()
    a.handle(0.1, Address("10.0.0.2", 7934), Plaintext(NodeName("b"), 1, 1, (
        Alive(NodeName("b"), 1, Address("10.0.0.2", 7934), MemberMeta()),
        Suspect(NodeName("a"), 5, NodeName("b")))))
    assert a.incarnation == 6
    sent = [m for out in a.drain_outbox() for m in out.messages if isinstance(m, Alive)]
    assert any(m.node == "a" and m.incarnation == 6 for m in sent) or a._broadcasts["a"]
    assert a.member("a").state == ALIVE


def test_stale_notices_do_not_override_newer_state():
    a = machine()
    peer = Address("10.0.0.2", 7934)
    pkt = Plaintext(NodeName("b"), 1, 1, (Alive(NodeName("b"), 4, peer, MemberMeta()),))
    a.handle(0.1, peer, pkt)
    a.handle(0.2, peer, Plaintext(NodeName("c"), 1, 1, (Dead(NodeName("b"), 3, NodeName("c")),)))
    assert a.member("b").state == ALIVE
    a.handle(0.3, peer, Plaintext(NodeName("c"), 1, 2, (Dead(NodeName("b"), 4, NodeName("c")),)))
    assert a.member("b").state == DEAD
    a.handle(0.4, peer, Plaintext(NodeName("c"), 1, 3, (Alive(NodeName("b"), 4, peer,
                                                               MemberMeta()),)))
    assert a.member("b").state == DEAD  # same incarnation cannot resurrect


def test_next_deadline_is_infinite_after_leave():
    a = machine()
    a.leave(0.0)
    a.tick(1.0)
    assert a.next_deadline() == math.inf
    assert a.is_fenced(1.0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0.0, 0.2), kills=st.integers(0, 2))
def test_invariants_hold_under_random_loss_and_failures(seed, loss, kills):
    """Verify: a member never sees itself other than alive, and incarnations only grow."""
    net = cluster(6, loss=loss, seed=seed, settle_s=0.5)
    seen: dict[tuple[str, str], int] = {}
    for k in range(kills):
        net.kill(f"n{5 - k}")
    for _ in range(30):
        net.run_for(0.1)
        for name, node in net.nodes.items():
            if not node.alive:
                continue
            assert node.swim.member(name).state == ALIVE
            for m in node.swim.members():
                key = (name, m.name)
                assert m.incarnation >= seen.get(key, 0)
                seen[key] = m.incarnation


# -- stateful: arbitrary notices in any order ---------------------------------------------------

PEERS = [NodeName(n) for n in ("a", "b", "c", "d")]  # "a" is the machine itself
PEER_ADDR = Address("10.0.0.9", 7934)


class SwimRules(RuleBasedStateMachine):
    """Feed one machine any mix of alive/suspect/dead notices and timer ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.swim = machine("a")
        self.now = 0.0
        self.own = self.swim.incarnation
        self.seen: dict[str, int] = {}

    def _deliver(self, sender: NodeName, msg) -> None:
        self.now += 0.01
        self.swim.handle(self.now, PEER_ADDR, Plaintext(sender, 1, 1, (msg,)))

    @rule(node=st.sampled_from(PEERS), inc=st.integers(0, 20), ready=st.booleans())
    def alive(self, node, inc, ready):
        self._deliver(NodeName("b"), Alive(node, inc, PEER_ADDR, MemberMeta(ready=ready)))

    @rule(node=st.sampled_from(PEERS), inc=st.integers(0, 20), source=st.sampled_from(PEERS))
    def suspect(self, node, inc, source):
        self._deliver(source if source != "a" else NodeName("b"), Suspect(node, inc, source))

    @rule(node=st.sampled_from(PEERS), inc=st.integers(0, 20), source=st.sampled_from(PEERS))
    def dead(self, node, inc, source):
        self._deliver(NodeName("c"), Dead(node, inc, source))

    @rule(seconds=st.floats(0.0, 3.0))
    def tick(self, seconds):
        self.now += seconds
        self.swim.tick(self.now)
        self.swim.drain_outbox()

    @invariant()
    def never_suspects_or_buries_itself(self):
        assert self.swim.member("a").state == ALIVE

    @invariant()
    def incarnations_only_grow(self):
        assert self.swim.incarnation >= self.own
        self.own = self.swim.incarnation
        for m in self.swim.members():
            assert m.incarnation >= self.seen.get(m.name, 0)
            self.seen[m.name] = m.incarnation


SwimRules.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSwimRules = SwimRules.TestCase
