"""HTTP/1.1 over Trio with httptools (llhttp): one task per connection, keep-alive, chunked streams.

The transport knows nothing about Kubernetes. llhttp (C, via httptools) parses requests;
responses are formatted here directly as bytes, because a generic HTTP state machine
(h11) cost ~30% of the server's CPU under load. Behaviour:

- Requests are parsed by :class:`_RequestReader`, a sans-I/O wrapper: bytes in, complete
  requests (queued, served in order, so pipelining works) or one refusal out.
- A body over ``max_body_bytes`` (declared by Content-Length, or a chunked body while it
  streams in) is refused with 413 before it is read; a head over :data:`MAX_HEADER_BYTES`
  gets 431; a malformed request gets 400. Each refusal closes the connection.
- ``Expect: 100-continue`` gets its interim reply before the body is read (curl waits).
- A :class:`Response` is sent with Content-Length, a :class:`StreamResponse` chunked, each
  ``write`` flushed at once. While a stream is open the socket is still read, so a client
  that hangs up ends its stream promptly; bytes it sends meanwhile (a pipelined request)
  are kept for after the stream.
- HTTP/1.1 keeps the connection alive unless ``Connection: close``; HTTP/1.0 closes unless
  it asks for keep-alive. An idle connection is closed after :data:`KEEPALIVE_IDLE_S`.
- An ``Upgrade`` (websocket, h2c) is declined the way Go's net/http declines it for a
  plain handler: the request is answered over HTTP/1.1, then the connection is closed.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

import httptools
import trio

LOG = logging.getLogger(__name__)

READ_CHUNK_BYTES = 65_536
MAX_HEADER_BYTES = 64 * 1024
"""Largest request head accepted; the real server's limit is 1 MiB, 64 KiB is plenty.
Checked exactly when the head completes and, while it streams in, to within one read."""
KEEPALIVE_IDLE_S = 120.0
"""An idle keep-alive connection is closed after this long (frees the task)."""
LINGER_S = 1.0
"""After refusing a request we half-close and drain the socket this long before closing,
so unread request bytes do not make the kernel send a reset that destroys our reply."""
LINGER_MAX_BYTES = 8 * 1024 * 1024
"""...and discard at most this much while draining."""


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


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return unquote(parts.path), query


# --- parsing (sans-I/O) -------------------------------------------------------------------

TOO_LARGE = "too_large"
HEAD_TOO_LARGE = "head_too_large"
BAD_REQUEST = "bad_request"


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why the connection stops reading: one of the kinds above, with a message for 400s."""

    kind: str
    message: str = ""


@dataclass(slots=True)
class _Parsed:
    request: Request
    keep_alive: bool
    """The client lets us keep the connection open after this request."""
    http10: bool
    """An HTTP/1.0 client: keep-alive must be echoed, and no chunked framing."""
    upgrade: bool
    """The client asked to switch protocols; we decline and close after answering."""


class _Stop(Exception):
    """Raised inside a parser callback to stop llhttp after a refusal is recorded."""


