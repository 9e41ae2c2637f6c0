"""Stable reasons a datagram is rejected (metric label values and log fields)."""

from __future__ import annotations

import enum


class RejectReason(enum.StrEnum):
    """Why a datagram was dropped. Values are metric labels: keep them stable."""

    RATE_LIMITED = "rate_limited"
    """The source sent more than its token bucket allows; dropped before any parsing."""
    OVERSIZE = "oversize"
    """Larger than ``max_packet_bytes``."""
    PLAINTEXT = "plaintext"
    """No gossip magic: unencrypted gossip or another protocol on our port."""
    TRUNCATED = "truncated"
    """Too short to hold a header and tag."""
    BAD_VERSION = "bad_version"
    """An envelope version we do not speak."""
    FOREIGN_CLUSTER = "foreign_cluster"
    """Sealed for another cluster name."""
    UNKNOWN_KEY = "unknown_key"
    """Sealed under a key that is not installed (rotation out of step, or forged)."""
    AUTH_FAILED = "auth_failed"
    """The AEAD tag did not verify: forged or corrupted."""
    MALFORMED = "malformed"
    """Authentic but undecodable (a bug or an incompatible peer)."""
    REPLAY = "replay"
    """A sequence number already seen from this sender epoch."""
    STALE = "stale"
    """Older than the sender's replay window or from an earlier epoch."""
    SELF = "self"
    """Claims to come from our own node name (a loop, or a duplicate node name)."""
