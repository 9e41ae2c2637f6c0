"""Open sockets inside a network namespace without moving the Trio thread.

``setns(CLONE_NEWNET)`` changes only the calling thread, and a socket keeps the namespace
it was created in. So the socket is created in a worker thread that enters the target
namespace, creates the socket and returns to its own namespace before Trio reuses the
thread. The Trio thread itself never calls setns (research/env.md section 3).

Python 3.11 has no ``os.setns`` (3.12 has), hence ctypes. The thread's own namespace is
saved from ``/proc/thread-self/ns/net``: ``/proc/self`` names the main thread, and
``/proc/1/ns/net`` is not readable here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

import trio

from .errors import NetnsError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)

#: One setns dance at a time: they are rare (start-up) and this keeps at most one worker
#: thread outside its namespace.
_LIMITER = trio.CapacityLimiter(1)


def netns_path(netns: str) -> str:
    """``NAME`` (as ``ip netns add NAME`` makes it) or a path to an nsfs file."""
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(what, errno=err, detail="setns(CLONE_NEWNET) failed")


def open_socket_sync(netns: str | None, family: int, type_: int, proto: int) -> socket.socket:
    """Create a socket in ``netns`` (None = the caller's own namespace), blocking.

    Call it from a worker thread (``open_socket``), never from the Trio thread when
    ``netns`` is set.
    """
    if netns is None:
        return socket.socket(family, type_, proto)
    path = netns_path(netns)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsError(
            netns, errno=exc.errno or errno.ENOENT, detail=f"cannot open {path}"
        ) from exc
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, netns)
            try:
                return socket.socket(family, type_, proto)
            finally:
                # If this fails the worker thread would stay in the wrong namespace and
                # every later socket it makes would land there: better to die loudly.
                if _libc.setns(own, CLONE_NEWNET) != 0:
                    os.abort()
        finally:
            os.close(own)
    finally:
        os.close(target)


async def open_socket(
    netns: str | None, family: int, type_: int, proto: int = 0
) -> trio.socket.SocketType:
    """A Trio socket created inside ``netns`` (None = the current namespace)."""
    if netns is None:
        sock = socket.socket(family, type_, proto)
    else:
        sock = await trio.to_thread.run_sync(
            open_socket_sync, netns, family, type_, proto, limiter=_LIMITER
        )
    return trio.socket.from_stdlib_socket(sock)
