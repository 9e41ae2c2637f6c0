"""Property: whatever ServiceGroups arrive, accepted pools never overlap (symmetric test)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from purelb.model import Reason, validate_service_groups
from tests.unit._ipam_helpers import pool, sg

BASE = int(ipaddress.IPv4Address("10.0.0.0"))

ranges = st.tuples(st.integers(0, 60), st.integers(0, 20)).map(
    lambda t: (BASE + t[0], BASE + t[0] + t[1])
)


def _text(first: int, last: int) -> str:
    return f"{ipaddress.IPv4Address(first)}-{ipaddress.IPv4Address(last)}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ranges, min_size=1, max_size=3), min_size=1, max_size=6))
def test_accepted_groups_never_overlap_and_every_rejection_names_a_real_overlap(groups) -> None:
    objs = [
        sg(f"g{i}", v4=[pool(_text(a, b), "10.0.0.0/24") for a, b in spans])
        for i, spans in enumerate(groups)
    ]
    result = validate_service_groups(objs)
    accepted = [(g.name, p.range) for g in result.accepted for p in g.pools]
    for i, (name_a, a) in enumerate(accepted):
        for name_b, b in accepted[i + 1:]:
            assert not a.overlaps(b), (name_a, a, name_b, b)
    accepted_names = {g.name for g in result.accepted}
    for rejected in result.rejected:
        assert rejected.error.reason is Reason.OVERLAP
        spans = groups[int(rejected.name[1:])]
        self_overlap = any(_overlap(x, y) for j, x in enumerate(spans) for y in spans[j + 1:])
        # groups are checked in name order: only an earlier accepted group can reject this one
        earlier = [
            (int(p.range.first), int(p.range.last))
            for g in result.accepted
            if g.name < rejected.name
            for p in g.pools
        ]
        clash = any(_overlap(x, y) for x in spans for y in earlier)
        assert self_overlap or clash, rejected
    assert len(accepted_names) + len(result.rejected) == len(groups)


def _overlap(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] <= y[1] and y[0] <= x[1]
