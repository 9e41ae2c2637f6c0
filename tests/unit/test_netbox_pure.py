"""Pure parts of the NetBox support: owner names, records, sync planning, error mapping."""

from __future__ import annotations

import ipaddress
import random

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from purelb.ipam.netbox import (
    NetboxAuthError,
    NetboxConflict,
    NetboxExhausted,
    NetboxNotFound,
    NetboxRequestError,
    NetboxUnavailable,
    RetryPolicy,
    _endpoint,
    _error_for,
    auth_header,
)
from purelb.ipam.netbox_records import PURELB_TAG, IPRecord, Owner
from purelb.ipam.netbox_sync import plan_sync
from purelb.model import ServiceKey

A = ipaddress.ip_address


def rec(i: int, address: str, owner: str | None, tags=(PURELB_TAG,)) -> IPRecord:
    return IPRecord(
        id=i,
        interface=ipaddress.ip_interface(address),
        status="active",
        description=Owner(owner).description() if owner else "",
        tags=frozenset(tags if owner else ()),
    )


def test_owner_round_trip_and_foreign_descriptions() -> None:
    o = Owner("ns/web", "5f1c")
    assert o.description() == "purelb:ns/web uid=5f1c"
    assert Owner.parse(o.description()) == o
    assert Owner.parse("purelb:ns/web") == Owner("ns/web")
    assert Owner.parse("vm-42 eth0") is None
    assert Owner.parse("") is None
    assert len(Owner("n/" + "x" * 300).description()) <= 200


def test_record_owner_needs_the_tag() -> None:
    data = {
        "id": 7,
        "address": "10.9.0.1/24",
        "status": {"value": "active"},
        "description": "purelb:ns/a",
        "tenant": {"slug": "t1"},
        "tags": [],
        "vrf": None,
    }
    assert IPRecord.from_json(data).owner is None  # a look-alike description is not ours
    data["tags"] = [{"slug": PURELB_TAG}]
    r = IPRecord.from_json(data, etag='W/"x"')
    assert r.owner == Owner("ns/a") and r.tenant == "t1" and r.address == A("10.9.0.1")
    assert r.etag == 'W/"x"'


def test_plan_sync_cases() -> None:
    holders = {
        A("10.0.0.1"): [ServiceKey("ns/a")],
        A("10.0.0.2"): [ServiceKey("ns/b")],
        A("10.0.0.3"): [ServiceKey("ns/c"), ServiceKey("ns/d")],
    }
    records = [
        rec(1, "10.0.0.1/24", "ns/a"),  # agrees
        rec(3, "10.0.0.3/24", "ns/gone"),  # holder changed: relabel
        rec(4, "10.0.0.4/24", "ns/ghost"),  # orphan: release
        rec(5, "10.0.0.5/24", None),  # not ours: untouched
        rec(6, "10.0.0.6/24", "ns/offered"),  # an unused offer: kept
    ]
    plan = plan_sync(holders, records, keep=[A("10.0.0.6")])
    assert [r.id for r in plan.release] == [4]
    assert plan.reclaim == ((A("10.0.0.2"), "ns/b"),)
    assert [(r.id, k) for r, k in plan.relabel] == [(3, "ns/c")]


@given(
    held=st.sets(st.integers(1, 40), max_size=20),
    recorded=st.sets(st.integers(1, 40), max_size=20),
)
def test_plan_sync_makes_netbox_equal_to_the_services(held: set[int], recorded: set[int]) -> None:
    holders = {A(f"10.0.0.{i}"): [ServiceKey(f"ns/s{i}")] for i in held}
    records = [rec(i, f"10.0.0.{i}/24", f"ns/s{i}") for i in recorded]
    plan = plan_sync(holders, records)
    after = (recorded - {int(r.address) & 0xFF for r in plan.release}) | {
        int(ip) & 0xFF for ip, _ in plan.reclaim
    }
    assert after == held  # never releases a held address, never leaves an orphan
    assert not plan.relabel


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"),
    [
        (403, {"detail": "Invalid v1 token"}, {}, NetboxAuthError),
        (401, {"detail": "x"}, {}, NetboxAuthError),
        (302, "", {"location": "/login/?next=/api/"}, NetboxAuthError),
        (404, {"detail": "No Prefix matches the given query."}, {}, NetboxNotFound),
        (409, {"detail": "Insufficient resources"}, {}, NetboxExhausted),
        (412, {"detail": "Precondition failed."}, {}, NetboxConflict),
        (400, {"address": ["Duplicate IP address found in global table"]}, {}, NetboxConflict),
        (400, {"tenant": ["Related object not found"]}, {}, NetboxRequestError),
        (500, "boom", {}, NetboxUnavailable),
        (503, "", {}, NetboxUnavailable),
        (429, "", {}, NetboxUnavailable),
    ],
)
def test_error_mapping(status, body, headers, kind) -> None:
    kw = {"json": body} if isinstance(body, dict) else {"text": body}
    resp = httpx.Response(status, headers=headers, **kw)
    err = _error_for("GET", "http://nb/api/x/", resp)
    assert type(err) is kind
    assert err.status == status and "http://nb/api/x/" in str(err)


def test_exhausted_is_an_allocation_error_with_reason() -> None:
    from purelb.errors import AllocationError

    err = _error_for("POST", "u", httpx.Response(409, json={"detail": "x"}))
    assert isinstance(err, AllocationError) and err.reason == "exhausted"


def test_auth_header_by_token_form() -> None:
    assert auth_header("a" * 40) == "Token " + "a" * 40
    assert auth_header(" nbt_abc.def\n") == "Bearer nbt_abc.def"
    assert auth_header("nbt_nodot") == "Token nbt_nodot"


def test_endpoint_label_hides_ids_and_query() -> None:
    assert (
        _endpoint("/api/ipam/prefixes/12/available-ips/")
        == "/api/ipam/prefixes/{id}/available-ips/"
    )
    assert _endpoint("/api/ipam/ip-addresses/?tag=purelb") == "/api/ipam/ip-addresses/"


def test_backoff_grows_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=9, base_delay=0.2, max_delay=5.0, rng=random.Random(0))
    delays = [policy.delay(n) for n in range(1, 10)]
    assert all(0.1 <= d <= 7.5 for d in delays)
    assert delays[-1] >= 2.5  # capped at 5 s +-50 %
