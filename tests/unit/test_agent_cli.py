"""``purelb agent`` flags and environment -> AgentDaemonSettings."""

from __future__ import annotations

import argparse

import pytest

from purelb.agent import Ownership
from purelb.controllers.agent_cli import add_arguments, settings_from_args
from purelb.election import Address
from purelb.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("PURELB_NODE_NAME", "PURELB_NAMESPACE", "PURELB_HOST", "PURELB_PORT",
                "PURELB_GOSSIP_BIND", "PURELB_GOSSIP_SEEDS", "PURELB_OWNERSHIP",
                "PURELB_RESYNC_PERIOD", "PURELB_STATE_DIR"):
        monkeypatch.delenv(var, raising=False)


def test_flags_give_the_settings():
    s = settings_from_args(parse("--node-name", "n1", "--gossip-bind", "10.0.0.1",
                                 "--gossip-seed", "10.0.0.2:7000", "--gossip-seed", "[fd00::3]",
                                 "--ownership", "state-file", "--state-dir", "/tmp/x"))
    assert s.node_name == "n1" and s.namespace == "purelb-system" and s.metrics_port == 7472
    assert s.gossip_bind == Address("10.0.0.1", 7934)
    assert s.gossip_seeds == (Address("10.0.0.2", 7000), Address("fd00::3", 7934))
    assert s.agent.ownership is Ownership.STATE_FILE and s.agent.state_dir == "/tmp/x"


def test_environment_is_read_like_purelb(monkeypatch):
    monkeypatch.setenv("PURELB_NODE_NAME", "envnode")
    monkeypatch.setenv("PURELB_NAMESPACE", "lb")
    monkeypatch.setenv("PURELB_HOST", "10.1.1.1")
    monkeypatch.setenv("PURELB_GOSSIP_SEEDS", "10.1.1.2, 10.1.1.3")
    s = settings_from_args(parse())
    assert (s.node_name, s.namespace, s.metrics_host) == ("envnode", "lb", "10.1.1.1")
    assert s.gossip_bind == Address("10.1.1.1", 7934)
    assert [a.host for a in s.gossip_seeds] == ["10.1.1.2", "10.1.1.3"]


@pytest.mark.parametrize(("argv", "needle"), [
    (("--gossip-bind", "10.0.0.1"), "node name"),
    (("--node-name", "n"), "gossip address"),
    (("--node-name", "n", "--gossip-bind", "nonsense"), "nonsense"),
    (("--node-name", "n", "--gossip-bind", "10.0.0.1", "--resync-period", "500"), "resync"),
])
def test_bad_configuration_is_a_clear_error(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        settings_from_args(parse(*argv))


def test_failover_tuning_flags_scale_the_probe_timings():
    s = settings_from_args(parse("--node-name", "n", "--gossip-bind", "10.0.0.1",
                                 "--gossip-probe-interval", "0.3", "--gossip-suspicion-mult", "6"))
    t = s.gossip_timings
    assert t.probe_interval_s == 0.3 and t.probe_timeout_s == pytest.approx(0.12)
    assert t.suspicion_mult == 6


@pytest.mark.parametrize(("argv", "needle"), [
    (("--gossip-probe-interval", "0"), "gossip-probe-interval"),
    (("--gossip-suspicion-mult", "-1"), "suspicion"),
])
def test_bad_failover_tuning_is_a_clear_error(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        settings_from_args(parse("--node-name", "n", "--gossip-bind", "10.0.0.1", *argv))
