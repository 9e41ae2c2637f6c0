"""deploy/rbac-*.yaml against what the daemons really ask the API server.

The allocator runs as a task against the test API server with its ServiceAccount's token,
through a scenario that walks its code paths; the server's audit (verb, group, resource,
subresource, namespace, name per user) is then checked against the manifests with the RBAC
evaluator (purelb.deploy_rbac): every request must be allowed, and every granted verb must
have been used or be in the allowlist below with its reason. The agent runs the same way
(in this process, with its own token) but needs root: its netlink and GARP side work in a
network namespace the test creates; the allocator runs beside it to allocate.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from purelb.agent.settings import DEFAULT_AGENT_SETTINGS
from purelb.apiserver.testing import open_test_apiserver
from purelb.controllers.agent import AgentDaemon, AgentDaemonSettings
from purelb.controllers.allocator import AllocatorDaemon
from purelb.election import Address
from purelb.election import local as local_timings
from purelb.kube import (
    ENDPOINT_SLICES,
    LB_NODE_AGENTS,
    NAMESPACES,
    SECRETS,
    SERVICE_GROUPS,
    SERVICES,
    KubeClient,
    Resource,
    load_kubeconfig,
)
from tests.deploy.rbac_support import (
    ADMIN_TOKEN,
    account,
    account_kubeconfig,
    denied,
    policy,
    summary,
    unused,
)
from tests.integration.allocator_support import (
    APP_NS,
    CRD_DIR,
    FAST,
    NS,
    World,
    group,
    open_client,
    service,
    settings,
)
from tests.netns.agent_ns import ip

JSON = dict[str, Any]

ALLOCATOR = account("allocator")
ALLOCATOR_TOKEN = "rbac-test-allocator"
#: Grants the scenario cannot show in use, each with the reason it stays.
ALLOCATOR_ALLOWLIST: dict[tuple[str, str, str], str] = {}
#: A reachable-looking NetBox that refuses at once: the token Secret read is what matters.
NETBOX_URL = "http://127.0.0.1:1"
#: leader election renews every retry period (0.25 s in the local preset); waiting this
#: long after convergence makes sure at least one renewal (a Lease update) happened
RENEW_WAIT_S = 1.0


@asynccontextmanager
async def audited_world(*, agent: bool = False) -> AsyncIterator[World]:
    """An API server (plain HTTP on loopback, bearer tokens required) with the CRDs, the
    install namespace and an admin client; each daemon's token maps to its account."""
    tokens = {ADMIN_TOKEN: "admin", ALLOCATOR_TOKEN: ALLOCATOR}
    if agent:
        tokens[AGENT_TOKEN] = AGENT
    async with (open_test_apiserver(crd_paths=[CRD_DIR], tokens=tokens) as srv,
                open_client(srv) as client):
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NS}})
        yield World(srv, client)


@asynccontextmanager
async def allocator_as_account(w: World, kubeconfig: Path) -> AsyncIterator[AllocatorDaemon]:
    cfg = load_kubeconfig([kubeconfig])
    async with (KubeClient(cfg, role="allocator", settings=FAST) as client,
                trio.open_nursery() as nursery):
        daemon = AllocatorDaemon(client, replace(settings(), leader_elect=True))
        await nursery.start(daemon.run)
        try:
            yield daemon
        finally:
            nursery.cancel_scope.cancel()


async def patched_events(w: World, user: str) -> bool:
    """Whether ``user`` has patched an Event yet (a repeat joined its series)."""
    return any(a.verb == "patch" and a.resource == "events"
               for a in w.srv.server.audit_requests(user))