class _RequestReader:
    """Feed it socket bytes; it queues complete requests in ``ready``, or sets ``refusal``.

    Wraps ``httptools.HttpRequestParser`` (these methods are its callbacks). After a
    refusal or an Upgrade nothing more is parsed: the connection is going to close.
    ``feed`` never raises on any input.
    """

    def __init__(self, max_body_bytes: int, peer: str = "") -> None:
        self.ready: deque[_Parsed] = deque()
        self.refusal: _Refusal | None = None
        self.upgraded = False
        self.continue_sent = False
        self._max_body = max_body_bytes
        self._peer = peer
        self._parser = httptools.HttpRequestParser(self)
        self._completed = 0
        self._in_head = False
        self._in_body = False
        self._head_exact = 0
        self._head_fed = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._expect_continue = False

    @property
    def stopped(self) -> bool:
        """Nothing more will be parsed on this connection."""
        return self.refusal is not None or self.upgraded

    @property
    def wants_continue(self) -> bool:
        """The request being read waits for ``100 Continue`` before sending its body."""
        return (self._in_body and self._expect_continue and self._body_size == 0
                and not self.continue_sent and not self.stopped)

    def feed(self, data: bytes) -> None:
        if self.stopped:
            return
        completed_before = self._completed
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True
            return
        except httptools.HttpParserError as exc:
            if self.refusal is None:  # else a callback recorded why it stopped the parser
                cause = exc.__context__  # what a callback raised (an unparsable target, say)
                why = f"{exc}: {cause}" if cause is not None else str(exc)
                self.refusal = _Refusal(BAD_REQUEST, f"malformed HTTP request: {why}")
            return
        if self._in_head:
            # llhttp buffers a header line until it ends, so bound the head while it is
            # still coming. A read that completed no request is all head (it began at a
            # message boundary or inside this head); otherwise count what we know exactly.
            if self._completed == completed_before:
                self._head_fed += len(data)
            else:
                self._head_fed = self._head_exact
            if self._head_fed > MAX_HEADER_BYTES:
                self.refusal = _Refusal(HEAD_TOO_LARGE)

    def _refuse(self, kind: str, message: str = "") -> None:
        self.refusal = _Refusal(kind, message)
        raise _Stop(kind)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_exact = 0
        self._head_fed = 0
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._expect_continue = False
        self.continue_sent = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_exact += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_exact += len(name) + len(value) + 4
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_exact > MAX_HEADER_BYTES:
            self._refuse(HEAD_TOO_LARGE)
        headers = self._headers
        version = self._parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._refuse(BAD_REQUEST, f"unsupported HTTP version {version}")
        if version == "1.1" and "host" not in headers:
            self._refuse(BAD_REQUEST, "missing Host header (required by HTTP/1.1)")
        length = int(headers.get("content-length", "0") or 0)  # llhttp checked the digits
        if self._parser.should_upgrade() and (length or "transfer-encoding" in headers):
            # llhttp would hand the body over as the new protocol's bytes; we never switch.
            self._refuse(BAD_REQUEST, "a request body with a protocol upgrade is not supported")
        if length > self._max_body:
            self._refuse(TOO_LARGE)
        self._expect_continue = (version == "1.1"
                                 and headers.get("expect", "").lower() == "100-continue")
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:  # a chunked body, limited as it streams in
            self._refuse(TOO_LARGE)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._completed += 1
        parser = self._parser
        target = self._url.decode("latin-1")
        path, query = parse_target(target)
        method = parser.get_method().decode("ascii")
        request = Request(method, target, path, query, self._headers, b"".join(self._body),
                          peer=self._peer)
        self.ready.append(_Parsed(request, parser.should_keep_alive(),
                                  parser.get_http_version() == "1.0", parser.should_upgrade()))


# --- formatting (pure) --------------------------------------------------------------------

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii"))
                 for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CACHE_CONTROL = b"Cache-Control: no-cache, private\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_UNSAFE_IN_HEADER = str.maketrans({"\r": " ", "\n": " ", "\0": " "})
_HEAD_TOO_LARGE = Response(431, b"431 Request Header Fields Too Large",
                           "text/plain; charset=utf-8")
"""Go's net/http answers an oversized head itself, in plain text, before any handler."""


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def _no_body(status: int) -> bool:
    return status < 200 or status in (204, 304)


def format_head(
    status: int, content_type: str, headers: dict[str, str], framing: bytes
) -> bytes:
    """Status line and headers; ``framing`` is the Content-Length/Transfer-Encoding and
    Connection lines. Header values from the app cannot split the response: CR, LF and
    NUL become spaces."""
    parts = [_status_line(status), b"Content-Type: ", content_type.encode("latin-1"), b"\r\n",
             _CACHE_CONTROL]
    for name, value in headers.items():
        line = f"{name}: {value}".translate(_UNSAFE_IN_HEADER)
        parts.append(line.encode("latin-1", "replace") + b"\r\n")
    parts.append(framing)
    parts.append(b"\r\n")
    return b"".join(parts)


def _connection_line(close: bool, http10: bool) -> bytes:
    if close:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if http10 else b""


def format_response(
    resp: Response, *, close: bool = False, http10: bool = False, head_only: bool = False
) -> bytes:
    """A whole Content-Length response (the body left out for HEAD, 1xx, 204 and 304)."""
    framing = _connection_line(close, http10)
    if _no_body(resp.status):
        return format_head(resp.status, resp.content_type, resp.headers, framing)
    framing += b"Content-Length: %d\r\n" % len(resp.body)
    head = format_head(resp.status, resp.content_type, resp.headers, framing)
    return head if head_only else head + resp.body


