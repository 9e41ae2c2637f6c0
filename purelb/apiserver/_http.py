"""HTTP/1.1 over Trio with h11: one task per connection, keep-alive, chunked streams.

The transport knows nothing about Kubernetes. It parses a request (refusing bodies over
``max_body_bytes`` with 413 before reading them), hands a :class:`Request` to the
application, and writes either a :class:`Response` (Content-Length) or a
:class:`StreamResponse` (chunked; each ``write`` is flushed at once). While a stream is
open it keeps reading the socket, so a client that hangs up ends its stream promptly
instead of when the next event happens to fail.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

LOG = logging.getLogger(__name__)

READ_CHUNK_BYTES = 65_536
MAX_HEADER_BYTES = 64 * 1024
"""Largest request head accepted; the real server's limit is 1 MiB, 64 KiB is plenty."""
KEEPALIVE_IDLE_S = 120.0
"""An idle keep-alive connection is closed after this long (frees the task)."""


@dataclass(slots=True)
class Request:
    method: str
    target: str
    """The raw request target (path plus query), as sent."""
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names; the last value wins."""
    body: bytes
    peer: str = ""
    user: str = ""
    """Authenticated user name ('' before authentication)."""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Write = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class StreamResponse:
    """A chunked reply; ``produce(write)`` writes chunks and returns to end the stream."""

    status: int
    produce: Callable[[Write], Awaitable[None]]
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Awaitable[Response | StreamResponse]]


class _BodyTooLarge(Exception):
    pass


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return unquote(parts.path), query


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with trio.move_on_after(KEEPALIVE_IDLE_S) as scope:
                data = await stream.receive_some(READ_CHUNK_BYTES)
            if scope.cancelled_caught:
                data = b""
            conn.receive_data(data)
            continue
        return event  # type: ignore[return-value]


async def serve_connection(
    stream: trio.abc.Stream,
    app: App,
    *,
    max_body_bytes: int,
    too_large: Callable[[], Response],
    bad_request: Callable[[str], Response],
    peer: str = "",
) -> None:
    """Serve requests on one connection until it closes."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        while True:
            try:
                event = await _next_event(conn, stream)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, bad_request(f"malformed HTTP request: {exc}"),
                                close=True)
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            target = event.target.decode("latin-1")
            try:
                length = int(headers.get("content-length", "0") or 0)
            except ValueError:
                length = 0
            try:
                if length > max_body_bytes:
                    raise _BodyTooLarge
                if conn.they_are_waiting_for_100_continue:  # curl does this for big bodies
                    await stream.send_all(conn.send(h11.InformationalResponse(
                        status_code=100, headers=[])) or b"")
                body = await _read_body(conn, stream, max_body_bytes)
            except _BodyTooLarge:
                await _send(conn, stream, too_large(), close=True)
                return
            except h11.RemoteProtocolError as exc:
                await _send(conn, stream, bad_request(f"malformed HTTP body: {exc}"), close=True)
                return
            if body is None:
                return
            path, query = parse_target(target)
            req = Request(event.method.decode(), target, path, query, headers, body, peer=peer)
            resp = await app(req)
            if isinstance(resp, StreamResponse):
                await _send_stream(conn, stream, resp)
            else:
                await _send(conn, stream, resp)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        return
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise _BodyTooLarge
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        else:
            return None


def _head(resp: Response | StreamResponse, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    hs = [("Content-Type", resp.content_type), ("Cache-Control", "no-cache, private")]
    hs += list(resp.headers.items())
    return hs + extra


async def _send(
    conn: h11.Connection, stream: trio.abc.Stream, resp: Response, *, close: bool = False
) -> None:
    extra = [("Content-Length", str(len(resp.body)))]
    if close:
        extra.append(("Connection", "close"))
    out = conn.send(h11.Response(status_code=resp.status, headers=_head(resp, extra)))
    out += conn.send(h11.Data(data=resp.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)


async def _send_stream(conn: h11.Connection, stream: trio.abc.Stream, resp: StreamResponse) -> None:
    head = conn.send(h11.Response(
        status_code=resp.status,
        headers=_head(resp, [("Transfer-Encoding", "chunked")]),
    ))
    await stream.send_all(head or b"")

    async def write(data: bytes) -> None:
        out = conn.send(h11.Data(data=data))
        if out:
            await stream.send_all(out)

    hung_up = False
    async with trio.open_nursery() as nursery:

        async def watch_for_hangup() -> None:
            # A client that closes its socket ends the stream; anything else it sends
            # (a pipelined request) is kept for after the stream.
            nonlocal hung_up
            try:
                while data := await stream.receive_some(READ_CHUNK_BYTES):
                    conn.receive_data(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                pass
            hung_up = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_for_hangup)
        try:
            await resp.produce(write)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            hung_up = True
        finally:
            nursery.cancel_scope.cancel()
    if hung_up:
        # The peer is gone, so no terminating chunk and no next request.
        raise trio.BrokenResourceError("client closed the stream")
    out = conn.send(h11.EndOfMessage())
    if out:
        await stream.send_all(out)
