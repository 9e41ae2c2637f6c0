"""Values of the NetBox IPAM records PureLB reads and writes (pure: no I/O imports).

Every address PureLB takes is *owned*: status ``active``, the group's tenant, the
``purelb`` tag and a description ``purelb:<namespace>/<name>`` (`` uid=<uid>`` appended
when known), so a human sees who holds what and a restart finds what PureLB holds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from purelb.model import IPAddress

#: the tag marking every address PureLB holds
PURELB_TAG = "purelb"
#: description prefix naming the holder (NetBox descriptions are at most 200 chars)
OWNER_PREFIX = "purelb:"
MAX_DESCRIPTION = 200


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds an address: a Service (``namespace/name``, uid), written in the description."""

    service: str
    uid: str = ""

    def description(self) -> str:
        text = f"{OWNER_PREFIX}{self.service}"
        if self.uid:
            text += f" uid={self.uid}"
        return text[:MAX_DESCRIPTION]

    @classmethod
    def parse(cls, description: str) -> Owner | None:
        """The owner written by :meth:`description`; ``None`` for anything else."""
        m = _OWNER_RE.fullmatch(description.strip())
        if m is None:
            return None
        return cls(m.group(1), m.group(2) or "")


_OWNER_RE = re.compile(r"purelb:(\S+?)(?: uid=(\S+))?")


@dataclass(frozen=True, slots=True)
class Prefix:
    """A NetBox prefix PureLB allocates from."""

    id: int
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    vrf_id: int | None = None

    @property
    def family(self) -> int:
        return self.prefix.version


@dataclass(frozen=True, slots=True)
class IPRecord:
    """One NetBox ip-address object, as far as PureLB reads it."""

    id: int
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    status: str
    description: str = ""
    tenant: str | None = None
    """The tenant's slug."""
    tags: frozenset[str] = frozenset()
    vrf_id: int | None = None
    etag: str | None = None

    @property
    def address(self) -> IPAddress:
        return self.interface.ip

    @property
    def owner(self) -> Owner | None:
        return Owner.parse(self.description) if PURELB_TAG in self.tags else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], etag: str | None = None) -> IPRecord:
        status = data.get("status")
        tenant = data.get("tenant")
        vrf = data.get("vrf")
        return cls(
            id=int(data["id"]),
            interface=ipaddress.ip_interface(data["address"]),
            status=status.get("value", "") if isinstance(status, Mapping) else str(status or ""),
            description=data.get("description") or "",
            tenant=tenant.get("slug") if isinstance(tenant, Mapping) else None,
            tags=frozenset(t.get("slug", "") for t in data.get("tags") or ()),
            vrf_id=vrf.get("id") if isinstance(vrf, Mapping) else None,
            etag=etag,
        )
