"""Errors of the node-side I/O: each names the object, the interface and the errno."""

from __future__ import annotations

import errno as _errno
import os

from purelb.errors import NetlinkError


def _errname(code: int) -> str:
    return f"{_errno.errorcode.get(code, 'E?')} ({code}: {os.strerror(code)})"


class AddressOpError(NetlinkError):
    """The kernel refused to add, replace or delete one address."""

    def __init__(self, op: str, address: str, *, ifindex: int, ifname: str | None, errno: int):
        where = f"{ifname or '?'} (index {ifindex})"
        super().__init__(f"netlink {op} {address} on {where} failed: {_errname(errno)}")
        self.op = op
        self.address = address
        self.ifindex = ifindex
        self.ifname = ifname
        self.errno = errno


class LinkOpError(NetlinkError):
    """The kernel refused to create, change or delete an interface."""

    def __init__(self, op: str, ifname: str, *, errno: int, detail: str = ""):
        extra = f"; {detail}" if detail else ""
        super().__init__(f"netlink {op} link {ifname!r} failed: {_errname(errno)}{extra}")
        self.op = op
        self.ifname = ifname
        self.errno = errno


class NetnsError(NetlinkError):
    """A network namespace could not be entered (missing, or setns refused)."""

    def __init__(self, netns: str, *, errno: int, detail: str = ""):
        extra = f"; {detail}" if detail else ""
        super().__init__(f"network namespace {netns!r}: {_errname(errno)}{extra}")
        self.netns = netns
        self.errno = errno


class NetlinkProtocolError(NetlinkError):
    """The netlink exchange itself broke: truncated message, lost ACKs (ENOBUFS), bad reply.

    The state of requests in flight is unknown; the caller re-dumps and re-plans.
    """


class UnsupportedKernelError(NetlinkError):
    """The kernel lacks a feature the agent relies on (named in the message)."""
