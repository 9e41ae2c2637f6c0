"""The allocator's Service cache entries: each slimmed Service packed as compact JSON bytes.

Even slimmed (:func:`~purelb.controllers.allocator_reconcile.slim_service`), a Service
held as nested dicts and lists costs ~2.6 KB; the same fields as compact JSON are ~0.5 KB.
With 10,000 Services that is ~20 MB of the allocator's resident memory. Decoding one
costs ~5 us, against ~2 ms of API round trips per reconcile, so the cache keeps bytes and
every read decodes a fresh, private copy (a caller can no longer mutate the cache by
accident).

:class:`PackedService` is a read-only ``Mapping``, so the generic reflector store and
the daemon's change handlers read ``obj.get("metadata")`` from it as from a dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from purelb.controllers.allocator_reconcile import slim_service

JSON = dict[str, Any]
_COMPACT = (",", ":")


class PackedService(Mapping[str, Any]):
    """A slimmed Service as compact JSON; ``unpack()`` (or any key access) decodes it."""

    __slots__ = ("raw",)

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.raw = json.dumps(obj, separators=_COMPACT).encode()

    def unpack(self) -> JSON:
        """A fresh dict of the whole object."""
        data: JSON = json.loads(self.raw)
        return data

    def __getitem__(self, key: str) -> Any:
        return self.unpack()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.unpack())

    def __len__(self) -> int:
        return len(self.unpack())

    def __repr__(self) -> str:
        return f"PackedService({self.raw[:80]!r}{'...' if len(self.raw) > 80 else ''})"


def pack_service(obj: JSON) -> PackedService:
    """The reflector transform of the allocator's Service watch: slim, then pack."""
    return PackedService(slim_service(obj))


def unpack(obj: Mapping[str, Any] | None) -> JSON | None:
    """A plain dict of a cache entry (packed or not); ``None`` stays ``None``."""
    if obj is None or isinstance(obj, dict):
        return obj
    if isinstance(obj, PackedService):
        return obj.unpack()
    return dict(obj)
