"""purelb.ipam.netbox.NetboxClient against a real NetBox (see conftest.py)."""

from __future__ import annotations

import ipaddress
import random

import pytest
import trio
from prometheus_client import CollectorRegistry

from purelb.ipam.netbox import (
    PURELB_TAG,
    NetboxAuthError,
    NetboxClient,
    NetboxConflict,
    NetboxExhausted,
    NetboxMetrics,
    NetboxNotFound,
    NetboxUnavailable,
    Owner,
    RetryPolicy,
)

pytestmark = pytest.mark.root

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, rng=random.Random(1))


def client(server, token=None, **kw) -> NetboxClient:
    return NetboxClient(server.url, token or server.token_v1, **kw)


async def test_allocate_release_reallocate_records_owner(netbox_server, nb_scope):
    pid = nb_scope.add_prefix(nb_scope.v4)
    async with client(netbox_server) as nb:
        prefix = await nb.prefix(nb_scope.v4)
        assert prefix.id == pid and str(prefix.prefix) == nb_scope.v4
        assert (await nb.prefix(pid)).prefix == prefix.prefix  # by numeric id too
        owner = Owner("default/web", "uid-1")
        rec = await nb.allocate(prefix, owner, nb_scope.tenant)
        net = ipaddress.ip_network(nb_scope.v4)
        assert rec.address == net.network_address + 1
        # what a human sees in NetBox: tenant, active, tag, description naming the Service
        raw = nb_scope.admin.req("GET", f"/api/ipam/ip-addresses/{rec.id}/")
        assert raw["status"]["value"] == "active"
        assert raw["tenant"]["slug"] == nb_scope.tenant
        assert [t["slug"] for t in raw["tags"]] == [PURELB_TAG]
        assert raw["description"] == "purelb:default/web uid=uid-1"
        assert rec.owner == owner
        second = await nb.allocate(prefix, Owner("default/api"), nb_scope.tenant)
        assert second.address == net.network_address + 2
        await nb.release(rec, legacy=False)
        with pytest.raises(NetboxNotFound):
            await nb.get(rec.id)
        await nb.release(rec, legacy=False)  # releasing twice is fine
        again = await nb.allocate(prefix, Owner("default/web2"), nb_scope.tenant)
        assert again.address == rec.address  # the freed address is handed out again


async def test_v2_bearer_token(netbox_server, nb_scope):
    if not netbox_server.token_v2:
        pytest.skip("no v2 token for an external NetBox")
    nb_scope.add_prefix(nb_scope.v4)
    async with client(netbox_server, netbox_server.token_v2) as nb:
        assert (await nb.status())["netbox-version"].startswith("4.")
        prefix = await nb.prefix(nb_scope.v4)
        rec = await nb.allocate(prefix, Owner("ns/v2"), nb_scope.tenant)
        await nb.release(rec, legacy=False)


@pytest.mark.parametrize("token", ["0" * 40, "nbt_abcdefghijkl." + "x" * 40])
async def test_wrong_token_is_auth_error_not_retried(netbox_server, token):
    registry = CollectorRegistry()
    async with client(netbox_server, token, metrics=NetboxMetrics(registry)) as nb:
        with pytest.raises(NetboxAuthError) as info:
            await nb.status()
    assert info.value.status == 403
    assert "token" in str(info.value).lower()
    calls = registry.get_sample_value(
        "purelb_netbox_requests_total",
        {"method": "GET", "endpoint": "/api/status/", "outcome": "unauthorized"},
    )
    assert calls == 1  # a bad token is not retried


async def test_two_clients_racing_on_one_prefix_never_share(netbox_server, nb_scope):
    cidr = nb_scope.v4.replace(".0/24", ".0/26")
    nb_scope.add_prefix(cidr)
    got: list[tuple[str, ipaddress.IPv4Address]] = []
    async with (
        client(netbox_server) as a,
        client(netbox_server, netbox_server.token_v2 or None) as b,
    ):
        prefix = await a.prefix(cidr)

        async def grab(nb: NetboxClient, who: str, i: int) -> None:
            rec = await nb.allocate(prefix, Owner(f"race/{who}-{i}"), nb_scope.tenant)
            got.append((who, rec.address))

        async with trio.open_nursery() as nursery:
            for i in range(15):
                nursery.start_soon(grab, a, "a", i)
                nursery.start_soon(grab, b, "b", i)
    addresses = [ip for _, ip in got]
    assert len(addresses) == 30
    assert len(set(addresses)) == 30, "an address was handed out twice"
    assert {who for who, _ in got} == {"a", "b"}


async def test_exhausted_prefix(netbox_server, nb_scope):
    cidr = nb_scope.v4.replace(".0/24", ".0/30")
    nb_scope.add_prefix(cidr)
    async with client(netbox_server) as nb:
        prefix = await nb.prefix(cidr)
        first = await nb.allocate(prefix, Owner("x/1"), nb_scope.tenant)
        await nb.allocate(prefix, Owner("x/2"), nb_scope.tenant)
        with pytest.raises(NetboxExhausted) as info:
            await nb.allocate(prefix, Owner("x/3"), nb_scope.tenant)
        assert info.value.reason == "exhausted"
        await nb.release(first, legacy=False)
        third = await nb.allocate(prefix, Owner("x/3"), nb_scope.tenant)
        assert third.address == first.address


