"""Node-agent I/O settings: one frozen group, every field documented with its reason."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from purelb.errors import ConfigError

from .records import (
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    IFAPROT_KERNEL_MAX,
    AddressKind,
    AddrSpec,
    IPInterface,
)

#: The longest finite lifetime ifa_cacheinfo can hold (all ones means forever).
MAX_FINITE_LIFETIME_S = 0xFFFFFFFE


class VirtualKind(enum.Enum):
    """How the virtual interface (``kube-lb0``) comes to exist."""

    DUMMY = "dummy"
    """Create a ``dummy`` link (production); fall back to ``ifb`` where the kernel lacks dummy."""
    IFB = "ifb"
    """Create an ``ifb`` link: same NOARP flags as dummy, present on kernels without dummy."""
    EXISTING = "existing"
    """Never create: use the interface someone else made (any kind); fail if it is missing."""


class Ownership(enum.Enum):
    """How the agent recognises the addresses it added (and may therefore remove)."""

    AUTO = "auto"
    """IFA_PROTO where the kernel has it (Linux >= 6.3), else the state file."""
    IFA_PROTO = "ifa-proto"
    """Mark each address with ``address_proto`` in the kernel; refuse older kernels."""
    STATE_FILE = "state-file"
    """Record owned addresses in ``state_dir``: for 5.x kernels, which ignore IFA_PROTO.
    Survives an agent restart, not a reboot (/run is a tmpfs) -- nor do the addresses."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """Timings, lifetimes and interface choices of the node-side I/O."""

    garp_count: int = 3
    """GARP/unsolicited NA packets sent per newly won local address. One can be lost on a
    busy LAN; without any, clients keep the old MAC for 23-53 s (research/netns-bird.md
    section 3). Three costs a few frames per failover. 0 disables announcements."""

    garp_interval_s: float = 1.0
    """Seconds between announcements: arping's default pace, long enough that a switch
    that dropped the first frame during a port flap has settled for the next."""

    garp_initial_delay_s: float = 0.0
    """Seconds to wait after adding the address before the first announcement. 0: the
    address is nodad, hence usable at once."""

    local_valid_lft_s: int | None = 300
    """Valid lifetime of local (NIC) addresses; None = permanent. Finite so a NIC address
    left by a crashed agent expires on its own (PureLB uses 300 s); the writer refreshes
    at half of it, so the agent must reconcile at least every ``local_valid_lft_s / 2``."""

    local_v6_deprecated: bool = True
    """Add local IPv6 addresses with preferred lifetime 0 (deprecated), so the kernel and
    CNIs never pick the VIP as a source address (PureLB does the same)."""

    noprefixroute: bool = True
    """Add local addresses with IFA_F_NOPREFIXROUTE: the NIC already has the subnet route,
    and a second one from the VIP would flap when the VIP moves."""

    virtual_interface: str = "kube-lb0"
    """Name of the virtual interface that carries virtual addresses."""

    virtual_kind: VirtualKind = VirtualKind.DUMMY
    """How to obtain the virtual interface; see VirtualKind."""

    address_proto: int = 0x7A
    """IFA_PROTO value marking addresses this agent added (kernel >= 6.3). Values 0-3 are
    the kernel's own; 0x7A is otherwise unused. Every agent on a host must agree."""

    ownership: Ownership = Ownership.AUTO
    """How own addresses are recognised; see Ownership."""

    state_dir: str = "/run/purelb"
    """Directory of the ownership state file (Ownership.STATE_FILE). /run is cleared at
    boot together with the addresses the file describes."""

    netlink_batch: int = 128
    """Requests sent per netlink write before reading their ACKs. Each ACK costs about
    1 KiB of receive buffer; 128 fits the 4 MiB buffer with room, and larger batches
    gained little (research/env.md: pipelining x64 already reaches the kernel's pace)."""

    netlink_rcvbuf_bytes: int = 4 * 1024 * 1024
    """Netlink socket receive buffer: holds a batch of ACKs and a dump's burst."""

    def __post_init__(self) -> None:
        _check(self.garp_count >= 0, "garp_count", self.garp_count, ">= 0")
        _check(self.garp_interval_s >= 0, "garp_interval_s", self.garp_interval_s, ">= 0")
        _check(
            self.garp_initial_delay_s >= 0,
            "garp_initial_delay_s",
            self.garp_initial_delay_s,
            ">= 0",
        )
        _check(
            self.local_valid_lft_s is None or self.local_valid_lft_s >= 2,
            "local_valid_lft_s",
            self.local_valid_lft_s,
            "None or >= 2 seconds",
        )
        _check(
            0 < len(self.virtual_interface) <= 15 and "/" not in self.virtual_interface,
            "virtual_interface",
            self.virtual_interface,
            "an interface name of 1-15 characters without '/'",
        )
        _check(
            IFAPROT_KERNEL_MAX < self.address_proto <= 255,
            "address_proto",
            self.address_proto,
            f"{IFAPROT_KERNEL_MAX + 1}..255",
        )
        _check(1 <= self.netlink_batch <= 1024, "netlink_batch", self.netlink_batch, "1..1024")
        _check(
            self.netlink_rcvbuf_bytes >= 64 * 1024,
            "netlink_rcvbuf_bytes",
            self.netlink_rcvbuf_bytes,
            ">= 65536",
        )

    @property
    def max_reconcile_interval_s(self) -> float | None:
        """The daemon must reconcile at least this often, or local addresses expire.

        The diff refreshes a finite address once less than half its lifetime is left, so a
        reconcile every ``local_valid_lft_s / 2`` seconds always catches it in time.
        None when local addresses are permanent.
        """
        return None if self.local_valid_lft_s is None else self.local_valid_lft_s / 2

    def spec_for(self, kind: AddressKind, index: int, interface: IPInterface) -> AddrSpec:
        """The options an address of ``kind`` is added with.

        Every address is nodad: the agent announces it itself, and DAD would leave a moved
        IPv6 VIP ``dadfailed`` while the old owner still answers (netns-bird.md section 3).
        Virtual addresses are permanent and keep their prefix route (routing software
        exports the route of the aggregation).
        """
        nodad = IFA_F_NODAD if interface.version == 6 else 0  # IPv4 has no DAD
        if kind is AddressKind.VIRTUAL:
            return AddrSpec(index=index, interface=interface, flags=nodad)
        flags = nodad | (IFA_F_NOPREFIXROUTE if self.noprefixroute else 0)
        valid = self.local_valid_lft_s
        preferred = 0 if interface.version == 6 and self.local_v6_deprecated else None
        if valid is None and preferred == 0:
            # A deprecated address needs a finite valid lifetime in the kernel's API; use
            # the largest finite one, which the refresh rule renews long before expiry.
            valid = MAX_FINITE_LIFETIME_S
        return AddrSpec(
            index=index,
            interface=interface,
            flags=flags,
            valid_lft_s=valid,
            preferred_lft_s=preferred,
        )

    def local(self) -> AgentSettings:
        """A preset for namespace tests: short GARP pacing, ``ifb`` virtual interface."""
        return dataclasses.replace(self, garp_interval_s=0.05, virtual_kind=VirtualKind.IFB)


def _check(ok: bool, field: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(
            f"AgentSettings.{field}={value!r} is invalid: must be {allowed}",
            path=f"AgentSettings.{field}",
            value=value,
        )


DEFAULT_AGENT_SETTINGS = AgentSettings()
