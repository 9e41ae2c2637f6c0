"""JSON on the hot paths (API requests and responses, watch streams, object copies).

The allocator and the API server spend a large share of their CPU turning Kubernetes
objects into JSON and back: three writes, three watch events and an Event per Service.
``orjson`` does that several times faster than the standard library, so the hot paths go
through here; everything else keeps using :mod:`json`.

Semantics match the standard library (and Kubernetes) except where noted:

* :func:`dumps` returns compact UTF-8 bytes (no ``\\uXXXX`` escapes, no spaces). What
  orjson cannot encode -- non-string keys, integers beyond 64 bits, ``Mapping`` types
  that are not dicts -- falls back to :func:`json.dumps`, so no input that used to
  encode now fails.
* :func:`loads` reads integers beyond 64 bits as floats (as Kubernetes' own unstructured
  decoding does) and refuses lone surrogates and out-of-range numbers with a
  :class:`json.JSONDecodeError` (``orjson.JSONDecodeError`` subclasses it).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson

_COMPACT = (",", ":")


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes of ``obj``."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=_COMPACT).encode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document (raises :class:`json.JSONDecodeError`)."""
    return orjson.loads(data)


def copy_tree(obj: Any) -> Any:
    """A deep copy of a tree parsed from JSON (dicts, lists, str, int, float, bool, None).

    A round trip through orjson is several times faster than :func:`copy.deepcopy` for
    the nested dicts Kubernetes objects are; anything it cannot carry exactly (big
    integers, non-string keys, non-JSON values) is copied by :func:`copy.deepcopy`.
    """
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)
