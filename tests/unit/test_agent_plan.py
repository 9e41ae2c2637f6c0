"""The agent plan: scenario table, then invariants over random clusters (hypothesis)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from purelb.agent.plan import (
    ANNOUNCING_KEYS,
    AddressInput,
    Endpoint,
    EndpointSlice,
    NodeName,
    PlanInput,
    ServiceInput,
    ServiceKey,
    TrafficPolicy,
    VirtualInterface,
    WarningReason,
    healthy_endpoint_nodes,
    parse_aggregation,
    plan,
)
from purelb.agent.records import AddressKind, IPAddress, LocalSubnet
from purelb.agent.settings import AgentSettings

VIF = VirtualInterface("kube-lb0", 9)
ETH0_V4 = LocalSubnet("eth0", 2, ipaddress.ip_network("172.31.255.0/24"))
ETH0_V6 = LocalSubnet("eth0", 2, ipaddress.ip_network("fd00:db8:ff::/64"))
ME = NodeName("node1")
LOCAL, CLUSTER = TrafficPolicy.LOCAL, TrafficPolicy.CLUSTER


def svc(name: str, policy: TrafficPolicy = CLUSTER, *slices: EndpointSlice) -> ServiceInput:
    return ServiceInput(ServiceKey(f"default/{name}"), policy, slices)


def ep(ip: str, node: str | None, ready: bool | None = True, serving: bool | None = None):
    return Endpoint((ip,), node, ready, serving)


def addr(ip: str, subnet: str, *services: ServiceInput, aggregation: int | None = None):
    return AddressInput(
        ipaddress.ip_address(ip), ipaddress.ip_network(subnet), aggregation, services
    )


def always(node: str | None) -> Callable[[IPAddress], NodeName | None]:
    return lambda _a: None if node is None else NodeName(node)


@dataclass
class Case:
    desc: str
    addresses: list[AddressInput]
    winner: str | None = "node1"
    previous: frozenset[IPAddress] = frozenset()
    want: list[tuple[str, str, AddressKind]] = field(default_factory=list)
    announce: list[str] = field(default_factory=list)
    warnings: list[WarningReason] = field(default_factory=list)
    annotations: dict[str, dict[str, str]] | None = None


SLICE_ME = EndpointSlice("a", (ep("10.244.1.5", "node1"),))
SLICE_OTHER = EndpointSlice("b", (ep("10.244.2.5", "node2"),))
CASES = [
    Case("a virtual Cluster address goes on kube-lb0 with the subnet's mask",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a"))],
         want=[("kube-lb0", "192.0.2.10/24", AddressKind.VIRTUAL)],
         annotations={"default/a": {}}),
    Case("aggregation /32 overrides the subnet mask",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a"), aggregation=32)],
         want=[("kube-lb0", "192.0.2.10/32", AddressKind.VIRTUAL)]),
    Case("a virtual address is added on every node, whoever wins elections",
         [addr("2001:db8::10", "2001:db8::/64", svc("a"), aggregation=128)], winner="node2",
         want=[("kube-lb0", "2001:db8::10/128", AddressKind.VIRTUAL)]),
    Case("virtual ETP Local with a ready endpoint here is added",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a", LOCAL, SLICE_ME, SLICE_OTHER))],
         want=[("kube-lb0", "192.0.2.10/24", AddressKind.VIRTUAL)]),
    Case("virtual ETP Local without an endpoint here is not added",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a", LOCAL, SLICE_OTHER))]),
    Case("an endpoint unready in one of its slices is not healthy",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a", LOCAL, SLICE_ME,
               EndpointSlice("c", (ep("10.244.1.5", "node1", ready=False, serving=False),))))]),
    Case("a serving but not ready (terminating) endpoint still counts",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a", LOCAL,
               EndpointSlice("c", (ep("10.244.1.5", "node1", ready=False, serving=True),))))],
         want=[("kube-lb0", "192.0.2.10/24", AddressKind.VIRTUAL)]),
    Case("a local address goes on the winner's NIC with the NIC's prefix and is announced",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a"), aggregation=32)],
         want=[("eth0", "172.31.255.200/24", AddressKind.LOCAL)], announce=["172.31.255.200"],
         annotations={"default/a": {ANNOUNCING_KEYS[4]: "node1,eth0,172.31.255.200"}}),
    Case("a local address another node wins is not added here",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a"))], winner="node2",
         annotations={"default/a": {}}),
    Case("a local address nobody can win is added nowhere",
         [addr("fd00:db8:ff::200", "fd00:db8:ff::/64", svc("a"))], winner=None),
    Case("an address held before is not announced again",
         [addr("fd00:db8:ff::200", "fd00:db8:ff::/64", svc("a"))],
         previous=frozenset({ipaddress.ip_address("fd00:db8:ff::200")}),
         want=[("eth0", "fd00:db8:ff::200/64", AddressKind.LOCAL)],
         annotations={"default/a": {ANNOUNCING_KEYS[6]: "node1,eth0,fd00:db8:ff::200"}}),
    Case("ETP Local on a local address is Cluster with a warning",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a", LOCAL, SLICE_OTHER))],
         want=[("eth0", "172.31.255.200/24", AddressKind.LOCAL)], announce=["172.31.255.200"],
         warnings=[WarningReason.LOCAL_POLICY_ON_LOCAL_ADDRESS]),
    Case("the loser warns about ETP Local on a local address as well",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a", LOCAL))], winner="node2",
         warnings=[WarningReason.LOCAL_POLICY_ON_LOCAL_ADDRESS]),
    Case("a shared virtual address ignores ETP Local with a warning",
         [addr("192.0.2.10", "192.0.2.0/24", svc("a", LOCAL, SLICE_OTHER), svc("b"))],
         want=[("kube-lb0", "192.0.2.10/24", AddressKind.VIRTUAL)],
         warnings=[WarningReason.LOCAL_POLICY_ON_SHARED_ADDRESS]),
    Case("a shared local address is reported on every sharing Service",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a"), svc("b"))],
         want=[("eth0", "172.31.255.200/24", AddressKind.LOCAL)], announce=["172.31.255.200"],
         annotations={"default/a": {ANNOUNCING_KEYS[4]: "node1,eth0,172.31.255.200"},
                      "default/b": {ANNOUNCING_KEYS[4]: "node1,eth0,172.31.255.200"}}),
    Case("a dual-stack Service gets one annotation per family",
         [addr("172.31.255.200", "172.31.255.0/24", svc("a")),
          addr("fd00:db8:ff::200", "fd00:db8:ff::/64", svc("a"))],
         want=[("eth0", "172.31.255.200/24", AddressKind.LOCAL),
               ("eth0", "fd00:db8:ff::200/64", AddressKind.LOCAL)],
         announce=["172.31.255.200", "fd00:db8:ff::200"],
         annotations={"default/a": {ANNOUNCING_KEYS[4]: "node1,eth0,172.31.255.200",
                                    ANNOUNCING_KEYS[6]: "node1,eth0,fd00:db8:ff::200"}}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_plan_follows_the_scenario_table(case: Case) -> None:
    inp = PlanInput(ME, tuple(case.addresses), (ETH0_V4, ETH0_V6), VIF, case.previous)
    p = plan(inp, always(case.winner))
    assert [(a.ifname, str(a.interface), a.kind) for a in p.addresses] == case.want
    assert [str(n.address) for n in p.announce] == case.announce
    assert [w.reason for w in p.warnings] == case.warnings
    if case.annotations is not None:
        assert p.annotations == case.annotations
    assert p.local == {a.interface.ip for a in p.addresses if a.kind is AddressKind.LOCAL}


def test_plan_rejects_an_address_listed_twice() -> None:
    a = addr("192.0.2.10", "192.0.2.0/24", svc("a"))
    b = addr("192.0.2.10", "192.0.2.0/24", svc("b"))
    with pytest.raises(ValueError, match=r"192\.0\.2\.10 listed twice"):
        plan(PlanInput(ME, (a, b), (), VIF), always("node1"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(ip="192.0.2.1", subnet="2001:db8::/64"), "differ in family"),
        (dict(ip="192.0.2.1", subnet="192.0.2.0/24", aggregation=33), "outside"),
        (dict(ip="192.0.2.1", subnet="192.0.2.0/24", services=()), "no Service"),
    ],
)
def test_address_input_validates_itself(kwargs: dict, match: str) -> None:
    services = kwargs.pop("services", (svc("a"),))
    with pytest.raises(ValueError, match=match):
        AddressInput(
            ipaddress.ip_address(kwargs["ip"]),
            ipaddress.ip_network(kwargs["subnet"]),
            kwargs.get("aggregation"),
            services,
        )


def test_parse_aggregation_accepts_default_and_slash_n_only() -> None:
    assert parse_aggregation("default") is None
    assert parse_aggregation("") is None
    assert parse_aggregation("/32") == 32
    with pytest.raises(ValueError, match="'32'"):
        parse_aggregation("32")


def test_healthy_endpoint_nodes_treats_unknown_conditions_as_ready() -> None:
    slices = (EndpointSlice("a", (ep("10.0.0.1", "n1", ready=None), ep("10.0.0.2", None))),)
    assert healthy_endpoint_nodes(slices) == {"n1"}


def test_plan_specs_give_the_writer_its_options() -> None:
    inp = PlanInput(
        ME,
        (
            addr("172.31.255.200", "172.31.255.0/24", svc("a")),
            addr("192.0.2.1", "192.0.2.0/24", svc("b")),
        ),
        (ETH0_V4,),
        VIF,
    )  # fmt: skip
    specs = plan(inp, always("node1")).specs(AgentSettings())
    assert [(s.index, str(s.interface), s.valid_lft_s) for s in specs] == [
        (2, "172.31.255.200/24", 300),
        (9, "192.0.2.1/24", None),
    ]


# ---------------------------------------------------------------- properties over clusters

NODES = [NodeName(f"node{i}") for i in range(1, 5)]
SUBNETS = [
    ipaddress.ip_network("10.0.0.0/24"),
    ipaddress.ip_network("10.0.1.0/24"),
    ipaddress.ip_network("fd00:1::/64"),
]
VIRTUAL_SUBNETS = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/64")]


def rendezvous(node_subnets: dict[NodeName, list]) -> Callable[[IPAddress], NodeName | None]:
    """A stand-in election with PureLB's rule: lowest sha256(node#ip) among nodes on the subnet."""

    def winner(a: IPAddress) -> NodeName | None:
        cands = [n for n, nets in node_subnets.items() if any(a in s for s in nets)]
        if not cands:
            return None
        return min(cands, key=lambda n: hashlib.sha256(f"{n}#{a}".encode()).digest())

    return winner


