"""Malformed ServiceGroups, annotations and Services: each gives its precise error.

Every case names the field path and the stable reason it must produce. The same inputs go
through the allocator too, which must report them (rejected group, failed decision) and
never let an exception escape.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import Outcome
from purelb.model import (
    InvalidField,
    Reason,
    parse_addresses,
    parse_service,
    parse_service_group,
    validate_service_groups,
)
from tests.unit._ipam_helpers import netbox_sg, pool, sg, svc, svc_json

GOOD = sg("g", v4=[pool("10.0.0.0/30", "10.0.0.0/24")], v6=[pool("fd00::/126", "fd00::/64")])


def local(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "g"}, "spec": {"local": spec}}


def v4(p: str, subnet: str = "10.0.0.0/24", aggregation: Any = None) -> dict[str, Any]:
    return local(v4pools=[pool(p, subnet, aggregation)])


def v6(p: str, subnet: str = "fd00::/64", aggregation: Any = None) -> dict[str, Any]:
    return local(v6pools=[pool(p, subnet, aggregation)])


P4 = "spec.local.v4pools[0]"
P6 = "spec.local.v6pools[0]"

# (description, object, expected path, expected reason)
BAD_GROUPS: list[tuple[str, Any, str, Reason]] = [
    ("not an object at all", ["a list"], "", Reason.WRONG_TYPE),
    ("no metadata", {"spec": {"local": {}}}, "metadata", Reason.REQUIRED),
    ("no name", {"metadata": {}, "spec": {}}, "metadata.name", Reason.REQUIRED),
    ("empty name", {"metadata": {"name": " "}}, "metadata.name", Reason.REQUIRED),
    ("name with capitals", {"metadata": {"name": "Bad"}}, "metadata.name", Reason.INVALID_NAME),
    ("name with underscore", {"metadata": {"name": "a_b"}}, "metadata.name", Reason.INVALID_NAME),
    ("name too long", {"metadata": {"name": "a" * 254}}, "metadata.name", Reason.INVALID_NAME),
    ("name not a string", {"metadata": {"name": 7}}, "metadata.name", Reason.WRONG_TYPE),
    ("generation not an int", {"metadata": {"name": "g", "generation": "1"}, "spec": {}},
     "metadata.generation", Reason.WRONG_TYPE),
    ("wrong apiVersion", {**GOOD, "apiVersion": "purelb.io/v2"}, "apiVersion", Reason.WRONG_TYPE),
    ("wrong kind", {**GOOD, "kind": "LBNodeAgent"}, "kind", Reason.WRONG_TYPE),
    ("no spec", {"metadata": {"name": "g"}}, "spec", Reason.REQUIRED),
    ("empty spec", {"metadata": {"name": "g"}, "spec": {}}, "spec", Reason.REQUIRED),
    ("both local and netbox",
     {"metadata": {"name": "g"}, "spec": {"local": {}, "netbox": {}}}, "spec",
     Reason.AMBIGUOUS_SPEC),
    ("local is a string", {"metadata": {"name": "g"}, "spec": {"local": "x"}}, "spec.local",
     Reason.WRONG_TYPE),
    ("local without pools", local(), "spec.local", Reason.REQUIRED),
    ("v4pools is a mapping", local(v4pools={"pool": "x"}), "spec.local.v4pools",
     Reason.WRONG_TYPE),
    ("v4pools entry is a string", local(v4pools=["10.0.0.0/24"]), P4, Reason.WRONG_TYPE),
    ("pool missing", local(v4pools=[{"subnet": "10.0.0.0/24"}]), f"{P4}.pool", Reason.REQUIRED),
    ("subnet missing", local(v4pools=[{"pool": "10.0.0.0/30"}]), f"{P4}.subnet",
     Reason.REQUIRED),
    ("pool is a number", local(v4pools=[{"pool": 10, "subnet": "10.0.0.0/24"}]), f"{P4}.pool",
     Reason.WRONG_TYPE),
    ("bare address as pool", v4("10.0.0.1"), f"{P4}.pool", Reason.INVALID_RANGE),
    ("comma list as pool (issue #2)", v4("10.0.0.1,10.0.0.2"), f"{P4}.pool",
     Reason.INVALID_RANGE),
    ("garbage CIDR", v4("10.0.0.0/33"), f"{P4}.pool", Reason.INVALID_CIDR),
    ("garbage range end", v4("10.0.0.1-10.0.0.x"), f"{P4}.pool", Reason.INVALID_RANGE),
    ("reversed range", v4("10.0.0.9-10.0.0.1"), f"{P4}.pool", Reason.INVALID_RANGE),
    ("range mixing families", v4("10.0.0.1-fd00::1"), f"{P4}.pool", Reason.INVALID_RANGE),
    ("three-part range", v4("10.0.0.1-10.0.0.2-10.0.0.3"), f"{P4}.pool", Reason.INVALID_RANGE),
    ("IPv6 pool in v4pools", v4("fd00::/126", "fd00::/64"), f"{P4}.pool",
     Reason.FAMILY_MISMATCH),
    ("IPv4 pool in v6pools", v6("10.0.0.0/30", "10.0.0.0/24"), f"{P6}.pool",
     Reason.FAMILY_MISMATCH),
    ("subnet of the other family", v4("10.0.0.0/30", "fd00::/64"), f"{P4}.subnet",
     Reason.FAMILY_MISMATCH),
    ("subnet is not a CIDR", v4("10.0.0.0/30", "10.0.0.0"), f"{P4}.subnet", Reason.INVALID_CIDR),
    ("pool outside subnet", v4("10.0.1.0/30"), f"{P4}.pool", Reason.POOL_OUTSIDE_SUBNET),
    ("pool straddling the subnet edge", v4("10.0.0.250-10.0.1.5"), f"{P4}.pool",
     Reason.POOL_OUTSIDE_SUBNET),
    ("IPv6 pool outside subnet", v6("fd01::/126"), f"{P6}.pool", Reason.POOL_OUTSIDE_SUBNET),
    ("aggregation without slash", v4("10.0.0.0/30", aggregation="24"), f"{P4}.aggregation",
     Reason.INVALID_AGGREGATION),
    ("aggregation word", v4("10.0.0.0/30", aggregation="auto"), f"{P4}.aggregation",
     Reason.INVALID_AGGREGATION),
    ("aggregation /33 for IPv4", v4("10.0.0.0/30", aggregation="/33"), f"{P4}.aggregation",
     Reason.INVALID_AGGREGATION),
    ("aggregation /129 for IPv6", v6("fd00::/126", aggregation="/129"), f"{P6}.aggregation",
     Reason.INVALID_AGGREGATION),
    ("aggregation shorter than the subnet", v4("10.0.0.0/30", aggregation="/16"),
     f"{P4}.aggregation", Reason.AGGREGATION_TOO_SHORT),
    ("aggregation a number", v4("10.0.0.0/30", aggregation=24), f"{P4}.aggregation",
     Reason.WRONG_TYPE),
    ("aggregation negative", v4("10.0.0.0/30", aggregation="/-1"), f"{P4}.aggregation",
     Reason.INVALID_AGGREGATION),
    ("pools of one group overlap",
     local(v4pools=[pool("10.0.0.0/24", "10.0.0.0/24"), pool("10.0.0.5/32", "10.0.0.0/24")]),
     "spec.local.v4pools[1].pool", Reason.OVERLAP),
    ("v4pool overlaps v4pools",
     local(v4pools=[pool("10.0.0.4/30", "10.0.0.0/24")], v4pool=pool("10.0.0.6/32",
                                                                     "10.0.0.0/24")),
     "spec.local.v4pool.pool", Reason.OVERLAP),
    ("legacy pool conflicts with v4pool",
     local(pool="10.0.0.0/30", subnet="10.0.0.0/24", v4pool=pool("10.0.0.8/30", "10.0.0.0/24")),
     "spec.local.pool", Reason.LEGACY_CONFLICT),
    ("legacy pool without subnet", local(pool="10.0.0.0/30"), "spec.local.subnet",
     Reason.REQUIRED),
    ("balancePools not a bool",
     local(v4pools=[pool("10.0.0.0/30", "10.0.0.0/24")], balancePools="yes"),
     "spec.local.balancePools", Reason.WRONG_TYPE),
    ("avoidBuggyIPs not a bool",
     local(v4pools=[pool("10.0.0.0/30", "10.0.0.0/24")], avoidBuggyIPs=1),
     "spec.local.avoidBuggyIPs", Reason.WRONG_TYPE),
    ("netbox without url", {"metadata": {"name": "g"}, "spec": {"netbox": {"tenant": "t"}}},
     "spec.netbox.url", Reason.REQUIRED),
    ("netbox url without scheme", netbox_sg("g", url="netbox.example.test"), "spec.netbox.url",
     Reason.INVALID_URL),
    ("netbox url ftp", netbox_sg("g", url="ftp://netbox.example.test"), "spec.netbox.url",
     Reason.INVALID_URL),
    ("netbox without tenant", netbox_sg("g", tenant=""), "spec.netbox.tenant", Reason.REQUIRED),
    ("netbox v4prefix is IPv6", netbox_sg("g", v4prefix="fd00::/64"), "spec.netbox.v4prefix",
     Reason.FAMILY_MISMATCH),
    ("netbox v6prefix garbage", netbox_sg("g", v6prefix="nope"), "spec.netbox.v6prefix",
     Reason.INVALID_CIDR),
    ("netbox aggregation shorter than prefix",
     netbox_sg("g", v4prefix="10.99.0.0/24", aggregation="/8"), "spec.netbox.aggregation",
     Reason.AGGREGATION_TOO_SHORT),
    ("netbox token ref without key", netbox_sg("g", tokenSecretRef={"name": "nb"}),
     "spec.netbox.tokenSecretRef.key", Reason.REQUIRED),
    ("netbox token ref bad name", netbox_sg("g", tokenSecretRef={"name": "NB!", "key": "t"}),
     "spec.netbox.tokenSecretRef.name", Reason.INVALID_NAME),
    ("netbox token ref a string", netbox_sg("g", tokenSecretRef="nb/token"),
     "spec.netbox.tokenSecretRef", Reason.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [c[1:] for c in BAD_GROUPS],
    ids=[c[0] for c in BAD_GROUPS],
)
def test_bad_service_group_names_path_and_reason(obj: Any, path: str, reason: Reason) -> None:
    with pytest.raises(InvalidField) as info:
        parse_service_group(obj)
    assert (info.value.path, info.value.reason) == (path, reason), info.value
    message = str(info.value)
    assert message.startswith(f"{path}:") and len(message) > len(path) + 10


@pytest.mark.parametrize("obj", [c[1] for c in BAD_GROUPS], ids=[c[0] for c in BAD_GROUPS])
def test_bad_service_group_is_rejected_by_the_allocator_without_raising(obj: Any) -> None:
    alloc = Allocator()
    pristine = copy.deepcopy(obj)
    good = sg("default", v4=[pool("10.9.0.0/30", "10.9.0.0/24")])
    result = alloc.set_config([good, obj] if isinstance(obj, dict) else [good])
    assert obj == pristine  # inputs are not mutated
    assert result.accepted == ("default",)
    if isinstance(obj, dict):
        assert len(result.rejected) == 1


def test_at_least_forty_bad_groups_are_tabled() -> None:
    assert len(BAD_GROUPS) >= 40


def test_good_group_parses() -> None:
    group = parse_service_group(GOOD)
    assert [p.path for p in group.pools] == ["spec.local.v4pools[0]", "spec.local.v6pools[0]"]
    assert group.families == frozenset({4, 6})


def test_cross_group_errors_name_the_other_group() -> None:
    result = validate_service_groups(
        [sg("a", v4=[pool("10.0.0.0/24", "10.0.0.0/24")]),
         sg("b", v4=[pool("10.0.0.128/25", "10.0.0.0/24")])]
    )
    (rejected,) = result.rejected
    assert rejected.name == "b"
    assert rejected.error.path == "spec.local.v4pools[0].pool"
    assert "'a'" in str(rejected.error) and "10.0.0.0/24" in str(rejected.error)


# ----------------------------------------------------------------------------- annotations

BAD_ADDRESSES: list[tuple[str, str, Reason]] = [
    ("empty item", "10.0.0.1,", Reason.INVALID_ADDRESS),
    ("only a comma", ",", Reason.INVALID_ADDRESS),
    ("not an address", "example.com", Reason.INVALID_ADDRESS),
    ("octet out of range", "10.0.0.256", Reason.INVALID_ADDRESS),
    ("a CIDR", "10.0.0.0/24", Reason.INVALID_ADDRESS),
    ("a range", "10.0.0.1-10.0.0.2", Reason.INVALID_ADDRESS),
    ("two IPv4", "10.0.0.1,10.0.0.2", Reason.TOO_MANY),
    ("two IPv6", "fd00::1, fd00::2", Reason.TOO_MANY),
    ("three addresses", "10.0.0.1,fd00::1,10.0.0.3", Reason.TOO_MANY),
    ("IPv6 with zone", "fe80::1%eth0", Reason.INVALID_ADDRESS),
    ("semicolon separated", "10.0.0.1;fd00::1", Reason.INVALID_ADDRESS),
]


@pytest.mark.parametrize(
    ("text", "reason"), [c[1:] for c in BAD_ADDRESSES], ids=[c[0] for c in BAD_ADDRESSES]
)
def test_bad_addresses_annotation_names_path_and_reason(text: str, reason: Reason) -> None:
    with pytest.raises(InvalidField) as info:
        parse_addresses(text)
    assert info.value.path == "metadata.annotations[purelb.io/addresses]"
    assert info.value.reason == reason
    assert info.value.value == text


@pytest.mark.parametrize(
    "text", [c[1] for c in BAD_ADDRESSES], ids=[c[0] for c in BAD_ADDRESSES]
)
def test_bad_addresses_annotation_fails_the_reconcile_not_the_allocator(text: str) -> None:
    alloc = Allocator()
    alloc.set_config([sg("default", v4=[pool("10.0.0.0/30", "10.0.0.0/24")])])
    alloc.import_services([])
    decision = alloc.reconcile(svc("a", addresses=text, policy="PreferDualStack"))
    assert decision.outcome is Outcome.INVALID
    assert decision.failure is not None and decision.failure.reason == "invalid_address"
    assert "ns/a" in decision.failure.message and text in decision.failure.message


def test_addresses_annotation_parses_one_per_family() -> None:
    parsed = parse_addresses(" 10.0.0.1 , fd00::1 ")
    assert {f: str(a) for f, a in parsed.items()} == {4: "10.0.0.1", 6: "fd00::1"}


# ----------------------------------------------------------------------------- Services

BAD_SERVICES: list[tuple[str, dict[str, Any], str, Reason]] = [
    ("no metadata", {"spec": {}}, "metadata", Reason.REQUIRED),
    ("no name", {"metadata": {"namespace": "ns"}}, "metadata.name", Reason.REQUIRED),
    ("annotations not a map", {"metadata": {"name": "a", "annotations": ["x"]}},
     "metadata.annotations", Reason.WRONG_TYPE),
    ("annotation value not a string", {"metadata": {"name": "a", "annotations": {"k": 1}}},
     "metadata.annotations[k]", Reason.WRONG_TYPE),
    ("ports not a list", {**svc_json("a"), "spec": {"ports": {"port": 80}}}, "spec.ports",
     Reason.WRONG_TYPE),
    ("port out of range", {**svc_json("a"), "spec": {"ports": [{"port": 70000}]}},
     "spec.ports[0].port", Reason.INVALID_PORT),
    ("port not a number", {**svc_json("a"), "spec": {"ports": [{"port": "80"}]}},
     "spec.ports[0].port", Reason.INVALID_PORT),
    ("unknown protocol", {**svc_json("a"), "spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}},
     "spec.ports[0].protocol", Reason.INVALID_PORT),
    ("unknown family", {**svc_json("a"), "spec": {"ipFamilies": ["IPv5"]}},
     "spec.ipFamilies[0]", Reason.WRONG_TYPE),
    ("unknown family policy", {**svc_json("a"), "spec": {"ipFamilyPolicy": "Maybe"}},
     "spec.ipFamilyPolicy", Reason.WRONG_TYPE),
    ("ingress not a list", {**svc_json("a"), "status": {"loadBalancer": {"ingress": "x"}}},
     "status.loadBalancer.ingress", Reason.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("obj", "path", "reason"), [c[1:] for c in BAD_SERVICES], ids=[c[0] for c in BAD_SERVICES]
)
def test_bad_service_names_path_and_reason(obj: dict[str, Any], path: str, reason: Reason) -> None:
    with pytest.raises(InvalidField) as info:
        parse_service(obj)
    assert (info.value.path, info.value.reason) == (path, reason), info.value
