"""The one error type the model layer raises: a field that failed validation.

Every message names the field path (``spec.local.v4pools[1].subnet``), the offending value
and why it is wrong, because it is shown verbatim in a Kubernetes Event or a status
condition where the user has nothing else to go on.
"""

from __future__ import annotations

from enum import StrEnum

from purelb.errors import ConfigError


class Reason(StrEnum):
    """Why a field was refused. Stable identifiers: events, conditions and tests use them."""

    REQUIRED = "required"
    """A required field is missing or empty."""
    WRONG_TYPE = "wrong_type"
    """The field has the wrong JSON type (a list where a mapping belongs...)."""
    INVALID_NAME = "invalid_name"
    """Not a valid Kubernetes object name."""
    INVALID_CIDR = "invalid_cidr"
    """Not an ``address/prefix`` CIDR."""
    INVALID_RANGE = "invalid_range"
    """Not a CIDR nor a ``first-last`` range with first <= last in one family."""
    INVALID_ADDRESS = "invalid_address"
    """Not an IPv4 or IPv6 address."""
    FAMILY_MISMATCH = "family_mismatch"
    """An IPv6 value in an IPv4 field (or the reverse), or pool and subnet of two families."""
    POOL_OUTSIDE_SUBNET = "pool_outside_subnet"
    """A pool address lies outside the pool's ``subnet``."""
    INVALID_AGGREGATION = "invalid_aggregation"
    """``aggregation`` is neither ``default`` nor ``/N`` with N in the family's range."""
    AGGREGATION_TOO_SHORT = "aggregation_too_short"
    """``aggregation`` /N is shorter than the subnet prefix (it would claim foreign space)."""
    OVERLAP = "overlap"
    """Two pools (in one group or in two groups) share addresses."""
    DUPLICATE_NAME = "duplicate_name"
    """Two ServiceGroups have the same name."""
    AMBIGUOUS_SPEC = "ambiguous_spec"
    """Both ``local`` and ``netbox`` are set (exactly one is allowed)."""
    LEGACY_CONFLICT = "legacy_conflict"
    """Legacy top-level ``pool`` and ``v4pool``/``v6pool`` of the same family both set."""
    INVALID_URL = "invalid_url"
    """NetBox ``url`` is not an absolute http(s) URL."""
    TOO_MANY = "too_many"
    """More values than allowed (two addresses of one family...)."""
    INVALID_PORT = "invalid_port"
    """A Service port outside 1..65535 or an unknown protocol."""


class InvalidField(ConfigError):
    """A field of a ServiceGroup, Service or annotation failed validation.

    ``path`` is the field path, ``value`` the offending value and ``reason`` a stable
    :class:`Reason` for events, conditions and tests.
    """

    def __init__(self, reason: Reason, detail: str, *, path: str, value: object) -> None:
        super().__init__(f"{path}: {detail} (got {value!r})", path=path, value=value)
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"InvalidField(reason={self.reason!r}, path={self.path!r}, value={self.value!r})"
