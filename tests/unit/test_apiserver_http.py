"""The API server's HTTP/1.1 transport (purelb/apiserver/_http.py) over a real loopback socket,
plus its sans-I/O request reader and response formatting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import httptools
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from purelb.apiserver import _http
from purelb.apiserver._http import (
    MAX_HEADER_BYTES,
    Request,
    Response,
    StreamResponse,
    Write,
    format_chunk,
    format_response,
    serve_connection,
)

MAX_BODY = 1000
"""A small body limit, so the tests can exceed it cheaply."""
STEP_S = 5.0
"""Upper bound on any single wait in these tests (they normally take milliseconds)."""


@dataclass
class App:
    """Echoes each request as JSON; ``/watch`` streams until ``finish`` is set."""

    seen: list[Request] = field(default_factory=list)
    stream_started: trio.Event = field(default_factory=trio.Event)
    finish: trio.Event = field(default_factory=trio.Event)
    stream_ended: trio.Event = field(default_factory=trio.Event)
    errors: list[BaseException] = field(default_factory=list)

    async def __call__(self, req: Request) -> Response | StreamResponse:
        self.seen.append(req)
        if req.path == "/watch":
            return StreamResponse(200, self._produce)
        doc = {"method": req.method, "target": req.target, "path": req.path,
               "query": req.query, "headers": req.headers, "body": req.body.decode()}
        return Response(201 if req.method == "POST" else 200, json.dumps(doc).encode(),
                        headers={"X-Seq": str(len(self.seen))})

    async def _produce(self, write: Write) -> None:
        try:
            await write(b'{"n":1}\n')
            self.stream_started.set()
            await self.finish.wait()
            await write(b'{"n":2}\n')
        finally:
            self.stream_ended.set()


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    """Serve ``app`` on a loopback port; any exception escaping a connection is recorded."""

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await serve_connection(
                stream, app, max_body_bytes=MAX_BODY,
                too_large=lambda: Response(413, b'{"reason":"RequestEntityTooLarge"}'),
                bad_request=lambda m: Response(400, json.dumps({"message": m}).encode()),
            )
        except Exception as exc:  # the test fails on any of these
            app.errors.append(exc)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()
    assert not app.errors, app.errors


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


class Client:
    """Raw bytes out, replies parsed with llhttp's response parser."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.replies: list[Reply] = []
        self.eof = False
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.replies.append(Reply(self._parser.get_status_code(), self._headers,
                                  b"".join(self._body)))
        self._headers, self._body = {}, []

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self, count: int) -> list[Reply]:
        """Wait for ``count`` more replies (fails if the server closes first)."""
        want = len(self.replies) + count
        with trio.fail_after(STEP_S):
            while len(self.replies) < want:
                data = await self.stream.receive_some(65536)
                assert data, f"server closed after {self.replies}"
                self._parser.feed_data(data)
        return self.replies[want - count:want]

    async def raw(self) -> bytes:
        """Bytes until the server closes."""
        out = b""
        with trio.fail_after(STEP_S):
            while data := await self.stream.receive_some(65536):
                out += data
        return out

    async def closed(self) -> bool:
        """True once the server has closed (nothing else arrives first)."""
        with trio.fail_after(STEP_S):
            try:
                return await self.stream.receive_some(65536) == b""
            except trio.BrokenResourceError:
                return True


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        yield Client(stream)


