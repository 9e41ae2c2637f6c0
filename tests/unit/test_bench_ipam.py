"""``purelb bench ipam`` stays runnable (small N; the figures themselves live in bench/)."""

from __future__ import annotations

import argparse

from bench import ipam


def test_bench_ipam_small_run_reproduces_state_after_import(capsys) -> None:
    parser = argparse.ArgumentParser()
    ipam.add_arguments(parser)
    assert ipam.run(parser.parse_args(["--services", "2000"])) == 0
    out = capsys.readouterr().out
    assert "import reproduces the live state: True" in out
