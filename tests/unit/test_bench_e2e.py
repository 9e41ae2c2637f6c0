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
    p = e2e._phase("burst", ["a", "b", "c"], created, ingress,
                   before=e2e._CpuMark(allocator=1.0, apiserver=2.0, generator=3.0),
                   after=e2e._CpuMark(allocator=1.5, apiserver=2.4, generator=3.3),
                   rss_mb=40.0, creates_s=1.0, settle_s=0.25)
    assert p.services == 3 and p.seconds == 2.0 and p.services_per_s == 1.5
    assert (p.p50_ms, p.max_ms) == (30.0, 1000.0)
    assert p.allocator_cpu_ms_per_service == round(500 / 3, 3)
    assert p.apiserver_cpu_ms_per_service == round(400 / 3, 3)
    assert p.generator_cpu_ms_per_service == round(300 / 3, 3)
    assert p.total_cpu_ms_per_service == round(1200 / 3, 3)
    assert p.allocator_cpu_pct == 25.0 and p.apiserver_cpu_pct == 20.0
    assert p.settle_s == 0.25


def test_percentile_of_nothing_is_zero_and_of_one_value_is_it():
    assert e2e._percentile([], 50) == 0.0
    assert e2e._percentile([7.0], 99) == 7.0


def test_plot_is_written(tmp_path):
    created = {"a": 0.0}
    mark = e2e._CpuMark(allocator=0.0, apiserver=0.0, generator=0.0)
    p = e2e._phase("paced", ["a"], created, _Seen({"a": 0.004}), before=mark, after=mark,
                   rss_mb=1.0, creates_s=0.1, settle_s=0.0)
    report = {"phases": [asdict(p)], "targets": e2e.TARGETS}
    out = tmp_path / "e2e.png"
    e2e.write_plot(report, out)
    assert out.stat().st_size > 1000
