"""The Trio member service over real UDP on loopback (several members in one process)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from functools import partial

import trio
from prometheus_client import CollectorRegistry

from purelb.election import (
    Address,
    EventKind,
    Keyring,
    MemberConfig,
    MemberMeta,
    MemberState,
    local,
    serve_member,
)

SECRET_1 = bytes(range(32))
SECRET_2 = bytes(range(50, 82))
NET = ipaddress.ip_network("172.31.255.0/24")
WAIT_S = 5.0  # generous: loopback gossip converges in tens of ms; CI machines are shared


def config(name: str, *, seeds: Sequence[Address] = (), cluster: str = "it",
           keyring: Keyring | None = None, port: int = 0) -> MemberConfig:
    return MemberConfig(
        name=name, bind=Address("127.0.0.1", port), cluster=cluster,
        keyring=keyring or Keyring.from_secrets({"k1": SECRET_1}), seeds=tuple(seeds),
        meta=MemberMeta(subnets=(NET,)), timings=local())


POLL_S = 0.01  # polling real network state (several members, metrics); bounded by WAIT_S


async def wait_for(predicate, what: str) -> None:
    for _ in range(int(WAIT_S / POLL_S)):
        if predicate():
            return
        await trio.sleep(POLL_S)
    raise AssertionError(f"{what}: not reached within {WAIT_S} s")


def states(member) -> dict[str, MemberState]:
    return {m.name: m.state for m in member.members()}


async def test_members_join_agree_on_winners_and_spread_metadata():
    async with trio.open_nursery() as nursery:
        registry = CollectorRegistry()
        a = await nursery.start(partial(serve_member, config("a"), registry=registry))
        b = await nursery.start(serve_member, config("b", seeds=[a.address]))
        c = await nursery.start(serve_member, config("c", seeds=[a.address]))
        trio_members = (a, b, c)
        await wait_for(lambda: all(len(m.alive_members()) == 3 for m in trio_members), "join")
        for host in range(1, 30):
            address = str(NET.network_address + host)
            winners = {m.winner(address) for m in trio_members}
            assert len(winners) == 1 and winners.pop() in {"a", "b", "c"}
            assert sum(m.should_announce(address) for m in trio_members) == 1
        addresses = [str(NET.network_address + host) for host in range(1, 30)]
        assert a.view().winners(addresses) == [c.winner(x) for x in addresses]

        version = a.version
        c.update_meta(subnets=[ipaddress.ip_network("192.0.2.0/24")], ready=True)
        view = await a.wait_changed(version)
        assert view.version > version
        await wait_for(lambda: str(a.member("c").meta.subnets[0]) == "192.0.2.0/24",
                       "metadata")
        assert a.winner("192.0.2.9") == "c"
        value = registry.get_sample_value("purelb_gossip_members", {"state": "alive"})
        assert value == 3
        await wait_for(
            lambda: registry.get_sample_value("purelb_gossip_probe_rtt_seconds_count") > 0,
            "a probe round trip recorded")
        nursery.cancel_scope.cancel()


async def test_leave_is_seen_at_once_and_ends_the_service():
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_member, config("a"))
        b = await nursery.start(serve_member, config("b", seeds=[a.address]))
        await wait_for(lambda: len(a.alive_members()) == 2, "join")
        async with a.subscribe() as events:
            start = trio.current_time()
            await b.leave()
            with trio.fail_after(WAIT_S):
                async for ev in events:
                    if ev.kind == EventKind.LEFT and ev.member.name == "b":
                        break
            assert trio.current_time() - start < 0.5
        with trio.fail_after(WAIT_S):
            await b.wait_stopped()
        assert not a.is_fenced()  # b left gracefully: a is legitimately alone
        nursery.cancel_scope.cancel()


async def test_cancelling_a_member_leaves_gracefully():
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_member, config("a"))
        with trio.CancelScope() as scope:
            inner = trio.open_nursery()
            async with inner as n2:
                b = await n2.start(serve_member, config("b", seeds=[a.address]))
                await wait_for(lambda: len(b.alive_members()) == 2, "join")
                scope.cancel()
        await wait_for(lambda: states(a).get("b") == MemberState.LEFT, "leave on cancel")
        nursery.cancel_scope.cancel()


async def test_key_rotation_under_traffic_fails_no_probe():
    ring1 = Keyring.from_secrets({"k1": SECRET_1})
    both_1 = Keyring.from_secrets({"k1": SECRET_1, "k2": SECRET_2}, primary="k1")
    both_2 = Keyring.from_secrets({"k1": SECRET_1, "k2": SECRET_2}, primary="k2")
    ring2 = Keyring.from_secrets({"k2": SECRET_2})
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_member, config("a", keyring=ring1))
        b = await nursery.start(serve_member, config("b", seeds=[a.address], keyring=ring1))
        c = await nursery.start(serve_member, config("c", seeds=[a.address], keyring=ring1))
        members = (a, b, c)
        await wait_for(lambda: all(len(m.alive_members()) == 3 for m in members), "join")
        for ring in (both_1, both_2, ring2):
            for m in members:
                m.set_keyring(ring)
                await trio.sleep(0.1)  # traffic flows while members disagree on the primary
        await trio.sleep(0.3)
        for m in members:
            stats = m.statistics()
            assert stats.probes_failed == 0, stats
            assert stats.rejected == {}, stats
            assert stats.alive == 3
        nursery.cancel_scope.cancel()


async def test_foreign_cluster_cannot_join_and_is_counted():
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_member, config("a"))
        x = await nursery.start(serve_member, config("x", seeds=[a.address], cluster="other"))
        await wait_for(lambda: a.statistics().rejected.get("foreign_cluster", 0) >= 2,
                       "rejections")
        assert [m.name for m in a.alive_members()] == ["a"]
        assert [m.name for m in x.alive_members()] == ["x"]
        nursery.cancel_scope.cancel()


async def test_failing_seed_provider_is_retried():
    calls = 0

    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_member, config("a"))

        async def flaky() -> list[Address]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("API server unreachable")
            return [a.address]

        b = await nursery.start(partial(serve_member, config("b"), seed_provider=flaky))
        await wait_for(lambda: len(b.alive_members()) == 2, "join after retry")
        assert calls >= 2
        nursery.cancel_scope.cancel()


async def test_members_gossip_over_ipv6():
    async with trio.open_nursery() as nursery:
        cfg = dataclasses.replace(config("a"), bind=Address("::1", 0))
        a = await nursery.start(serve_member, cfg)
        b = await nursery.start(serve_member, dataclasses.replace(
            config("b", seeds=[a.address]), bind=Address("::1", 0)))
        await wait_for(lambda: len(a.alive_members()) == 2 == len(b.alive_members()), "join")
        assert a.address.host == "::1"
        nursery.cancel_scope.cancel()
