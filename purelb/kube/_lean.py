"""A lean HTTP/1.1 keep-alive pool for the client's small request/response calls.

httpx costs ~1 ms of CPU per request (URL merging and parsing, header models, the
httpcore pool, trace hooks, response models); the allocator makes three writes per
Service, so that alone capped it near 300 Services/s per core. This pool speaks the same
protocol through ``h11`` (which httpx uses too) over Trio streams, with the request head
formatted once per call and nothing else in between: a few times less CPU per request.

Scope is deliberately small: requests without a query string and with a buffered body
(get, create, replace, patch, delete). Lists (gzip worth having) and watches (streamed)
stay on httpx. A connection is reused only when the previous exchange completed cleanly
and the server has not closed it meanwhile (checked before reuse, as httpcore does);
anything else -- an error, a timeout, a cancellation mid-exchange -- closes it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

#: largest response body read into memory; a single object is far below it (etcd's own
#: object limit is 1.5 MiB) and a runaway or hostile answer must not exhaust memory
MAX_BODY_BYTES = 64 * 1024 * 1024
#: bytes read per receive: one typical object in one call
RECEIVE_BYTES = 65536


class LeanError(Exception):
    """The exchange failed below HTTP (connect, TLS, protocol, timeout); the message says how."""


@dataclass(frozen=True, slots=True)
class LeanResponse:
    status_code: int
    headers: dict[str, str]
    """Lower-cased names; the last value of a repeated header wins."""
    content: bytes


class _Lane:
    """One keep-alive connection and its protocol state."""

    __slots__ = ("conn", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    def socket_closed(self) -> bool:
        """Whether the server closed (or sent stray bytes on) this idle connection."""
        stream = self.stream
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
        self._idle: list[_Lane] = []
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = 443 if self._tls else 80
        netloc = host if self._port == default_port else f"{host}:{self._port}"
        self._base_headers = [("Host", netloc), *base_headers]
        self._closed = False
        self.connections_opened = 0
        """Connections opened so far (tests check reuse with it)."""

    def __repr__(self) -> str:
        return f"LeanPool({self._host}:{self._port}, idle={len(self._idle)})"

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for lane in idle:
            await trio.aclose_forcefully(lane.stream)

    async def request(self, method: str, path: str, headers: list[tuple[str, str]],
                      body: bytes | None) -> LeanResponse:
        """One exchange; raises :class:`LeanError` for anything that is not an HTTP answer."""
        if self._closed:
            raise LeanError("the connection pool is closed")
        all_headers = [*self._base_headers, *headers]
        if body is not None:
            all_headers.append(("Content-Length", str(len(body))))
        try:
            request = h11.Request(method=method, target=self._prefix + path,
                                  headers=all_headers)
        except h11.ProtocolError as exc:  # e.g. a token with a newline in it
            raise LeanError(f"cannot form the request: {exc}") from exc
        async with self._limit:
            lane = await self._take()
            try:
                with trio.fail_after(self._request_timeout):
                    response = await self._exchange(lane, request, body)
            except trio.TooSlowError:
                await trio.aclose_forcefully(lane.stream)
                raise LeanError(f"no answer within {self._request_timeout:g} s") from None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    h11.ProtocolError, ssl.SSLError) as exc:
                await trio.aclose_forcefully(lane.stream)
                raise LeanError(_describe(exc)) from exc
            except BaseException:
                await trio.aclose_forcefully(lane.stream)  # cancelled mid-exchange
                raise
            await self._release(lane)
            return response

    async def _take(self) -> _Lane:
        while self._idle:
            lane = self._idle.pop()
            if not lane.socket_closed():
                return lane
            await trio.aclose_forcefully(lane.stream)
        return await self._connect()

    async def _connect(self) -> _Lane:
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
        return _Lane(stream)

    async def _release(self, lane: _Lane) -> None:
        conn = lane.conn
        if (not self._closed and conn.our_state is h11.DONE and conn.their_state is h11.DONE):
            conn.start_next_cycle()
            self._idle.append(lane)
        else:
            await trio.aclose_forcefully(lane.stream)

    @staticmethod
    async def _exchange(lane: _Lane, request: h11.Request, body: bytes | None) -> LeanResponse:
        conn = lane.conn
        out = conn.send(request) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await lane.stream.send_all(out)
        status = 0
        headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await lane.stream.receive_some(RECEIVE_BYTES)
                conn.receive_data(data)  # b"" is EOF: h11 raises if a message is cut short
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                           for k, v in event.headers}
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    raise h11.RemoteProtocolError(
                        f"response body exceeds {MAX_BODY_BYTES} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return LeanResponse(status, headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("server closed the connection before answering")


def _describe(exc: BaseException) -> str:
    """The innermost non-empty error: trio wraps an ``ssl.SSLError`` (which names the
    certificate problem) in a ``BrokenResourceError`` without a message."""
    detail = f"{type(exc).__name__}: {exc}"
    inner: BaseException | None = exc
    while inner is not None:
        if str(inner):
            detail = f"{type(inner).__name__}: {inner}"
        inner = inner.__cause__  # explicit wrapping only: __context__ is often
        # an internal lookup the library recovered from (h11 raises from a KeyError)
    return detail
