"""The exception tree every purelb layer raises from.

    PurelbError
    ├── ConfigError          the user fixes input (becomes an Event or a status condition)
    ├── AllocationError      an address cannot be handed out (carries a stable ``reason``)
    ├── ApiError             the Kubernetes API answered with an error (see ``purelb.kube``)
    ├── NetlinkError         the kernel refused an interface or address change
    └── PacketRejected       a gossip datagram failed authentication or parsing

Subsystems subclass these; callers branch on the family, not on the subsystem.
"""

from __future__ import annotations


class PurelbError(Exception):
    """Base of every error purelb raises on purpose."""


class ConfigError(PurelbError, ValueError):
    """Invalid user input: names the field path, the value and why it is wrong."""

    def __init__(self, message: str, *, path: str = "", value: object = None) -> None:
        super().__init__(message)
        self.path = path
        self.value = value


class AllocationError(PurelbError):
    """No address could be allocated; ``reason`` is a stable id for events and metrics."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ApiError(PurelbError):
    """The Kubernetes API (or our API server) answered with an error."""


class NetlinkError(PurelbError):
    """The kernel refused a link or address operation."""


class PacketRejected(PurelbError):
    """A gossip datagram was rejected; ``reason`` is a stable identifier for metrics."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
