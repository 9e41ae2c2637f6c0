"""The allocator's Prometheus metrics, in a registry of its own (never the global one).

Names follow PureLB where PureLB has them (research/purelb.md §8.1); labels add ``family``
to the pool gauges, which PureLB folds together. Pool gauges are read from the live
allocator at scrape time by a collector, so an allocation costs no metric update and a
scrape always shows the state of this instant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from purelb import fast
from purelb.ipam.allocator import Allocator

#: reconcile latency buckets (seconds): one reconcile is ~1 ms of CPU plus 2-3 API round
#: trips; the tail covers conflict retries and a throttled API server
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    """Pool size / in-use / available gauges from the current allocator (if leading)."""

    def __init__(self, current: Callable[[], Allocator | None],
                 queue_depth: Callable[[], int]) -> None:
        self._current = current
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("purelb_address_pool_size",
                                 "Addresses in the ServiceGroup's pools", labels=["pool", "family"])
        used = GaugeMetricFamily("purelb_address_pool_addresses_in_use",
                                 "Addresses of the pool held by Services",
                                 labels=["pool", "family"])
        avail = GaugeMetricFamily("purelb_address_pool_addresses_available",
                                  "Addresses of the pool still free", labels=["pool", "family"])
        alloc = self._current()
        if alloc is not None:
            for stat in alloc.stats():
                labels = [stat.group, f"IPv{stat.family}"]
                if stat.size is not None:
                    size.add_metric(labels, float(stat.size))
                used.add_metric(labels, float(stat.in_use))
                if stat.available is not None:
                    avail.add_metric(labels, float(stat.available))
        depth = GaugeMetricFamily("purelb_allocator_queue_depth",
                                  "Service keys waiting to be reconciled")
        depth.add_metric([], float(self._queue_depth()))
        yield from (size, used, avail, depth)


class AllocatorMetrics:
    """Every metric the allocator daemon exports; ``registry`` is served on /metrics."""

    def __init__(self, current: Callable[[], Allocator | None],
                 queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rejected = Counter(
            "purelb_address_pool_allocation_rejected_total",
            "Allocations refused, by ServiceGroup and reason", ["pool", "reason"], registry=r)
        self.sg_status_writes = Counter(
            "purelb_allocator_sg_status_writes_total", "ServiceGroup status writes",
            ["outcome"], registry=r)
        self.updates = Counter("purelb_k8s_client_updates_total",
                               "Writes to the Kubernetes API", ["kind"], registry=r)
        self.update_errors = Counter("purelb_k8s_client_update_errors_total",
                                     "Failed writes to the Kubernetes API", ["kind"], registry=r)
        self.config_loaded = Gauge("purelb_k8s_client_config_loaded_bool",
                                   "1 when the ServiceGroups were loaded and accepted",
                                   registry=r)
        self.reconcile_seconds = Histogram(
            "purelb_allocator_reconcile_duration_seconds",
            "Time to reconcile one Service (decision and writes)", ["outcome"],
            buckets=RECONCILE_BUCKETS, registry=r)
        self.conflicts = Counter("purelb_allocator_write_conflicts_total",
                                 "409 Conflicts met while writing a Service (re-read, retried)",
                                 registry=r)
        self.leader = Gauge("purelb_allocator_leader", "1 while this replica is the leader",
                            registry=r)
        self.synced = Gauge("purelb_allocator_synced", "1 once every cache has listed",
                            registry=r)
        self.leadership_terms = Counter("purelb_allocator_leadership_terms_total",
                                        "Times this replica became the leader", registry=r)
        self.imported = Gauge("purelb_allocator_imported_services",
                              "Services whose ingress was imported at the last startup barrier",
                              registry=r)
        Gauge("purelb_hot_path_info", "Active hot-path implementation (1 = active)",
              ["implementation"], registry=r).labels(fast.IMPLEMENTATION).set(1)
        r.register(_PoolCollector(current, queue_depth))

    def write_done(self, kind: str, ok: bool) -> None:
        """:class:`WriteCounters` for the writer."""
        self.updates.labels(kind).inc()
        if not ok:
            self.update_errors.labels(kind).inc()
