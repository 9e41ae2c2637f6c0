"""Pools: ServiceGroup ranges mapped onto address spaces."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from purelb.errors import AllocationError, ConfigError
from purelb.ipam.pool import (
    AddressInUse,
    NoFamilyRange,
    NotAllocated,
    NotInPool,
    Pool,
    PoolError,
    PoolExhausted,
    parse_range,
    range_within,
    require_within,
)

ip = ipaddress.ip_address


# -- parsing ---------------------------------------------------------------------------------


def test_parse_cidr_includes_network_and_broadcast():
    r = parse_range("192.168.1.0/29")
    assert (r.first, r.last, r.family, r.size) == (ip("192.168.1.0"), ip("192.168.1.7"), 4, 8)


def test_parse_cidr_with_host_bits_means_its_network():
    assert parse_range("10.0.0.5/24").first == ip("10.0.0.0")


def test_parse_from_to_range_with_spaces():
    r = parse_range(" 10.0.0.5 - 10.0.0.9 ")
    assert (r.first, r.last, r.size) == (ip("10.0.0.5"), ip("10.0.0.9"), 5)
    assert r.text == "10.0.0.5-10.0.0.9"


def test_parse_ipv6_slash0_has_exact_size():
    assert parse_range("::/0").size == 2**128
    assert parse_range("fd00::/64").size == 2**64


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.9-10.0.0.5", "reversed"),
        ("10.0.0.1-fd00::1", "mixes IPv4 and IPv6"),
        ("10.0.0.300/24", "not a valid CIDR"),
        ("10.0.0.1-bogus", "'bogus' is not an IP address"),
        ("10.0.0.1", "neither a CIDR"),
        ("", "neither a CIDR"),
        ("fe80::1%eth0-fe80::9", "not an IP address"),
    ],
)
def test_parse_bad_range_names_value_and_reason(text, reason):
    with pytest.raises(PoolError) as info:
        parse_range(text)
    assert isinstance(info.value, ConfigError)
    assert reason in str(info.value)
    assert repr(text) in str(info.value)


def test_range_within_subnet():
    assert range_within("192.168.1.10-192.168.1.20", "192.168.1.0/24")
    assert range_within("192.168.1.0/24", "192.168.0.0/16")
    assert not range_within("192.168.1.250-192.168.2.5", "192.168.1.0/24")
    assert not range_within("fd00::/64", "192.168.0.0/16")
    with pytest.raises(PoolError, match="not a valid CIDR"):
        range_within("10.0.0.0/24", "10.0.0.0/99")


def test_require_within_names_range_and_subnet():
    assert require_within("192.168.1.10-192.168.1.20", "192.168.1.0/24").size == 11
    with pytest.raises(PoolError) as info:
        require_within("192.168.1.250-192.168.2.5", "192.168.1.0/24")
    assert str(info.value) == (
        "range '192.168.1.250-192.168.2.5' is outside its subnet '192.168.1.0/24'"
    )


# -- construction ----------------------------------------------------------------------------


def test_pool_sizes_and_families():
    pool = Pool(["192.168.1.0/24", "10.0.0.5-10.0.0.9", "fd00::/64"], name="default")
    assert pool.families == frozenset({4, 6})
    assert [r.family for r in pool.ranges] == [4, 4, 6]
    assert pool.size(4) == 261 and pool.size(6) == 2**64
    assert pool.size() == 261 + 2**64
    assert pool.in_use() == 0 and pool.available(6) == 2**64


@pytest.mark.parametrize(
    "ranges",
    [
        ["10.0.0.0/24", "10.0.0.200-10.0.1.5"],
        ["10.0.0.10-10.0.0.20", "10.0.0.0/24"],  # second one contains the first
        ["10.0.0.0/24", "10.0.0.0/24"],
        ["fd00::/64", "fd00::5-fd00::6"],
    ],
)
def test_pool_overlapping_ranges_are_refused_naming_both(ranges):
    with pytest.raises(PoolError) as info:
        Pool(ranges, name="p")
    message = str(info.value)
    assert all(repr(parse_range(r).text) in message for r in ranges), message
    assert "'p'" in message


def test_pool_without_ranges_is_refused():
    with pytest.raises(PoolError, match="no range"):
        Pool([], name="empty")


def test_pool_adjacent_ranges_are_fine():
    pool = Pool(["10.0.0.0/31", "10.0.0.2-10.0.0.3"])
    assert pool.size() == 4


# -- allocation ------------------------------------------------------------------------------


def test_allocate_lowest_walks_ranges_in_written_order():
    pool = Pool(["10.0.0.8/31", "10.0.0.0/31"])
    got = [pool.allocate_lowest(4) for _ in range(4)]
    assert got == [ip(a) for a in ("10.0.0.8", "10.0.0.9", "10.0.0.0", "10.0.0.1")]
    with pytest.raises(PoolExhausted) as info:
        pool.allocate_lowest(4)
    assert info.value.reason == "exhausted"
    assert "4 of 4" in str(info.value)
    assert pool.in_use(4) == 4


def test_allocate_lowest_family_missing_raises_no_family_range():
    pool = Pool(["10.0.0.0/30"], name="v4only")
    with pytest.raises(NoFamilyRange, match="no IPv6 range"):
        pool.allocate_lowest(6)
    with pytest.raises(ValueError):
        pool.allocate_lowest(5)


def test_allocate_lowest_ipv6_slash64_is_immediate():
    pool = Pool(["fd00::/64"])
    assert [str(pool.allocate_lowest(6)) for _ in range(3)] == ["fd00::", "fd00::1", "fd00::2"]
    assert pool.allocate(ip("fd00::ffff:ffff:ffff:ffff")) == ip("fd00::ffff:ffff:ffff:ffff")
    assert pool.in_use(6) == 4


def test_avoid_buggy_skips_dot0_and_dot255():
    pool = Pool(["10.0.0.254-10.0.2.1"])
    got = [pool.allocate_lowest(4, avoid_buggy=True) for _ in range(3)]
    assert got == [ip("10.0.0.254"), ip("10.0.1.1"), ip("10.0.1.2")]
    # Without the flag the skipped ones are still handed out.
    assert pool.allocate_lowest(4) == ip("10.0.0.255")


def test_avoid_buggy_exhausts_when_only_buggy_addresses_remain():
    pool = Pool(["10.0.0.255-10.0.1.0"])
    with pytest.raises(PoolExhausted, match="avoiding"):
        pool.allocate_lowest(4, avoid_buggy=True)
    assert pool.in_use() == 0


def test_avoid_buggy_ignores_ipv6():
    pool = Pool(["fd00::ff-fd00::100"])
    assert pool.allocate_lowest(6, avoid_buggy=True) == ip("fd00::ff")


def test_balance_picks_the_range_with_fewest_in_use():
    pool = Pool(["10.0.0.0/29", "10.0.1.0/29", "10.0.2.0/29"])
    pool.allocate("10.0.0.3")
    pool.allocate("10.0.2.3")
    assert pool.allocate_lowest(4, balance=True) == ip("10.0.1.0")
    assert pool.allocate_lowest(4, balance=True) == ip("10.0.0.0")  # tie: written order
    assert [pool.range_in_use(i) for i in range(3)] == [2, 1, 1]


def test_balance_skips_full_ranges():
    pool = Pool(["10.0.0.0/32", "10.0.1.0/30"])
    pool.allocate("10.0.1.0")
    pool.allocate("10.0.1.1")
    assert pool.allocate_lowest(4, balance=True) == ip("10.0.0.0")
    assert pool.allocate_lowest(4, balance=True) == ip("10.0.1.2")


def test_allocate_specific_and_conflicts():
    pool = Pool(["192.168.1.0/24", "fd00::/120"], name="p")
    assert pool.allocate("192.168.1.10") == ip("192.168.1.10")
    assert pool.is_allocated(ip("192.168.1.10"))
    with pytest.raises(AddressInUse) as info:
        pool.allocate("192.168.1.10")
    assert info.value.reason == "address_in_use" and "192.168.1.10" in str(info.value)
    with pytest.raises(NotInPool) as info2:
        pool.allocate("192.168.2.1")
    assert info2.value.reason == "not_in_pool" and "'p'" in str(info2.value)
    with pytest.raises(NotInPool):
        pool.allocate("fd00::1:0")
    assert pool.in_use() == 1


def test_release_and_its_errors():
    pool = Pool(["10.0.0.0/30"], name="p")
    pool.allocate("10.0.0.2")
    pool.release("10.0.0.2")
    with pytest.raises(NotAllocated) as info:
        pool.release("10.0.0.2")
    assert "10.0.0.2" in str(info.value) and isinstance(info.value, KeyError)
    with pytest.raises(NotInPool):
        pool.release("10.0.0.4")
    assert pool.in_use() == 0


def test_contains_and_bad_addresses():
    pool = Pool(["10.0.0.5-10.0.0.9", "fd00::/64"])
    assert pool.contains("10.0.0.5") and pool.contains(ip("10.0.0.9"))
    assert not pool.contains("10.0.0.10") and not pool.contains("10.0.0.4")
    assert pool.contains("fd00::abcd") and not pool.contains("fd01::")
    assert "10.0.0.7" in pool and 7 not in pool
    with pytest.raises(PoolError, match="'nope' is not an IP address"):
        pool.contains("nope")
    with pytest.raises(PoolError):
        pool.allocate("nope")
    assert pool.range_of("fd00::1") is pool.ranges[1]
    assert pool.range_of("1.2.3.4") is None


def test_allocated_lists_ranges_in_order_ascending_within():
    pool = Pool(["10.0.1.0/24", "10.0.0.0/24", "fd00::/64"])
    for address in ("10.0.0.3", "fd00::9", "10.0.1.200", "10.0.0.1", "10.0.1.2"):
        pool.allocate(address)
    assert [str(a) for a in pool.allocated()] == [
        "10.0.1.2", "10.0.1.200", "10.0.0.1", "10.0.0.3", "fd00::9",
    ]
    assert [str(a) for a in pool.allocated(6)] == ["fd00::9"]


def test_full_slash16_exhaustion_is_reported_without_walking():
    pool = Pool(["10.1.0.0/16"])
    for _ in range(65_536):
        pool.allocate_lowest(4)
    with pytest.raises(PoolExhausted):
        pool.allocate_lowest(4)
    pool.release("10.1.128.7")
    assert pool.allocate_lowest(4) == ip("10.1.128.7")
    assert isinstance(PoolExhausted("x"), AllocationError)


# -- model-based -----------------------------------------------------------------------------

#: Small non-overlapping ranges with .0/.255 edges, so a plain list can model them.
MODEL_RANGES = [
    "10.0.0.250-10.0.1.5",
    "10.0.2.0/29",
    "192.168.0.255/32",
    "fd00::fe-fd00::102",
    "fd00:1::/126",
    "10.0.3.254-10.0.4.0",
]


class PoolMachine(RuleBasedStateMachine):
    """Random pool operations vs a list of every address and a set of used ones."""

    @initialize(order=st.permutations(MODEL_RANGES), count=st.integers(1, len(MODEL_RANGES)))
    def create(self, order: list[str], count: int) -> None:
        texts = order[:count]
        self.pool = Pool(texts, name="model")
        self.ranges = [
            [r.first + i for i in range(r.size)] for r in (parse_range(t) for t in texts)
        ]
        self.used: set = set()

    def _expected_lowest(self, family: int, avoid_buggy: bool, balance: bool):
        ranges = [r for r in self.ranges if r[0].version == family]
        if balance:
            ranges.sort(key=lambda r: sum(a in self.used for a in r))
        for addresses in ranges:
            for address in addresses:
                buggy = family == 4 and int(address) & 0xFF in (0, 255)
                if address not in self.used and not (avoid_buggy and buggy):
                    return address
        return None

    @rule(family=st.sampled_from([4, 6]), avoid_buggy=st.booleans(), balance=st.booleans())
    def allocate_lowest(self, family: int, avoid_buggy: bool, balance: bool) -> None:
        expected = self._expected_lowest(family, avoid_buggy, balance)
        if expected is None:
            with pytest.raises(PoolExhausted):
                self.pool.allocate_lowest(family, avoid_buggy=avoid_buggy, balance=balance)
        else:
            got = self.pool.allocate_lowest(family, avoid_buggy=avoid_buggy, balance=balance)
            assert got == expected
            self.used.add(got)

    @rule(data=st.data())
    def allocate_or_release_specific(self, data: st.DataObject) -> None:
        candidates = [a for r in self.ranges for a in r] + [ip("10.0.0.249"), ip("fd00::103")]
        address = data.draw(st.sampled_from(candidates))
        inside = any(address in r for r in self.ranges)
        if data.draw(st.booleans()):
            if not inside:
                with pytest.raises(NotInPool):
                    self.pool.allocate(address)
            elif address in self.used:
                with pytest.raises(AddressInUse):
                    self.pool.allocate(address)
            else:
                self.pool.allocate(str(address))
                self.used.add(address)
        elif not inside:
            with pytest.raises(NotInPool):
                self.pool.release(address)
        elif address not in self.used:
            with pytest.raises(NotAllocated):
                self.pool.release(address)
        else:
            self.pool.release(address)
            self.used.discard(address)

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "pool"):
            return
        expected = [a for r in self.ranges for a in r if a in self.used]
        assert list(self.pool.allocated()) == expected
        for family in (4, 6):
            assert self.pool.in_use(family) == sum(a.version == family for a in self.used)
            assert self.pool.available(family) + self.pool.in_use(family) == self.pool.size(family)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_pool_given_one_string_instead_of_a_list_is_a_type_error():
    with pytest.raises(TypeError, match="list of ranges"):
        Pool("10.0.0.0/24")
