"""purelb.agent's public surface, and the purity of its plan."""

from __future__ import annotations

import subprocess
import sys

import purelb.agent as agent
from purelb.agent.netlink import kernel_supports_ifa_proto
from purelb.agent.netns import netns_path


def test_all_is_sorted_complete_and_unique() -> None:
    # ruff's isort order: CONSTANTS first, then the rest case-sensitively.
    assert agent.__all__ == sorted(agent.__all__, key=lambda n: (not n.isupper(), n))
    assert len(set(agent.__all__)) == len(agent.__all__)
    for name in agent.__all__:
        assert getattr(agent, name) is not None


def test_plan_diff_and_interfaces_import_no_io_library() -> None:
    """Verify that the pure modules pull in no trio, pyroute2 or I/O module of ours."""
    code = (
        "import sys; import purelb.agent.plan, purelb.agent.diff; "
        "bad = [m for m in ('trio', 'pyroute2', 'purelb.agent.netlink', 'purelb.agent.netns',"
        " 'purelb.agent.garp', 'purelb.agent.codec') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_kernel_release_check_needs_6_3_for_ifa_proto() -> None:
    assert kernel_supports_ifa_proto("6.18.44-fc-v669")
    assert kernel_supports_ifa_proto("6.3.0")
    assert not kernel_supports_ifa_proto("6.2.16-300.fc38.x86_64")
    assert not kernel_supports_ifa_proto("5.15.0-91-generic")


def test_netns_names_map_under_run_netns_and_paths_stay() -> None:
    assert netns_path("node1") == "/run/netns/node1"
    assert netns_path("/proc/1234/ns/net") == "/proc/1234/ns/net"
