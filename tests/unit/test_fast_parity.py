"""Property tests: both hot-path implementations against trivial reference models.

The address space is checked by a hypothesis state machine against a Python set of
offsets; the election against a plain sort of every candidate's score. Both
implementations must match the same model, hence each other (bit-identical results are
the contract of ``purelb.fast``); hashes are also compared directly.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from purelb import _fallback, fast
from tests.unit._impls import NATIVE, impl_params, native_skip_reason

#: Sizes around the trie's seams: one leaf (4096), one inner node (2**18), the 2**64
#: segment boundary of the native build, and the largest space.
SIZES = st.sampled_from(
    [1, 2, 63, 64, 65, 4095, 4096, 4097, 2**18, 2**18 + 1, 2**64, 2**64 + 3, 2**100, 2**128]
)
#: Offsets as fractions of the size plus small absolute and leaf-edge values, so small
#: and huge spaces both see collisions, neighbours and both ends.
RAW_OFFSETS = st.one_of(
    st.integers(0, 70),
    st.integers(4090, 4100),
    st.integers(0, 2**130),
    st.sampled_from([-1, -(2**70)]),
)


def _fit(raw: int, size: int) -> int:
    """Map a raw draw into ``[-1, size]`` with the ends and out-of-range values likely."""
    if raw < 0:
        return raw
    if raw <= 4100:
        return raw if raw <= size else size - 1 - (raw % size)
    return raw % (size + 2) - 1  # -1 .. size, i.e. sometimes out of range


def _model_lowest(used: set[int], start: int, size: int) -> int | None:
    offset = start
    while offset in used:
        offset += 1
    return offset if offset < size else None


def make_machine(impl: ModuleType) -> type[RuleBasedStateMachine]:
    class SpaceMachine(RuleBasedStateMachine):
        """Random operation sequences on one address space vs a set of offsets."""

        @initialize(size=SIZES)
        def create(self, size: int) -> None:
            self.size = size
            self.space = impl.AddressSpace(size)
            self.used: set[int] = set()

        @rule()
        def allocate_lowest(self) -> None:
            expected = _model_lowest(self.used, 0, self.size)
            if expected is None:
                with pytest.raises(fast.SpaceFull):
                    self.space.allocate_lowest()
            else:
                assert self.space.allocate_lowest() == expected
                self.used.add(expected)

        @rule(count=st.integers(1, 5000))
        def allocate_lowest_run(self, count: int) -> None:
            """Long runs cross leaves (4096) and fill them: the lowest-free cache's path."""
            expected = []
            offset = 0
            while len(expected) < count and offset < self.size:
                if offset not in self.used:
                    expected.append(offset)
                offset += 1
            got = []
            for _ in range(len(expected)):
                got.append(self.space.allocate_lowest())
            assert got == expected
            self.used.update(got)
            if len(expected) < count:
                with pytest.raises(fast.SpaceFull):
                    self.space.allocate_lowest()

        @rule(raw=RAW_OFFSETS)
        def allocate(self, raw: int) -> None:
            offset = _fit(raw, self.size)
            if not 0 <= offset < self.size:
                with pytest.raises(fast.OffsetOutOfRange):
                    self.space.allocate(offset)
            elif offset in self.used:
                with pytest.raises(fast.OffsetInUse):
                    self.space.allocate(offset)
            else:
                self.space.allocate(offset)
                self.used.add(offset)

        @precondition(lambda self: self.used)
        @rule(data=st.data())
        def release_allocated(self, data: st.DataObject) -> None:
            offset = data.draw(st.sampled_from(sorted(self.used)))
            self.space.release(offset)
            self.used.discard(offset)

        @rule(raw=RAW_OFFSETS)
        def release_any(self, raw: int) -> None:
            offset = _fit(raw, self.size)
            if not 0 <= offset < self.size:
                with pytest.raises(fast.OffsetOutOfRange):
                    self.space.release(offset)
            elif offset not in self.used:
                with pytest.raises(fast.NotAllocatedError):
                    self.space.release(offset)
            else:
                self.space.release(offset)
                self.used.discard(offset)

        @rule(raw=RAW_OFFSETS)
        def lowest_free_from(self, raw: int) -> None:
            start = _fit(raw, self.size)
            if start < 0:
                with pytest.raises(fast.OffsetOutOfRange):
                    self.space.lowest_free(start)
            else:
                assert self.space.lowest_free(start) == _model_lowest(self.used, start, self.size)

        @rule(raw=RAW_OFFSETS)
        def is_allocated(self, raw: int) -> None:
            offset = _fit(raw, self.size)
            if 0 <= offset < self.size:
                assert self.space.is_allocated(offset) == (offset in self.used)

        @invariant()
        def same_contents(self) -> None:
            if not hasattr(self, "space"):
                return
            assert self.space.count == len(self.used)
            assert self.space.capacity == self.size
            assert list(self.space.iter_allocated()) == sorted(self.used)

    SpaceMachine.TestCase.settings = settings(
        max_examples=60, stateful_step_count=40, deadline=None
    )
    return SpaceMachine