def get(target: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: x", *extra, "", ""]
    return "\r\n".join(lines).encode()


def post(target: str, body: bytes, *extra: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra, "", ""]
    return "\r\n".join(lines).encode() + body


# --- over a socket ------------------------------------------------------------------------

async def test_pipelined_requests_in_one_send_are_answered_in_order() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a") + post("/b", b"hello") + get("/c?x=1"))
        replies = await c.receive(3)
        assert [r.json()["path"] for r in replies] == ["/a", "/b", "/c"]
        assert [r.status for r in replies] == [200, 201, 200]
        assert replies[1].json()["body"] == "hello"
        assert [r.headers["x-seq"] for r in replies] == ["1", "2", "3"]
        assert "connection" not in replies[2].headers
        await c.send(get("/d"))  # still open: HTTP/1.1 keeps alive
        assert (await c.receive(1))[0].json()["path"] == "/d"


async def test_headers_are_lower_cased_last_wins_and_the_target_is_raw() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a%20b?x=1&y=%2F", "X-Thing: one", "x-THING: two"))
        doc = (await c.receive(1))[0].json()
        assert doc["target"] == "/a%20b?x=1&y=%2F"
        assert doc["path"] == "/a b" and doc["query"] == {"x": "1", "y": "/"}
        assert doc["headers"]["x-thing"] == "two" and doc["headers"]["host"] == "x"


async def test_expect_100_continue_gets_the_interim_reply_before_the_body() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        body = b'{"a": 1}'
        await c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        with trio.fail_after(STEP_S):
            interim = await c.stream.receive_some(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert app.seen == []
        await c.send(body)
        reply = (await c.receive(1))[0]
        assert reply.status == 201 and reply.json()["body"] == body.decode()


async def test_a_declared_body_over_the_limit_is_413_before_it_is_sent() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        # Expect: 100-continue, so a correct server answers without reading a byte of body.
        await c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
        assert b"\r\nConnection: close\r\n" in raw and b"RequestEntityTooLarge" in raw
        assert app.seen == []


async def test_a_body_at_the_limit_is_accepted() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(post("/p", b"x" * MAX_BODY))
        assert (await c.receive(1))[0].status == 201


async def test_a_chunked_body_over_the_limit_is_413_while_it_streams_in() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"y" * 400
        for _ in range(3):  # 1200 bytes > MAX_BODY, and no terminating chunk ever
            await c.send(format_chunk(chunk))
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in raw
        assert app.seen == []


async def test_a_chunked_body_under_the_limit_is_reassembled() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + format_chunk(b"abc") + format_chunk(b"def") + b"0\r\n\r\n")
        assert (await c.receive(1))[0].json()["body"] == "abcdef"


async def test_an_oversized_head_is_431_and_closes() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a", "X-Big: " + "b" * MAX_HEADER_BYTES))
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"\r\nConnection: close\r\n" in raw
        assert app.seen == []


async def test_a_head_that_never_ends_is_431_before_it_is_all_buffered() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        with trio.move_on_after(STEP_S):
            while sent < 4 * MAX_HEADER_BYTES:  # the server answers before we get here
                await c.send(b"z" * 8192)
                sent += 8192
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 431 ")
        assert app.seen == []


async def test_a_large_head_under_the_limit_is_accepted_after_a_pipelined_body() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        # One send: a request with a big body, then most of a big head; the rest follows.
        second = get("/b", "X-Big: " + "h" * (MAX_HEADER_BYTES - 100))
        await c.send(post("/a", b"x" * MAX_BODY) + second[:-500])
        await trio.sleep(0.05)
        await c.send(second[-500:])
        replies = await c.receive(2)
        assert [r.status for r in replies] == [201, 200]


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["request-line", "header-name", "two-lengths", "version", "no-host", "h2-preface",
        "tls-hello", "unsplittable-target"])
async def test_a_malformed_request_is_400_and_closes(garbage: bytes) -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(garbage)
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw[:200]
        assert b"\r\nConnection: close\r\n" in raw
        _, _, body = raw.partition(b"\r\n\r\n")
        assert json.loads(body)["message"]
        assert app.seen == []


async def test_requests_before_a_malformed_one_are_answered_first() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/ok") + b"BROKEN\r\n\r\n")
        raw = await c.raw()
        first, _, rest = raw.partition(b"HTTP/1.1 400 ")
        assert first.startswith(b"HTTP/1.1 200 ") and rest
        assert [r.path for r in app.seen] == ["/ok"]


async def test_a_hang_up_during_a_stream_ends_it_promptly() -> None:
    app = App()
    async with serving(app) as port:
        async with connect(port) as c:
            await c.send(get("/watch"))
            with trio.fail_after(STEP_S):
                await app.stream_started.wait()
        with trio.fail_after(STEP_S):  # never finished by the app: the hang-up ended it
            await app.stream_ended.wait()
        assert not app.finish.is_set()


async def test_a_stream_is_chunked_and_a_request_sent_during_it_is_served_after() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/watch"))
        with trio.fail_after(STEP_S):
            await app.stream_started.wait()
        await c.send(get("/after"))
        await trio.sleep(0.05)
        assert len(app.seen) == 1, "the pipelined request must wait for the stream"
        app.finish.set()
        stream_reply, after = await c.receive(2)
        assert stream_reply.headers["transfer-encoding"] == "chunked"
        assert stream_reply.body == b'{"n":1}\n{"n":2}\n'
        assert after.json()["path"] == "/after"


async def test_more_pipelined_bytes_than_are_kept_during_a_stream_are_all_served() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/watch"))
        with trio.fail_after(STEP_S):
            await app.stream_started.wait()
        many = [get(f"/p{i}") for i in range(3000)]  # ~90 KB: over what a stream keeps
        assert len(b"".join(many)) > MAX_HEADER_BYTES + MAX_BODY
        await c.send(b"".join(many))
        app.finish.set()
        replies = await c.receive(1 + len(many))
        assert [r.json()["path"] for r in replies[1:]] == [f"/p{i}" for i in range(3000)]


async def test_a_request_pipelined_behind_a_stream_in_one_send_is_served_after() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/watch") + get("/after"))
        with trio.fail_after(STEP_S):
            await app.stream_started.wait()
        app.finish.set()
        _, after = await c.receive(2)
        assert after.json()["path"] == "/after"


async def test_http_1_0_closes_after_one_reply() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(b"GET /old HTTP/1.0\r\n\r\n")
        raw = await c.raw()
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in raw
        assert raw.count(b"HTTP/1.1") == 1


async def test_an_http_1_0_stream_is_unframed_and_ends_with_the_close() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/watch", "Connection: keep-alive", version="1.0"))
        with trio.fail_after(STEP_S):
            await app.stream_started.wait()
        app.finish.set()
        head, _, body = (await c.raw()).partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"\r\nConnection: close" in head
        assert body == b'{"n":1}\n{"n":2}\n'


