"""Properties of the patch functions over generated JSON documents."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from purelb.apiserver._patch import json_merge_patch, strategic_merge_patch

keys = st.sampled_from(["a", "b", "c", "spec", "x"])
scalars = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans())
# Maps of scalars and nested maps: the part of JSON where merge and strategic agree.
maps = st.recursive(
    st.dictionaries(keys, scalars, max_size=3),
    lambda inner: st.dictionaries(keys, st.one_of(scalars, inner), max_size=3),
    max_leaves=12,
)
patches = st.recursive(
    st.dictionaries(keys, st.one_of(scalars, st.none()), max_size=3),
    lambda inner: st.dictionaries(keys, st.one_of(scalars, st.none(), inner), max_size=3),
    max_leaves=12,
)

# The CI machine is shared and often saturated: generation speed is not what is tested.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@RELAXED
@given(maps, patches)
def test_merge_patch_is_idempotent_and_pure(target: dict, patch: dict) -> None:
    t0, p0 = copy.deepcopy(target), copy.deepcopy(patch)
    once = json_merge_patch(target, patch)
    assert json_merge_patch(once, patch) == once
    assert (target, patch) == (t0, p0)

# The CI machine is shared and often saturated: generation speed is not what is tested.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@RELAXED
@given(maps, patches)
def test_strategic_patch_equals_merge_patch_on_maps_without_lists(
    target: dict, patch: dict
) -> None:
    assert strategic_merge_patch(target, patch) == json_merge_patch(target, patch)

# The CI machine is shared and often saturated: generation speed is not what is tested.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@RELAXED
@given(maps, patches)
def test_merge_patch_sets_every_non_null_patch_leaf(target: dict, patch: dict) -> None:
    out = json_merge_patch(target, patch)
    for k, v in patch.items():
        if v is None:
            assert k not in out
        elif not isinstance(v, dict):
            assert out[k] == v
