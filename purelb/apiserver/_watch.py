"""Watch streams: one task per watch, reading the store's shared change log.

A watcher keeps only its position (a resourceVersion). Each wake-up it takes every
committed change after that position from :meth:`Store.changes_after`, filters by
namespace, label and field selector (turning a change that moves an object into or out
of the selection into ADDED or DELETED, as the real server does), and writes the batch as
one chunk. Bookmarks go out every ``bookmark_interval_s`` when the client allows them, and
once more when ``timeoutSeconds`` ends the stream. A position older than the retained
history gets a 410 Expired ERROR event, then a clean end of stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

from purelb import fastjson

from . import _errors as E
from ._errors import StatusError
from ._faults import FaultInjector
from ._http import Write
from ._resources import ResourceDef
from ._selectors import FieldSelector, LabelSelector
from ._store import Change, EventType, Store, WatchExpired
from ._tables import render_table


@dataclass(slots=True, kw_only=True)
class WatchStream:
    """One watch stream's state: filters, position, and the Table/JSON encoding."""

    store: Store
    faults: FaultInjector
    rdef: ResourceDef
    namespace: str | None
    """None watches every namespace."""
    out: Callable[[ResourceDef, dict[str, Any]], dict[str, Any]]
    """Converts a stored object to the requested version."""
    clock: Callable[[], datetime]
    bookmark_interval_s: float
    labels: LabelSelector
    fields: FieldSelector
    start_rv: int | None
    table: bool
    bookmarks: bool
    initial_events_end: bool
    timeout_s: float
    _columns_sent: bool = False
    _sent_rv: int | None = None
    """The resourceVersion this stream has delivered everything up to; the closing
    bookmark must not claim more, or a client resuming from it skips events."""

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        ns = self.namespace
        if ns is not None and obj["metadata"].get("namespace", "") != ns:
            return False
        return self.labels.matches(obj["metadata"].get("labels")) and self.fields.matches(obj)

    def _encode(self, etype: str, obj: dict[str, Any]) -> bytes:
        rdef = self.rdef
        out: Any = self.out(rdef, obj)
        if self.table:
            out = render_table(rdef, [out], now=self.clock(),
                               resource_version=obj["metadata"]["resourceVersion"],
                               with_columns=not self._columns_sent)
            self._columns_sent = True
        return fastjson.dumps({"type": etype, "object": out}) + b"\n"

    def _classify(self, ch: Change) -> bytes | None:
        simple = (not self.table and self.labels.empty and self.fields.empty
                  and ch.obj.get("apiVersion") == self.rdef.api_version)
        ns = self.namespace
        if simple:
            if ns is not None and ch.namespace != ns:
                return None
            return ch.event_json()
        now_in = ch.type is not EventType.DELETED and self._matches(ch.obj)
        was_in = self._matches(ch.prev)
        if ch.type is EventType.DELETED:
            return self._encode("DELETED", ch.obj) if was_in else None
        if now_in and was_in:
            return self._encode("MODIFIED", ch.obj)
        if now_in:
            return self._encode("ADDED", ch.obj)
        if was_in:
            return self._encode("DELETED", ch.obj)
        return None

    def _bookmark(self, rv: int, *, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        rdef = self.rdef
        obj = {"kind": rdef.kind, "apiVersion": rdef.api_version, "metadata": meta}
        return (json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":"))
                + "\n").encode()

    @staticmethod
    def _expired(rv: int, oldest: int) -> bytes:
        status = E.status_object(410, "Expired", f"too old resource version: {rv} ({oldest})")
        return (json.dumps({"type": "ERROR", "object": status}, separators=(",", ":"))
                + "\n").encode()

    async def run(self, write: Write) -> None:
        faults = self.faults
        scope = trio.CancelScope()
        faults.register_watch(scope)
        try:
            with scope:
                with trio.move_on_after(self.timeout_s):
                    await self._stream(write)
                    return
                if self.bookmarks and self._sent_rv is not None:
                    await write(self._bookmark(self._sent_rv))
        except StatusError as err:
            body = {"type": "ERROR", "object": err.status()}
            await write((json.dumps(body, separators=(",", ":")) + "\n").encode())
        finally:
            faults.unregister_watch(scope)

    async def _stream(self, write: Write) -> None:
        store = self.store
        rdef = self.rdef
        if self.faults.take_expire():
            rv = self.start_rv if self.start_rv is not None else store.rv
            await write(self._expired(rv, store.rv))
            return
        if self.start_rv is None:
            pos = store.rv
            initial = [o for o in store.list(rdef.storage_key, self.namespace)
                       if self._matches(o)]
            for obj in initial:
                await write(self._encode("ADDED", obj))
            self._sent_rv = pos
            if self.initial_events_end and self.bookmarks:
                await write(self._bookmark(pos, initial_end=True))
        else:
            pos = self.start_rv
            self._sent_rv = pos
        clock = trio.current_time
        next_bookmark = clock() + self.bookmark_interval_s
        while True:
            try:
                changes = store.changes_after(pos)
            except WatchExpired as exc:
                await write(self._expired(exc.rv, exc.oldest))
                return
            head = max(pos, store.committed_rv)
            # Everything that queued since the last wake-up goes out as one chunk: under
            # load that is one send per watcher per wake-up instead of one per event.
            batch = [d for ch in changes if ch.storage_key == rdef.storage_key
                     and (d := self._classify(ch)) is not None]
            if batch:
                await write(b"".join(batch))
            pos = head
            self._sent_rv = pos
            if self.bookmarks and clock() >= next_bookmark:
                await write(self._bookmark(pos))
                next_bookmark = clock() + self.bookmark_interval_s
            if store.committed_rv > pos:
                continue
            with trio.move_on_at(next_bookmark if self.bookmarks else float("inf")):
                await store.wait_changed()