async def allocator_scenario(w: World) -> None:
    """Valid, invalid and NetBox groups; create/update/delete, sharing, pinning, type
    changes, an exhausted pool and repeated events (series patches)."""
    c = w.client
    await c.create(SERVICE_GROUPS, group("default", ("10.0.0.0/30", "10.0.0.0/24")),
                   namespace=NS)
    await c.create(SECRETS, {"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "nb-token", "namespace": NS},
                             "data": {"token": base64.b64encode(b"0123456789abcdef").decode()}},
                   namespace=NS)
    await c.create(SERVICE_GROUPS, {
        "apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
        "metadata": {"name": "nb", "namespace": NS},
        "spec": {"netbox": {"url": NETBOX_URL, "tenant": "t",
                            "tokenSecretRef": {"name": "nb-token", "key": "token"}}}},
        namespace=NS)
    await c.create(SERVICES, service("web"))
    await w.wait_ingress("web")
    share = {"purelb.io/allow-shared-ip": "k"}
    await c.create(SERVICES, service("s1", ports=(81,), annotations=share))
    await c.create(SERVICES, service("s2", ports=(82,), annotations=share))
    await c.create(SERVICES, service("pinned", annotations={"purelb.io/addresses": "10.0.0.3"}))
    await c.create(SERVICES, service("fill"))
    for name in ("s1", "s2", "pinned", "fill"):
        await w.wait_ingress(name)
    # an invalid group (overlapping the running one): Valid=False status and a Warning
    await c.create(SERVICE_GROUPS, group("bad", ("10.0.0.2/31", "10.0.0.0/24")), namespace=NS)
    await c.create(SERVICES, service("late"))
    await c.create(SERVICES, service("vianetbox",
                                     annotations={"purelb.io/service-group": "nb"}))

    async def failed() -> bool:
        return "AllocationFailed" in await w.reasons("late")
    await w.eventually(failed, what="AllocationFailed on the exhausted pool")
    # the same failure again joins the Event's series (a patch of the Event)
    await c.patch(SERVICES, "late", {"metadata": {"labels": {"touch": "1"}}}, namespace=APP_NS)
    await c.patch(SERVICES, "late", {"metadata": {"labels": {"touch": "2"}}}, namespace=APP_NS)
    await w.eventually(partial(patched_events, w, ALLOCATOR),
                       what="the allocator patching an Event series (a repeat)")
    # a type change releases (annotations and status cleared); a delete frees the address
    # after a GET confirms the Service is gone (the cache alone is never trusted for that)
    await c.patch(SERVICES, "web", {"spec": {"type": "ClusterIP"}}, namespace=APP_NS)
    await c.delete(SERVICES, "pinned", namespace=APP_NS)
    await w.wait_ingress("late")

    async def group_status() -> bool:
        st = await w.group_status("bad")
        return bool(st.get("conditions"))
    await w.eventually(group_status, what="status on the invalid group")
    await trio.sleep(RENEW_WAIT_S)


async def test_allocator_requests_match_its_rbac(tmp_path: Path) -> None:
    async with audited_world() as w:
        kubeconfig = account_kubeconfig(w.srv.kubeconfig, ALLOCATOR_TOKEN,
                                        tmp_path / "allocator.kubeconfig")
        async with allocator_as_account(w, kubeconfig):
            await allocator_scenario(w)
        audited = w.srv.server.audit_requests(ALLOCATOR)
    print("allocator requests:", *summary(audited), sep="\n  ")
    pol = policy("rbac-allocator.yaml")
    assert not denied(pol, ALLOCATOR, audited), summary(denied(pol, ALLOCATOR, audited))
    spare = unused(pol, ALLOCATOR, audited, ALLOCATOR_ALLOWLIST)
    print("allocator grants unused:", *(f"{g.verb} {g.group}/{g.resource}" for g in spare),
          sep="\n  ")
    assert not spare, [f"{g.verb} {g.group}/{g.resource} ({g.source})" for g in spare]


# ---------------------------------------------------------------------------- the agent

AGENT = account("lbnodeagent")
AGENT_TOKEN = "rbac-test-agent"
#: Grants the scenario cannot show in use, each with the reason it stays.
AGENT_ALLOWLIST: dict[tuple[str, str, str], str] = {}
LAN = "172.31.255"
"""The node's LAN inside the test namespace (the agent announces pool addresses on it)."""
VIRTUAL = "172.31.254"
"""A subnet no interface has: its addresses go on the agent's virtual interface."""


