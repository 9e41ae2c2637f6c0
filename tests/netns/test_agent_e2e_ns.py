"""End to end in network namespaces: API server, allocator and three agents as real
processes, a client, and BIRD on every node and on a router (root).

One cluster (``bench.agent_lab.AgentLab``) serves the whole module, so the suite takes
well under a minute of setup; tests run in file order and each leaves the cluster with
every agent running. Teardown removes every namespace and process even on failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from bench.agent_e2e import cpu_seconds
from bench.agent_lab import (
    AgentLab,
    failover,
    ip,
    probe,
    settled_holder,
    sweep_stale,
    wait_until,
)
from purelb.agent.netns import open_socket_sync
from tests.conftest import IN_CI

pytestmark = [
    pytest.mark.root,
    # outside CI a machine without BIRD skips; CI installs it, so there a missing bird fails
    pytest.mark.skipif(shutil.which("bird") is None and not IN_CI,
                       reason="needs bird2 (scripts/install-system-deps.sh)"),
]

PREFIX = "pld"
#: Hard failover = gossip suspicion (LAN preset: ~0.5 s) + one reconcile + GARP. The
#: issue's target is p50 <= 1 s; the bound leaves room for a loaded 2-core CI machine.
HARD_FAILOVER_BOUND_S = 3.0
#: Graceful handoff = leave notice + reconcile on the new winner; target <= 200 ms.
GRACEFUL_BOUND_S = 1.0
CONVERGE_S = 10.0
#: Idle agents: gossip probes (LAN preset, 150 ms) and a resync every 10 s cost ~2 % of a
#: core here; 10 % catches a spinning loop (it measured 37 % before a timer fix).
IDLE_CPU_BOUND = 0.10


@pytest.fixture(scope="module")
def lab() -> Iterator[AgentLab]:
    list(sweep_stale(PREFIX))
    with AgentLab(nodes=3, prefix=PREFIX, bird=True) as lab:
        yield lab
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.base not in leftover
    assert f"{lab.base}h" not in ip("link", "show")


def one_holder(lab: AgentLab, address: str) -> int:
    """Wait until exactly one node (stably) holds ``address`` on eth0; return it."""
    return settled_holder(lab, address, timeout_s=CONVERGE_S)


def annotations(lab: AgentLab, name: str) -> dict[str, str]:
    assert lab.api is not None
    svc = lab.api.get(f"/api/v1/namespaces/default/services/{name}")
    return svc["metadata"].get("annotations") or {}


def test_hand_added_addresses_are_recorded_before_the_agents_act(lab: AgentLab):
    """Set up the 'person added this by hand' addresses checked at the end of the module.

    Every node gets them, so they live through hard kills, graceful stops (which withdraw
    the agent's own addresses) and restarts (which sweep what a previous run left)."""
    for k in (1, 2, 3):
        ip("addr", "add", "172.31.254.250/32", "dev", "kube-lb0", ns=lab.node_ns(k))
        ip("addr", "add", f"{lab.v4(240 + k)}/24", "dev", "eth0", ns=lab.node_ns(k))


def test_local_v4_and_v6_sit_on_exactly_one_node_and_the_client_reaches_them(lab: AgentLab):
    lab.create_service("local1", group="lan")
    v4, v6 = lab.ingress("local1")
    for address, family in ((v4, socket.AF_INET), (v6, socket.AF_INET6)):
        node = one_holder(lab, address)
        assert all(address not in lab.addresses(k, "kube-lb0") for k in (1, 2, 3))
        with lab.client_socket(family) as sock:
            wait_until(lambda s=sock, a=address, n=node: probe(s, a) == f"node{n}", CONVERGE_S,
                       f"client reaches {address} on node{node}")
    for address in (v4, v6):
        k = one_holder(lab, address)
        (entry,) = [a for link in json.loads(ip("-j", "addr", "show", "dev", "eth0",
                                                ns=lab.node_ns(k)))
                    for a in link["addr_info"] if a["local"] == address]
        # the NIC's prefix, no second subnet route, a finite lifetime the agent refreshes
        assert entry["prefixlen"] == (24 if address == v4 else 64)
        assert entry.get("noprefixroute") is True
        assert 0 < entry["valid_life_time"] <= 300
    n4, n6 = one_holder(lab, v4), one_holder(lab, v6)
    wait_until(lambda: annotations(lab, "local1").get("purelb.io/announcing-IPv4")
               == f"node{n4},eth0,{v4}", CONVERGE_S, "IPv4 announcing annotation")
    ann = annotations(lab, "local1")
    assert ann["purelb.io/announcing-IPv6"] == f"node{n6},eth0,{v6}"


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_hard_failover_moves_the_address_and_the_client_neighbour_entry(lab: AgentLab, family):
    v4, v6 = lab.ingress("local1")
    address = v4 if family == "IPv4" else v6
    one_holder(lab, address)
    took, old, new = failover(lab, address, hard=True)
    print(f"hard failover {family}: {took * 1000:.0f} ms node{old} -> node{new}")
    try:
        assert took <= HARD_FAILOVER_BOUND_S
        assert lab.holders(address) == [new] or set(lab.holders(address)) == {old, new}
        wait_until(lambda: lab.client_neighbour(address) == lab.mac(new), 2.0,
                   f"client neighbour entry for {address} follows the announcement")
    finally:
        lab.node_restore(old)
    one_holder(lab, address)


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_graceful_stop_hands_over_at_once(lab: AgentLab, family):
    v4, v6 = lab.ingress("local1")
    address = v4 if family == "IPv4" else v6
    one_holder(lab, address)
    took, old, new = failover(lab, address, hard=False)
    print(f"graceful handoff {family}: {took * 1000:.0f} ms node{old} -> node{new}")
    try:
        assert took <= GRACEFUL_BOUND_S
        proc = lab.procs[f"agent{old}"]
        proc.popen.wait(timeout=5)
        assert proc.popen.returncode == 0, proc.tail()
        assert address not in lab.addresses(old, "eth0")
    finally:
        lab.start_agent(old)
    one_holder(lab, address)


def test_a_shared_local_address_is_held_by_one_node_for_both_services(lab: AgentLab):
    share = {"purelb.io/allow-shared-ip": "team-a"}
    lab.create_service("share-a", group="lan", families=("IPv4",), annotations=share)
    (address,) = lab.ingress("share-a")
    lab.create_service("share-b", group="lan", families=("IPv4",), port=(8080, "TCP"),
                       annotations={**share, "purelb.io/addresses": address})
    assert lab.ingress("share-b") == [address]
    node = one_holder(lab, address)
    want = f"node{node},eth0,{address}"
    for name in ("share-a", "share-b"):
        wait_until(lambda n=name: annotations(lab, n).get("purelb.io/announcing-IPv4") == want,
                   CONVERGE_S, f"{name} annotated by node{node}")
    for name in ("share-a", "share-b"):
        lab.delete_service(name)
    wait_until(lambda: lab.holders(address) == [], CONVERGE_S, "shared address withdrawn")


def test_virtual_addresses_sit_on_kube_lb0_of_every_node(lab: AgentLab):
    lab.create_service("virt1", group="virt")
    for address in lab.ingress("virt1"):
        wait_until(lambda a=address: lab.holders(a, "kube-lb0") == [1, 2, 3], CONVERGE_S,
                   f"{address} on every kube-lb0")
        for k in (1, 2, 3):
            (entry,) = [a for link in json.loads(ip("-j", "addr", "show", "dev", "kube-lb0",
                                                    ns=lab.node_ns(k)))
                        for a in link["addr_info"] if a["local"] == address]
            assert entry["prefixlen"] == (32 if ":" not in address else 128)


def test_router_learns_each_virtual_route_with_every_node_as_next_hop(lab: AgentLab):
    v4, v6 = lab.ingress("virt1")
    want4 = sorted(lab.node_v4(k) for k in (1, 2, 3))
    wait_until(lambda: lab.router_routes(f"{v4}/32") == want4, CONVERGE_S,
               f"router route {v4}/32 via all nodes")
    # IPv6 next hops are the nodes' link-local or global addresses, one per node
    wait_until(lambda: len(lab.router_routes(f"{v6}/128")) == 3, CONVERGE_S,
               f"router route {v6}/128 via three nodes")
    with lab.client_socket(socket.AF_INET) as sock:
        wait_until(lambda: probe(sock, v4) is not None, CONVERGE_S, "client reaches it via BGP")


def test_etp_local_narrows_virtual_addresses_to_endpoint_nodes_and_follows_them(lab: AgentLab):
    lab.create_service("vlocal", group="virt", etp="Local")
    v4, v6 = lab.ingress("vlocal")
    wait_until(lambda: lab.holders(v4, "kube-lb0") == [], CONVERGE_S, "no endpoints: nowhere")
    lab.set_endpoints("vlocal", [2])
    for a in (v4, v6):
        wait_until(lambda a=a: lab.holders(a, "kube-lb0") == [2], CONVERGE_S, f"{a} on node2")
    wait_until(lambda: lab.router_routes(f"{v4}/32") == [lab.node_v4(2)], CONVERGE_S,
               "router follows: node2 only")
    lab.set_endpoints("vlocal", [1, 3])
    for a in (v4, v6):
        wait_until(lambda a=a: lab.holders(a, "kube-lb0") == [1, 3], CONVERGE_S,
                   f"{a} follows the endpoints")


def test_deleting_the_service_withdraws_addresses_and_routes(lab: AgentLab):
    v4, v6 = lab.ingress("virt1")
    lab.delete_service("virt1")
    for a in (v4, v6):
        wait_until(lambda a=a: lab.holders(a, "kube-lb0") == [], CONVERGE_S, f"{a} withdrawn")
    wait_until(lambda: lab.router_routes(f"{v4}/32") == [], CONVERGE_S, "v4 route withdrawn")
    wait_until(lambda: lab.router_routes(f"{v6}/128") == [], CONVERGE_S, "v6 route withdrawn")


def test_a_refused_address_is_reported_and_retried(lab: AgentLab):
    """IPv6 disabled on node3's kube-lb0: the kernel refuses the add (Warning Event), the
    other nodes are unaffected, and the next reconcile after the fix adds it."""
    assert lab.api is not None
    api = lab.api
    ns3 = lab.node_ns(3)
    subprocess.run(["ip", "netns", "exec", ns3, "sysctl", "-qw",
                    "net.ipv6.conf.kube-lb0.disable_ipv6=1"], check=True)
    try:
        lab.create_service("v6only", group="virt", families=("IPv6",))
        (v6,) = lab.ingress("v6only")
        wait_until(lambda: lab.holders(v6, "kube-lb0") == [1, 2], CONVERGE_S, "nodes 1, 2")

        def failed() -> bool:
            events = api.get("/apis/events.k8s.io/v1/namespaces/default/events")["items"]
            return any(e["regarding"]["name"] == "v6only" and e["type"] == "Warning"
                       and e["reason"] == "AnnouncementFailed" for e in events)

        wait_until(failed, CONVERGE_S, "AnnouncementFailed event")
    finally:
        subprocess.run(["ip", "netns", "exec", ns3, "sysctl", "-qw",
                        "net.ipv6.conf.kube-lb0.disable_ipv6=0"], check=True)
    # the periodic resync (or any change) retries; a change is quicker than waiting
    lab.create_service("nudge", group="virt", families=("IPv4",))
    wait_until(lambda: lab.holders(v6, "kube-lb0") == [1, 2, 3], CONVERGE_S, "retried")
    lab.delete_service("nudge")
    lab.delete_service("v6only")


def test_renaming_the_virtual_interface_restarts_the_core_and_moves_the_addresses(
        lab: AgentLab):
    """A supervised restart of the netlink owner (new writer, new gossip member)."""
    assert lab.api is not None
    lab.create_service("virt2", group="virt", families=("IPv4",))
    (v4,) = lab.ingress("virt2")
    wait_until(lambda: lab.holders(v4, "kube-lb0") == [1, 2, 3], CONVERGE_S, "on kube-lb0")
    path = "/apis/purelb.io/v1/namespaces/purelb-system/lbnodeagents/default"
    lab.api.merge(path, {"spec": {"local": {"extlbint": "kube-lb1"}}})
    try:
        wait_until(lambda: lab.holders(v4, "kube-lb1") == [1, 2, 3], CONVERGE_S,
                   "moved to kube-lb1 on every node")
        assert lab.holders(v4, "kube-lb0") == []
        assert "purelb_gossip_members" in scrape(lab, 1)  # the new member's metrics served
        v4l, _ = lab.ingress("local1")
        one_holder(lab, v4l)
    finally:
        lab.api.merge(path, {"spec": {"local": {"extlbint": "kube-lb0"}}})
    wait_until(lambda: lab.holders(v4, "kube-lb0") == [1, 2, 3], CONVERGE_S, "back")
    lab.delete_service("virt2")


def test_hand_added_addresses_survive_reconciles_and_graceful_stops(lab: AgentLab):
    for k in (1, 2, 3):
        assert "172.31.254.250" in lab.addresses(k, "kube-lb0")
        assert lab.v4(240 + k) in lab.addresses(k, "eth0")


def scrape(lab: AgentLab, k: int) -> str:
    """GET /metrics of node k's agent (it listens on 127.0.0.1 inside the node)."""
    sock = open_socket_sync(lab.node_ns(k), socket.AF_INET, socket.SOCK_STREAM, 0)
    with sock:
        sock.settimeout(5.0)
        sock.connect(("127.0.0.1", 7472))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def test_events_annotations_and_metrics_report_what_was_announced(lab: AgentLab):
    assert lab.api is not None
    events = lab.api.get("/apis/events.k8s.io/v1/namespaces/default/events")["items"]
    seen = {(e["regarding"]["name"], e["reason"]) for e in events}
    assert ("local1", "AnnouncingLocal") in seen
    assert ("virt1", "AnnouncingNonLocal") in seen
    v4, _v6 = lab.ingress("local1")
    holder = one_holder(lab, v4)
    text = scrape(lab, holder)
    labels = f'ip="{v4}",node="node{holder}",service="default/local1"'
    assert f"purelb_lbnodeagent_announced{{{labels}}} 1.0" in text
    for name in ("purelb_lbnodeagent_garp_sent_total", "purelb_lbnodeagent_election_wins_total",
                 "purelb_lbnodeagent_address_additions_total", "purelb_gossip_members"):
        assert name in text, name


def test_local_address_with_etp_local_is_announced_as_cluster_with_a_warning(lab: AgentLab):
    assert lab.api is not None
    lab.create_service("loclocal", group="lan", etp="Local", families=("IPv4",))
    (v4,) = lab.ingress("loclocal")
    one_holder(lab, v4)

    def warned() -> bool:
        events = lab.api.get("/apis/events.k8s.io/v1/namespaces/default/events")["items"]
        return any(e["regarding"]["name"] == "loclocal" and e["type"] == "Warning"
                   and e["reason"] == "LocalAddressIgnoresTrafficPolicyLocal" for e in events)

    wait_until(warned, CONVERGE_S, "ETP Local warning event")
    lab.delete_service("loclocal")
    wait_until(lambda: lab.holders(v4) == [], CONVERGE_S, "withdrawn after delete")


def test_gossip_keys_rotate_without_a_restart_or_a_failover(lab: AgentLab):
    assert lab.api is not None
    v4, _v6 = lab.ingress("local1")
    holder = one_holder(lab, v4)
    marks = {k: len(lab.procs[f"agent{k}"].output()) for k in (1, 2, 3)}
    new_key = base64.b64encode(base64.b64encode(os.urandom(32))).decode()
    lab.api.merge("/api/v1/namespaces/purelb-system/secrets/purelb-gossip",
                  {"data": {"k2": new_key, "primary": base64.b64encode(b"k2").decode()}})
    for k in (1, 2, 3):
        wait_until(lambda k=k: "gossip_keyring" in lab.procs[f"agent{k}"].output()[marks[k]:],
                   CONVERGE_S, f"agent{k} installed the new keyring")
    time.sleep(1.0)  # an observation window: several probe rounds under the new primary key
    for k in (1, 2, 3):
        after = lab.procs[f"agent{k}"].output()[marks[k]:]
        assert "gossip_dead" not in after, after  # (a suspicion under CI load may refute)
    assert lab.holders(v4) == [holder]


def test_idle_agents_use_little_cpu(lab: AgentLab):
    """Process CPU time (not wall time), so a busy machine does not inflate it."""
    pids = {k: lab.procs[f"agent{k}"].popen.pid for k in (1, 2, 3)}
    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    window = 2.0
    time.sleep(window)
    for k, pid in pids.items():
        share = (cpu_seconds(pid) - before[k]) / window
        assert share < IDLE_CPU_BOUND, f"agent{k} used {share:.1%} of a core while idle"
