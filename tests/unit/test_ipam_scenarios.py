"""PureLB's allocation behaviour, and our deliberate differences, as one table of scenarios.

Each scenario configures ServiceGroups, optionally imports existing Services (the startup
barrier), then steps one Allocator through reconciles, deletes and config changes. After
every step the expectations of the step are checked, plus the invariants that hold always
(:func:`tests.unit._ipam_helpers.check_invariants`) and "a failed reconcile adds nothing".

Sources for the expected behaviour: research/purelb.md §4 (allocation algorithm) and the
behaviours PureLB's unit tests name (§9: localpool, allocator, controller, poolselect,
service). Scenarios marked ``[ours]`` are deliberate differences (docs/ipam.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from purelb.ipam.allocator import Allocator, AllocatorSettings
from purelb.ipam.decision import Decision, Outcome
from purelb.model import Service
from purelb.model import annotations as ann
from tests.unit._ipam_helpers import check_invariants, netbox_sg, pool, sg, svc

_UNSET: Any = object()


@dataclass
class Step:
    op: str
    """``reconcile`` (arg: Service), ``release`` (arg: key), ``config`` (arg: groups),
    ``offer`` (arg: (group, [addresses]))."""
    arg: Any
    outcome: Outcome | None = None
    holds: tuple[str, ...] | None = None
    """Addresses the Service holds afterwards (sorted text)."""
    reason: str | None = None
    ingress: Any = _UNSET
    events: tuple[str, ...] = ()
    no_events: bool = False
    requeue: tuple[str, ...] | None = None
    released: tuple[str, ...] | None = None
    set_ann: dict[str, str] | None = None
    remove_ann: tuple[str, ...] | None = None
    message_has: tuple[str, ...] = ()
    accepted: tuple[str, ...] | None = None
    rejected: tuple[tuple[str, str], ...] | None = None
    """(group name, InvalidField reason) for a config step."""
    orphaned: tuple[str, ...] | None = None


def R(service: Service, **expect: Any) -> Step:
    return Step("reconcile", service, **expect)


def D(key: str, **expect: Any) -> Step:
    return Step("release", key, **expect)


def C(groups: list[dict[str, Any]], **expect: Any) -> Step:
    return Step("config", groups, **expect)


@dataclass
class Scenario:
    desc: str
    groups: list[dict[str, Any]]
    steps: list[Step]
    imports: list[Service] = field(default_factory=list)
    settings: AllocatorSettings = field(default_factory=AllocatorSettings)
    import_conflicts: int | None = None


# ----------------------------------------------------------------------------- groups

V4 = [pool("10.0.0.0/30", "10.0.0.0/24")]  # .0 .1 .2 .3 (network/broadcast included)
V6 = [pool("fd00::/126", "fd00::/64")]
G4 = sg("default", v4=V4)
G46 = sg("default", v4=V4, v6=V6)
G6 = sg("default", v6=V6)
ONE4_ONE6 = sg("default", v4=[pool("10.0.0.5/32", "10.0.0.0/24")], v6=V6)
OTHER = sg("other", v4=[pool("10.1.0.0/30", "10.1.0.0/24")])
TWO_RANGES = sg(
    "default",
    v4=[pool("10.0.0.8-10.0.0.9", "10.0.0.0/24"), pool("10.0.1.0-10.0.1.1", "10.0.1.0/24")],
)
BALANCED = sg(
    "default",
    v4=[pool("10.0.0.8-10.0.0.9", "10.0.0.0/24"), pool("10.0.1.0-10.0.1.1", "10.0.1.0/24")],
    balancePools=True,
)
BUGGY = sg("default", v4=[pool("10.0.0.254-10.0.1.2", "10.0.0.0/23")], avoidBuggyIPs=True)

BRANDED = {ann.ALLOCATED_BY: ann.BRAND}
WRITES = {ann.ALLOCATED_BY: "PureLB", ann.ALLOCATED_FROM: "default", ann.POOL_TYPE: "local"}

SCENARIOS: list[Scenario] = [
    # ------------------------------------------------------------------ class and type
    Scenario(
        "a LoadBalancer with no class is ours when we are the default announcer",
        [G4],
        [
            R(
                svc("a"),
                outcome=Outcome.OK,
                holds=("10.0.0.0",),
                ingress=("10.0.0.0",),
                set_ann=WRITES,
                events=("AddressAssigned",),
            )
        ],
    ),
    Scenario(
        "a LoadBalancer with no class is ignored when we are not the default announcer",
        [G4],
        [R(svc("a"), outcome=Outcome.IGNORED, holds=(), ingress=None, no_events=True)],
        settings=AllocatorSettings(default_announcer=False),
    ),
    Scenario(
        "class purelb.io/purelb is ours even when we are not the default announcer",
        [G4],
        [R(svc("a", cls="purelb.io/purelb"), outcome=Outcome.OK, holds=("10.0.0.0",))],
        settings=AllocatorSettings(default_announcer=False),
    ),
    Scenario(
        "another loadBalancerClass is ignored and nothing is written",
        [G4],
        [
            R(
                svc("a", cls="example.com/other"),
                outcome=Outcome.IGNORED,
                holds=(),
                ingress=None,
                set_ann={},
                no_events=True,
            )
        ],
    ),
    Scenario(
        "PureLB v2's class purelb.io/purelbv2 is not ours (we speak v1)",
        [G4],
        [R(svc("a", cls="purelb.io/purelbv2"), outcome=Outcome.IGNORED, holds=())],
    ),
    Scenario(
        "a ClusterIP Service is ignored",
        [G4],
        [R(svc("a", type="ClusterIP"), outcome=Outcome.IGNORED, holds=(), ingress=None)],
    ),
    Scenario(
        "type change away from LoadBalancer releases, clears ingress and un-brands",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(
                svc("a", type="ClusterIP", ingress=("10.0.0.0",), annotations=WRITES),
                outcome=Outcome.RELEASED,
                holds=(),
                ingress=(),
                remove_ann=(ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE),
                released=("10.0.0.0",),
                events=("AddressReleased",),
            ),
            R(svc("b"), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "deleting a Service frees its address for the next one (delete recycles IP)",
        [sg("default", v4=[pool("10.0.0.7/32", "10.0.0.0/24")])],
        [
            R(svc("a"), holds=("10.0.0.7",)),
            R(svc("b"), outcome=Outcome.FAILED, reason="exhausted", holds=()),
            D("ns/a", outcome=Outcome.RELEASED, released=("10.0.0.7",), requeue=("ns/b",)),
            R(svc("b"), outcome=Outcome.OK, holds=("10.0.0.7",)),
        ],
    ),
    Scenario(
        "a class change away from ours forgets the address without writing",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(
                svc("a", cls="example.com/other", ingress=("10.0.0.0",)),
                outcome=Outcome.IGNORED,
                holds=(),
                ingress=None,
                released=("10.0.0.0",),
            ),
        ],
    ),
    # ------------------------------------------------------------------ group selection
    Scenario(
        "without an annotation the group named default is used",
        [G4, OTHER],
        [R(svc("a"), holds=("10.0.0.0",), set_ann=WRITES)],
    ),
    Scenario(
        "purelb.io/service-group selects the group",
        [G4, OTHER],
        [
            R(
                svc("a", group="other"),
                holds=("10.1.0.0",),
                set_ann={**WRITES, ann.ALLOCATED_FROM: "other"},
            )
        ],
    ),
    Scenario(
        "an unknown group is refused with unknown_group",
        [G4],
        [
            R(
                svc("a", group="nope"),
                outcome=Outcome.INVALID,
                reason="unknown_group",
                holds=(),
                events=("AllocationFailed",),
                message_has=("ns/a", "'nope'"),
            )
        ],
    ),
    Scenario(
        "no default group: an unannotated Service gets unknown_group",
        [OTHER],
        [R(svc("a"), outcome=Outcome.INVALID, reason="unknown_group", message_has=("'default'",))],
    ),
    Scenario(
        "a group that failed validation gives invalid_group naming the error",
        [G4, sg("bad", v4=[pool("10.2.0.0/24", "10.3.0.0/24")])],
        [
            R(
                svc("a", group="bad"),
                outcome=Outcome.INVALID,
                reason="invalid_group",
                message_has=("'bad'", "outside subnet"),
            )
        ],
    ),
    Scenario(
        "changing the group annotation never moves an allocated address",
        [G4, OTHER],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("a", group="other", ingress=("10.0.0.0",), annotations=WRITES),
              outcome=Outcome.OK, holds=("10.0.0.0",), ingress=None, set_ann={}, no_events=True),
        ],
    ),
    # ------------------------------------------------------------------ next free address
    Scenario(
        "addresses are handed out lowest first, network and broadcast included",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("b"), holds=("10.0.0.1",)),
            R(svc("c"), holds=("10.0.0.2",)),
            R(svc("d"), holds=("10.0.0.3",)),
            R(svc("e"), outcome=Outcome.FAILED, reason="exhausted", holds=(),
              message_has=("ns/e", "'default'", "IPv4")),
        ],
    ),
    Scenario(
        "a released low address is handed out again before higher ones",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("b"), holds=("10.0.0.1",)),
            D("ns/a", released=("10.0.0.0",)),
            R(svc("c"), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "ranges are used in the order written, moving on when one is full",
        [TWO_RANGES],
        [
            R(svc("a"), holds=("10.0.0.8",)),
            R(svc("b"), holds=("10.0.0.9",)),
            R(svc("c"), holds=("10.0.1.0",)),
        ],
    ),
    Scenario(
        "balancePools takes the least-used range first",
        [BALANCED],
        [
            R(svc("a"), holds=("10.0.0.8",)),
            R(svc("b"), holds=("10.0.1.0",)),
            R(svc("c"), holds=("10.0.0.9",)),
        ],
    ),
    Scenario(
        "balancePools is bypassed for a Service with a sharing key (as PureLB)",
        [BALANCED],
        [
            R(svc("a"), holds=("10.0.0.8",)),
            R(svc("b", key="k"), holds=("10.0.0.9",)),
        ],
    ),
    Scenario(
        "balancePools fills a range freed by a release first",
        [BALANCED],
        [
            R(svc("a"), holds=("10.0.0.8",)),
            R(svc("b"), holds=("10.0.1.0",)),
            R(svc("c"), holds=("10.0.0.9",)),
            D("ns/a", released=("10.0.0.8",)),
            D("ns/c", released=("10.0.0.9",)),
            R(svc("d"), holds=("10.0.0.8",)),
        ],
    ),
    Scenario(
        "balancePools balances each family on its own",
        [sg("default", v4=[pool("10.0.0.8/31", "10.0.0.0/24"), pool("10.0.1.0/31", "10.0.1.0/24")],
            v6=[pool("fd00::/127", "fd00::/64"), pool("fd00::1:0/127", "fd00::/64")],
            balancePools=True)],
        [
            R(svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
              holds=("10.0.0.8", "fd00::")),
            R(svc("b", families=("IPv4", "IPv6"), policy="RequireDualStack"),
              holds=("10.0.1.0", "fd00::1:0")),
            R(svc("c", families=("IPv6",)), holds=("fd00::1",)),
        ],
    ),
    Scenario(
        "[ours] avoidBuggyIPs skips IPv4 addresses ending in .255 and .0",
        [BUGGY],
        [R(svc("a"), holds=("10.0.0.254",)), R(svc("b"), holds=("10.0.1.1",)),
         R(svc("c"), holds=("10.0.1.2",)), R(svc("d"), outcome=Outcome.FAILED, reason="exhausted")],
    ),
    # ------------------------------------------------------------------ families
    Scenario(
        "SingleStack without families takes IPv4",
        [G46],
        [R(svc("a"), holds=("10.0.0.0",))],
    ),
    Scenario(
        "SingleStack IPv6 takes an IPv6 address",
        [G46],
        [R(svc("a", families=("IPv6",), policy="SingleStack"), holds=("fd00::",))],
    ),
    Scenario(
        "a Service with no ipFamilies takes the family of its cluster IP",
        [G46],
        [R(svc("a", cluster_ip="fd01::10"), holds=("fd00::",))],
    ),
    Scenario(
        "a SingleStack Service with no families at all takes the group's family",
        [G6],
        [R(svc("a"), holds=("fd00::",))],
    ),
    Scenario(
        "SingleStack IPv6 against an IPv4-only group is family_unavailable",
        [G4],
        [
            R(
                svc("a", families=("IPv6",), policy="SingleStack"),
                outcome=Outcome.INVALID,
                reason="family_unavailable",
                holds=(),
                message_has=("IPv6", "'default'"),
            )
        ],
    ),
    Scenario(
        "[ours] PreferDualStack takes both families when the group has both",
        [G46],
        [
            R(
                svc("a", families=("IPv4", "IPv6"), policy="PreferDualStack"),
                holds=("10.0.0.0", "fd00::"),
                ingress=("10.0.0.0", "fd00::"),
            )
        ],
    ),
    Scenario(
        "[ours] PreferDualStack takes what an IPv4-only group has",
        [G4],
        [R(svc("a", families=("IPv4", "IPv6"), policy="PreferDualStack"), holds=("10.0.0.0",))],
    ),
    Scenario(
        "[ours] PreferDualStack in a single-stack cluster (ipFamilies: [IPv4]) takes IPv4 only",
        [G46],
        [R(svc("a", families=("IPv4",), policy="PreferDualStack"), holds=("10.0.0.0",))],
    ),
    Scenario(
        "[ours] PreferDualStack with no declared families takes every family of the group",
        [G46],
        [R(svc("a", policy="PreferDualStack"), holds=("10.0.0.0", "fd00::"))],
    ),
    Scenario(
        "PreferDualStack for IPv4 against an IPv6-only group is family_unavailable",
        [G6],
        [R(svc("a", families=("IPv4",), policy="PreferDualStack"), outcome=Outcome.INVALID,
           reason="family_unavailable")],
    ),
    Scenario(
        "ingress lists addresses in the Service's ipFamilies order",
        [G46],
        [
            R(
                svc("a", families=("IPv6", "IPv4"), policy="RequireDualStack"),
                ingress=("fd00::", "10.0.0.0"),
            )
        ],
    ),
    Scenario(
        "RequireDualStack against a single-family group is family_unavailable, nothing held",
        [G4],
        [
            R(
                svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
                outcome=Outcome.INVALID,
                reason="family_unavailable",
                holds=(),
                ingress=None,
            )
        ],
    ),
    Scenario(
        "RequireDualStack rolls back IPv4 when IPv6 is exhausted (no half allocation)",
        [sg("default", v4=V4, v6=[pool("fd00::1/128", "fd00::/64")])],
        [
            R(svc("x", families=("IPv6",), policy="SingleStack"), holds=("fd00::1",)),
            R(
                svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
                outcome=Outcome.FAILED,
                reason="exhausted",
                holds=(),
            ),
            R(svc("b"), holds=("10.0.0.0",)),
            D("ns/x", requeue=("ns/a",)),
            R(
                svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
                holds=("10.0.0.1", "fd00::1"),
            ),
        ],
    ),
    Scenario(
        "SingleStack to RequireDualStack adds IPv6 in place, keeping IPv4",
        [G46],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(
                svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack",
                    ingress=("10.0.0.0",), annotations=WRITES),
                holds=("10.0.0.0", "fd00::"),
                ingress=("10.0.0.0", "fd00::"),
                set_ann={},
                events=("AddressAssigned",),
            ),
        ],
    ),
    Scenario(
        "RequireDualStack to SingleStack releases the dropped family only",
        [G46],
        [
            R(svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
              holds=("10.0.0.0", "fd00::")),
            R(
                svc("a", families=("IPv4",), policy="SingleStack",
                    ingress=("10.0.0.0", "fd00::"), annotations=WRITES),
                holds=("10.0.0.0",),
                ingress=("10.0.0.0",),
                released=("fd00::",),
                events=("AddressReleased",),
            ),
        ],
    ),
    Scenario(
        "a failed upgrade to RequireDualStack keeps the existing IPv4 (atomic reconcile)",
        [ONE4_ONE6],
        [
            R(svc("x", families=("IPv6",)), holds=("fd00::",)),
            R(svc("x2", families=("IPv6",)), holds=("fd00::1",)),
            R(svc("x3", families=("IPv6",)), holds=("fd00::2",)),
            R(svc("x4", families=("IPv6",)), holds=("fd00::3",)),
            R(svc("a"), holds=("10.0.0.5",)),
            R(
                svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack",
                    ingress=("10.0.0.5",), annotations=WRITES),
                outcome=Outcome.FAILED,
                reason="exhausted",
                holds=("10.0.0.5",),
                ingress=None,
            ),
        ],
    ),
    # ------------------------------------------------------------------ specific addresses
    Scenario(
        "purelb.io/addresses picks a specific address",
        [G4],
        [R(svc("a", addresses="10.0.0.2"), holds=("10.0.0.2",)), R(svc("b"), holds=("10.0.0.0",))],
    ),
    Scenario(
        "purelb.io/addresses with one address per family for a dual-stack Service",
        [G46],
        [
            R(
                svc("a", addresses="fd00::3, 10.0.0.3", families=("IPv4", "IPv6"),
                    policy="RequireDualStack"),
                holds=("10.0.0.3", "fd00::3"),
                ingress=("10.0.0.3", "fd00::3"),
            )
        ],
    ),
    Scenario(
        "spec.loadBalancerIP still works but emits a DeprecationWarning",
        [G4],
        [R(svc("a", lbip="10.0.0.1"), holds=("10.0.0.1",), events=("DeprecationWarning",))],
    ),
    Scenario(
        "purelb.io/addresses wins over spec.loadBalancerIP",
        [G4],
        [R(svc("a", lbip="10.0.0.1", addresses="10.0.0.2"), holds=("10.0.0.2",))],
    ),
    Scenario(
        "an address in no pool is not_in_pool",
        [G4],
        [
            R(svc("a", addresses="192.0.2.1"), outcome=Outcome.INVALID, reason="not_in_pool",
              holds=(), message_has=("192.0.2.1", "ns/a"))
        ],
    ),
    Scenario(
        "an address may come from any group's pool; allocated-from names that group",
        [G4, OTHER],
        [
            R(
                svc("a", addresses="10.1.0.2"),
                holds=("10.1.0.2",),
                set_ann={**WRITES, ann.ALLOCATED_FROM: "other"},
            )
        ],
    ),
    Scenario(
        "addresses spanning two groups list both in allocated-from",
        [sg("default", v6=V6), OTHER],
        [
            R(
                svc("a", addresses="10.1.0.1,fd00::2", families=("IPv4", "IPv6"),
                    policy="RequireDualStack"),
                set_ann={**WRITES, ann.ALLOCATED_FROM: "other, default"},
            )
        ],
    ),
    Scenario(
        "service-group together with addresses is ignored with a ConfigurationWarning",
        [G4, OTHER],
        [R(svc("a", group="other", addresses="10.0.0.1"), holds=("10.0.0.1",),
           events=("ConfigurationWarning", "AddressAssigned"))],
    ),
    Scenario(
        "two IPv4 addresses in purelb.io/addresses are refused",
        [G4],
        [R(svc("a", addresses="10.0.0.1,10.0.0.2"), outcome=Outcome.INVALID,
           reason="invalid_address", message_has=("two IPv4",))],
    ),
    Scenario(
        "an unparseable address is invalid_address",
        [G4],
        [R(svc("a", addresses="10.0.0.300"), outcome=Outcome.INVALID, reason="invalid_address",
           message_has=("10.0.0.300",))],
    ),
    Scenario(
        "[ours] a SingleStack Service naming two addresses is invalid_address",
        [G46],
        [R(svc("a", addresses="10.0.0.1,fd00::1", policy="SingleStack"),
           outcome=Outcome.INVALID, reason="invalid_address")],
    ),
    Scenario(
        "a specific address held by an unshared Service is address_in_use",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("b", addresses="10.0.0.0"), outcome=Outcome.FAILED, reason="address_in_use",
              holds=(), message_has=("ns/a", "10.0.0.0")),
            D("ns/a", requeue=("ns/b",)),
            R(svc("b", addresses="10.0.0.0"), outcome=Outcome.OK, holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "[ours] editing purelb.io/addresses moves the Service; the old address frees",
        [G4],
        [
            R(svc("a", addresses="10.0.0.1"), holds=("10.0.0.1",)),
            R(svc("a", addresses="10.0.0.2", ingress=("10.0.0.1",), annotations=WRITES),
              holds=("10.0.0.2",), ingress=("10.0.0.2",), released=("10.0.0.1",)),
        ],
    ),
    Scenario(
        "[ours] a move to an unavailable address keeps the old one (resolved before release)",
        [G4],
        [
            R(svc("a", addresses="10.0.0.1"), holds=("10.0.0.1",)),
            R(svc("b", addresses="10.0.0.2"), holds=("10.0.0.2",)),
            R(svc("a", addresses="10.0.0.2", ingress=("10.0.0.1",), annotations=WRITES),
              outcome=Outcome.FAILED, reason="address_in_use", holds=("10.0.0.1",), ingress=None),
        ],
    ),
    Scenario(
        "removing purelb.io/addresses keeps the address (stability)",
        [G4],
        [
            R(svc("a", addresses="10.0.0.3"), holds=("10.0.0.3",)),
            R(svc("a", ingress=("10.0.0.3",), annotations=WRITES), holds=("10.0.0.3",),
              ingress=None, no_events=True),
        ],
    ),
    # ------------------------------------------------------------------ sharing
    Scenario(
        "same key and disjoint ports share one address",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
            R(svc("c"), holds=("10.0.0.1",)),
        ],
    ),
    Scenario(
        "same port with another protocol still shares",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/53",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("UDP/53",)), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "same key and an overlapping port is port_conflict (no walk, no second address)",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/80", "TCP/81")), outcome=Outcome.FAILED,
              reason="port_conflict", holds=(), message_has=("TCP/80", "ns/a")),
        ],
    ),
    Scenario(
        "a port_conflict waiter is requeued when the port's holder leaves",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("c", key="k", ports=("TCP/81",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/80",)), outcome=Outcome.FAILED,
              reason="port_conflict"),
            D("ns/a", released=(), requeue=("ns/b",)),
            R(svc("b", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "a different key gets its own address",
        [G4],
        [
            R(svc("a", key="k1"), holds=("10.0.0.0",)),
            R(svc("b", key="k2"), holds=("10.0.0.1",)),
        ],
    ),
    Scenario(
        "asking for an address shared under another key is sharing_key_conflict",
        [G4],
        [
            R(svc("a", key="k1"), holds=("10.0.0.0",)),
            R(svc("b", key="k2", ports=("TCP/443",), addresses="10.0.0.0"),
              outcome=Outcome.FAILED, reason="sharing_key_conflict", message_has=("'k1'",)),
        ],
    ),
    Scenario(
        "a Service without a key cannot take a shared address",
        [G4],
        [
            R(svc("a", key="k1"), holds=("10.0.0.0",)),
            R(svc("b", ports=("TCP/443",), addresses="10.0.0.0"), outcome=Outcome.FAILED,
              reason="address_in_use"),
        ],
    ),
    Scenario(
        "one address per key and family: a key bound to .0 cannot take .1",
        [G4],
        [
            R(svc("a", key="k"), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/443",), addresses="10.0.0.1"),
              outcome=Outcome.FAILED, reason="sharing_key_conflict",
              message_has=("bound to 10.0.0.0",)),
        ],
    ),
    Scenario(
        "the sole holder of an address may change its key",
        [G4],
        [
            R(svc("a", key="k1"), holds=("10.0.0.0",)),
            R(svc("a", key="k2", ingress=("10.0.0.0",), annotations=WRITES),
              holds=("10.0.0.0",), no_events=True),
            R(svc("b", key="k2", ports=("TCP/443",)), holds=("10.0.0.0",)),
            R(svc("c", key="k1", ports=("TCP/443",)), holds=("10.0.0.1",)),
        ],
    ),
    Scenario(
        "a shared address is freed only when its last holder leaves",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
            D("ns/a", released=()),
            D("ns/b", released=("10.0.0.0",)),
            R(svc("c"), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "a key's binding goes with its last address: the key then binds anew",
        [G4],
        [
            R(svc("x"), holds=("10.0.0.0",)),
            R(svc("a", key="k"), holds=("10.0.0.1",)),
            D("ns/x", released=("10.0.0.0",)),
            D("ns/a", released=("10.0.0.1",)),
            R(svc("b", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "Services in different namespaces share under one key",
        [G4],
        [
            R(svc("a", ns="one", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("a", ns="two", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "externalTrafficPolicy Local is ignored for a shared address, with an event",
        [G4],
        [R(svc("a", key="k", etp="Local"), holds=("10.0.0.0",),
           events=("AddressAssigned", "ConfigurationWarning"))],
    ),
    Scenario(
        "[ours] a port edit that breaks sharing moves the edited Service, not the others",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/80",), ingress=("10.0.0.0",), annotations=WRITES),
              outcome=Outcome.FAILED, reason="port_conflict", holds=(), ingress=(),
              remove_ann=(ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE),
              events=("AddressReleased", "AllocationFailed")),
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
        ],
    ),
    Scenario(
        "[ours] dropping the key on a shared address gives the Service its own address",
        [G4],
        [
            R(svc("a", key="k", ports=("TCP/80",)), holds=("10.0.0.0",)),
            R(svc("b", key="k", ports=("TCP/443",)), holds=("10.0.0.0",)),
            R(svc("b", ports=("TCP/443",), ingress=("10.0.0.0",), annotations=WRITES),
              outcome=Outcome.OK, holds=("10.0.0.1",), ingress=("10.0.0.1",)),
        ],
    ),
    # ------------------------------------------------------------------ config changes
    Scenario(
        "after a config change an address outside every pool stays and is reported",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            C([sg("default", v4=[pool("10.0.0.2/31", "10.0.0.0/24")])], accepted=("default",),
              orphaned=("10.0.0.0",)),
            R(svc("a", ingress=("10.0.0.0",), annotations=WRITES), holds=("10.0.0.0",),
              ingress=None, no_events=True),
            R(svc("b"), holds=("10.0.0.2",)),
        ],
    ),
    Scenario(
        "an orphaned address returns to its group when the pool grows back",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            C([sg("default", v4=[pool("10.0.0.2/31", "10.0.0.0/24")])], orphaned=("10.0.0.0",)),
            C([G4], orphaned=()),
            R(svc("b"), holds=("10.0.0.1",)),
        ],
    ),
    Scenario(
        "a config change requeues Services that failed for lack of addresses",
        [sg("default", v4=[pool("10.0.0.7/32", "10.0.0.0/24")])],
        [
            R(svc("a"), holds=("10.0.0.7",)),
            R(svc("b"), outcome=Outcome.FAILED, reason="exhausted"),
            R(svc("c", group="later"), outcome=Outcome.INVALID, reason="unknown_group"),
            C([G4, sg("later", v4=[pool("10.9.0.0/30", "10.9.0.0/24")])],
              requeue=("ns/b", "ns/c")),
            R(svc("b"), holds=("10.0.0.0",)),
            R(svc("c", group="later"), holds=("10.9.0.0",)),
        ],
    ),
    Scenario(
        "an overlapping later group is rejected; the first keeps working",
        [G4, sg("zzz", v4=[pool("10.0.0.2-10.0.0.9", "10.0.0.0/24")])],
        [
            C([G4, sg("zzz", v4=[pool("10.0.0.2-10.0.0.9", "10.0.0.0/24")])],
              accepted=("default",), rejected=(("zzz", "overlap"),)),
            R(svc("a", group="zzz"), outcome=Outcome.INVALID, reason="invalid_group"),
        ],
    ),
    Scenario(
        "[ours] overlap is symmetric: a range strictly inside another group's is caught",
        [],
        [
            C([sg("a", v4=[pool("10.0.0.0/24", "10.0.0.0/24")]),
               sg("b", v4=[pool("10.0.0.10-10.0.0.20", "10.0.0.0/24")])],
              accepted=("a",), rejected=(("b", "overlap"),)),
        ],
    ),
    Scenario(
        "duplicate group names: the first by namespace wins",
        [],
        [
            C([G4, {**G4, "metadata": {"name": "default", "namespace": "zz"}}],
              accepted=("default",), rejected=(("default", "duplicate_name"),)),
        ],
    ),
    # ------------------------------------------------------------------ startup barrier
    Scenario(
        "imported (branded) addresses are never handed out again",
        [G4],
        [R(svc("b"), holds=("10.0.0.1",))],
        imports=[svc("a", ingress=("10.0.0.0",), annotations=BRANDED)],
        import_conflicts=0,
    ),
    Scenario(
        "unbranded ingress is not imported (PureLB imports only its own)",
        [G4],
        [R(svc("b"), holds=("10.0.0.0",))],
        imports=[svc("a", ingress=("10.0.0.0",))],
    ),
    Scenario(
        "an import clash: the first Service (by key) keeps the address, the other moves",
        [G4],
        [
            R(svc("b", ingress=("10.0.0.0",), annotations=BRANDED), holds=("10.0.0.1",),
              ingress=("10.0.0.1",)),
        ],
        imports=[
            svc("b", ingress=("10.0.0.0",), annotations=BRANDED),
            svc("a", ingress=("10.0.0.0",), annotations=BRANDED),
        ],
        import_conflicts=1,
    ),
    Scenario(
        "imported shared addresses keep their key and ports",
        [G4],
        [
            R(svc("c", key="k", ports=("TCP/80",)), outcome=Outcome.FAILED,
              reason="port_conflict"),
            R(svc("d", key="k", ports=("TCP/22",)), holds=("10.0.0.0",)),
        ],
        imports=[
            svc("a", key="k", ports=("TCP/80",), ingress=("10.0.0.0",), annotations=BRANDED),
            svc("b", key="k", ports=("TCP/443",), ingress=("10.0.0.0",), annotations=BRANDED),
        ],
        import_conflicts=0,
    ),
    Scenario(
        "an imported address outside every pool is kept as an orphan",
        [G4],
        [R(svc("a", ingress=("192.0.2.9",), annotations=BRANDED), holds=("192.0.2.9",),
           ingress=None)],
        imports=[svc("a", ingress=("192.0.2.9",), annotations=BRANDED)],
    ),
    # ------------------------------------------------------------------ writes
    Scenario(
        "an unchanged Service yields nothing to write and no events",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("a", ingress=("10.0.0.0",), annotations=WRITES), ingress=None, set_ann={},
              remove_ann=(), no_events=True),
        ],
    ),
    Scenario(
        "purelb.io/re-evaluate is consumed (removed) without moving anything",
        [G4],
        [
            R(svc("a"), holds=("10.0.0.0",)),
            R(svc("a", ingress=("10.0.0.0",), annotations={**WRITES, ann.RE_EVALUATE: "true"}),
              holds=("10.0.0.0",), remove_ann=(ann.RE_EVALUATE,)),
        ],
    ),
    Scenario(
        "stale ingress on a Service we cannot serve is cleared",
        [G4],
        [R(svc("a", group="nope", ingress=("10.0.0.0",), annotations=WRITES),
           outcome=Outcome.INVALID, ingress=(),
           remove_ann=(ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE))],
    ),
    # ------------------------------------------------------------------ NetBox groups
    Scenario(
        "a NetBox group asks the daemon for an address, then hands out the offer",
        [netbox_sg("default", v4prefix="10.99.0.0/24")],
        [
            R(svc("a"), outcome=Outcome.PENDING_EXTERNAL, holds=()),
            Step("offer", ("default", ["10.99.0.7"]), requeue=("ns/a",)),
            R(svc("a"), outcome=Outcome.OK, holds=("10.99.0.7",),
              set_ann={**WRITES, ann.POOL_TYPE: "netbox"}),
            D("ns/a", released=("10.99.0.7",)),
        ],
    ),
]


def _run_step(alloc: Allocator, step: Step) -> None:
    before = dict(alloc.holdings(step.arg.key)) if step.op == "reconcile" else {}
    decision: Decision | None = None
    if step.op == "reconcile":
        decision = alloc.reconcile(step.arg)
        key = step.arg.key
    elif step.op == "release":
        decision = alloc.release(step.arg)
        key = step.arg
    elif step.op == "offer":
        group, addresses = step.arg
        requeue = alloc.offer_external(group, [ipaddress.ip_address(a) for a in addresses])
        if step.requeue is not None:
            assert requeue == step.requeue
        return
    else:
        result = alloc.set_config(step.arg)
        if step.accepted is not None:
            assert result.accepted == step.accepted
        if step.rejected is not None:
            assert [(r.name, r.error.reason) for r in result.rejected] == list(step.rejected)
        if step.orphaned is not None:
            assert tuple(str(a) for a in result.orphaned) == step.orphaned
        if step.requeue is not None:
            assert result.requeue == step.requeue
        return
    assert decision is not None
    after = alloc.holdings(key)
    if step.outcome is not None:
        assert decision.outcome is step.outcome, decision
    if step.holds is not None:
        assert tuple(sorted(str(a) for a in after.values())) == step.holds, decision
    if step.reason is not None:
        assert decision.failure is not None and decision.failure.reason == step.reason, decision
    if decision.failure is not None:
        # a failed reconcile never adds an address (RequireDualStack never half-allocated)
        assert set(after.items()) <= set(before.items()), (before, after)
        assert key in decision.failure.message
    if step.ingress is not _UNSET:
        assert decision.ingress == step.ingress, decision
    if step.set_ann is not None:
        assert dict(decision.annotations_set) == step.set_ann, decision
    if step.remove_ann is not None:
        assert decision.annotations_remove == step.remove_ann, decision
    reasons = [e.reason for e in decision.events]
    for wanted in step.events:
        assert wanted in reasons, (wanted, decision.events)
    if step.no_events:
        assert not decision.events, decision.events
    if step.released is not None:
        assert tuple(str(r.address) for r in decision.released) == step.released, decision
    if step.requeue is not None:
        assert decision.requeue == step.requeue, decision
    for text in step.message_has:
        assert decision.failure is not None and text in decision.failure.message, (
            text,
            decision.failure,
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.desc for s in SCENARIOS])
def test_ipam_scenario(scenario: Scenario) -> None:
    alloc = Allocator(scenario.settings)
    alloc.set_config(scenario.groups)
    result = alloc.import_services(scenario.imports)
    if scenario.import_conflicts is not None:
        assert len(result.conflicts) == scenario.import_conflicts, result
    check_invariants(alloc)
    for step in scenario.steps:
        _run_step(alloc, step)
        check_invariants(alloc)


def test_scenario_descriptions_are_unique() -> None:
    descs = [s.desc for s in SCENARIOS]
    assert len(descs) == len(set(descs))
