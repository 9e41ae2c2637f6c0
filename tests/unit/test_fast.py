"""Behaviour of the hot path (address space + rendezvous), for native and fallback alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from purelb import _fallback, fast
from purelb.errors import AllocationError, PurelbError
from tests.unit._impls import impl_params


@pytest.fixture(params=impl_params())
def impl(request):
    return request.param


# -- address space ---------------------------------------------------------------------------


def test_space_allocates_lowest_in_order_and_reports_counts(impl):
    space = impl.AddressSpace(10)
    assert [space.allocate_lowest() for _ in range(10)] == list(range(10))
    assert space.count == len(space) == 10
    assert space.capacity == 10
    assert space.lowest_free() is None


def test_space_full_raises_exhausted_and_keeps_state(impl):
    space = impl.AddressSpace(3)
    for _ in range(3):
        space.allocate_lowest()
    with pytest.raises(fast.SpaceFull) as info:
        space.allocate_lowest()
    assert isinstance(info.value, AllocationError)
    assert info.value.reason == "exhausted"
    assert "3" in str(info.value)
    assert space.count == 3
    assert list(space.iter_allocated()) == [0, 1, 2]


def test_space_allocate_specific_then_lowest_skips_it(impl):
    space = impl.AddressSpace(100)
    space.allocate(0)
    space.allocate(2)
    assert space.allocate_lowest() == 1
    assert space.allocate_lowest() == 3
    assert list(space.iter_allocated()) == [0, 1, 2, 3]


def test_space_allocate_taken_offset_raises_in_use_when_already_allocated(impl):
    space = impl.AddressSpace(100)
    space.allocate(42)
    with pytest.raises(fast.OffsetInUse) as info:
        space.allocate(42)
    assert info.value.reason == "address_in_use"
    assert "42" in str(info.value)
    assert space.count == 1


@pytest.mark.parametrize("offset", [-1, 100, 2**200])
def test_space_offset_outside_range_is_rejected_naming_offset_and_size(impl, offset):
    space = impl.AddressSpace(100)
    space.allocate(5)
    for call in (space.allocate, space.release, space.is_allocated):
        with pytest.raises(fast.OffsetOutOfRange) as info:
            call(offset)
        assert isinstance(info.value, ValueError)
        assert str(offset) in str(info.value) and "100" in str(info.value)
    assert list(space.iter_allocated()) == [5]


@pytest.mark.parametrize("offset", ["1", 1.0, None, True])
def test_space_non_int_offset_is_a_type_error(impl, offset):
    space = impl.AddressSpace(100)
    with pytest.raises(TypeError):
        space.allocate(offset)
    assert space.count == 0


def test_space_release_of_free_offset_raises_not_allocated(impl):
    space = impl.AddressSpace(100)
    space.allocate(7)
    space.release(7)
    with pytest.raises(fast.NotAllocatedError) as info:
        space.release(7)
    assert isinstance(info.value, PurelbError) and isinstance(info.value, KeyError)
    assert str(info.value) == "offset 7 is not allocated, cannot release it"
    assert space.count == 0


@pytest.mark.parametrize("size", [0, -5, 2**128 + 1])
def test_space_size_outside_bounds_is_rejected(impl, size):
    with pytest.raises(fast.OffsetOutOfRange, match=str(size)):
        impl.AddressSpace(size)


def test_space_size_must_be_int(impl):
    with pytest.raises(TypeError):
        impl.AddressSpace(10.0)


def test_space_lowest_free_from_start_is_a_query_only(impl):
    space = impl.AddressSpace(10_000)
    for offset in range(100, 5000):
        space.allocate(offset)
    assert space.lowest_free() == 0
    assert space.lowest_free(100) == 5000
    assert space.lowest_free(4999) == 5000
    assert space.lowest_free(9999) == 9999
    assert space.lowest_free(10_000) is None
    assert space.count == 4900
    with pytest.raises(ValueError):
        space.lowest_free(-1)


def test_space_release_reopens_the_lowest_hole(impl):
    space = impl.AddressSpace(1 << 20)
    for _ in range(70_000):
        space.allocate_lowest()
    space.release(4096)
    space.release(65_000)
    assert space.allocate_lowest() == 4096
    assert space.allocate_lowest() == 65_000
    assert space.allocate_lowest() == 70_000


def test_space_of_ipv6_slash0_has_exact_capacity_and_both_ends(impl):
    space = impl.AddressSpace(2**128)
    assert space.capacity == 2**128
    space.allocate(2**128 - 1)
    space.allocate(2**64)
    space.allocate(2**64 - 1)
    assert space.allocate_lowest() == 0
    assert space.lowest_free(2**64 - 1) == 2**64 + 1
    assert space.lowest_free(2**128 - 1) is None
    assert list(space.iter_allocated()) == [0, 2**64 - 1, 2**64, 2**128 - 1]
    assert space.is_allocated(2**128 - 1) and not space.is_allocated(2**128 - 2)
    space.release(2**64)
    assert space.lowest_free(2**64 - 1) == 2**64


def test_space_tail_segment_smaller_than_2_64_can_fill(impl):
    space = impl.AddressSpace(2**64 + 2)
    space.allocate(2**64)
    space.allocate(2**64 + 1)
    assert space.lowest_free(2**64) is None
    assert space.lowest_free(2**64 - 5) == 2**64 - 5


def test_space_memory_follows_allocations_not_range_size(impl):
    big = impl.AddressSpace(2**64)
    small = impl.AddressSpace(2**8)
    for _ in range(200):
        big.allocate_lowest()
        small.allocate_lowest()
    # A /64 with 200 addresses must not cost more than a few KiB over a /24 with 200.
    assert big.memory_bytes() < small.memory_bytes() + 16 * 1024


def test_space_iter_allocated_is_ascending_across_leaves(impl):
    space = impl.AddressSpace(1 << 30)
    offsets = [1 << 29, 5, 4096 * 64 + 1, 4095, 4096, (1 << 30) - 1]
    for offset in offsets:
        space.allocate(offset)
    assert list(space.iter_allocated()) == sorted(offsets)


# -- rendezvous ------------------------------------------------------------------------------

#: Pinned outputs: the hash is a wire-level contract (every node must agree, also across
#: versions during a rolling upgrade), so any change here must be deliberate.
PINNED_HASHES = {
    "": 0xEFD01F60BA992926,
    "a": 0x82A2A958A9BECE5B,
    "node-a": 0x48E86629C152A3F3,
    "10.0.0.1": 0xC879E56DDC6C5C88,
}


def test_stable_hash64_matches_pinned_values(impl):
    assert {text: impl.stable_hash64(text) for text in PINNED_HASHES} == PINNED_HASHES
    assert impl.winner("10.0.0.1", ["node-a", "node-b", "node-c"]) == "node-b"


def test_stable_hash64_is_fnv1a_then_fmix64(impl):
    # FNV-1a 64 of b"" is its offset basis; of b"a" a published test vector.
    assert impl.stable_hash64("") == _fallback.fmix64(0xCBF29CE484222325)
    assert impl.stable_hash64("a") == _fallback.fmix64(0xAF63DC4C8601EC8C)
    assert impl.stable_hash64("é") == _fallback.stable_hash64("é")


def test_stable_hash64_is_the_same_in_another_process_with_another_hash_seed(impl):
    names = ["node-a", "node-b", "10.0.0.1/default/svc"]
    code = (
        "import sys; from purelb import fast;"
        "print([fast.stable_hash64(n) for n in sys.argv[1:]])"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == str([impl.stable_hash64(n) for n in names])


def test_stable_hash64_rejects_non_text(impl):
    with pytest.raises(TypeError):
        impl.stable_hash64(b"node")


def test_winner_is_none_without_candidates(impl):
    assert impl.winner("key", []) is None
    assert impl.winners(["a", "b"], []) == [None, None]
    assert impl.Rendezvous([]).ranking("a") == []


def test_winner_is_the_highest_score(impl):
    nodes = [f"node-{i}" for i in range(20)]
    for key in ("10.0.0.1", "fd00::1", "svc/x"):
        key_hash = impl.stable_hash64(key)
        scores = {n: _fallback.fmix64(impl.stable_hash64(n) ^ key_hash) for n in nodes}
        assert impl.winner(key, nodes) == max(nodes, key=scores.__getitem__)
        assert impl.Rendezvous(nodes).ranking(key) == sorted(nodes, key=lambda n: -scores[n])


def test_winner_does_not_depend_on_candidate_order_or_duplicates(impl):
    nodes = [f"n{i}" for i in range(10)]
    keys = [f"k{i}" for i in range(200)]
    expected = impl.winners(keys, nodes)
    assert impl.winners(keys, list(reversed(nodes)) + nodes[:3]) == expected
    assert [impl.winner(k, nodes) for k in keys] == expected
    assert impl.Rendezvous(nodes).winners(keys) == expected


def test_adding_a_node_moves_only_the_keys_it_wins(impl):
    nodes = [f"node-{i}" for i in range(10)]
    keys = [f"10.1.{i // 256}.{i % 256}" for i in range(3000)]
    before = impl.winners(keys, nodes)
    after = impl.winners(keys, [*nodes, "node-new"])
    moved = [i for i in range(len(keys)) if before[i] != after[i]]
    assert moved, "a new node should win some keys"
    assert all(after[i] == "node-new" for i in moved)
    # Removing it again restores every key exactly.
    assert impl.winners(keys, nodes) == before


def test_removing_a_node_moves_only_the_keys_it_held(impl):
    nodes = [f"node-{i}" for i in range(10)]
    keys = [f"svc-{i}" for i in range(3000)]
    before = impl.winners(keys, nodes)
    after = impl.winners(keys, [n for n in nodes if n != "node-3"])
    for old, new in zip(before, after, strict=True):
        assert old == new or old == "node-3"
    assert "node-3" not in after


def test_winners_spread_keys_evenly(impl):
    nodes = [f"node-{i}" for i in range(10)]
    keys = [f"192.168.{i // 256}.{i % 256}" for i in range(20_000)]
    counts = {n: 0 for n in nodes}
    for name in impl.winners(keys, nodes):
        counts[name] += 1
    # Binomial(20000, 0.1): sd ~ 42; 6 sd either side.
    assert all(1750 < c < 2250 for c in counts.values()), counts


def test_election_rejects_non_text(impl):
    with pytest.raises(TypeError):
        impl.winner(1, ["a"])
    with pytest.raises(TypeError):
        impl.winner("k", ["a", 2])


# -- implementation choice -------------------------------------------------------------------


def test_fast_reports_its_implementation():
    assert fast.IMPLEMENTATION in ("native", "fallback")
    assert fast.IMPLEMENTATION_REASON
    if fast.IMPLEMENTATION == "fallback":
        assert fast.AddressSpace is _fallback.AddressSpace


def test_pure_env_forces_fallback_and_logs_it_once():
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s');"
        "from purelb import fast; import purelb.fast;"
        "print(fast.IMPLEMENTATION, fast.AddressSpace(5).allocate_lowest())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PURELB_PURE="1"),
        check=True,
    )
    assert proc.stdout.split() == ["fallback", "0"]
    assert proc.stderr.count("purelb hot path: fallback (PURELB_PURE=1 forces the fallback)") == 1


def test_fmix64_accepts_only_64_bit_values(impl):
    assert impl.fmix64(0) == 0
    assert impl.fmix64(2**64 - 1) == _fallback.fmix64(2**64 - 1)
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match=str(bad)):
            impl.fmix64(bad)
    with pytest.raises(TypeError):
        impl.fmix64("1")


def test_space_survives_release_while_iterating(impl):
    space = impl.AddressSpace(1 << 20)
    for offset in (1, 5000, 300_000, 900_000):
        space.allocate(offset)
    for offset in space.iter_allocated():
        space.release(offset)  # unspecified yield order afterwards, but no crash
    assert space.count == 0


def test_native_and_fallback_expose_the_same_api():
    from tests.unit._impls import implementations

    def public(obj):
        return {name for name in dir(obj) if not name.startswith("_")}

    modules = implementations()
    for module in modules[1:]:
        for name in ("AddressSpace", "Rendezvous"):
            assert public(getattr(module, name)) == public(getattr(modules[0], name)), name
        for name in ("stable_hash64", "fmix64", "winner", "winners", "SpaceFull", "OffsetInUse",
                     "OffsetOutOfRange", "NotAllocatedError"):
            assert getattr(module, name) is not None
            if name[0].isupper():
                assert getattr(module, name) is getattr(modules[0], name)


def test_describe_names_implementation_and_reason():
    assert fast.describe() == f"{fast.IMPLEMENTATION} ({fast.IMPLEMENTATION_REASON})"


def test_fast_all_lists_every_public_name_once():
    assert len(fast.__all__) == len(set(fast.__all__))
    for name in fast.__all__:
        assert hasattr(fast, name), name


def test_space_scattered_addresses_cost_bounded_memory_and_all_of_it_comes_back(impl):
    space = impl.AddressSpace(2**64)
    empty = space.memory_bytes()
    offsets = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 2001)]  # spread out
    for offset in offsets:
        space.allocate(offset)
    per_address = (space.memory_bytes() - empty) / len(offsets)
    # Lone addresses deep in a /64 share little; the bound is what the design promises.
    assert per_address < 2500, per_address
    for offset in offsets:
        space.release(offset)
    assert space.memory_bytes() == empty