@st.composite
def clusters(draw: st.DrawFn):
    node_subnets = {
        n: draw(st.lists(st.sampled_from(SUBNETS), unique=True, max_size=3)) for n in NODES
    }
    inputs = []
    used: set[IPAddress] = set()
    for _ in range(draw(st.integers(0, 8))):
        subnet = draw(st.sampled_from(SUBNETS + VIRTUAL_SUBNETS))
        ip = subnet.network_address + draw(st.integers(1, 250))
        if ip in used:
            continue
        used.add(ip)
        services = []
        for j in range(draw(st.integers(1, 3))):
            slices = tuple(
                EndpointSlice(
                    f"s{k}",
                    tuple(
                        ep(f"10.244.{draw(st.integers(0, 5))}.1",
                           draw(st.sampled_from([*NODES, None])),
                           draw(st.sampled_from([True, False, None])),
                           draw(st.sampled_from([True, False, None])))
                        for _ in range(draw(st.integers(0, 3)))
                    ),
                )
                for k in range(draw(st.integers(0, 2)))
            )  # fmt: skip
            services.append(
                ServiceInput(
                    ServiceKey(f"ns/s{ip}-{j}"), draw(st.sampled_from(TrafficPolicy)), slices
                )
            )
        agg = draw(st.one_of(st.none(), st.integers(subnet.prefixlen, subnet.max_prefixlen)))
        inputs.append(AddressInput(ip, subnet, agg, tuple(services)))
    return node_subnets, inputs


