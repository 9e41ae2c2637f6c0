"""A lean HTTP/1.1 keep-alive pool for the client's small request/response calls.

httpx costs ~1 ms of CPU per request (URL merging and parsing, header models, the
httpcore pool, trace hooks, response models); the allocator makes three writes per
Service, so that alone capped it near 300 Services/s per core. This pool writes the
request head itself (formatted once per call, values checked for CR/LF/NUL) and parses
the response with ``httptools`` (llhttp, the C parser uvicorn uses) over Trio streams:
a few times less CPU per request than h11, which it replaced.

Scope is deliberately small: requests without a query string and with a buffered body
(get, create, replace, patch, delete). Lists (gzip worth having) and watches (streamed)
stay on httpx. A connection is reused only when the previous exchange completed cleanly,
the server allowed keep-alive and sent nothing beyond the response, and the server has
not closed it meanwhile (checked before reuse, as httpcore does); anything else -- an
error, a timeout, a cancellation mid-exchange -- closes it.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import trio

#: largest response body read into memory; a single object is far below it (etcd's own
#: object limit is 1.5 MiB) and a runaway or hostile answer must not exhaust memory
MAX_BODY_BYTES = 64 * 1024 * 1024
#: bytes read per receive: one typical object in one call
RECEIVE_BYTES = 65536
#: what may not appear in a request target or header value (request smuggling, broken
#: framing): controls and, in the target, spaces
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class LeanError(Exception):
    """The exchange failed below HTTP (connect, TLS, protocol, timeout); the message says how."""


class _BadResponse(Exception):
    """The server's bytes are not an acceptable HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class LeanResponse:
    status_code: int
    headers: dict[str, str]
    """Lower-cased names; the last value of a repeated header wins."""
    content: bytes


class _Reply:
    """httptools callbacks collecting one response (1xx interim responses skipped)."""

    __slots__ = ("chunks", "complete", "headers", "headers_done", "keep_alive", "parser",
                 "size", "status", "trailing")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.trailing = False
        """Bytes followed the response: the connection's framing cannot be trusted."""

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_BODY_BYTES:
            raise _BadResponse(f"response body exceeds {MAX_BODY_BYTES} bytes")
        self.chunks.append(bytes(data))

    def on_message_complete(self) -> None:
        if self.status < 200:  # 100 Continue and friends: the real answer follows
            self.headers, self.chunks, self.size, self.headers_done = {}, [], 0, False
            return
        if not self.complete:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__  # what a callback raised (on_body's size limit)
            raise _BadResponse(str(cause) if cause is not None else str(exc)) from None
        except httptools.HttpParserError as exc:
            if not self.complete:
                raise _BadResponse(f"malformed HTTP response: {exc}") from None
            self.trailing = True  # garbage after a complete answer: do not reuse

    def end_of_stream(self) -> None:
        """The server closed: fine only for a body delimited by the close itself."""
        if self.complete:
            return
        delimited = "content-length" in self.headers or "chunked" in self.headers.get(
            "transfer-encoding", "").lower()
        if not self.headers_done or delimited:
            raise _BadResponse("server closed the connection before answering")
        self.complete = True
        self.keep_alive = False


