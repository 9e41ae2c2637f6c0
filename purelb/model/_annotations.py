"""Annotation keys PureLB reads and writes on Services, and parsers for their values."""

from __future__ import annotations

from purelb.model._addresses import IPAddress, family_name, parse_address
from purelb.model._errors import InvalidField, Reason

PREFIX = "purelb.io/"

# -- set by users
SERVICE_GROUP = "purelb.io/service-group"
"""ServiceGroup to allocate from; unset means the group named ``default``."""
ADDRESSES = "purelb.io/addresses"
"""Specific addresses, comma separated, at most one per family."""
ALLOW_SHARED_IP = "purelb.io/allow-shared-ip"
"""Sharing key: Services with the same non-empty key may share an address."""
RE_EVALUATE = "purelb.io/re-evaluate"
"""``"true"``: one-shot reprocess; the allocator removes it."""

# -- written by the allocator
ALLOCATED_BY = "purelb.io/allocated-by"
"""Brand: the agent announces only Services carrying it."""
ALLOCATED_FROM = "purelb.io/allocated-from"
"""Group(s) the addresses came from, joined with ``", "``."""
POOL_TYPE = "purelb.io/pool-type"
"""``local`` or ``netbox``."""

BRAND = "PureLB"
"""The value of ``purelb.io/allocated-by``."""

LOAD_BALANCER_CLASS = "purelb.io/purelb"
"""Our ``spec.loadBalancerClass`` (the v1 spelling; PureLB v2 uses ``purelb.io/purelbv2``)."""

DEFAULT_GROUP = "default"
"""The group used when a Service names none."""


ADDRESSES_PATH = f"metadata.annotations[{ADDRESSES}]"


def parse_addresses(text: str, path: str = ADDRESSES_PATH) -> dict[int, IPAddress]:
    """``"10.0.0.5, fd00::5"`` -> ``{4: 10.0.0.5, 6: fd00::5}`` (at most one per family)."""
    out: dict[int, IPAddress] = {}
    items = text.split(",")
    for i, item in enumerate(items):
        if not item.strip():
            raise InvalidField(
                Reason.INVALID_ADDRESS,
                f"item {i + 1} is empty",
                path=path,
                value=text,
            )
        address = parse_address(item, path)
        if address.version in out:
            raise InvalidField(
                Reason.TOO_MANY,
                f"names two {family_name(address.version)} addresses "
                f"({out[address.version]} and {address}); one per family is allowed",
                path=path,
                value=text,
            )
        out[address.version] = address
    return out
