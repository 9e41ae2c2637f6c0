"""The allocation benchmark runs end to end on tiny budgets and writes what it documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import alloc

TINY = alloc.Budget(
    per_measurement_s=0.002,
    ipv6_allocations=2_000,
    tracemalloc_allocations=500,
    election_sample_keys=200,
    fill_repeats=1,
)


def test_first_fit_walk_reference_takes_the_lowest_free():
    walk = alloc.FirstFitWalk(4)
    assert [walk.allocate_lowest() for _ in range(4)] == [0, 1, 2, 3]
    walk.release(1)
    assert walk.allocate_lowest() == 1
    with pytest.raises(alloc.fast.SpaceFull):
        walk.allocate_lowest()


def test_bench_report_has_documented_keys_and_writes_files(tmp_path):
    report = alloc.run_all(TINY, progress=False, quick=True)
    for key in ("schema", "occupancy", "fill_slash16", "ipv6_slash64", "election", "summary"):
        assert key in report
    documented = (Path(alloc.__file__).parent / "README.md").read_text()
    for row in report["occupancy"] + report["ipv6_slash64"] + report["election"]:
        for key in row:
            assert f"`{key}`" in documented or f".{key}`" in documented, key
    impls = {row["impl"] for row in report["occupancy"]}
    assert {"fallback", "first_fit_walk"} <= impls
    assert all(row["allocs_per_s"] > 0 for row in report["occupancy"])
    assert all(row.get("parity_with_other_impl", True) for row in report["election"])
    assert "election 100 nodes" in alloc.render_table(report)
    alloc.write_plot(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(report)  # serializable as written by run()
