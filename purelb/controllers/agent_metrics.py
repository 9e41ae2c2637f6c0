"""The node agent's Prometheus metrics, in a registry of its own.

Names are PureLB's (research/purelb.md section 8.1) where PureLB has them; the gossip
member registers its ``purelb_gossip_*`` families in the same registry, so one scrape of
``:7472/metrics`` shows both.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from purelb import fast

#: reconcile latency buckets (seconds): a no-op is one address dump (~1 ms); a change is
#: a few pipelined netlink requests more; the tail is a large first sweep.
RECONCILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Delegate(Collector):
    """Serves the metrics of the current gossip member's own registry.

    The member registers its families when it starts; a restarted core starts a new member,
    which would collide with the old families in one registry. Each member gets a fresh
    registry instead, and this collector (registered once) forwards to the newest."""

    def __init__(self) -> None:
        self.target: CollectorRegistry | None = None

    def collect(self) -> Iterator[Metric]:
        if self.target is not None:
            yield from self.target.collect()


class AgentMetrics:
    """Every metric the agent exports; ``registry`` is served on /metrics."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        p = "purelb_lbnodeagent_"
        self.announced = Gauge(p + "announced", "1 for each local address this node announces",
                               ["service", "node", "ip"], registry=r)
        self.garp_sent = Counter(p + "garp_sent_total", "Gratuitous ARP rounds sent",
                                 registry=r)
        self.garp_errors = Counter(p + "garp_errors_total", "Gratuitous ARP rounds that failed",
                                   registry=r)
        self.na_sent = Counter(p + "na_sent_total", "Unsolicited neighbour advertisements sent",
                               registry=r)
        self.na_errors = Counter(p + "na_errors_total",
                                 "Unsolicited neighbour advertisements that failed", registry=r)
        self.additions = Counter(p + "address_additions_total", "Addresses added", registry=r)
        self.withdrawals = Counter(p + "address_withdrawals_total", "Addresses removed",
                                   registry=r)
        self.renewals = Counter(p + "address_renewals_total",
                                "Addresses re-sent to refresh their lifetime or options",
                                registry=r)
        self.renewal_errors = Counter(p + "address_renewal_errors_total",
                                      "Address changes the kernel refused", registry=r)
        self.wins = Counter(p + "election_wins_total", "Local addresses this node began to hold",
                            registry=r)
        self.losses = Counter(p + "election_losses_total",
                              "Local addresses this node stopped holding", registry=r)
        self.reconcile_seconds = Histogram(p + "reconcile_duration_seconds",
                                           "Plan + netlink reconcile time", ["outcome"],
                                           buckets=RECONCILE_BUCKETS, registry=r)
        self.addresses = Gauge(p + "addresses", "Addresses this node holds, by kind", ["kind"],
                               registry=r)
        self.config_state = Gauge(p + "selector_state",
                                  "1 for the state of this node's LBNodeAgent configuration",
                                  ["state"], registry=r)
        self.updates = Counter("purelb_k8s_client_updates_total", "Writes to the Kubernetes API",
                               ["kind"], registry=r)
        self.update_errors = Counter("purelb_k8s_client_update_errors_total",
                                     "Failed writes to the Kubernetes API", ["kind"], registry=r)
        Gauge("purelb_hot_path_info", "Active hot-path implementation (1 = active)",
              ["implementation"], registry=r).labels(fast.IMPLEMENTATION).set(1)
        self._gossip = _Delegate()
        r.register(self._gossip)

    def gossip_registry(self) -> CollectorRegistry:
        """A fresh registry for a (re)started gossip member, served from now on."""
        self._gossip.target = CollectorRegistry()
        return self._gossip.target

    def set_config_state(self, state: str) -> None:
        for s in ("default", "configured", "deselected", "invalid"):
            self.config_state.labels(s).set(1 if s == state else 0)
