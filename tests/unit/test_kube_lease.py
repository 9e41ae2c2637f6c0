"""The pure lease rule, and Lease parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from purelb.kube import LeaseAction, LeaseRecord, decide_lease
from purelb.kube._lease import lease_record, parse_time

T0 = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("desc", "record", "now", "action"),
    [
        ("no lease: create", None, T0, LeaseAction.CREATE),
        ("our lease: renew even if expired", LeaseRecord("me", 10, T0, 0),
         T0 + timedelta(seconds=60), LeaseAction.RENEW),
        ("other's valid lease: wait", LeaseRecord("other", 10, T0, 0),
         T0 + timedelta(seconds=9.9), LeaseAction.WAIT),
        ("other's lease expires exactly at renew+duration", LeaseRecord("other", 10, T0, 0),
         T0 + timedelta(seconds=10), LeaseAction.TAKE_OVER),
        ("released lease (no holder): take over", LeaseRecord("", 10, T0, 3), T0,
         LeaseAction.TAKE_OVER),
        ("lease without renewTime: take over", LeaseRecord("other", 10, None, 0), T0,
         LeaseAction.TAKE_OVER),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_decide(desc, record, now, action):
    assert decide_lease(record, "me", now) is action


def test_lease_record_parses_micro_time_and_tolerates_garbage():
    rec = lease_record({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                                 "renewTime": "2026-11-26T08:00:00.123456Z",
                                 "leaseTransitions": 2}})
    assert rec.renew_time == T0.replace(microsecond=123456)
    assert rec.duration_s == 15 and rec.transitions == 2
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert lease_record({}).holder == ""
