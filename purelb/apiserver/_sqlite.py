"""SQLite storage: every object and the resourceVersion head survive a restart or kill -9.

WAL journal with ``synchronous=FULL``: a transaction is on disk when COMMIT returns, so
a write acknowledged to a client (the reply waits for its batch's commit) survives
``kill -9`` and power loss. One row per object (JSON text) plus the sequence head in
``meta``; both change in the same transaction, so a restart never reuses a
resourceVersion. The connection is used by exactly one thread at a time (the store's
committer runs it under a CapacityLimiter of 1), hence ``check_same_thread=False``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from purelb.errors import ConfigError

if TYPE_CHECKING:
    from ._store import Change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    skey TEXT NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (skey, ns, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
SCHEMA_VERSION = 1


class SqliteBackend:
    """A :class:`purelb.apiserver._store.Backend` on one SQLite file."""

    persistent = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite database {self.path}: {exc}", path="db",
                              value=str(self.path)) from None
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('rv', 0)")
        elif row[0] != SCHEMA_VERSION:
            raise ConfigError(f"{self.path} has schema version {row[0]}, this server writes "
                              f"{SCHEMA_VERSION}", path="db", value=str(self.path))

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r})"

    def load(self) -> tuple[list[tuple[str, str, str, dict[str, Any]]], int]:
        rows = [
            (skey, ns, name, json.loads(body))
            for skey, ns, name, body in self._db.execute(
                "SELECT skey, ns, name, body FROM objects")
        ]
        (rv,) = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        return rows, int(rv)

    def write(self, changes: Sequence[Change], rv: int) -> None:
        from ._store import EventType

        # Only each key's last change in the batch matters for the committed state.
        last: dict[tuple[str, str, str], Change] = {}
        for ch in changes:
            last[(ch.storage_key, ch.namespace, ch.name)] = ch
        deletes = [k for k, ch in last.items() if ch.type is EventType.DELETED]
        upserts = [(*k, ch.rv, ch.obj_json().decode()) for k, ch in last.items()
                   if ch.type is not EventType.DELETED]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                db.executemany("DELETE FROM objects WHERE skey=? AND ns=? AND name=?", deletes)
            if upserts:
                db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", upserts)
            db.execute("UPDATE meta SET value=? WHERE key='rv'", (rv,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may already have ended it
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