async def test_http_1_0_keeps_alive_when_asked() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a", "Connection: keep-alive", version="1.0"))
        first = (await c.receive(1))[0]
        assert first.headers["connection"] == "keep-alive"
        await c.send(get("/b", version="1.0"))
        assert (await c.receive(1))[0].headers["connection"] == "close"
        assert await c.closed()


async def test_connection_close_is_honoured_and_echoed() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a", "Connection: close") + get("/never"))
        reply = (await c.receive(1))[0]
        assert reply.headers["connection"] == "close"
        assert await c.closed()
        assert [r.path for r in app.seen] == ["/a"]


async def test_an_idle_keep_alive_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "KEEPALIVE_IDLE_S", 0.2)
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/a"))
        await c.receive(1)
        start = trio.current_time()
        assert await c.closed()
        assert trio.current_time() - start < 2


async def test_an_upgrade_is_declined_answered_and_closed() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(get("/ws", "Connection: Upgrade", "Upgrade: websocket") + get("/next"))
        reply = (await c.receive(1))[0]
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert await c.closed()
        assert [r.path for r in app.seen] == ["/ws"]


async def test_an_upgrade_with_a_body_is_400() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(post("/ws", b"data", "Connection: Upgrade", "Upgrade: h2c"))
        assert (await c.raw()).startswith(b"HTTP/1.1 400 ")
        assert app.seen == []


async def test_head_gets_the_headers_without_the_body() -> None:
    app = App()
    async with serving(app) as port, connect(port) as c:
        await c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await c.raw()
        head, sep, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in head
        assert sep and body == b""


async def test_a_hang_up_mid_body_never_reaches_the_app() -> None:
    app = App()
    async with serving(app) as port:
        async with connect(port) as c:
            await c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        async with connect(port) as c:  # the server still serves
            await c.send(get("/a"))
            assert (await c.receive(1))[0].status == 200
        assert [r.path for r in app.seen] == ["/a"]


# --- the reader and the formatting, without a socket --------------------------------------

REQUESTS = get("/a") + post("/b", b"body!") + (
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n") + get("/d", "Connection: close")


def _read_all(pieces: list[bytes]) -> _http._RequestReader:
    reader = _http._RequestReader(MAX_BODY)
    for piece in pieces:
        reader.feed(piece)
    return reader


def test_the_reader_gives_the_same_requests_however_the_bytes_are_split() -> None:
    whole = _read_all([REQUESTS])
    one_by_one = _read_all([REQUESTS[i:i + 1] for i in range(len(REQUESTS))])
    for reader in (whole, one_by_one):
        assert reader.refusal is None
        got = [(p.request.method, p.request.path, p.request.body, p.keep_alive)
               for p in reader.ready]
        assert got == [("GET", "/a", b"", True), ("POST", "/b", b"body!", True),
                       ("POST", "/c", b"abc", True), ("GET", "/d", b"", False)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_the_reader_never_raises_on_any_bytes(data: bytes, cuts: list[int]) -> None:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    reader = _read_all([data[a:b] for a, b in pairwise(points)])
    assert reader.refusal is None or reader.refusal.kind in (
        _http.BAD_REQUEST, _http.TOO_LARGE, _http.HEAD_TOO_LARGE)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([get("/a"), post("/b", b"xyz"), b"\x00junk\r\n\r\n"]),
                max_size=4), st.binary(max_size=50))
def test_the_reader_serves_the_good_prefix_then_refuses(reqs: list[bytes], tail: bytes) -> None:
    data = b"".join(reqs) + tail
    good = 0
    for r in reqs:
        if r.startswith(b"\x00"):
            break
        good += 1
    reader = _read_all([data])
    assert len(reader.ready) >= good
    if good < len(reqs):
        assert reader.refusal is not None and reader.refusal.kind == _http.BAD_REQUEST


def test_expect_continue_is_wanted_only_before_any_body() -> None:
    reader = _read_all([b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
                        b"Content-Length: 4\r\n\r\n"])
    assert reader.wants_continue
    reader.feed(b"ab")
    assert not reader.wants_continue
    reader.feed(b"cd")
    assert reader.ready[0].request.body == b"abcd"


def test_format_response() -> None:
    resp = Response(200, b"{}", headers={"Warning": '299 - "evil\r\nSet-Cookie: x"'})
    out = format_response(resp)
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Cache-Control: no-cache, private\r\n"
                   b'Warning: 299 - "evil  Set-Cookie: x"\r\nContent-Length: 2\r\n\r\n{}')
    assert format_response(resp, head_only=True).endswith(b"Content-Length: 2\r\n\r\n")
    closing = format_response(Response(418, b"x"), close=True)
    assert closing.startswith(b"HTTP/1.1 418 I'm a Teapot\r\n") or closing.startswith(
        b"HTTP/1.1 418 ")
    assert b"\r\nConnection: close\r\n" in closing
    no_content = format_response(Response(204, b"ignored"))
    assert b"Content-Length" not in no_content and no_content.endswith(b"\r\n\r\n")
    assert format_response(Response(599)).startswith(b"HTTP/1.1 599 \r\n")
    assert format_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
