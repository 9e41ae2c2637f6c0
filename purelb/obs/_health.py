"""``/metrics``, ``/healthz`` and ``/readyz`` on one small HTTP/1.1 server under Trio.

Liveness means the process serves requests; readiness is the conjunction of named
conditions the daemon sets (``synced``, ``leading``...), so ``/readyz`` can say which one
is missing. Metrics come from a registry passed in, never the global default, so two
daemons in one process (embedded mode) do not collide.
"""

from __future__ import annotations

import functools
import logging

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

#: largest request head we accept; probes and scrapes send a few hundred bytes
MAX_REQUEST_BYTES = 16 * 1024
#: a client that sends nothing for this long is dropped (probes time out after 1 s anyway)
REQUEST_TIMEOUT_S = 10.0


class Health:
    """Named readiness conditions; ready when every registered one is true."""

    def __init__(self, *conditions: str) -> None:
        self._conditions: dict[str, bool] = dict.fromkeys(conditions, False)

    def set(self, name: str, value: bool) -> None:
        if name not in self._conditions:
            raise KeyError(
                f"unknown readiness condition {name!r}; known: {sorted(self._conditions)}"
            )
        self._conditions[name] = value

    def unmet(self) -> list[str]:
        return sorted(name for name, ok in self._conditions.items() if not ok)

    @property
    def ready(self) -> bool:
        return not self.unmet()


def _response(status: int, body: bytes, content_type: str) -> list[h11.Event]:
    headers = [("content-type", content_type), ("content-length", str(len(body)))]
    return [
        h11.Response(status_code=status, headers=headers),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]


def route(target: str, health: Health, registry: CollectorRegistry) -> tuple[int, bytes, str]:
    """Answer one GET: (status, body, content type)."""
    path = target.split("?", 1)[0]
    if path == "/metrics":
        return 200, generate_latest(registry), CONTENT_TYPE_LATEST
    if path in ("/healthz", "/livez"):
        return 200, b"ok\n", "text/plain"
    if path == "/readyz":
        unmet = health.unmet()
        if unmet:
            return 503, f"not ready: {', '.join(unmet)}\n".encode(), "text/plain"
        return 200, b"ok\n", "text/plain"
    return 404, b"not found\n", "text/plain"


async def _answer(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    request: h11.Request,
    health: Health,
    registry: CollectorRegistry,
) -> None:
    if request.method not in (b"GET", b"HEAD"):
        status, body, ctype = 405, b"method not allowed\n", "text/plain"
    else:
        status, body, ctype = route(request.target.decode("latin-1"), health, registry)
    if request.method == b"HEAD":
        body = b""
    for out in _response(status, body, ctype):
        await stream.send_all(conn.send(out) or b"")


async def _handle(stream: trio.abc.Stream, health: Health, registry: CollectorRegistry) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    request: h11.Request | None = None
    try:
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(4096)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request = event  # answered once its (ignored) body has been read
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    await _answer(stream, conn, request, health, registry)
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                    request = None
                elif isinstance(event, h11.ConnectionClosed):
                    return
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("health endpoint dropped a client: %s", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_health_and_metrics(
    host: str,
    port: int,
    health: Health,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start`` returns the bound port (useful with port 0)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("serving /metrics /healthz /readyz", extra={"address": f"{host}:{bound}"})
    handler = functools.partial(_handle, health=health, registry=registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