@pytest.mark.parametrize("impl", impl_params())
def test_space_matches_set_model(impl):
    """Verify that random operation sequences agree with a set of offsets."""
    make_machine(impl).TestCase().runTest()


def _reference_ranking(key: str, candidates: list[str]) -> list[str]:
    """Score every distinct candidate and sort: highest score first, ties by name."""
    key_hash = _fallback.stable_hash64(key)
    scored = sorted(
        (-_fallback.fmix64(_fallback.stable_hash64(name) ^ key_hash), name)
        for name in set(candidates)
    )
    return [name for _, name in scored]


NAMES = st.text(min_size=0, max_size=12)


@pytest.mark.parametrize("impl", impl_params())
@settings(max_examples=150, deadline=None)
@given(keys=st.lists(NAMES, max_size=20), candidates=st.lists(NAMES, max_size=12))
def test_election_matches_sorted_scores(impl, keys, candidates):
    """Verify winner/winners/ranking against sorting every score by hand."""
    rendezvous = impl.Rendezvous(candidates)
    expected = [(_reference_ranking(k, candidates) or [None])[0] for k in keys]
    assert impl.winners(keys, candidates) == expected
    assert rendezvous.winners(keys) == expected
    assert [impl.winner(k, candidates) for k in keys] == expected
    for key in keys[:3]:
        assert rendezvous.ranking(key) == _reference_ranking(key, candidates)


def _pair_reason() -> str | None:
    return native_skip_reason() or (None if NATIVE is not None else "native not built")


@pytest.mark.skipif(_pair_reason() is not None, reason=str(_pair_reason()))
@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=40), max_size=30))
def test_native_and_fallback_hash_identically(texts):
    assert [NATIVE.stable_hash64(t) for t in texts] == [_fallback.stable_hash64(t) for t in texts]


@pytest.mark.parametrize("impl", impl_params())
@settings(max_examples=100, deadline=None)
@given(
    nodes=st.lists(NAMES, min_size=1, max_size=10, unique=True),
    keys=st.lists(NAMES, min_size=1, max_size=30),
    data=st.data(),
)
def test_membership_change_moves_only_the_changed_nodes_keys(impl, nodes, keys, data):
    """Verify that removing a node moves only its keys, and adding one takes only keys."""
    before = impl.winners(keys, nodes)
    gone = data.draw(st.sampled_from(nodes))
    after = impl.winners(keys, [n for n in nodes if n != gone])
    for old, new in zip(before, after, strict=True):
        assert old in (new, gone)
    newcomer = data.draw(NAMES.filter(lambda n: n not in nodes))
    grown = impl.winners(keys, [*nodes, newcomer])
    for old, new in zip(before, grown, strict=True):
        assert old == new or new == newcomer
