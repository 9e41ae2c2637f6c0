"""Ownership without IFA_PROTO: the addresses this agent added, recorded in a file.

Kernels before 6.3 ignore IFA_PROTO (an unknown attribute), so every dumped address
looks unmarked and the agent could not tell its own from an operator's. Then the writer
keeps this ledger of ``(interface index, address/prefix)`` it added, in
``<state_dir>/addresses-<netns>.json``, and marks dumped addresses found in it as ours.

Crash safety: an add is recorded *before* it is sent and a delete is forgotten only
*after* the kernel confirmed it, so a crash at any point leaves the ledger claiming a
superset of what is ours; claims for addresses that no longer exist are pruned at the
next dump. The file is replaced atomically (write + fsync + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

from purelb.errors import ConfigError

LedgerKey = tuple[int, str]
"""``(ifindex, "address/prefix")``."""

#: Format version written into the file; a file of another version is refused, not guessed.
LEDGER_VERSION = 1


class Ledger:
    """The owned-address set and its file. Only the netlink writer touches it."""

    def __init__(self, path: str, entries: Iterable[LedgerKey] = ()) -> None:
        self.path = path
        self._entries: set[LedgerKey] = set(entries)

    def __repr__(self) -> str:
        return f"Ledger({self.path!r}, {len(self._entries)} addresses)"

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: str) -> Ledger:
        """Read the ledger (a missing file is an empty ledger).

        Raises:
            ConfigError: the file exists but is not a ledger this version wrote; the agent
                must not guess which addresses are its own.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"ownership state file {path} is unreadable ({exc}); move it "
                              "away to start afresh (own addresses then look foreign)",
                              path="state_dir", value=path) from None
        if not isinstance(raw, dict) or raw.get("version") != LEDGER_VERSION or not isinstance(
                raw.get("addresses"), list):
            raise ConfigError(f"ownership state file {path} is not a version {LEDGER_VERSION} "
                              "ledger", path="state_dir", value=path)
        entries = []
        for item in raw["addresses"]:
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int)
                    or not isinstance(item[1], str)):
                raise ConfigError(f"ownership state file {path}: bad entry {item!r}",
                                  path="state_dir", value=path)
            entries.append((item[0], item[1]))
        return cls(path, entries)

    def save(self) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        body = {"version": LEDGER_VERSION,
                "addresses": sorted([i, a] for i, a in self._entries)}
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ledger-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def claim(self, keys: Iterable[LedgerKey]) -> None:
        """Record addresses about to be added (persisted before the request is sent)."""
        new = set(keys) - self._entries
        if new:
            self._entries |= new
            self.save()

    def forget(self, keys: Iterable[LedgerKey]) -> None:
        """Drop addresses the kernel confirmed deleted (or that no longer exist)."""
        gone = set(keys) & self._entries
        if gone:
            self._entries -= gone
            self.save()

    def retain(self, present: Iterable[LedgerKey]) -> None:
        """Prune claims for addresses absent from a full dump."""
        self.forget(self._entries - set(present))


def ledger_path(state_dir: str, netns: str | None) -> str:
    """``<state_dir>/addresses-<netns basename or 'host'>.json``."""
    name = os.path.basename(netns) if netns else "host"
    return os.path.join(state_dir, f"addresses-{name}.json")
