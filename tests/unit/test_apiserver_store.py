"""The store: one resourceVersion sequence, history window, snapshots, and exports."""

from __future__ import annotations

import pytest

import purelb.apiserver as apiserver
from purelb.apiserver._store import EventType, Store, WatchExpired
from purelb.apiserver._tables import jsonpath


def obj(name: str, **extra: object) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"}, **extra}


def test_writes_get_increasing_resource_versions_and_log_changes() -> None:
    s = Store()
    a = s.put("/cm", "ns", "a", obj("a"))
    b = s.put("/cm", "ns", "a", obj("a", data=1))
    c = s.delete("/cm", "ns", "a")
    assert [a.rv, b.rv, c.rv] == [1, 2, 3]
    assert [x.type for x in s.changes_after(0)] == [EventType.ADDED, EventType.MODIFIED,
                                                   EventType.DELETED]
    assert c.obj["metadata"]["resourceVersion"] == "3" and c.prev is b.obj
    assert s.get("/cm", "ns", "a") is None


def test_history_window_gives_expired_for_old_versions() -> None:
    s = Store(history_limit=2)
    for i in range(10):
        s.put("/cm", "ns", f"o{i}", obj(f"o{i}"))
    with pytest.raises(WatchExpired):
        s.changes_after(0)
    assert [c.rv for c in s.changes_after(s.compacted_rv)] == list(
        range(s.compacted_rv + 1, 11))
    s.compact(keep=0)
    assert s.changes_after(10) == []
    with pytest.raises(WatchExpired):
        s.changes_after(9)


def test_snapshot_at_rolls_back_later_changes() -> None:
    s = Store()
    s.put("/cm", "ns", "a", obj("a", v=1))
    s.put("/cm", "ns", "b", obj("b"))
    rv = s.rv
    s.put("/cm", "ns", "a", obj("a", v=2))
    s.delete("/cm", "ns", "b")
    s.put("/cm", "ns", "c", obj("c"))
    snap = s.snapshot_at("/cm", None, rv)
    assert sorted(k[1] for k in snap) == ["a", "b"] and snap[("ns", "a")]["v"] == 1


def test_jsonpath_subset_used_by_printer_columns() -> None:
    doc = {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                     {"type": "Other", "status": "False"}],
                      "addresses": ["a", "b"]}}
    assert jsonpath(doc, ".status.conditions[?(@.type==\"Ready\")].status") == ["True"]
    assert jsonpath(doc, ".status.addresses[*]") == ["a", "b"]
    assert jsonpath(doc, ".status.addresses[1]") == ["b"]
    assert jsonpath(doc, ".status.missing") == []
    assert jsonpath(doc, "{.status.conditions[0].type}") == ["Ready"]


def test_public_names_are_exported_once_and_sorted() -> None:
    assert apiserver.__all__ == sorted(apiserver.__all__)
    assert len(set(apiserver.__all__)) == len(apiserver.__all__)
    for name in apiserver.__all__:
        assert hasattr(apiserver, name)


def test_config_refuses_plain_http_off_loopback() -> None:
    from purelb.apiserver import ApiServerConfig
    from purelb.errors import ConfigError

    with pytest.raises(ConfigError, match="not loopback"):
        ApiServerConfig(host="172.31.255.1")
    with pytest.raises(ConfigError, match="must be an IP address"):
        ApiServerConfig(host="localhost")
    ApiServerConfig(host="::1")


class _FailingDisk:
    """A backend whose disk fails on the first commit."""

    persistent = True

    def load(self) -> tuple[list, int]:
        return [], 7

    def write(self, changes: object, rv: int) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass


async def test_a_failed_commit_is_never_acknowledged_and_stops_writes() -> None:
    import trio

    from purelb.apiserver._errors import StatusError

    store = Store(_FailingDisk())
    assert store.rv == 7, "the sequence continues from the stored head"
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_committer)
        change = store.put("/cm", "ns", "a", obj("a"))
        assert change.rv == 8
        with pytest.raises(StatusError) as err:
            await store.wait_durable(change.rv)
        assert err.value.code == 500 and "No space left" in err.value.message
        with pytest.raises(StatusError):
            store.put("/cm", "ns", "b", obj("b"))
        assert store.changes_after(7) == [], "watchers never saw the lost write"
        nursery.cancel_scope.cancel()
