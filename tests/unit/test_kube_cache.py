"""The reflector's cache and the pure relist diff."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from purelb.kube import (
    ENDPOINTSLICE_BY_SERVICE,
    Change,
    ChangeKind,
    Store,
    diff_snapshot,
    index_by_namespace,
    object_key,
)

A, M, D = ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.DELETED


def obj(name: str, rv: str, *, ns: str = "a", uid: str | None = None, **labels) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns,
                                            "resourceVersion": rv, "uid": uid or f"uid-{name}",
                                            "labels": labels}}


def snap(*objs):
    return {object_key(o): o for o in objs}


CASES = [
    ("an empty cache and list give nothing", [], [], []),
    ("everything in a first list is added", [], [obj("x", "1"), obj("y", "1")],
     [(A, "x", "1"), (A, "y", "1")]),
    ("an unchanged object gives nothing", [obj("x", "1")], [obj("x", "1")], []),
    ("a newer resourceVersion is a modification", [obj("x", "1")], [obj("x", "5")],
     [(M, "x", "5")]),
    ("an object missing from the list is deleted with its last state",
     [obj("x", "1"), obj("y", "2")], [obj("y", "2")], [(D, "x", "1")]),
    ("everything deleted while away is reported", [obj("x", "1"), obj("y", "2")], [],
     [(D, "x", "1"), (D, "y", "2")]),
    ("a recreated object (new uid) is a delete then an add",
     [obj("x", "1", uid="old")], [obj("x", "9", uid="new")], [(D, "x", "1"), (A, "x", "9")]),
    ("deletes come before adds before modifications",
     [obj("b", "1"), obj("c", "1")], [obj("a", "2"), obj("c", "3")],
     [(D, "b", "1"), (A, "a", "2"), (M, "c", "3")]),
    ("same name in two namespaces are different keys",
     [obj("x", "1", ns="a")], [obj("x", "1", ns="a"), obj("x", "2", ns="b")],
     [(A, "x", "2")]),
]


@pytest.mark.parametrize(("desc", "old", "new", "expected"), CASES, ids=[c[0] for c in CASES])
def test_diff_snapshot(desc, old, new, expected):
    old_s, new_s = snap(*old), snap(*new)
    before = copy.deepcopy((old_s, new_s))
    changes = diff_snapshot(old_s, new_s)
    got = [(c.kind, c.obj["metadata"]["name"], c.obj["metadata"]["resourceVersion"])
           for c in changes]
    assert got == expected
    assert (old_s, new_s) == before, "inputs must not be mutated"
    # Applying the changes to the old snapshot yields the new one.
    applied = dict(old_s)
    for kind, o in changes:
        if kind is D:
            applied.pop(object_key(o))
        else:
            applied[object_key(o)] = o
    assert applied == new_s


def test_change_unpacks_as_kind_and_object():
    kind, o = Change(A, obj("x", "1"))
    assert kind is A and o["metadata"]["name"] == "x"


def slice_(name: str, svc: str, rv: str = "1", ns: str = "a") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": name,
                         "labels": {"kubernetes.io/service-name": svc}}}


def test_store_indexes_follow_upserts_removes_and_replace_all():
    store = Store({**ENDPOINTSLICE_BY_SERVICE, "ns": index_by_namespace})
    store.upsert(slice_("web-1", "web"))
    store.upsert(slice_("web-2", "web"))
    store.upsert(slice_("db-1", "db"))
    store.upsert(slice_("web-1", "web", ns="b"))
    assert [o["metadata"]["name"] for o in store.by_index("service", "a/web")] == ["web-1", "web-2"]
    assert [o["metadata"]["namespace"] for o in store.by_index("service", "b/web")] == ["b"]
    store.upsert(slice_("web-2", "db", rv="2"))  # relabelled: moves between index values
    assert [o["metadata"]["name"] for o in store.by_index("service", "a/web")] == ["web-1"]
    assert len(store.by_index("service", "a/db")) == 2
    store.remove(("a", "web-1"))
    assert store.by_index("service", "a/web") == []
    changes = store.replace_all([slice_("db-1", "db")])
    assert {(c.kind, c.obj["metadata"]["name"]) for c in changes} == {
        (D, "web-2"), (D, "web-1")}
    assert store.by_index("service", "b/web") == []
    assert len(store.by_index("ns", "a")) == 1
    assert store.get("a", "db-1") is not None and store.get("a", "web-2") is None


def test_store_unknown_index_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown index 'nope'.*\['service'\]"):
        Store(ENDPOINTSLICE_BY_SERVICE).by_index("nope", "x")


def test_object_key_requires_a_name():
    with pytest.raises(ValueError, match=r"no metadata\.name"):
        object_key({"kind": "Service", "metadata": {}})


_names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_objs = st.builds(lambda name, rv, uid: obj(name, str(rv), uid=f"u{uid}"),
                  _names, st.integers(1, 3), st.integers(1, 2))


@given(st.lists(_objs, max_size=6), st.lists(_objs, max_size=6))
def test_diff_snapshot_replays_old_into_new_and_reports_every_vanished_key(old, new):
    old_s, new_s = snap(*old), snap(*new)
    changes = diff_snapshot(old_s, new_s)
    applied = dict(old_s)
    for kind, o in changes:
        if kind is D:
            assert applied.pop(object_key(o)) is o, "a DELETED carries the last known state"
        else:
            applied[object_key(o)] = o
    assert applied == new_s
    deleted = {object_key(o) for k, o in changes if k is D}
    assert old_s.keys() - new_s.keys() <= deleted
