"""Ownership by state file (kernels without IFA_PROTO), forced on this kernel (root)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

import agent_ns
import pytest

from purelb.agent.ledger import Ledger, ledger_path
from purelb.agent.netlink import NetlinkWriter, kernel_supports_ifa_proto
from purelb.agent.records import AddrSpec
from purelb.agent.settings import AgentSettings, Ownership

pytestmark = pytest.mark.root
make_netns = agent_ns.make_netns


def spec(index: int, cidr: str) -> AddrSpec:
    return AddrSpec(index=index, interface=ipaddress.ip_interface(cidr))


def kernel(ns: str) -> set[str]:
    (link,) = agent_ns.ip_json("addr", "show", "dev", "kube-lb0", ns=ns)
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
            if not a["local"].startswith("fe80")}


async def test_state_file_ownership_survives_a_restart_and_spares_foreign_addresses(
        make_netns, tmp_path) -> None:
    ns = make_netns()
    settings = dataclasses.replace(AgentSettings().local(), ownership=Ownership.STATE_FILE,
                                   state_dir=str(tmp_path))
    async with await NetlinkWriter.open(ns, settings) as nl:
        assert nl.ledger is not None
        vif = await nl.ensure_virtual_interface()
        agent_ns.ip("addr", "add", "10.9.0.99/32", "dev", "kube-lb0", ns=ns)  # by hand
        result = await nl.reconcile([spec(vif.index, "10.9.0.1/32"),
                                     spec(vif.index, "fd00:9::1/128")])
        assert result.ok and len(result.diff.add) == 2
        # the kernel keeps proto 0 (nothing marked); the writer still knows its own
        raw = await nl.dump_addresses()
        mine = {str(a.interface) for a in raw if a.proto == settings.address_proto}
        assert mine == {"10.9.0.1/32", "fd00:9::1/128"}
        # a wanted address someone else holds is reported foreign and left alone
        again = await nl.reconcile([spec(vif.index, "10.9.0.1/32"),
                                    spec(vif.index, "10.9.0.99/32")])
        assert [str(s.interface) for s in again.diff.foreign] == ["10.9.0.99/32"]
    path = ledger_path(str(tmp_path), ns)
    assert len(Ledger.load(path)) == 1
    # "restart": a new writer reads the file and sweeps what the old one left
    async with await NetlinkWriter.open(ns, settings) as nl:
        swept = await nl.remove_owned()
        assert [str(a.interface) for a in swept.diff.delete] == ["10.9.0.1/32"]
    assert kernel(ns) == {"10.9.0.99/32"}
    assert len(Ledger.load(path)) == 0


async def test_auto_ownership_uses_ifa_proto_on_this_kernel(make_netns, tmp_path) -> None:
    if not kernel_supports_ifa_proto(os.uname().release):
        pytest.skip("kernel < 6.3: auto picks the state file here")
    ns = make_netns()
    settings = dataclasses.replace(AgentSettings().local(), state_dir=str(tmp_path))
    async with await NetlinkWriter.open(ns, settings) as nl:
        assert nl.ledger is None