def node_plan(node: NodeName, node_subnets: dict, inputs: list, previous=frozenset()):
    subs = tuple(LocalSubnet("eth0", 2, s) for s in node_subnets[node])
    return plan(PlanInput(node, tuple(inputs), subs, VIF, previous), rendezvous(node_subnets))


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_plan_invariants_hold_on_every_node(cluster) -> None:
    node_subnets, inputs = cluster
    winner = rendezvous(node_subnets)
    plans = {n: node_plan(n, node_subnets, inputs) for n in NODES}
    by_ip = {a.address: a for a in inputs}
    for a in inputs:
        holders = [
            n for n, p in plans.items()
            if any(x.interface.ip == a.address and x.kind is AddressKind.LOCAL for x in p.addresses)
        ]  # fmt: skip
        assert len(holders) <= 1, f"local {a.address} on {holders}"
        if holders:
            assert holders == [winner(a.address)]
    for n, p in plans.items():
        assert len({x.interface.ip for x in p.addresses}) == len(p.addresses)
        for x in p.addresses:
            a = by_ip[x.interface.ip]
            if x.kind is AddressKind.VIRTUAL:
                assert x.index == VIF.index
                assert x.interface.network.prefixlen == a.virtual_prefixlen
                assert not any(a.address in s for s in node_subnets[n])
                if len(a.services) == 1 and a.services[0].traffic_policy is LOCAL:
                    assert n in healthy_endpoint_nodes(a.services[0].slices)
            else:
                sub = next(s for s in node_subnets[n] if a.address in s)
                assert x.interface.network == sub
        assert {y.address for y in p.announce} == p.local
        # Determinism: same result from shuffled input, and again.
        assert node_plan(n, node_subnets, list(reversed(inputs))) == p
        # Held addresses are not announced again.
        assert node_plan(n, node_subnets, inputs, p.local).announce == ()


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_every_virtual_cluster_address_is_on_every_node(cluster) -> None:
    node_subnets, inputs = cluster
    for n in NODES:
        p = node_plan(n, node_subnets, inputs)
        have = {x.interface.ip for x in p.addresses}
        for a in inputs:
            local = any(a.address in s for s in node_subnets[n])
            policies = {s.traffic_policy for s in a.services}
            if not local and (policies == {CLUSTER} or len(a.services) > 1):
                assert a.address in have
