"""`purelb allocator` flags and environment -> DaemonSettings (flag > env > default)."""

from __future__ import annotations

import argparse
import logging

import pytest

from purelb.controllers import allocator_cli
from purelb.controllers.allocator import DaemonSettings
from purelb.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PURELB_NAMESPACE", "PURELB_PORT", "PURELB_HOST", "PURELB_LEADER_ELECT",
                 "PURELB_LEASE_DURATION", "PURELB_RENEW_DEADLINE", "PURELB_RETRY_PERIOD",
                 "PURELB_DEFAULT_ANNOUNCER", "DEFAULT_ANNOUNCER", "POD_NAME", "KUBECONFIG",
                 "PURELB_WORKERS", "PURELB_RESYNC_PERIOD", "PURELB_LEASE_NAME"):
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> DaemonSettings:
    parser = argparse.ArgumentParser()
    allocator_cli.add_arguments(parser)
    return allocator_cli.settings_from_args(parser.parse_args(list(argv)))


def test_defaults_follow_purelb():
    s = parse()
    assert s.namespace == "purelb-system" and s.metrics_port == 7472
    assert s.metrics_host == "0.0.0.0" and s.leader_elect
    assert s.allocator.default_announcer
    assert (s.lease.lease_duration_s, s.lease.renew_deadline_s, s.lease.retry_period_s) == \
        (15.0, 10.0, 2.0)


def test_environment_is_used_and_flags_win(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PURELB_NAMESPACE", "lb")
    monkeypatch.setenv("PURELB_PORT", "9000")
    monkeypatch.setenv("PURELB_LEADER_ELECT", "false")
    monkeypatch.setenv("DEFAULT_ANNOUNCER", "PureLB")
    monkeypatch.setenv("POD_NAME", "allocator-0")
    s = parse()
    assert (s.namespace, s.metrics_port, s.leader_elect, s.identity) == \
        ("lb", 9000, False, "allocator-0")
    s = parse("--namespace", "x", "--port", "1", "--leader-elect", "--no-default-announcer")
    assert (s.namespace, s.metrics_port, s.leader_elect) == ("x", 1, True)
    assert not s.allocator.default_announcer


@pytest.mark.parametrize(("env", "value", "match"), [
    ("PURELB_LEADER_ELECT", "maybe", "PURELB_LEADER_ELECT='maybe' is not a boolean"),
    ("PURELB_PORT", "http", "PURELB_PORT='http' is not a port number"),
    ("PURELB_LEASE_DURATION", "soon", "PURELB_LEASE_DURATION='soon' is not a number"),
], ids=["bad boolean", "bad port", "bad duration"])
def test_bad_environment_names_the_variable_and_value(monkeypatch, env, value, match):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=match):
        parse()


def test_lease_timings_must_leave_a_safety_margin():
    with pytest.raises(ConfigError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        parse("--lease-duration", "5", "--renew-deadline", "6")


def test_run_reports_bad_configuration_with_exit_code_2(capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # run() configures logging: restore it
    parser = argparse.ArgumentParser()
    allocator_cli.add_arguments(parser)
    args = parser.parse_args(["--port", "70000"])
    try:
        assert allocator_cli.run(args) == 2
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "metrics port must be 0..65535, got 70000" in capsys.readouterr().err