def format_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


# --- the connection (I/O) -----------------------------------------------------------------

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
    reader = _RequestReader(max_body_bytes, peer)
    try:
        # One scope whose deadline is armed only around each read: cheaper than a fresh
        # move_on_after per request. When it fires the loop ends and the connection closes.
        with trio.CancelScope() as idle:
            await _serve(stream, app, reader, idle, max_body_bytes, too_large, bad_request)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        return
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def _serve(
    stream: trio.abc.Stream, app: App, reader: _RequestReader, idle: trio.CancelScope,
    max_body_bytes: int, too_large: Callable[[], Response],
    bad_request: Callable[[str], Response],
) -> None:
    while True:
        while reader.ready:
            if not await _answer(stream, app, reader, max_body_bytes):
                return
        if reader.refusal is not None:
            refusal = reader.refusal
            if refusal.kind == TOO_LARGE:
                resp = too_large()
            elif refusal.kind == HEAD_TOO_LARGE:
                resp = _HEAD_TOO_LARGE
            else:
                resp = bad_request(refusal.message)
            await stream.send_all(format_response(resp, close=True))
            await _linger(stream)
            return
        if reader.upgraded:  # the upgrade request itself was answered with a close
            return
        if reader.wants_continue:  # curl sends it for big bodies
            reader.continue_sent = True
            await stream.send_all(_CONTINUE)
        idle.deadline = trio.current_time() + KEEPALIVE_IDLE_S
        data = await stream.receive_some(READ_CHUNK_BYTES)
        idle.deadline = math.inf
        if not data:  # hang-up (or idle, above): an unfinished request dies with it
            return
        reader.feed(data)


async def _answer(
    stream: trio.abc.Stream, app: App, reader: _RequestReader, max_body_bytes: int
) -> bool:
    """Serve the next queued request; False when the connection must close after it."""
    parsed = reader.ready.popleft()
    resp = await app(parsed.request)
    close = not parsed.keep_alive or parsed.upgrade
    head_only = parsed.request.method == "HEAD"
    if not isinstance(resp, StreamResponse):
        await stream.send_all(format_response(
            resp, close=close, http10=parsed.http10, head_only=head_only))
        return not close
    close = close or parsed.http10  # no chunked framing in 1.0: the close ends the body
    kept = await _send_stream(stream, resp, close=close, http10=parsed.http10,
                              head_only=head_only, keep_limit=MAX_HEADER_BYTES + max_body_bytes)
    if not close:
        reader.feed(kept)
    return not close


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close (TCP; TLS cannot), then discard what the client still sends, briefly
    (see LINGER_S)."""
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        drained = 0
        with trio.move_on_after(LINGER_S):
            while drained < LINGER_MAX_BYTES:
                data = await stream.receive_some(READ_CHUNK_BYTES)
                if not data:
                    return
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        return


async def _send_stream(
    stream: trio.abc.Stream, resp: StreamResponse, *, close: bool, http10: bool,
    head_only: bool, keep_limit: int,
) -> bytes:
    """Send a chunked reply; returns the bytes the client sent meanwhile (kept up to
    ``keep_limit``, then no longer read). Raises BrokenResourceError if the client hung up."""
    framing = _connection_line(close, http10)
    if not http10:
        framing += b"Transfer-Encoding: chunked\r\n"
    await stream.send_all(format_head(resp.status, resp.content_type, resp.headers, framing))
    if head_only:
        return b""

    async def write(data: bytes) -> None:
        if data:  # an empty chunk would end the stream
            await stream.send_all(data if http10 else format_chunk(data))

    kept: list[bytes] = []
    hung_up = False
    async with trio.open_nursery() as nursery:

        async def watch_for_hangup() -> None:
            # A client that closes its socket ends the stream; anything else it sends
            # (a pipelined request) is kept for after the stream.
            nonlocal hung_up
            size = 0
            try:
                while data := await stream.receive_some(READ_CHUNK_BYTES):
                    kept.append(data)
                    size += len(data)
                    if size >= keep_limit:  # stop reading; the writes notice a hang-up
                        await trio.sleep_forever()
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
    if not http10:
        await stream.send_all(_LAST_CHUNK)
    return b"".join(kept)
