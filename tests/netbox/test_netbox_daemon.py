"""The allocator daemon with a NetBox ServiceGroup: real API server on loopback, real
HTTP, real NetBox. The token comes from a Secret, as in a cluster."""

from __future__ import annotations

import base64
import ipaddress

import httpx
import pytest

from purelb.controllers import allocator_reconcile
from purelb.ipam import netbox_driver
from purelb.kube import SECRETS, SERVICE_GROUPS, SERVICES
from tests.integration.allocator_support import (
    NS,
    open_world,
    running_daemon,
    service,
)

pytestmark = pytest.mark.root


def nb_group(server, scope, **netbox) -> dict:
    return {
        "apiVersion": "purelb.io/v1",
        "kind": "ServiceGroup",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"netbox": {"url": server.url, "tenant": scope.tenant, **netbox}},
    }


def secret(name: str, key: str, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {key: base64.b64encode(token.encode()).decode()},
    }


async def test_daemon_allocates_from_netbox_and_releases(netbox_server, nb_scope):
    nb_scope.add_prefix(nb_scope.v4)
    first = str(ipaddress.ip_network(nb_scope.v4).network_address + 1)
    group = nb_group(
        netbox_server,
        nb_scope,
        v4prefix=nb_scope.v4,
        tokenSecretRef={"name": "nb", "key": "token"},
    )
    async with open_world() as w:
        token = netbox_server.token_v2 or netbox_server.token_v1
        await w.client.create(SECRETS, secret("nb", "token", token), namespace=NS)
        await w.client.create(SERVICE_GROUPS, group, namespace=NS)
        async with running_daemon(w) as daemon:
            await w.client.create(SERVICES, service("web"))
            assert await w.wait_ingress("web") == [first]
            async with httpx.AsyncClient() as h:
                text = (await h.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics")).text
            assert (
                'purelb_netbox_requests_total{endpoint="/api/ipam/prefixes/{id}/available-ips/",'
                'method="POST",outcome="ok"} 1.0'
            ) in text
            assert "purelb_netbox_request_duration_seconds_bucket" in text
            obj = await w.svc("web")
            assert obj["metadata"]["annotations"]["purelb.io/pool-type"] == "netbox"
            rec = nb_scope.admin.addresses(address=first)[0]
            uid = obj["metadata"]["uid"]
            assert rec["description"] == f"purelb:default/web uid={uid}"

            async def ready():
                st = await w.group_status("default")
                conds = {c["type"]: c for c in st.get("conditions", [])}
                return conds.get("NetboxReady", {}).get("status") == "True"

            await w.eventually(ready, what="NetboxReady=True on the group")
            await w.client.delete(SERVICES, "web", namespace="default")

            async def released():
                return not nb_scope.admin.addresses(address=first)

            await w.eventually(released, what=f"{first} deleted in NetBox")


async def test_daemon_restart_releases_orphans_and_wrong_token_is_a_condition(
    netbox_server, nb_scope, monkeypatch
):
    # short waits so the test sees the token fix quickly (defaults: 30 s and 60 s)
    monkeypatch.setattr(allocator_reconcile, "NETBOX_TOKEN_REREAD_S", 0.5)
    monkeypatch.setattr(netbox_driver, "SLOW_RETRY_S", 0.5)
    nb_scope.add_prefix(nb_scope.v4)
    base = ipaddress.ip_network(nb_scope.v4).network_address
    async with open_world() as w:
        await w.client.create(
            SECRETS, secret("netbox-client", "user-token", netbox_server.token_v1), namespace=NS
        )
        await w.client.create(
            SERVICE_GROUPS, nb_group(netbox_server, nb_scope, v4prefix=nb_scope.v4), namespace=NS
        )
        async with running_daemon(w):
            await w.client.create(SERVICES, service("a"))
            await w.client.create(SERVICES, service("b"))
            await w.wait_ingress("a")
            await w.wait_ingress("b")
        # while no allocator runs: b deleted (its NetBox address is now an orphan)
        held_b = (await w.svc("b"))["status"]["loadBalancer"]["ingress"][0]["ip"]
        await w.client.delete(SERVICES, "b", namespace="default")
        async with running_daemon(w):

            async def orphan_gone():
                return not nb_scope.admin.addresses(address=held_b)

            await w.eventually(orphan_gone, what=f"orphan {held_b} released at start")
            assert nb_scope.admin.addresses(address=str(base + 1)) or nb_scope.admin.addresses(
                address=str(base + 2)
            )
        # a wrong token: condition False naming the problem, Warning Event, Service pending
        await w.client.delete(SECRETS, "netbox-client", namespace=NS)
        await w.client.create(
            SECRETS, secret("netbox-client", "user-token", "0" * 40), namespace=NS
        )
        async with running_daemon(w):
            await w.client.create(SERVICES, service("c"))

            async def refused():
                st = await w.group_status("default")
                conds = {c["type"]: c for c in st.get("conditions", [])}
                c = conds.get("NetboxReady", {})
                return c if c.get("status") == "False" else None

            cond = await w.eventually(refused, what="NetboxReady=False")
            assert cond["reason"] == "Unauthorized" and "token" in cond["message"].lower()
            assert (await w.svc("c")).get("status", {}).get("loadBalancer", {}).get("ingress") in (
                None,
                [],
            )

            async def warned():
                return "NetboxError" in await w.reasons("c", "default")

            await w.eventually(warned, what="a NetboxError Warning on the Service")

            # the Secret is fixed: the token is read again and the Service gets its address
            await w.client.delete(SECRETS, "netbox-client", namespace=NS)
            await w.client.create(
                SECRETS,
                secret("netbox-client", "user-token", netbox_server.token_v1),
                namespace=NS,
            )
            assert len(await w.wait_ingress("c")) == 1
