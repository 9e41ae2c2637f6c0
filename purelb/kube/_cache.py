"""The reflector's cache: objects by key, secondary indexes, and the relist diff.

Everything here is synchronous and I/O-free: a mutation is one atomic step for the
trio task that owns the store, and :func:`diff_snapshot` — what a relist must tell
consumers — is a pure function tested on its own.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

JSON = dict[str, Any]
ObjectKey = tuple[str, str]
"""``(namespace, name)``; namespace is ``""`` for cluster-scoped objects."""
Indexer = Callable[[JSON], Iterable[str]]
"""Returns the index values of an object (none, one or several)."""

#: Label EndpointSlices carry to name their Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ChangeKind(enum.Enum):
    """What happened to an object, as consumers see it."""

    ADDED = "ADDED"
    """New to the cache (created, or found by a relist)."""
    MODIFIED = "MODIFIED"
    """Changed (or re-delivered by a periodic resync: then the object is unchanged)."""
    DELETED = "DELETED"
    """Gone from the cache; the object is its last known state."""


class Change(NamedTuple):
    """One event for consumers: unpack as ``kind, obj = change``."""

    kind: ChangeKind
    obj: JSON


def object_key(obj: JSON) -> ObjectKey:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"object of kind {obj.get('kind')!r} has no metadata.name")
    return (str(meta.get("namespace") or ""), name)


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _uid(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def diff_snapshot(old: Mapping[ObjectKey, JSON], new: Mapping[ObjectKey, JSON]) -> list[Change]:
    """Changes that turn cache ``old`` into list result ``new``.

    Order: deletions first (so a consumer frees what a new object may claim), then
    additions, then modifications, each sorted by key. An object whose uid changed was
    deleted and recreated while we were away: it yields DELETED(old) and ADDED(new), so
    no consumer misses the deletion. Unchanged objects (same resourceVersion) yield
    nothing.
    """
    deleted: list[Change] = []
    added: list[Change] = []
    modified: list[Change] = []
    for key in sorted(old.keys() - new.keys()):
        deleted.append(Change(ChangeKind.DELETED, old[key]))
    for key in sorted(new):
        cur = new[key]
        prev = old.get(key)
        if prev is None:
            added.append(Change(ChangeKind.ADDED, cur))
        elif _uid(prev) != _uid(cur):
            deleted.append(Change(ChangeKind.DELETED, prev))
            added.append(Change(ChangeKind.ADDED, cur))
        elif _rv(prev) != _rv(cur) or (not _rv(cur) and prev != cur):
            modified.append(Change(ChangeKind.MODIFIED, cur))
    return deleted + added + modified


def index_by_label(label: str) -> Indexer:
    """Index objects by ``namespace/<value of label>`` (cluster-scoped: just the value)."""

    def indexer(obj: JSON) -> list[str]:
        meta = obj.get("metadata") or {}
        value = (meta.get("labels") or {}).get(label)
        if value is None:
            return []
        ns = meta.get("namespace")
        return [f"{ns}/{value}" if ns else str(value)]

    return indexer


def index_by_namespace(obj: JSON) -> list[str]:
    """Index objects by namespace."""
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


#: EndpointSlices by their Service: ``by_index("service", "ns/svc")``.
ENDPOINTSLICE_BY_SERVICE: Mapping[str, Indexer] = {"service": index_by_label(SERVICE_NAME_LABEL)}


class Store:
    """Objects by key with secondary indexes. Only the owning reflector mutates it."""

    def __init__(self, indexers: Mapping[str, Indexer] | None = None) -> None:
        self._objects: dict[ObjectKey, JSON] = {}
        self._indexers: dict[str, Indexer] = dict(indexers or {})
        self._indexes: dict[str, dict[str, set[ObjectKey]]] = {n: {} for n in self._indexers}

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return f"Store({len(self._objects)} objects, indexes={sorted(self._indexers)})"

    def get(self, namespace: str | None, name: str) -> JSON | None:
        """The cached object, or ``None``. Pass ``None`` or ``""`` for cluster-scoped."""
        return self._objects.get((namespace or "", name))

    def list(self) -> list[JSON]:
        """All cached objects, sorted by key."""
        return [self._objects[k] for k in sorted(self._objects)]

    def snapshot(self) -> dict[ObjectKey, JSON]:
        """A shallow copy of the key → object map."""
        return dict(self._objects)

    def by_index(self, index_name: str, value: str) -> builtins.list[JSON]:
        """Objects whose indexer returned ``value``, sorted by key."""
        try:
            index = self._indexes[index_name]
        except KeyError:
            raise ValueError(
                f"unknown index {index_name!r}; this store has {sorted(self._indexes)}"
            ) from None
        return [self._objects[k] for k in sorted(index.get(value, ()))]

    def upsert(self, obj: JSON, *, key: ObjectKey | None = None) -> JSON | None:
        """Insert or replace; return the previous object. ``key``: the caller's
        :func:`object_key` of it, if it has one already."""
        if key is None:
            key = object_key(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        self._index(key, obj)
        return old

    def remove(self, key: ObjectKey) -> JSON | None:
        """Remove by key; return the removed object (``None`` if absent)."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace_all(self, objects: Iterable[JSON]) -> builtins.list[Change]:
        """Make the store equal to ``objects``; return the :func:`diff_snapshot` changes."""
        new = {object_key(o): o for o in objects}
        changes = diff_snapshot(self._objects, new)
        self._objects = new
        self._indexes = {n: {} for n in self._indexers}
        for key, obj in new.items():
            self._index(key, obj)
        return changes

    def _index(self, key: ObjectKey, obj: JSON) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: ObjectKey, obj: JSON) -> None:
        for name, fn in self._indexers.items():
            index = self._indexes[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
