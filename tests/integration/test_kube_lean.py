"""The lean keep-alive pool against a scripted HTTP/1.1 server on loopback."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import trio

from purelb.kube import SERVICES, ClusterConfig, KubeClient, NotFound
from purelb.kube._client import ClientSettings
from purelb.kube._lean import LeanError, LeanPool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n"
           b"3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n")



async def _read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + rest


async def _serve(nursery: trio.Nursery, answer: Callable[[int], bytes | None]
                 ) -> tuple[int, list[bytes]]:
    """Serve requests; ``answer(n)`` is the reply to the n-th request (None: close)."""
    seen: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            while True:
                request = await _read_request(stream)
                if not request:
                    return
                seen.append(request)
                reply = answer(len(seen))
                if reply is None:
                    return
                await stream.send_all(reply)

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1], seen


def _pool(port: int, timeout: float = 5.0) -> LeanPool:
    return LeanPool(f"http://127.0.0.1:{port}/prefix/", ssl_context=None, server_hostname=None,
                    connect_timeout_s=5.0, request_timeout_s=timeout, max_connections=4,
                    base_headers=[("User-Agent", "test")])


async def test_connection_is_reused_and_the_request_is_well_formed() -> None:
    async with trio.open_nursery() as nursery:
        port, seen = await _serve(nursery, lambda n: OK)
        pool = _pool(port)
        for _ in range(3):
            response = await pool.request("PATCH", "/api/v1/x", [("Content-Type", "a/b")],
                                          b'{"k":1}')
            assert (response.status_code, response.content) == (200, b"{}")
        assert pool.connections_opened == 1
        assert seen[0].startswith(b"PATCH /prefix/api/v1/x HTTP/1.1\r\n")
        assert b"host: 127.0.0.1:%d" % port in seen[0].lower()
        assert seen[0].endswith(b'\r\n\r\n{"k":1}')
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_chunked_body_and_headers_are_decoded() -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: CHUNKED)
        pool = _pool(port)
        response = await pool.request("GET", "/x", [], None)
        assert response.content == b'{"a":1}\n'
        assert response.headers["retry-after"] == "3"
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_an_idle_connection_closed_by_the_server_is_replaced() -> None:
    async with trio.open_nursery() as nursery:
        # "Connection: close" on the first answer: the server then closes its end
        first = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
        port, _ = await _serve(nursery, lambda n: first if n == 1 else OK)
        pool = _pool(port)
        await pool.request("GET", "/x", [], None)
        await trio.sleep(0.05)
        response = await pool.request("GET", "/x", [], None)
        assert response.status_code == 200
        assert pool.connections_opened == 2
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_server_closing_before_answering_is_a_lean_error() -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: None)
        pool = _pool(port)
        with pytest.raises(LeanError, match=r"closed|Protocol"):
            await pool.request("POST", "/x", [], b"{}")
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_no_answer_times_out_and_the_connection_is_dropped() -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: b"" if n == 1 else OK)
        pool = _pool(port, timeout=0.2)
        with pytest.raises(LeanError, match=r"no answer within 0\.2 s"):
            await pool.request("GET", "/x", [], None)
        assert (await pool.request("GET", "/x", [], None)).status_code == 200
        assert pool.connections_opened == 2  # the timed-out one was not reused
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_refused_connection_and_bad_url() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LeanError, match=f"connect to 127.0.0.1:{port}"):
        await _pool(port).request("GET", "/x", [], None)
    with pytest.raises(ValueError, match="ftp://h"):
        LeanPool("ftp://h", ssl_context=None, server_hostname=None, connect_timeout_s=1,
                 request_timeout_s=1, max_connections=1, base_headers=[])


async def test_an_unsendable_header_is_a_lean_error_not_a_crash() -> None:
    pool = _pool(1)
    with pytest.raises(LeanError, match="cannot form the request"):
        await pool.request("GET", "/x", [("Authorization", "Bearer a\nb")], None)
    assert pool.connections_opened == 0


async def test_kube_client_over_the_lean_pool_obeys_retry_after_and_maps_errors() -> None:
    throttled = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
    status = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound",'
              b'"code":404,"message":"services \\"b\\" not found"}')
    missing = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(status)) + status
    replies = {1: throttled, 2: OK, 3: missing}
    async with trio.open_nursery() as nursery:
        port, seen = await _serve(nursery, lambda n: replies[n])
        config = ClusterConfig(server=f"http://127.0.0.1:{port}", token="t0k", source="test")
        async with KubeClient(config, settings=ClientSettings(rate_limit=None)) as client:
            with trio.fail_after(0.8):  # Retry-After: 0 read (without it the wait is 1 s)
                assert await client.get(SERVICES, "a", namespace="ns") == {}
            with pytest.raises(NotFound, match='"b" not found'):
                await client.get(SERVICES, "b", namespace="ns")
        assert len(seen) == 3  # the 429 was retried once, on the same connection
        assert b"authorization: bearer t0k" in seen[0].lower()
        nursery.cancel_scope.cancel()


async def test_an_interim_100_continue_is_skipped() -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        pool = _pool(port)
        for _ in range(2):
            response = await pool.request("POST", "/x", [], b"{}")
            assert (response.status_code, response.content) == (200, b"{}")
        assert pool.connections_opened == 1
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_body_delimited_by_close_is_read_and_the_connection_not_reused() -> None:
    old_style = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}"

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await _read_request(stream)
            await stream.send_all(old_style)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        pool = _pool(listeners[0].socket.getsockname()[1])
        for _ in range(2):
            response = await pool.request("GET", "/x", [], None)
            assert response.content == b'{"a":1}'
        assert pool.connections_opened == 2
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_bytes_after_the_answer_mean_the_connection_is_not_reused() -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: OK + b"HTTP/1.1 200 OK\r\n" if n == 1 else OK)
        pool = _pool(port)
        assert (await pool.request("GET", "/x", [], None)).content == b"{}"
        assert (await pool.request("GET", "/x", [], None)).content == b"{}"
        assert pool.connections_opened == 2
        await pool.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("reply", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # cut short by the close
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
])
async def test_a_malformed_answer_is_a_lean_error(reply: bytes) -> None:
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: reply if n == 1 else None)
        pool = _pool(port)
        with pytest.raises(LeanError):
            await pool.request("GET", "/x", [], None)
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_an_oversized_body_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from purelb.kube import _lean

    monkeypatch.setattr(_lean, "MAX_BODY_BYTES", 10)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
    async with trio.open_nursery() as nursery:
        port, _ = await _serve(nursery, lambda n: big)
        pool = _pool(port)
        with pytest.raises(LeanError, match="exceeds 10 bytes"):
            await pool.request("GET", "/x", [], None)
        await pool.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("path", "headers"), [
    ("/a b", []),
    ("/x", [("X-Token", "a\r\nInjected: 1")]),
    ("/x", [("Bad Name", "v")]),
    ("/x", [("X-Token", "\u2603")]),
])
async def test_a_request_that_would_break_the_framing_is_refused(
        path: str, headers: list[tuple[str, str]]) -> None:
    pool = _pool(1)
    with pytest.raises(LeanError, match="cannot form the request"):
        await pool.request("GET", path, headers, None)