async def test_ipv6_prefix(netbox_server, nb_scope):
    nb_scope.add_prefix(nb_scope.v6)
    async with client(netbox_server) as nb:
        prefix = await nb.prefix(nb_scope.v6)
        rec = await nb.allocate(prefix, Owner("six/one"), nb_scope.tenant)
        assert rec.address == ipaddress.ip_network(nb_scope.v6).network_address + 1
        assert rec.address.version == 6


async def test_legacy_reserved_claims_race_and_release(netbox_server, nb_scope):
    base = ipaddress.ip_network(nb_scope.v4).network_address
    reserved = [f"{base + i}/24" for i in (10, 11, 12, 13)]
    for r in reserved:
        nb_scope.reserve(r)
    got = []
    async with client(netbox_server) as a, client(netbox_server) as b:

        async def claim(nb: NetboxClient, i: int) -> None:
            try:
                got.append(
                    await nb.claim_reserved(Owner(f"legacy/s{i}"), nb_scope.tenant, family=4)
                )
            except NetboxExhausted:
                got.append(None)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(claim, a if i % 2 else b, i)
        records = [r for r in got if r is not None]
        assert len(records) == 4 and got.count(None) == 2
        assert len({r.address for r in records}) == 4, "a reserved address was claimed twice"
        for r in records:  # the claim is verified: what NetBox says matches who got it
            current = await a.get(r.id)
            assert current.status == "active" and current.owner == r.owner
        with pytest.raises(NetboxExhausted):
            await a.claim_reserved(Owner("legacy/late"), nb_scope.tenant, family=4)
        await a.release(records[0], legacy=True)
        back = await a.get(records[0].id)
        assert back.status == "reserved" and PURELB_TAG not in back.tags and not back.description
        again = await a.claim_reserved(Owner("legacy/late"), nb_scope.tenant, family=4)
        assert again.address == records[0].address


async def test_claim_specific_address(netbox_server, nb_scope):
    nb_scope.add_prefix(nb_scope.v4)
    base = ipaddress.ip_network(nb_scope.v4).network_address
    async with client(netbox_server) as nb:
        prefix = await nb.prefix(nb_scope.v4)
        owner = Owner("spec/one", "u1")
        rec = await nb.claim(base + 50, owner, nb_scope.tenant, prefix=prefix)
        assert rec.address == base + 50 and rec.interface.network.prefixlen == 24
        # idempotent for the same owner (a retry after a lost answer)
        assert (await nb.claim(base + 50, owner, nb_scope.tenant, prefix=prefix)).id == rec.id
        with pytest.raises(NetboxConflict):
            await nb.claim(base + 50, Owner("spec/two"), nb_scope.tenant, prefix=prefix)
        # a reserved address of our tenant is claimed; one of another tenant is not ours
        nb_scope.reserve(f"{base + 60}/24")
        got = await nb.claim(base + 60, Owner("spec/three"), nb_scope.tenant, prefix=prefix)
        assert got.status == "active" and got.owner == Owner("spec/three")
        # the prefix source skips claimed addresses
        nxt = await nb.allocate(prefix, Owner("spec/auto"), nb_scope.tenant)
        assert nxt.address == base + 1


async def test_owned_lists_and_drift(netbox_server, nb_scope):
    nb_scope.add_prefix(nb_scope.v4)
    async with client(netbox_server) as nb:
        prefix = await nb.prefix(nb_scope.v4)
        recs = [await nb.allocate(prefix, Owner(f"d/s{i}"), nb_scope.tenant) for i in range(3)]
        owned = await nb.owned(tenant=nb_scope.tenant)
        assert sorted(r.id for r in owned) == sorted(r.id for r in recs)
        assert {r.owner.service for r in owned} == {"d/s0", "d/s1", "d/s2"}
        # deleted by hand: gone from the listing
        nb_scope.admin.http.delete(f"/api/ipam/ip-addresses/{recs[1].id}/")
        assert {r.id for r in await nb.owned(tenant=nb_scope.tenant)} == {recs[0].id, recs[2].id}
        assert [r.id for r in await nb.held_by(Owner("d/s2"))] == [recs[2].id]


async def test_unknown_prefix_and_tenant(netbox_server, nb_scope):
    async with client(netbox_server) as nb:
        with pytest.raises(NetboxNotFound):
            await nb.prefix(
                "10.255.255.0/24" if nb_scope.v4 != "10.255.255.0/24" else "10.0.0.0/30"
            )
        nb_scope.add_prefix(nb_scope.v4)
        prefix = await nb.prefix(nb_scope.v4)
        with pytest.raises(Exception) as info:
            await nb.allocate(prefix, Owner("x/y"), "no-such-tenant-slug")
        assert "no-such-tenant-slug" in str(info.value)


async def test_unreachable_netbox_retries_then_unavailable():
    registry = CollectorRegistry()
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nb = NetboxClient(
        f"http://127.0.0.1:{port}", "0" * 40, retry=FAST_RETRY, metrics=NetboxMetrics(registry)
    )
    async with nb:
        with pytest.raises(NetboxUnavailable):
            await nb.status()
    assert (
        registry.get_sample_value(
            "purelb_netbox_requests_total",
            {"method": "GET", "endpoint": "/api/status/", "outcome": "unavailable"},
        )
        == FAST_RETRY.attempts
    )
