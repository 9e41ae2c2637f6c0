"""Sealing gossip datagrams: AES-256-GCM under HKDF-derived keys from a keyring.

Envelope (every datagram; integers big-endian)::

    magic    2 bytes  b"PG"                        plaintext/garbage is rejected here
    version  u8       ENVELOPE_VERSION             protocol version
    cluster  8 bytes  SHA-256(cluster name)[:8]    cheap early reject of foreign clusters
    key id   8 bytes  HKDF(secret, "key-id")[:8]   which installed key opens it
    nonce    12 bytes random per datagram
    sealed   AES-256-GCM(plaintext) + 16-byte tag

The associated data is the whole 31-byte header followed by the full cluster name, so the
version, cluster, key id and nonce are all authenticated and a packet sealed for another
cluster never opens even if the 8-byte tags collide.

Keys: each secret from the Kubernetes Secret is run through HKDF-SHA256 (fixed salt, one
``info`` per purpose) to get the AES key and a public key id; the raw secret is never used
as a key (MetalLB's truncation bug, research/peers.md section 3). A :class:`Keyring` holds
several keys; all open, only the primary seals, so rotation is install -> make primary ->
remove, with no moment where two members cannot read each other.

This module never logs; reprs of key objects show the name and id only, never material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError, PacketRejected
from ._reasons import RejectReason

MAGIC: Final = b"PG"
ENVELOPE_VERSION: Final = 1
_HEADER = struct.Struct("!2sB8s8s12s")
HEADER_BYTES: Final = _HEADER.size  # 31
TAG_BYTES: Final = 16
NONCE_BYTES: Final = 12
#: Bytes the envelope adds to a plaintext.
ENVELOPE_OVERHEAD_BYTES: Final = HEADER_BYTES + TAG_BYTES

#: Shortest secret accepted: 16 bytes = 128 bits, the strength AES-128 would give.
MIN_SECRET_BYTES: Final = 16
#: Longest secret accepted (a Secret value is at most 1 MiB; nobody needs more than this).
MAX_SECRET_BYTES: Final = 4096
#: Secret data entry naming the primary key (its value is a key name, base64 like all data).
PRIMARY_ENTRY: Final = "primary"
_SALT: Final = b"purelb-gossip-hkdf-salt-v1"


def cluster_tag(cluster: str) -> bytes:
    """The 8-byte cluster id carried in clear in every header."""
    return hashlib.sha256(b"purelb-gossip cluster\x00" + cluster.encode()).digest()[:8]


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


@final
class GossipKey:
    """One installed key: a name, a public id and the AEAD. Material never leaves it."""

    __slots__ = ("_aead", "key_id", "name")

    def __init__(self, name: str, secret: bytes) -> None:
        if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
            raise ConfigError(
                f"gossip key {name!r} is {len(secret)} bytes; need {MIN_SECRET_BYTES}.."
                f"{MAX_SECRET_BYTES} random bytes (e.g. `head -c 32 /dev/urandom | base64`)",
                path=name,
                value=f"<{len(secret)} bytes>",
            )
        self.name = name
        self.key_id = _hkdf(secret, b"purelb gossip key-id v1", 8)
        self._aead = AESGCM(_hkdf(secret, b"purelb gossip aes-256-gcm v1", 32))

    def __repr__(self) -> str:
        return f"GossipKey(name={self.name!r}, id={self.key_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GossipKey) and other.key_id == self.key_id

    def __hash__(self) -> int:
        return hash(self.key_id)


@final
@dataclass(frozen=True, slots=True, eq=False)
class Keyring:
    """Installed keys (all open packets) and the primary (the only one that seals)."""

    keys: tuple[GossipKey, ...]
    primary: GossipKey

    def __post_init__(self) -> None:
        if self.primary not in self.keys:
            raise ConfigError(
                f"primary gossip key {self.primary.name!r} is not among the installed keys "
                f"{[k.name for k in self.keys]}",
                path=PRIMARY_ENTRY,
                value=self.primary.name,
            )
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            names = [k.name for k in self.keys]
            raise ConfigError(
                f"two gossip keys in {names} hold the same secret; remove the duplicate",
                path="keys",
                value=names,
            )

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, bytes], *, primary: str | None = None) -> Keyring:
        """Build from raw secrets by name; primary defaults to the greatest name."""
        if not secrets:
            raise ConfigError("the gossip keyring is empty; install at least one key", path="keys")
        keys = tuple(GossipKey(name, secret) for name, secret in sorted(secrets.items()))
        chosen = primary if primary is not None else keys[-1].name
        by_name = {k.name: k for k in keys}
        if chosen not in by_name:
            raise ConfigError(
                f"primary gossip key {chosen!r} is not one of {sorted(by_name)}",
                path=PRIMARY_ENTRY,
                value=chosen,
            )
        return cls(keys=keys, primary=by_name[chosen])

    def by_id(self, key_id: bytes) -> GossipKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def __repr__(self) -> str:
        return f"Keyring(keys={[k.name for k in self.keys]}, primary={self.primary.name!r})"


def parse_secret_data(data: Mapping[str, str]) -> Keyring:
    """Turn a Kubernetes Secret's ``data`` (base64 values) into a :class:`Keyring`.

    Every entry is a key named by its data key, except ``primary``, whose (base64) value
    names the key that seals; without it the greatest name is primary, so naming keys by
    date (``k2026-11``) rotates by adding the newer one. Errors name the entry, never
    the value.
    """
    secrets: dict[str, bytes] = {}
    primary: str | None = None
    for name, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"Secret data entry {name!r} must be a base64 string, got {type(value).__name__}",
                path=f"data.{name}",
                value=type(value).__name__,
            )
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"Secret data entry {name!r} is not valid base64", path=f"data.{name}",
                value="<redacted>",
            ) from None
        if name == PRIMARY_ENTRY:
            try:
                primary = raw.decode().strip()
            except UnicodeDecodeError:
                raise ConfigError(
                    f"Secret data entry {PRIMARY_ENTRY!r} must name a key in UTF-8",
                    path=f"data.{PRIMARY_ENTRY}",
                    value="<binary>",
                ) from None
            continue
        secrets[name] = raw
    return Keyring.from_secrets(secrets, primary=primary)


def secret_data(secrets: Mapping[str, bytes], *, primary: str | None = None) -> dict[str, str]:
    """The inverse of :func:`parse_secret_data` (for tools and tests writing Secrets)."""
    data = {name: base64.b64encode(raw).decode() for name, raw in secrets.items()}
    if primary is not None:
        data[PRIMARY_ENTRY] = base64.b64encode(primary.encode()).decode()
    return data


@final
class Envelope:
    """Seals and opens datagrams for one cluster under a (replaceable) keyring."""

    __slots__ = ("_aad_suffix", "_tag", "cluster", "keyring", "max_packet_bytes")

    def __init__(self, cluster: str, keyring: Keyring, *, max_packet_bytes: int) -> None:
        if not cluster or len(cluster.encode()) > 255:
            raise ConfigError(
                f"cluster name {cluster!r} must be 1..255 UTF-8 bytes", path="cluster",
                value=cluster,
            )
        self.cluster = cluster
        self.keyring = keyring
        self.max_packet_bytes = max_packet_bytes
        self._tag = cluster_tag(cluster)
        self._aad_suffix = cluster.encode()

    def __repr__(self) -> str:
        return f"Envelope(cluster={self.cluster!r}, keyring={self.keyring!r})"

    def seal(self, plaintext: bytes) -> bytes:
        key = self.keyring.primary
        header = _HEADER.pack(MAGIC, ENVELOPE_VERSION, self._tag, key.key_id,
                              os.urandom(NONCE_BYTES))
        sealed = key._aead.encrypt(header[-NONCE_BYTES:], plaintext, header + self._aad_suffix)
        packet = header + sealed
        if len(packet) > self.max_packet_bytes:
            raise ValueError(
                f"sealed packet of {len(packet)} bytes exceeds max_packet_bytes "
                f"{self.max_packet_bytes}; this is a bug in packet sizing"
            )
        return packet

    def open(self, packet: bytes) -> bytes:
        """Authenticate and decrypt; raises PacketRejected with a stable reason."""
        size = len(packet)
        if size > self.max_packet_bytes:
            raise PacketRejected(f"{size}-byte datagram exceeds {self.max_packet_bytes}",
                                 reason=RejectReason.OVERSIZE)
        if packet[:2] != MAGIC:
            raise PacketRejected("datagram lacks the gossip magic (plaintext or other protocol)",
                                 reason=RejectReason.PLAINTEXT)
        if size < HEADER_BYTES + TAG_BYTES:
            raise PacketRejected(f"{size}-byte datagram is shorter than an empty sealed packet",
                                 reason=RejectReason.TRUNCATED)
        header = packet[:HEADER_BYTES]
        _magic, version, tag, key_id, nonce = _HEADER.unpack(header)
        if version != ENVELOPE_VERSION:
            raise PacketRejected(f"envelope version {version}, expected {ENVELOPE_VERSION}",
                                 reason=RejectReason.BAD_VERSION)
        if tag != self._tag:
            raise PacketRejected(f"cluster tag {tag.hex()} is not ours",
                                 reason=RejectReason.FOREIGN_CLUSTER)
        key = self.keyring.by_id(key_id)
        if key is None:
            raise PacketRejected(f"no installed key has id {key_id.hex()}",
                                 reason=RejectReason.UNKNOWN_KEY)
        try:
            return key._aead.decrypt(nonce, packet[HEADER_BYTES:], header + self._aad_suffix)
        except InvalidTag:
            raise PacketRejected(f"authentication failed under key {key.name!r}",
                                 reason=RejectReason.AUTH_FAILED) from None