def _socket_closed(stream: trio.abc.Stream) -> bool:
    """Whether the server closed (or sent stray bytes on) this idle connection."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    sock = getattr(stream, "socket", None)
    return sock is None or sock.is_readable()


class LeanPool:
    """Keep-alive connections to one API server (``server`` as in the kubeconfig)."""

    def __init__(self, server: str, *, ssl_context: ssl.SSLContext | None,
                 server_hostname: str | None, connect_timeout_s: float,
                 request_timeout_s: float, max_connections: int,
                 base_headers: list[tuple[str, str]]) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"API server URL {server!r} is not http(s)://host[:port]")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if self._tls else None)
        self._sni = server_hostname or self._host
        self._connect_timeout = connect_timeout_s
        self._request_timeout = request_timeout_s
        self._limit = trio.CapacityLimiter(max_connections)
        self._idle: list[trio.abc.Stream] = []
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = 443 if self._tls else 80
        netloc = host if self._port == default_port else f"{host}:{self._port}"
        self._base_head = "".join(_header_line(n, v) for n, v in
                                  [("Host", netloc), *base_headers])
        """The headers every request carries, checked and formatted once."""
        self._closed = False
        self.connections_opened = 0
        """Connections opened so far (tests check reuse with it)."""

    def __repr__(self) -> str:
        return f"LeanPool({self._host}:{self._port}, idle={len(self._idle)})"

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for stream in idle:
            await trio.aclose_forcefully(stream)

    async def request(self, method: str, path: str, headers: list[tuple[str, str]],
                      body: bytes | None) -> LeanResponse:
        """One exchange; raises :class:`LeanError` for anything that is not an HTTP answer."""
        if self._closed:
            raise LeanError("the connection pool is closed")
        head = self._head(method, self._prefix + path, headers, body)
        async with self._limit:
            stream = await self._take()
            try:
                # a bare CancelScope: trio.fail_after's context-manager wrapper showed in
                # the allocator's profile (one per request)
                with trio.CancelScope(deadline=trio.current_time() + self._request_timeout
                                      ) as deadline:
                    response, reusable = await self._exchange(stream, head, body)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    _BadResponse, ssl.SSLError) as exc:
                await trio.aclose_forcefully(stream)
                raise LeanError(_describe(exc)) from exc
            except BaseException:
                await trio.aclose_forcefully(stream)  # cancelled mid-exchange
                raise
            if deadline.cancelled_caught:
                await trio.aclose_forcefully(stream)
                raise LeanError(f"no answer within {self._request_timeout:g} s")
            if reusable and not self._closed:
                self._idle.append(stream)
            else:
                await trio.aclose_forcefully(stream)
            return response

    def _head(self, method: str, target: str, headers: list[tuple[str, str]],
              body: bytes | None) -> bytes:
        """The request line and headers, refusing anything that would break the framing."""
        if not _TOKEN.fullmatch(method) or _BAD_TARGET.search(target) or not target:
            raise LeanError(f"cannot form the request: bad method or target {method} {target!r}")
        parts = [f"{method} {target} HTTP/1.1\r\n", self._base_head]
        parts.extend(_header_line(name, value) for name, value in headers)
        if body is not None:
            parts.append(f"Content-Length: {len(body)}\r\n")
        parts.append("\r\n")
        try:
            return "".join(parts).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise LeanError(f"cannot form the request: {exc}") from None

    async def _take(self) -> trio.abc.Stream:
        while self._idle:
            stream = self._idle.pop()
            if not _socket_closed(stream):
                return stream
            await trio.aclose_forcefully(stream)
        return await self._connect()

    async def _connect(self) -> trio.abc.Stream:
        try:
            with trio.fail_after(self._connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
                if self._tls:
                    assert self._ssl is not None
                    tls = trio.SSLStream(stream, self._ssl, server_hostname=self._sni,
                                         https_compatible=True)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(stream)
                        raise
                    stream = tls
        except trio.TooSlowError:
            raise LeanError(f"connect to {self._host}:{self._port} timed out after "
                            f"{self._connect_timeout:g} s") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise LeanError(f"connect to {self._host}:{self._port}: {_describe(exc)}") from exc
        self.connections_opened += 1
        return stream

    @staticmethod
    async def _exchange(stream: trio.abc.Stream, head: bytes, body: bytes | None
                        ) -> tuple[LeanResponse, bool]:
        """Send, read one answer; also say whether the connection may be reused."""
        await stream.send_all(head + body if body else head)
        reply = _Reply()
        while not reply.complete:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                reply.end_of_stream()
                break
            reply.feed(data)
        response = LeanResponse(reply.status, reply.headers, b"".join(reply.chunks))
        return response, reply.keep_alive and not reply.trailing


def _header_line(name: str, value: str) -> str:
    """``name: value\\r\\n``, refusing what would break the framing (header injection)."""
    if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
        raise LeanError(f"cannot form the request: header {name!r} has an illegal name or a "
                        "CR, LF or NUL in its value")
    return f"{name}: {value}\r\n"


def _describe(exc: BaseException) -> str:
    """The innermost non-empty error: trio wraps an ``ssl.SSLError`` (which names the
    certificate problem) in a ``BrokenResourceError`` without a message."""
    detail = f"{type(exc).__name__}: {exc}"
    inner: BaseException | None = exc
    while inner is not None:
        if str(inner):
            detail = f"{type(inner).__name__}: {inner}"
        inner = inner.__cause__  # explicit wrapping only: __context__ is often
        # an internal lookup a library recovered from (e.g. raised from a KeyError)
    return detail
