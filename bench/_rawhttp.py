"""A bare keep-alive HTTP/1.1 connection for load generators.

The benchmarks measure the server, so the client side must cost as little as possible:
no pool, no header objects — send prepared bytes, read one Content-Length reply.
"""

from __future__ import annotations

import trio

HEAD_END = b"\r\n\r\n"


class RawConnection:
    """One keep-alive connection: send a request, read one reply."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send ``data`` (a whole request) and return (status, body) of the reply."""
        await self.stream.send_all(data)
        while HEAD_END not in self.buf:
            await self._fill()
        head, self.buf = self.buf.split(HEAD_END, 1)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            await self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body
