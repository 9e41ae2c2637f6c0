"""Where a member finds others to join: static seeds or a pluggable provider.

A seed provider is any async callable returning gossip addresses. The agent plugs in one
backed by the Kubernetes API (agent pods' IPs, or nodes' InternalIPs, plus the gossip
port); tests and the embedded mode use :func:`static_seeds`. A provider may fail: the
member logs it and asks again at the next refresh, never crashing on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ..errors import ConfigError
from ._wire import Address

SeedProvider = Callable[[], Awaitable[Sequence[Address]]]
"""``async () -> addresses`` to try joining through (our own address may be included)."""


def parse_address(text: str, *, default_port: int) -> Address:
    """``"10.0.0.1"``, ``"10.0.0.1:7934"``, ``"[fd00::1]:7934"`` or ``"fd00::1"``."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ConfigError(f"gossip address {text!r} has '[' without ']'", path="address",
                              value=text)
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"gossip address {text!r}: expected ':port' after ']'",
                                  path="address", value=text)
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, raw_port = host.split(":")
        port = _port(raw_port, text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"gossip address {text!r}: {host!r} is not an IP address",
                          path="address", value=text) from None
    return Address(str(ip), port)


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"gossip address {text!r}: port {raw!r} is not in 1..65535",
                          path="address", value=text)
    return int(raw)


def static_seeds(addresses: Iterable[Address]) -> SeedProvider:
    """A provider that always returns the same addresses (configuration seeds)."""
    fixed = tuple(addresses)

    async def provide() -> Sequence[Address]:
        return fixed

    return provide
