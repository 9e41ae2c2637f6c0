"""deploy/rbac-*.yaml against what the daemons really ask the API server.

The allocator runs as a task against the test API server with its ServiceAccount's token,
through a scenario that walks its code paths; the server's audit (verb, group, resource,
subresource, namespace, name per user) is then checked against the manifests with the RBAC
evaluator (purelb.deploy_rbac): every request must be allowed, and every granted verb must
have been used or be in the allowlist below with its reason. The agent's half needs root
(netlink in a namespace) and lives in tests/netns/test_agent_rbac_ns.py.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from purelb.apiserver.testing import open_test_apiserver
from purelb.controllers.allocator import AllocatorDaemon
from purelb.kube import NAMESPACES, SECRETS, SERVICE_GROUPS, SERVICES, KubeClient, load_kubeconfig
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
async def audited_world() -> AsyncIterator[World]:
    """An API server (plain HTTP on loopback, bearer tokens required) with the CRDs, the
    install namespace and an admin client; the allocator's token maps to its account."""
    tokens = {ADMIN_TOKEN: "admin", ALLOCATOR_TOKEN: ALLOCATOR}
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
    await c.create(SERVICES, service("viaNetbox".lower(),
                                     annotations={"purelb.io/service-group": "nb"}))

    async def failed() -> bool:
        return "AllocationFailed" in await w.reasons("late")
    await w.eventually(failed, what="AllocationFailed on the exhausted pool")
    # the same failure again joins the Event's series (a patch of the Event)
    await c.patch(SERVICES, "late", {"metadata": {"labels": {"touch": "1"}}}, namespace=APP_NS)
    await c.patch(SERVICES, "late", {"metadata": {"labels": {"touch": "2"}}}, namespace=APP_NS)
    # a type change releases (annotations and status cleared), a delete frees the address
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
