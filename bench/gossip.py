"""``purelb bench gossip``: failure detection, bandwidth and a long decoder fuzz.

Figures:
- hard-failure detection p50/p99 across network namespaces (root): 3 member processes,
  SIGKILL one, time until both others report it dead; the victim is restarted between
  trials (``--trials``, default 20);
- gossip bandwidth per node: 3 real members (namespaces, from their byte counters) and
  N simulated members (``--sim-members``, default 200) in steady state;
- simulation: convergence time and false deaths at ``--loss``;
- fuzz (``--fuzz N``, e.g. 1000000): mutated, replayed, foreign and forged datagrams fed to
  the receive pipeline, plus mutated plaintexts sealed with a valid key (an authenticated
  but hostile peer) fed to the parser: counts crashes and accepted forgeries (both must be 0).

``--json PATH`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path

from purelb.election._codec import PacketCodec
from purelb.election._crypto import Envelope, Keyring
from purelb.election._reasons import RejectReason
from purelb.election._sim import SimNetwork
from purelb.election._swim import EventKind
from purelb.election._timings import DEFAULT_LIMITS, lan
from purelb.election._wire import (
    Ack,
    Address,
    Alive,
    MemberMeta,
    MemberState,
    NodeName,
    Ping,
    PushPull,
    StateEntry,
    Suspect,
    encode_message,
    encode_plaintext,
)
from purelb.errors import PacketRejected

NETNS_PREFIX = "plb"  # distinct from the tests' "plg" so a bench and a test run can overlap


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials (root)")
    parser.add_argument("--sim-members", type=int, default=200)
    parser.add_argument("--sim-seconds", type=float, default=20.0,
                        help="simulated steady-state seconds for the bandwidth figure")
    parser.add_argument("--loss", type=float, default=0.05, help="simulated datagram loss")
    parser.add_argument("--fuzz", type=int, default=20000,
                        help="fuzz inputs (use 1000000 for the long mode)")
    parser.add_argument("--skip-netns", action="store_true", help="no namespace figures")
    parser.add_argument("--json", type=Path, help="write the figures here")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- simulation ---------------------------------------------------------------------------

def simulate(members: int, loss: float, steady_s: float, seed: int = 11) -> dict[str, float]:
    net = SimNetwork(timings=lan(), seed=seed, loss=loss)
    for i in range(members):
        net.add(f"n{i}")
    for i in range(1, members):
        net.join(f"n{i}", ["n0"])
    started = time.perf_counter()
    while not net.converged() and net.now < 60:
        net.run_for(0.1)
    converged_s = net.now
    net.run_for(2.0)  # let the join traffic settle before measuring steady state
    sent0 = {n: node.bytes_sent for n, node in net.nodes.items()}
    pk0 = {n: node.packets_sent for n, node in net.nodes.items()}
    net.run_for(steady_s)
    per_node = [(node.bytes_sent - sent0[n]) / steady_s for n, node in net.nodes.items()]
    pkts = [(node.packets_sent - pk0[n]) / steady_s for n, node in net.nodes.items()]
    suspicions = sum(1 for node in net.nodes.values() for e in node.events
                     if e.kind == EventKind.SUSPECT)
    victim = f"n{members - 1}"
    net.kill(victim)
    killed = net.now
    while not net.all_agree(victim, MemberState.DEAD) and net.now - killed < 30:
        net.run_for(0.01)
    return {
        "members": members,
        "loss": loss,
        "converged_s": converged_s,
        "false_deaths": net.false_deaths(killed=[victim]),
        "suspect_events": suspicions,
        "bytes_per_s_per_node_mean": statistics.fmean(per_node),
        "bytes_per_s_per_node_max": max(per_node),
        "packets_per_s_per_node_mean": statistics.fmean(pkts),
        "detect_all_agree_s": net.now - killed,
        "wall_s": time.perf_counter() - started,
    }


# -- namespaces ---------------------------------------------------------------------------

def netns_figures(trials: int) -> dict[str, object]:
    from bench.gossip_lab import GossipLab

    times: list[float] = []
    with GossipLab(3, prefix=NETNS_PREFIX) as lab:
        for node in range(3):
            lab.start(node, seeds=[0, 1, 2])
        lab.wait_converged([0, 1, 2], timeout_s=15)
        lab.poll(2.0)
        before = {n: lab.stats(n) for n in range(3)}
        window_s = 5.0
        end = time.monotonic() + window_s
        while time.monotonic() < end:
            lab.poll(end - time.monotonic())
        after = {n: lab.stats(n) for n in range(3)}
        elapsed = window_s  # stats are requested back to back; the window dominates
        bandwidth = [(after[n]["bytes_sent"] - before[n]["bytes_sent"]) / elapsed
                     for n in range(3)]
        packets = [(after[n]["packets_sent"] - before[n]["packets_sent"]) / elapsed
                   for n in range(3)]
        for trial in range(trials):
            victim = 1 + trial % 2
            others = [n for n in range(3) if n != victim]
            killed_at = lab.kill(victim)
            seen = lab.wait_all(
                others,
                lambda ln, v=victim: ln.data.get("event") == "member"
                and ln.data["member"] == f"node{v}" and ln.data["kind"] == "dead",
                timeout_s=10, what="dead notice")
            times.append(max(line.at for line in seen.values()) - killed_at)
            lab.start(victim, seeds=others)
            lab.wait_all(
                others,
                lambda ln, v=victim: ln.data.get("event") == "member"
                and ln.data["member"] == f"node{v}" and ln.data["kind"] in ("alive", "joined"),
                timeout_s=15, what="rejoin")
            lab.poll(1.0)
        for n in range(3):
            lab.signal(n, signal.SIGTERM)
    return {
        "trials": len(times),
        "detect_p50_s": percentile(times, 50),
        "detect_p99_s": percentile(times, 99),
        "detect_max_s": max(times),
        "detect_all_s": [round(t, 4) for t in times],
        "bytes_per_s_per_node_mean": statistics.fmean(bandwidth),
        "packets_per_s_per_node_mean": statistics.fmean(packets),
        "note": "UDP payload bytes (sealed datagrams); add 28 B per packet for IPv4+UDP",
    }


# -- fuzz -----------------------------------------------------------------------------------

def _genuine_plaintexts() -> list[bytes]:
    meta = MemberMeta(subnets=(), ready=True)
    addr = Address("172.31.255.11", 7934)
    entries = tuple(StateEntry(NodeName(f"node{i}"), i, MemberState(i % 4), addr, meta)
                    for i in range(12))
    msgs = [
        [Ping(1, NodeName("b"))],
        [Ack(7), Suspect(NodeName("c"), 3, NodeName("a"))],
        [Alive(NodeName("a"), 9, addr, meta)],
        [PushPull(True, entries)],
    ]
    return [encode_plaintext(NodeName("a"), 1, 1, [encode_message(m) for m in group])
            for group in msgs]


def fuzz(count: int, seed: int = 5) -> dict[str, object]:
    rng = random.Random(seed)
    secret = os.urandom(32)
    ring = Keyring.from_secrets({"k1": secret})
    sender = PacketCodec(node=NodeName("a"), epoch=1, cluster="fuzz", keyring=ring,
                         limits=DEFAULT_LIMITS)
    foreign = PacketCodec(node=NodeName("a"), epoch=1, cluster="other", keyring=ring,
                          limits=DEFAULT_LIMITS)
    hostile = Envelope("fuzz", ring, max_packet_bytes=65000)
    receiver = PacketCodec(node=NodeName("b"), epoch=1, cluster="fuzz", keyring=ring,
                           limits=DEFAULT_LIMITS)
    # A key holder can claim any sender name and epoch (the shared-key limit, docs/gossip.md);
    # its datagrams go to their own receiver so they cannot skew the replay checks above.
    parser_target = PacketCodec(node=NodeName("b"), epoch=1, cluster="fuzz", keyring=ring,
                                limits=DEFAULT_LIMITS)
    plains = _genuine_plaintexts()
    accepted_genuine: list[bytes] = []
    crashes: list[str] = []
    forged_accepted = 0
    forged_examples: list[str] = []
    identity = 0
    authenticated_parsed = 0
    reasons: dict[str, int] = {}
    kinds = ("flip", "truncate", "extend", "random", "replay", "foreign", "hostile_plaintext")
    started = time.perf_counter()
    fed = 0
    for i in itertools.count():
        if fed >= count:
            break
        now = i * 0.001  # 1000 datagrams/s of virtual time: under the rate limit
        kind = kinds[i % len(kinds)]
        if kind == "replay" and accepted_genuine:
            packet = rng.choice(accepted_genuine)
        elif kind == "foreign":
            packet = foreign.encode([encode_message(Ping(i % 2**32, NodeName("b")))])
        elif kind == "hostile_plaintext":
            plain = bytearray(rng.choice(plains))
            for _ in range(rng.randint(1, 4)):
                plain[rng.randrange(len(plain))] = rng.randrange(256)
            seq_bytes = (10_000_000 + i).to_bytes(8, "big")  # fresh seq: passes the replay check
            plain[2 : 2 + 8 + 8] = plain[2:10] + seq_bytes
            packet = hostile.seal(bytes(plain))
        else:
            genuine = sender.encode([encode_message(Ping(i % 2**32, NodeName("b")))])
            if i % 97 == 0:  # now and then let a genuine one through, to have replays to try
                receiver.decode(genuine, "10.0.0.1", now)
                accepted_genuine.append(genuine)
                continue
            buf = bytearray(genuine)
            if kind == "flip":
                for _ in range(rng.randint(1, 3)):
                    buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
            elif kind == "truncate":
                buf = buf[: rng.randrange(len(buf))]
            elif kind == "extend":
                buf += rng.randbytes(rng.randint(1, 64))
            else:
                buf = bytearray(rng.randbytes(rng.randint(0, 1500)))
                if rng.random() < 0.5:
                    buf[:31] = genuine[:31]  # our header, random body: reaches the AEAD
            packet = bytes(buf)
            if packet == genuine:  # e.g. the same byte flipped twice by the same value
                identity += 1
                continue
        target = parser_target if kind == "hostile_plaintext" else receiver
        fed += 1
        try:
            target.decode(packet, "10.0.0.1", now)
        except PacketRejected as exc:
            reasons[str(exc.reason)] = reasons.get(str(exc.reason), 0) + 1
            if str(exc.reason) not in set(RejectReason):
                crashes.append(f"unknown reason {exc.reason}")
            continue
        except Exception as exc:  # the point of fuzzing: record, never stop
            crashes.append(f"{kind}: {exc!r}")
            continue
        if kind == "hostile_plaintext":
            authenticated_parsed += 1  # a key holder's well-formed datagram: fine to accept
        else:
            forged_accepted += 1
            forged_examples.append(f"{kind}: {packet.hex()}")
    return {
        "inputs": fed,
        "crashes": len(crashes),
        "crash_examples": crashes[:5],
        "forged_replayed_or_foreign_accepted": forged_accepted,
        "forged_examples": forged_examples[:5],
        "identity_mutations_skipped": identity,
        "hostile_plaintexts_parsed": authenticated_parsed,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "wall_s": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> int:
    figures: dict[str, object] = {}
    print(f"simulating {args.sim_members} members at {args.loss:.0%} loss ...", flush=True)
    figures["sim_large"] = simulate(args.sim_members, args.loss, args.sim_seconds)
    figures["sim_large_no_loss"] = simulate(args.sim_members, 0.0, args.sim_seconds)
    figures["sim_3"] = simulate(3, 0.0, args.sim_seconds)
    if not args.skip_netns:
        if os.geteuid() != 0:
            print("not root: namespace figures skipped (run as root for them)")
        else:
            print(f"namespaces: {args.trials} SIGKILL trials ...", flush=True)
            figures["netns"] = netns_figures(args.trials)
    if args.fuzz:
        print(f"fuzzing {args.fuzz} inputs ...", flush=True)
        figures["fuzz"] = fuzz(args.fuzz)
    for name, values in figures.items():
        print(f"\n[{name}]")
        for key, value in values.items():  # type: ignore[union-attr]
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"  {key:38} {shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"\nwrote {args.json}")
    fuzz_figs = figures.get("fuzz", {})
    failed = bool(fuzz_figs) and (fuzz_figs["crashes"] or  # type: ignore[index]
                                  fuzz_figs["forged_replayed_or_foreign_accepted"])  # type: ignore[index]
    return 1 if failed else 0
