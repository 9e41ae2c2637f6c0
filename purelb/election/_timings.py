"""Named timings and limits of the gossip layer (SWIM + Lifeguard).

Every duration the failure detector uses lives here, with its unit, the reason for its
default and what changing it costs. Presets are derived from the base with
:func:`dataclasses.replace`, never copied: :func:`lan` is the production default and
:func:`local` the faster profile for loopback and namespace tests.

Detection budget of the LAN defaults (hard failure, 3 members)::

    wait until someone probes the dead node      <= 2 * probe_interval_s (0.3 s: each of the
                                                    2 others probes it every other period)
    direct probe + indirect probes, then suspect  = probe_interval_s     (0.15 s)
    suspicion timeout (no confirmations needed)   = suspicion_min_s      (0.3 s)
    dead notice reaches the others                ~ gossip_interval_s    (0.05 s)
                                                  ------------------------------------------
                                                  ~0.55 s typical, ~0.8 s worst (no loss)

The minimum suspicion timeout grows with log10(N) (0.6 s at 100 members), so large
clusters detect in 1-1.5 s. The price is a shorter grace for a member that is alive but
stalled: one whose process cannot run for about ``probe_interval_s + suspicion_min_s``
(0.45 s at N <= 10) is declared dead. See docs/gossip.md for the trade-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from ..errors import ConfigError


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ConfigError(
                f"{type(obj).__name__}.{name} must be a finite number > 0, got {value!r}",
                path=name,
                value=value,
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipTimings:
    """Failure-detector and dissemination timings (seconds unless stated)."""

    probe_interval_s: float = 0.15
    """Seconds between two probes started by one member (round-robin over the members).
    0.15 s keeps a hard failure's detection under 1 s on a LAN even in the worst phase
    (module docstring; 0.2 s measured p99 1.08 s across namespaces). Lower detects faster
    but costs N/interval probes per second cluster-wide (two datagrams of ~80 bytes each)."""

    probe_timeout_s: float = 0.06
    """Seconds to wait for a direct ack before asking ``indirect_checks`` members to probe.
    LAN round trips are < 1 ms; the rest is headroom for Python scheduling delays (tens of
    ms on a loaded node). Must stay below ``probe_interval_s`` so indirect probes have time."""

    indirect_checks: int = 3
    """Members asked to probe on our behalf when the direct probe times out (SWIM's k).
    3 as memberlist's LAN default: a probe then fails only if the direct path and all three
    relayed paths lose a datagram, which keeps false suspicions rare at a few percent loss."""

    suspicion_mult: float = 2.0
    """Minimum suspicion timeout = suspicion_mult * max(1, log10(N)) * probe_interval_s
    (0.3 s for N <= 10 with the defaults). memberlist uses 4 (at 1 s probes); 2 keeps the
    <= 1 s target. Raising it gives a stalled-but-alive member longer to refute."""

    suspicion_max_mult: float = 4.0
    """Maximum suspicion timeout = suspicion_max_mult * minimum. A fresh suspicion starts at
    the maximum and shrinks towards the minimum as independent members confirm it (Lifeguard),
    so a lone accuser (maybe the slow one) cannot kill a member quickly."""

    suspicion_confirmations: int = 2
    """Independent confirmations (k) after which the suspicion timeout reaches its minimum.
    Set to 0 automatically when fewer than k + 2 members exist: nobody could confirm."""

    awareness_max: int = 8
    """Lifeguard local-health ceiling: our probe interval and timeout are stretched by
    (score + 1), score in [0, awareness_max - 1]. A member that misses acks and nacks
    (likely itself overloaded) slows down instead of accusing healthy members. 8 as memberlist."""

    retransmit_mult: int = 4
    """Each broadcast is piggy-backed retransmit_mult * ceil(log10(N + 1)) times before it is
    dropped (memberlist's default 4). More costs bandwidth; fewer risks a notice not spreading
    under loss (push-pull repairs it later)."""

    gossip_interval_s: float = 0.05
    """Seconds between dedicated gossip rounds that push pending broadcasts to
    ``gossip_nodes`` random members. Short so a death notice spreads in well under the
    detection budget; costs nothing when no broadcast is pending."""

    gossip_nodes: int = 3
    """Members each gossip round sends to (memberlist LAN: 3)."""

    push_pull_interval_s: float = 10.0
    """Seconds between full-state exchanges (anti-entropy) with one random member. Repairs
    anything dissemination missed. memberlist uses 30 s over TCP; ours goes in chunked UDP
    datagrams, ~60 bytes per member, so 10 s costs ~1.2 kB/s per node at 200 members."""

    reconnect_interval_s: float = 2.0
    """Seconds between push-pull attempts with a random member we believe dead (not left).
    This is how two halves heal after a partition: each refutes the other's death notice."""

    resync_unknown_s: float = 1.0
    """Least seconds between two push-pulls we start because a datagram came from a member
    we do not know or believe dead (a missed join notice, a healing partition). Repairs at
    once what would otherwise wait for ``push_pull_interval_s``; the spacing caps the cost."""

    dead_retention_s: float = 120.0
    """Seconds a dead or left member stays in the table (for reconnects and so a late stale
    alive notice cannot resurrect it) before it is forgotten."""

    leave_grace_s: float = 0.2
    """Seconds a leaving member keeps its socket open after sending its leave notice, so the
    datagrams (sent directly to every member) leave the host."""

    join_retry_delays_s: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
    """Backoff between join attempts while no seed answered; the last value repeats (cap).
    Starts fast because a DaemonSet rolls out all agents together."""

    seed_refresh_s: float = 5.0
    """Seconds between calls to the seed provider while we see no other member (before the
    first join, or after losing everyone). Discovery reads the Kubernetes API, so not more
    often than this; joining itself retries faster (``join_retry_delays_s``)."""

    join_retry_jitter: float = 0.2
    """Fraction of random jitter added to each join delay, so a whole DaemonSet restarting
    at once does not retry in lock-step."""

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "probe_interval_s",
            "probe_timeout_s",
            "suspicion_mult",
            "suspicion_max_mult",
            "gossip_interval_s",
            "push_pull_interval_s",
            "reconnect_interval_s",
            "resync_unknown_s",
            "seed_refresh_s",
            "dead_retention_s",
            "leave_grace_s",
        )
        if self.probe_timeout_s >= self.probe_interval_s:
            raise ConfigError(
                f"GossipTimings.probe_timeout_s ({self.probe_timeout_s}) must be below "
                f"probe_interval_s ({self.probe_interval_s}) to leave time for indirect probes",
                path="probe_timeout_s",
                value=self.probe_timeout_s,
            )
        if self.suspicion_max_mult < 1:
            raise ConfigError(
                f"GossipTimings.suspicion_max_mult must be >= 1, got {self.suspicion_max_mult}",
                path="suspicion_max_mult",
                value=self.suspicion_max_mult,
            )
        for name in ("indirect_checks", "suspicion_confirmations", "gossip_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"GossipTimings.{name} must be an integer >= 0, got {value!r}",
                    path=name,
                    value=value,
                )
        for name in ("awareness_max", "retransmit_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"GossipTimings.{name} must be an integer >= 1, got {value!r}",
                    path=name,
                    value=value,
                )
        if not self.join_retry_delays_s or any(
            not (isinstance(d, int | float) and d > 0) for d in self.join_retry_delays_s
        ):
            raise ConfigError(
                "GossipTimings.join_retry_delays_s must be a non-empty tuple of seconds > 0, "
                f"got {self.join_retry_delays_s!r}",
                path="join_retry_delays_s",
                value=self.join_retry_delays_s,
            )
        if not 0 <= self.join_retry_jitter <= 1:
            raise ConfigError(
                f"GossipTimings.join_retry_jitter must be in [0, 1], got {self.join_retry_jitter}",
                path="join_retry_jitter",
                value=self.join_retry_jitter,
            )

    # -- derived values (the formulas quoted in the field docs) --------------------------

    def suspicion_min_s(self, members: int) -> float:
        """Minimum suspicion timeout for a cluster of ``members`` (formula above)."""
        scale = max(1.0, math.log10(max(members, 1)))
        return self.suspicion_mult * scale * self.probe_interval_s

    def suspicion_max_s(self, members: int) -> float:
        """Maximum suspicion timeout: where a fresh, unconfirmed suspicion starts."""
        return self.suspicion_max_mult * self.suspicion_min_s(members)

    def retransmit_limit(self, members: int) -> int:
        """How many times one broadcast is piggy-backed (formula in ``retransmit_mult``)."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def join_delay_s(self, attempt: int, unit_random: float) -> float:
        """Delay before join attempt ``attempt`` (0-based); ``unit_random`` is in [0, 1)."""
        delays = self.join_retry_delays_s
        base = delays[min(attempt, len(delays) - 1)]
        return base * (1.0 + self.join_retry_jitter * unit_random)

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"GossipTimings({inner})"


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipLimits:
    """Protocol and resource limits: every decoded size is checked against these."""

    max_packet_bytes: int = 1400
    """Largest datagram we send or accept, sealed. 1400 keeps a packet inside a 1500-byte
    Ethernet MTU after IP/UDP headers and an encapsulation margin (memberlist's UDPBufferSize)."""

    max_members: int = 4096
    """Most members kept in the table and in one push-pull. Bounds memory an authenticated
    but buggy or hostile peer can make us allocate; far above any real cluster's node count."""

    max_subnets: int = 32
    """Most subnets one member may advertise (PureLB's annotation parser caps at 256; nodes
    have a handful of interfaces, and one member's state must fit in one datagram)."""

    max_name_bytes: int = 253
    """Longest node name in UTF-8 bytes: a Kubernetes node name is a DNS subdomain (<= 253)."""

    rate_per_source_pps: float = 2000.0
    """Datagrams per second accepted from one source address (token bucket refill). A member
    sends a few tens per second normally and a short burst during push-pull."""

    rate_burst: int = 400
    """Token bucket depth per source: covers a push-pull of max_members in chunks."""

    rate_tracked_sources: int = 4096
    """Most source addresses the rate limiter remembers (least recently seen is forgotten)."""

    replay_window: int = 256
    """Sequence numbers remembered per sender below its highest; older ones are stale. A LAN
    reorders little; 256 covers a push-pull burst arriving out of order."""

    replay_forget_s: float = 30.0
    """Seconds without an accepted datagram after which a sender's replay state is
    forgotten. Lets a restarted member whose wall clock stepped back (lower epoch) in after
    that pause. The cost: a datagram recorded earlier can be replayed once after its sender
    went silent; SWIM's incarnation rules make such stale notices harmless. 30 s exceeds
    every suspicion timeout, so a live sender is never forgotten."""

    send_queue_depth: int = 1024
    """Datagrams queued for the socket writer; when full new ones are dropped and counted,
    as UDP would (memberlist's HandoffQueueDepth)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and value > 0):
                raise ConfigError(
                    f"GossipLimits.{f.name} must be > 0, got {value!r}", path=f.name, value=value
                )
        if self.max_packet_bytes < 512 or self.max_packet_bytes > 65000:
            raise ConfigError(
                f"GossipLimits.max_packet_bytes must be in [512, 65000], got "
                f"{self.max_packet_bytes}",
                path="max_packet_bytes",
                value=self.max_packet_bytes,
            )
        if self.max_name_bytes > 255:
            raise ConfigError(
                f"GossipLimits.max_name_bytes must be <= 255 (one length byte), got "
                f"{self.max_name_bytes}",
                path="max_name_bytes",
                value=self.max_name_bytes,
            )
        if self.max_subnets > 255:
            raise ConfigError(
                f"GossipLimits.max_subnets must be <= 255, got {self.max_subnets}",
                path="max_subnets",
                value=self.max_subnets,
            )
        # One member's largest state entry must fit one datagram with every header, or a
        # push-pull could not be chunked: envelope 47 + plaintext header (18 + sender name)
        # + push-pull header 6 + entry (name, incarnation 8, state 1, IPv6 address 19,
        # meta 2 + 18 per IPv6 subnet).
        worst = 47 + 18 + self.max_name_bytes + 6 + (1 + self.max_name_bytes + 8 + 1 + 19
                                                      + 2 + 18 * self.max_subnets)
        if worst > self.max_packet_bytes:
            raise ConfigError(
                f"GossipLimits.max_packet_bytes {self.max_packet_bytes} cannot hold one member "
                f"with {self.max_subnets} subnets and a {self.max_name_bytes}-byte name "
                f"({worst} bytes); raise it or lower max_subnets/max_name_bytes",
                path="max_packet_bytes",
                value=self.max_packet_bytes,
            )


DEFAULT_TIMINGS = GossipTimings()
DEFAULT_LIMITS = GossipLimits()


def lan() -> GossipTimings:
    """Production preset for one L2/L3 LAN: hard failure detected in <= 1 s."""
    return DEFAULT_TIMINGS


def local() -> GossipTimings:
    """Faster preset for loopback and namespace tests (sub-ms RTT, no real loss).

    A shorter probe cycle (0.1 s; not shorter, because tests share busy CI cores) and
    much shorter anti-entropy and reconnects so tests of those paths finish in seconds.
    Not for production: a 0.3 s stall is fatal here.
    """
    base = DEFAULT_TIMINGS
    return replace(
        base,
        probe_interval_s=0.1,
        probe_timeout_s=0.04,
        gossip_interval_s=base.gossip_interval_s / 2,
        push_pull_interval_s=2.0,
        reconnect_interval_s=0.5,
        dead_retention_s=30.0,
        leave_grace_s=0.1,
        join_retry_delays_s=(0.05, 0.1, 0.25, 0.5, 1.0),
        seed_refresh_s=1.0,
    )
