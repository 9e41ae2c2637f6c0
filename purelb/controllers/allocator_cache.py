"""The allocator's Service cache entries: each slimmed Service as deflated compact JSON.

Even slimmed (:func:`~purelb.controllers.allocator_reconcile.slim_service`), a Service
held as nested dicts and lists costs ~2.6 KB; the same fields as compact JSON are
~0.5 KB, and deflated against a preset dictionary (:data:`ZDICT`: the keys and values
every Service repeats) ~0.1 KB, so 10,000 Services cost ~1 MB of the allocator's memory
instead of ~25 MB. Inflating and decoding one costs ~5 us, against ~2 ms of API round
trips per reconcile, so the cache keeps bytes and every read decodes a fresh, private copy
(a caller can no longer mutate the cache by accident).

:class:`PackedService` is a read-only ``Mapping``, so the generic reflector store and
the daemon's change handlers read ``obj.get("metadata")`` from it as from a dict.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from purelb import fastjson
from purelb.controllers.allocator_reconcile import slim_service
from purelb.model import annotations as ann

JSON = dict[str, Any]

#: raw deflate (no header or checksum: the bytes never leave this process) with a 4 KiB
#: window -- a slimmed Service is ~0.5 KB, so the preset dictionary and the whole entry
#: fit in it -- and a small hash table: ~24 KB of zlib state per call instead of ~260 KB
#: (which glibc serves by mmap, 20x slower). Level 6 costs ~4 us per entry.
_WBITS = -12
_MEM_LEVEL = 4
_LEVEL = 6


def _preset_dictionary() -> bytes:
    """What slimmed Services look like, for deflate to refer back to.

    Deflate finds repeats within an entry only; a preset dictionary lets it refer to
    strings every Service shares (field names in slim order, our annotations, enum
    values): ~85 bytes per entry instead of ~300. Entries never leave this process, so
    the dictionary may change freely between versions. The common shape goes last
    (deflate codes near matches shorter); the first template holds the rarer fields.
    """
    rare = {
        "metadata": {"name": "", "namespace": "default", "uid": "", "resourceVersion": "",
                     "annotations": {ann.SERVICE_GROUP: ann.DEFAULT_GROUP, ann.ADDRESSES: "",
                                     ann.ALLOW_SHARED_IP: ""}},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": ann.LOAD_BALANCER_CLASS,
                 "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"],
                 "ipFamilyPolicy": "RequireDualStack", "externalTrafficPolicy": "Local",
                 "allocateLoadBalancerNodePorts": True, "loadBalancerIP": "",
                 "ipFamilies": ["IPv6", "IPv4"], "ports": [{"protocol": "UDP", "port": 53}]},
    }
    common = {
        "metadata": {"name": "", "namespace": "default", "uid": "", "resourceVersion": "",
                     "annotations": {ann.ALLOCATED_BY: ann.BRAND,
                                     ann.ALLOCATED_FROM: ann.DEFAULT_GROUP,
                                     ann.POOL_TYPE: "local"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                 "ipFamilyPolicy": "SingleStack", "allocateLoadBalancerNodePorts": False,
                 "ipFamilies": ["IPv4"], "ports": [{"protocol": "TCP", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ipMode": "VIP"}]}},
    }
    return b"".join(fastjson.dumps(t) for t in (rare, common))  # the entries' own encoder


ZDICT = _preset_dictionary()


def deflate(raw: bytes) -> bytes:
    """``raw`` compressed against :data:`ZDICT` (a fresh compressor: ~24 KB, freed at once)."""
    z = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY,
                         zdict=ZDICT)
    return z.compress(raw) + z.flush()


def inflate(data: bytes) -> bytes:
    """The bytes :func:`deflate` was given."""
    z = zlib.decompressobj(_WBITS, zdict=ZDICT)
    return z.decompress(data) + z.flush()


class PackedService(Mapping[str, Any]):
    """A slimmed Service as deflated JSON; ``unpack()`` (or any key access) decodes it."""

    __slots__ = ("raw",)

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.raw = deflate(fastjson.dumps(obj))
        """The deflated compact JSON (:func:`inflate` gives the JSON back)."""

    def unpack(self) -> JSON:
        """A fresh dict of the whole object (the namespace string shared, not copied)."""
        data: JSON = fastjson.loads(inflate(self.raw))
        meta = data.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("namespace"), str):
            # the reflector store keeps (namespace, name) of every entry as its key
            meta["namespace"] = sys.intern(meta["namespace"])
        return data

    def __getitem__(self, key: str) -> Any:
        return self.unpack()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.unpack())

    def __len__(self) -> int:
        return len(self.unpack())

    def __repr__(self) -> str:
        text = inflate(self.raw)
        return f"PackedService({text[:80]!r}{'...' if len(text) > 80 else ''})"


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
