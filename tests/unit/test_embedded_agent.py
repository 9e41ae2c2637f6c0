"""The single-gateway agent's pure parts and the embedded settings checks."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from purelb.controllers.embedded import EmbeddedSettings
from purelb.controllers.embedded_agent import build_addresses
from purelb.errors import ConfigError

GROUPS = [{"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
           "metadata": {"name": "v", "namespace": "purelb-system", "generation": 1,
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"local": {"v4pools": [{"subnet": "198.51.100.0/24",
                                            "pool": "198.51.100.10-198.51.100.50",
                                            "aggregation": "/32"}]}}}]


def _svc(name: str, ips: list[str], brand: bool = True) -> dict:
    ann = {"purelb.io/allocated-by": "PureLB"} if brand else {}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": ann},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_allocated_addresses_are_placed_by_their_group_and_shared_ones_merged() -> None:
    addrs, skipped = build_addresses(
        [_svc("a", ["198.51.100.10"]), _svc("b", ["198.51.100.10"]),
         _svc("c", ["203.0.113.9"]), _svc("d", ["198.51.100.11"], brand=False)], GROUPS)
    assert [(a.address, a.aggregation, [s.key for s in a.services]) for a in addrs] == [
        (ipaddress.ip_address("198.51.100.10"), 32, ["default/a", "default/b"])]
    assert skipped == ("address 203.0.113.9: in no accepted ServiceGroup pool; held by default/c",)


def test_gossip_needs_netlink_and_a_bind_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs netlink"):
        EmbeddedSettings(state_dir=tmp_path, netlink=False, gossip_peers=("10.0.0.2",))
    with pytest.raises(ConfigError, match="--gossip-bind"):
        EmbeddedSettings(state_dir=tmp_path, gossip_peers=("10.0.0.2",))


def test_listen_must_be_an_ip_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'gateway\.local' must be an IP address"):
        EmbeddedSettings(state_dir=tmp_path, host="gateway.local")


def test_a_state_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    from purelb.controllers.embedded import prepare_state_dir

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        prepare_state_dir(shared)
    fresh = prepare_state_dir(tmp_path / "new" / "state")
    assert fresh.stat().st_mode & 0o777 == 0o700
