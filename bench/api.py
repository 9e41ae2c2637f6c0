"""``purelb bench api``: API server writes/s (memory and SQLite) and watch fan-out.

The server runs as a separate process (``purelb apiserver``) so the load generator does
not share its core. The load generator is deliberately thin — raw HTTP/1.1 over
keep-alive Trio sockets, requests pre-formatted — so the figure measures the server, not
a client library. ``--watchers`` streams watch the same namespace during the run; after
the last write is acknowledged we measure how long until every watcher has seen every
ADDED event ("fan-out lag"); a watcher that misses events fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from bench._procs import cpu_seconds, start_apiserver
from bench._rawhttp import RawConnection

DEFAULT_DURATION_S = 3.0
"""Long enough for a stable rate on this 2-core machine, short enough to share it."""
DEFAULT_CLIENTS = 16
"""Concurrent keep-alive connections; enough to keep a single-threaded server busy."""
DEFAULT_WATCHERS = 10
CATCH_UP_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 20.0
NAMESPACE = "default"
_ADDED = b'{"type":"ADDED"'


@dataclass(slots=True)
class Result:
    storage: str
    writes: int
    seconds: float
    writes_per_s: float
    watchers: int
    events_per_watcher: int
    fanout_lag_s: float
    watchers_complete: bool
    server_cpu_s: float
    """CPU time the server process used during the write phase (user + system)."""
    writes_per_cpu_s: float
    """Writes per second of server CPU: the rate on an idle core, independent of how busy
    the (shared) machine is."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help="seconds of writes per storage (default %(default)s)")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--watchers", type=int, default=DEFAULT_WATCHERS)
    parser.add_argument("--storage", choices=["memory", "sqlite", "both"], default="both")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the results as JSON here")


def _post(port: int, name: str) -> tuple[bytes, bytes]:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": {"k": "v"}}).encode()
    head = (f"POST /api/v1/namespaces/{NAMESPACE}/configmaps HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


async def _start_server(db: Path | None) -> tuple[trio.Process, int]:
    return await start_apiserver(*(["--db", str(db)] if db is not None else []),
                                 timeout_s=STARTUP_TIMEOUT_S)


async def _list_rv(port: int) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = (f"GET /api/v1/namespaces/{NAMESPACE}/configmaps?limit=1 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n\r\n").encode()
        status, reply = await RawConnection(stream).request(head)
    if status != 200:
        raise RuntimeError(f"list failed with HTTP {status}")
    return json.loads(reply)["metadata"]["resourceVersion"]


class _Progress:
    """ADDED events seen per watcher; wakes the waiter whenever a count moves."""

    def __init__(self, watchers: int) -> None:
        self.counts = [0] * watchers
        self._moved = trio.Event()

    def add(self, idx: int, n: int) -> None:
        if n:
            self.counts[idx] += n
            self._moved.set()
            self._moved = trio.Event()

    async def wait_all(self, target: int) -> None:
        while min(self.counts, default=target) < target:
            await self._moved.wait()


async def _watcher(port: int, rv: str, progress: _Progress, idx: int,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            (f"GET /api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion={rv}"
             f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode())
        task_status.started()
        tail = b""
        while chunk := await stream.receive_some(1 << 20):
            data = tail + chunk
            progress.add(idx, data.count(_ADDED))
            tail = data[-(len(_ADDED) - 1):] if not data.endswith(b"\n") else b""
            # A marker cut by a read boundary is counted once: the tail never holds a
            # whole marker (it is one byte shorter than one).


async def _measure(storage: str, args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="purelb-bench-api-") as tmp:
        db = Path(tmp) / "bench.db" if storage == "sqlite" else None
        proc, port = await _start_server(db)
        try:
            rv = await _list_rv(port)
            progress = _Progress(args.watchers)
            acked = 0
            async with trio.open_nursery() as watchers:
                for i in range(args.watchers):
                    await watchers.start(_watcher, port, rv, progress, i)

                async def client(c: int, deadline: float) -> None:
                    nonlocal acked
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    async with stream:
                        conn = RawConnection(stream)
                        i = 0
                        while trio.current_time() < deadline:
                            status, reply = await conn.request(b"".join(_post(port, f"b{c}-{i}")))
                            if status != 201:
                                raise RuntimeError(f"create failed: HTTP {status} {reply[:200]!r}")
                            acked += 1
                            i += 1

                cpu0 = cpu_seconds(proc.pid)
                start = trio.current_time()
                async with trio.open_nursery() as clients:
                    for c in range(args.clients):
                        clients.start_soon(client, c, start + args.duration)
                elapsed = trio.current_time() - start
                cpu = cpu_seconds(proc.pid) - cpu0
                last_ack = trio.current_time()
                with trio.move_on_after(CATCH_UP_TIMEOUT_S):
                    await progress.wait_all(acked)
                lag = trio.current_time() - last_ack
                watchers.cancel_scope.cancel()
            complete = all(c == acked for c in progress.counts)
            return Result(storage, acked, round(elapsed, 3), round(acked / elapsed, 1),
                          args.watchers, min(progress.counts, default=0), round(lag, 3),
                          complete, round(cpu, 2), round(acked / cpu, 1) if cpu else 0.0)
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGTERM)
            with trio.CancelScope(shield=True):
                await proc.wait()


async def _main(args: argparse.Namespace) -> list[Result]:
    kinds = ["memory", "sqlite"] if args.storage == "both" else [args.storage]
    return [await _measure(k, args) for k in kinds]


def run(args: argparse.Namespace) -> int:
    results = trio.run(_main, args)
    print(f"API server: simple creates (ConfigMaps) over {args.clients} keep-alive "
          f"connections, {args.watchers} watchers")
    print(f"{'storage':<8} {'writes':>7} {'seconds':>8} {'writes/s':>9} "
          f"{'events/watcher':>15} {'fan-out lag s':>14} {'complete':>9} "
          f"{'server CPU s':>13} {'writes/CPU-s':>13}")
    for r in results:
        print(f"{r.storage:<8} {r.writes:>7} {r.seconds:>8} {r.writes_per_s:>9} "
              f"{r.events_per_watcher:>15} {r.fanout_lag_s:>14} {r.watchers_complete!s:>9} "
              f"{r.server_cpu_s:>13} {r.writes_per_cpu_s:>13}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(writes/CPU-s is the rate one idle core would give)")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.watchers_complete for r in results) else 1
