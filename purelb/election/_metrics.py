"""Prometheus metrics of one gossip member, registered in a registry the caller passes.

Never the global default registry: two members in one process (tests, the embedded mode)
must not collide, and the daemon decides what it exports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ._reasons import RejectReason
from ._swim import MemberInfo
from ._wire import MemberState

#: Probe round-trip buckets (seconds): LAN RTTs are sub-millisecond; the tail shows
#: scheduling delays up to the probe timeout.
PROBE_RTT_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@final
class GossipMetrics:
    """The metric families, plus the :class:`SwimObserver` methods that feed them."""

    def __init__(self, registry: CollectorRegistry, *, namespace: str = "purelb") -> None:
        self.members = Gauge("gossip_members", "Members in our table by state", ["state"],
                             namespace=namespace, registry=registry)
        self.transitions = Counter("gossip_transitions", "Member state transitions by new state",
                                   ["to"], namespace=namespace, registry=registry)
        self.probe_rtt = Histogram("gossip_probe_rtt_seconds",
                                   "Round trip of successful probes (direct or relayed)",
                                   namespace=namespace, registry=registry,
                                   buckets=PROBE_RTT_BUCKETS)
        self.probes_failed = Counter("gossip_probes_failed",
                                     "Probe periods that ended without any ack",
                                     namespace=namespace, registry=registry)
        self.rejected = Counter("gossip_packets_rejected", "Datagrams dropped, by reason",
                                ["reason"], namespace=namespace, registry=registry)
        self.packets = Counter("gossip_packets", "Datagrams sent and received", ["direction"],
                               namespace=namespace, registry=registry)
        self.bytes = Counter("gossip_bytes", "Datagram payload bytes sent and received",
                             ["direction"], namespace=namespace, registry=registry)
        self.send_dropped = Counter("gossip_send_dropped",
                                    "Datagrams dropped because the send queue was full",
                                    namespace=namespace, registry=registry)
        self.send_errors = Counter("gossip_send_errors", "sendto() failures (unreachable etc.)",
                                   namespace=namespace, registry=registry)
        self.fenced = Gauge("gossip_fenced", "1 while this member has fenced itself off",
                            namespace=namespace, registry=registry)
        self.local_health = Gauge("gossip_local_health",
                                  "Lifeguard awareness score (0 = healthy)",
                                  namespace=namespace, registry=registry)
        for state in MemberState:
            self.members.labels(state.name.lower())
            self.transitions.labels(state.name.lower())
        for reason in RejectReason:
            self.rejected.labels(reason.value)
        for direction in ("sent", "received"):
            self.packets.labels(direction)
            self.bytes.labels(direction)

    # SwimObserver
    def transition(self, old: MemberState | None, new: MemberState) -> None:
        self.transitions.labels(new.name.lower()).inc()

    def probe_rtt_observe(self, seconds: float) -> None:
        self.probe_rtt.observe(seconds)

    def probe_failed(self) -> None:
        self.probes_failed.inc()

    def set_members(self, members: Iterable[MemberInfo]) -> None:
        counts = dict.fromkeys(MemberState, 0)
        for m in members:
            counts[m.state] += 1
        for state, count in counts.items():
            self.members.labels(state.name.lower()).set(count)


@final
class ObserverAdapter:
    """Presents :class:`GossipMetrics` as a SwimObserver (``probe_rtt`` is a metric name
    there, so the method lives here)."""

    __slots__ = ("_metrics", "probes_failed")

    def __init__(self, metrics: GossipMetrics) -> None:
        self._metrics = metrics
        self.probes_failed = 0
        """Failed probe periods (also in the metric; kept for ``statistics()``)."""

    def transition(self, old: MemberState | None, new: MemberState) -> None:
        self._metrics.transition(old, new)

    def probe_rtt(self, seconds: float) -> None:
        self._metrics.probe_rtt_observe(seconds)

    def probe_failed(self) -> None:
        self.probes_failed += 1
        self._metrics.probe_failed()


def observer_for(metrics: GossipMetrics) -> ObserverAdapter:
    return ObserverAdapter(metrics)
