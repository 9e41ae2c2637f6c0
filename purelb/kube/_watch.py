"""Watch stream decoding: bytes in, typed events out (sans-I/O).

The API server streams one JSON object per line. :class:`LineSplitter` reassembles lines
across chunk boundaries with a hard size limit; :func:`decode_event` checks the shape.
``ERROR`` events are not returned: they carry a ``Status`` and are raised through the
same error mapping as HTTP answers (so an expired resourceVersion becomes ``Gone``).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from purelb import fastjson

from ._errors import KubeApiError, MalformedResponse, RequestContext, map_error

#: Longest single watch line we accept, in bytes. etcd caps objects at 1.5 MiB and JSON
#: encoding can roughly double that; anything larger is a broken or hostile stream.
MAX_WATCH_LINE_BYTES = 8 * 1024 * 1024


class WatchEventType(enum.Enum):
    """The ``type`` of a watch event."""

    ADDED = "ADDED"
    """An object was created (or appeared in the selector's view)."""
    MODIFIED = "MODIFIED"
    """An object changed."""
    DELETED = "DELETED"
    """An object was deleted; the payload is its last state."""
    BOOKMARK = "BOOKMARK"
    """No change; only ``metadata.resourceVersion`` is meaningful (progress marker)."""


class WatchEvent(NamedTuple):
    """One decoded watch event."""

    type: WatchEventType
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class LineSplitter:
    """Reassemble newline-terminated lines from arbitrary chunks, bounded in size."""

    def __init__(self, max_line_bytes: int = MAX_WATCH_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; return the complete, non-blank lines it finished."""
        self._buf += chunk
        *complete, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        if len(self._buf) > self._max:
            size = len(self._buf)
            self._buf.clear()
            raise MalformedResponse(
                f"watch line exceeds {self._max} bytes (at least {size}); stream dropped"
            )
        return [bytes(line) for line in complete if line.strip()]

    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)


def decode_event(line: bytes, context: RequestContext) -> WatchEvent:
    """Decode one line; raise the mapped error for ``ERROR`` events."""
    try:
        data = fastjson.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponse(
            f"{context.describe()}: watch line of {len(line)} bytes is not JSON", context=context
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        shape = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise MalformedResponse(
            f"{context.describe()}: watch event has no object (got {shape})", context=context
        )
    kind = data.get("type")
    obj = data["object"]
    if kind == "ERROR":
        raise watch_error(obj, context)
    try:
        event_type = WatchEventType(kind)
    except ValueError:
        raise MalformedResponse(
            f"{context.describe()}: unknown watch event type {kind!r}", context=context
        ) from None
    return WatchEvent(event_type, obj)


def watch_error(obj: dict[str, Any], context: RequestContext) -> KubeApiError:
    """Map the Status of a watch ``ERROR`` event (code 410 means expired)."""
    status = obj if obj.get("kind") == "Status" else None
    code = obj.get("code") if status else None
    if not isinstance(code, int):
        code = 500
    return map_error(code, status=status, body_size=0, retry_after=None, context=context)