def agent_fixtures() -> list[tuple[Resource, JSON]]:
    """Gossip key, node agent configuration and two groups (local and virtual)."""
    key = base64.b64encode(base64.b64encode(bytes(range(32)))).decode()
    return [
        (SECRETS, {"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "purelb-gossip", "namespace": NS},
                   "data": {"k1": key}}),
        (LB_NODE_AGENTS, {
            "apiVersion": "purelb.io/v1", "kind": "LBNodeAgent",
            "metadata": {"name": "default", "namespace": NS},
            "spec": {"local": {"localint": "default", "extlbint": "kube-lb0",
                               "extlbintKind": "ifb", "sendgarp": False}}}),
        (SERVICE_GROUPS, group("lan", (f"{LAN}.200/30", f"{LAN}.0/24"))),
        (SERVICE_GROUPS, group("virt", (f"{VIRTUAL}.8/30", f"{VIRTUAL}.0/24"))),
    ]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def agent_scenario(w: World) -> None:
    """Local and virtual announcements, an ETP=Local Service with an EndpointSlice, a
    re-created Service (a repeated Event) and a configuration change."""
    c = w.client
    web = service("web", annotations={"purelb.io/service-group": "lan"})
    await c.create(SERVICES, web)
    await c.create(SERVICES, service("virt", annotations={"purelb.io/service-group": "virt"}))
    key = "purelb.io/announcing-IPv4"

    async def announced() -> bool:
        return key in ((await w.svc("web"))["metadata"].get("annotations") or {})
    await w.eventually(announced, what="the agent's announcing annotation on web")
    # ETP=Local with an EndpointSlice: the agent's endpoint reflector has something to say
    await c.create(ENDPOINT_SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": APP_NS,
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.9.5"], "nodeName": "node1",
                       "conditions": {"ready": True}}],
        "ports": [{"port": 80, "protocol": "TCP"}]}, namespace=APP_NS)
    await c.patch(SERVICES, "web", {"spec": {"externalTrafficPolicy": "Local"}},
                  namespace=APP_NS)
    await c.delete(SERVICES, "virt", namespace=APP_NS)
    # ETP=Local on a local address is warned about; the warning going away and coming back
    # repeats the same Event for the same Service: a series, i.e. a patch of the Event
    for etp in ("Cluster", "Local"):
        await trio.sleep(AGENT_SETTLE_S)
        await c.patch(SERVICES, "web", {"spec": {"externalTrafficPolicy": etp}},
                      namespace=APP_NS)

    await w.eventually(partial(patched_events, w, AGENT),
                       what="the agent patching an Event series (a repeat)")
    await c.patch(LB_NODE_AGENTS, "default", {"spec": {"local": {"sendgarp": True}}},
                  namespace=NS)
    await trio.sleep(AGENT_SETTLE_S)


#: time for the agent to act on the last changes before the audit is read
AGENT_SETTLE_S = 1.0


@pytest.fixture
def node_ns() -> Iterator[str]:
    """A network namespace for the agent's interfaces, removed even when the test fails
    (the agent runs in this process and enters it only through netlink sockets)."""
    name = f"prb{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        ip("netns", "del", name, check=False)


@pytest.mark.root
async def test_agent_requests_match_its_rbac(tmp_path: Path, node_ns: str) -> None:
    ns = node_ns
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=ns)
    for dev in ("eth0", "eth0p"):
        ip("link", "set", dev, "up", ns=ns)
    ip("addr", "add", f"{LAN}.2/24", "dev", "eth0", ns=ns)
    ip("route", "add", "default", "via", f"{LAN}.1", "dev", "eth0", ns=ns)
    async with audited_world(agent=True) as w:
        for resource, body in agent_fixtures():
            await w.client.create(resource, body, namespace=NS)
        alloc_cfg = account_kubeconfig(w.srv.kubeconfig, ALLOCATOR_TOKEN,
                                       tmp_path / "allocator.kubeconfig")
        agent_cfg = load_kubeconfig([account_kubeconfig(w.srv.kubeconfig, AGENT_TOKEN,
                                                        tmp_path / "agent.kubeconfig")])
        agent_settings = AgentDaemonSettings(
            node_name="node1", namespace=NS, metrics_host="127.0.0.1", metrics_port=0,
            netns=ns, gossip_bind=Address("127.0.0.1", free_udp_port()),
            gossip_timings=local_timings(), join_wait_s=0.0,
            agent=replace(DEFAULT_AGENT_SETTINGS, state_dir=str(tmp_path / "state"))).local()
        async with (allocator_as_account(w, alloc_cfg),
                    KubeClient(agent_cfg, role="agent", settings=FAST) as client,
                    trio.open_nursery() as nursery):
            await nursery.start(AgentDaemon(client, agent_settings).run)
            await agent_scenario(w)
            nursery.cancel_scope.cancel()
        audited = w.srv.server.audit_requests(AGENT)
    print("agent requests:", *summary(audited), sep="\n  ")
    pol = policy("rbac-agent.yaml")
    assert not denied(pol, AGENT, audited), summary(denied(pol, AGENT, audited))
    spare = unused(pol, AGENT, audited, AGENT_ALLOWLIST)
    print("agent grants unused:", *(f"{g.verb} {g.group}/{g.resource}" for g in spare),
          sep="\n  ")
    assert not spare, [f"{g.verb} {g.group}/{g.resource} ({g.source})" for g in spare]
