"""Read a node's interface addresses with netlink (the I/O half of ``serving_subnets``).

Blocking (pyroute2's sync API): call it before the Trio loop starts, or from Trio through
``trio.to_thread.run_sync`` with a CapacityLimiter, as the agent does for all netlink work.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import NetlinkError
from ._subnets import InterfaceAddress


def read_interface_addresses(ifnames: Sequence[str]) -> list[InterfaceAddress]:
    """Every address on the named interfaces, with the kernel's address flags.

    Raises NetlinkError naming the interface when it does not exist or netlink fails.
    """
    from pyroute2 import IPRoute  # imported here: the pure election modules never need it
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2NetlinkError

    found: list[InterfaceAddress] = []
    try:
        with IPRoute() as ipr:
            for ifname in ifnames:
                indexes = ipr.link_lookup(ifname=ifname)
                if not indexes:
                    raise NetlinkError(f"interface {ifname!r} does not exist in this namespace")
                for msg in ipr.addr("dump", index=indexes[0]):
                    address = msg.get("address")
                    if address is None:
                        continue
                    # IFA_FLAGS carries the full 32-bit flags; the header byte only 8 of them
                    flags = msg.get("IFA_FLAGS")
                    found.append(InterfaceAddress(ifname, address, msg["prefixlen"],
                                                  flags if flags is not None else msg["flags"]))
    except (OSError, Pyroute2NetlinkError) as exc:
        raise NetlinkError(f"reading addresses of {list(ifnames)} failed: {exc}") from exc
    return found
