"""What the allocator tells its caller to do: plain values, no I/O.

The daemon turns a :class:`Decision` into at most one status write, one metadata patch and
some Events; the allocator has already updated its own state when it returns one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from purelb.model import IPAddress, PoolType, RejectedGroup, ServiceKey, ServicePort


class Outcome(Enum):
    """How a reconcile ended; tells the daemon whether and when to retry."""

    OK = "ok"
    """The Service holds every address it asks for (writes may still be needed)."""
    IGNORED = "ignored"
    """Not ours (another loadBalancerClass, or headless); nothing written."""
    RELEASED = "released"
    """The Service stopped being a LoadBalancer (or was deleted); its addresses are free."""
    FAILED = "failed"
    """No allocation now; the Service is requeued automatically when an address frees."""
    INVALID = "invalid"
    """No allocation until the Service or the ServiceGroups change (bad annotation...)."""
    PENDING_EXTERNAL = "pending_external"
    """An external source (NetBox) must supply addresses first; see ``external_requests``."""


class FailureReason(StrEnum):
    """Why an allocation failed. Stable identifiers for Events and metric labels."""

    EXHAUSTED = "exhausted"
    """The group has no free address of the family."""
    PORT_CONFLICT = "port_conflict"
    """The sharing key's address already serves one of the Service's (protocol, port)."""
    SHARING_KEY_CONFLICT = "sharing_key_conflict"
    """The address is shared under another key, or the key is bound to another address."""
    UNKNOWN_GROUP = "unknown_group"
    """The named ServiceGroup (or ``default``) does not exist."""
    INVALID_GROUP = "invalid_group"
    """The named ServiceGroup exists but was rejected by validation."""
    INVALID_ADDRESS = "invalid_address"
    """``purelb.io/addresses`` / ``spec.loadBalancerIP`` cannot be parsed or used."""
    NOT_IN_POOL = "not_in_pool"
    """A requested address lies in no ServiceGroup's pool."""
    ADDRESS_IN_USE = "address_in_use"
    """A requested address is held by a Service that does not share it."""
    FAMILY_UNAVAILABLE = "family_unavailable"
    """The group lacks a family the Service requires."""


#: failures that an address (or ports) becoming free can cure: such Services are requeued
RETRY_ON_FREE = frozenset(
    {
        FailureReason.EXHAUSTED,
        FailureReason.PORT_CONFLICT,
        FailureReason.SHARING_KEY_CONFLICT,
        FailureReason.ADDRESS_IN_USE,
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    message: str
    """Names the Service, the group and the values involved."""


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to emit on the Service."""

    type: EventType
    reason: str
    """``AddressAssigned``, ``AddressReleased``, ``AllocationFailed``, ``DeprecationWarning``
    or ``ConfigurationWarning`` (PureLB's names)."""
    message: str


@dataclass(frozen=True, slots=True)
class Released:
    """An address a Service no longer holds and no other Service shares."""

    address: IPAddress
    group: str | None
    """The ServiceGroup it belonged to; ``None`` if it lay in no pool."""
    pool_type: PoolType | None
    """``netbox``: the daemon must return it to NetBox."""


@dataclass(frozen=True, slots=True)
class ExternalRequest:
    """The daemon should reserve one address of ``family`` in ``group``'s external IPAM."""

    group: str
    family: int
    address: IPAddress | None = None
    """Claim exactly this address (``purelb.io/addresses``); ``None``: any free one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The result of reconciling (or releasing) one Service.

    ``ingress`` and the annotation fields hold only differences from what the Service
    showed, so an unchanged Service yields a Decision with nothing to write.
    """

    service: ServiceKey
    outcome: Outcome
    ingress: tuple[str, ...] | None = None
    """New ``status.loadBalancer.ingress`` IPs (each written ``{ip, ipMode: VIP}``);
    ``None`` = leave the status alone."""
    annotations_set: Mapping[str, str] = field(default_factory=dict)
    annotations_remove: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    released: tuple[Released, ...] = ()
    requeue: tuple[ServiceKey, ...] = ()
    """Other Services to reconcile again because something they waited for became free."""
    failure: Failure | None = None
    external_requests: tuple[ExternalRequest, ...] = ()

    @property
    def has_writes(self) -> bool:
        return (
            self.ingress is not None or bool(self.annotations_set) or bool(self.annotations_remove)
        )

    def ingress_json(self) -> list[dict[str, str]]:
        """``status.loadBalancer.ingress`` as JSON (only meaningful when ``ingress`` is set)."""
        return [{"ip": ip, "ipMode": "VIP"} for ip in self.ingress or ()]


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The result of :meth:`Allocator.set_config`."""

    accepted: tuple[str, ...]
    rejected: tuple[RejectedGroup, ...]
    orphaned: tuple[IPAddress, ...]
    """Held addresses that now lie in no pool: they stay on their Services (never revoked)."""
    requeue: tuple[ServiceKey, ...]
    """Services that failed before and may succeed under the new config."""
    unused_offers: tuple[Released, ...] = ()
    """Addresses the daemon reserved in NetBox for a group that was changed or removed
    before they were handed out: return them to NetBox."""


@dataclass(frozen=True, slots=True)
class ImportConflict:
    service: ServiceKey
    address: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The result of :meth:`Allocator.import_services` (the startup barrier)."""

    services: int
    """Services whose ingress was (at least partly) imported."""
    addresses: int
    """Distinct addresses now held."""
    orphans: tuple[IPAddress, ...]
    """Imported addresses inside no pool (kept, reported)."""
    conflicts: tuple[ImportConflict, ...]
    """Ingress entries not imported (clash with an earlier Service, unparseable...)."""
    requeue: tuple[ServiceKey, ...]
    """Services whose ingress must be rewritten (their conflicts are listed above)."""


@dataclass(frozen=True, slots=True)
class ImportEntry:
    """What the startup import reads of one Service (:meth:`Allocator.import_entry`).

    The barrier lists every Service of the cluster; keeping this instead of the parsed
    Service (~1.5 KB) until the import keeps a restart's memory peak low.
    """

    key: ServiceKey
    ingress: tuple[str, ...]
    """``status.loadBalancer.ingress[].ip`` as written."""
    sharing_key: str
    ports: frozenset[ServicePort]
    allocated_from: str
    """The ``purelb.io/allocated-from`` annotation (places legacy NetBox addresses)."""


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counts for one group and family; exact integers (IPv6 sizes exceed 2**64)."""

    group: str
    family: int
    pool_type: PoolType
    size: int | None
    """``None`` when unknown (an external IPAM)."""
    in_use: int
    available: int | None
