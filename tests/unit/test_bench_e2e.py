"""bench e2e's arithmetic and chart (the processes themselves run in `purelb bench e2e`)."""

from __future__ import annotations

from dataclasses import asdict

from bench import e2e


class _Seen:
    def __init__(self, seen: dict[str, float]) -> None:
        self.seen = seen


def test_phase_figures_come_from_create_and_ingress_times():
    created = {"a": 0.0, "b": 0.5, "c": 1.0}
    ingress = _Seen({"a": 0.010, "b": 0.530, "c": 2.0})
    p = e2e._phase("burst", ["a", "b", "c"], created, ingress, cpu0=1.0, cpu1=1.5,
                   rss_mb=40.0, creates_s=1.0, api_cpu_s=0.4)
    assert p.services == 3 and p.seconds == 2.0 and p.services_per_s == 1.5
    assert (p.p50_ms, p.max_ms) == (30.0, 1000.0)
    assert p.allocator_cpu_ms_per_service == round(500 / 3, 3)
    assert p.allocator_cpu_pct == 25.0 and p.apiserver_cpu_pct == 20.0


def test_percentile_of_nothing_is_zero_and_of_one_value_is_it():
    assert e2e._percentile([], 50) == 0.0
    assert e2e._percentile([7.0], 99) == 7.0


def test_plot_is_written(tmp_path):
    created = {"a": 0.0}
    p = e2e._phase("paced", ["a"], created, _Seen({"a": 0.004}), cpu0=0, cpu1=0.001,
                   rss_mb=1.0, creates_s=0.1, api_cpu_s=0.0)
    report = {"phases": [asdict(p)], "targets": e2e.TARGETS}
    out = tmp_path / "e2e.png"
    e2e.write_plot(report, out)
    assert out.stat().st_size > 1000
