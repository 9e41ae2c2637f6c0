"""Node-side pieces of the LBNodeAgent.

- ``plan``: pure — which addresses this node wants on which interface.
- ``interfaces``: pure selection of local subnets from netlink dumps (+ ``discover``).
- ``diff``: pure — wanted vs. present addresses, honouring ownership (IFA_PROTO).
- ``netlink``: ``NetlinkWriter``, the one owner of the node's rtnetlink socket.
- ``garp``: gratuitous ARP / unsolicited NA from raw sockets.
- ``netns``: sockets opened inside a network namespace without moving the Trio thread.

The I/O modules are imported lazily by whoever needs them, so importing ``purelb.agent``
(or ``purelb.agent.plan``) pulls in no sockets.
"""

from .records import AddressInfo as AddressInfo
from .records import AddressKind as AddressKind
from .records import AddrSpec as AddrSpec
from .records import LinkInfo as LinkInfo
from .records import LocalSubnet as LocalSubnet
from .records import RouteInfo as RouteInfo
from .settings import DEFAULT_AGENT_SETTINGS as DEFAULT_AGENT_SETTINGS
from .settings import AgentSettings as AgentSettings
from .settings import Ownership as Ownership
from .settings import VirtualKind as VirtualKind

__all__ = [
    "DEFAULT_AGENT_SETTINGS",
    "AddrSpec",
    "AddressInfo",
    "AddressKind",
    "AgentSettings",
    "LinkInfo",
    "LocalSubnet",
    "Ownership",
    "RouteInfo",
    "VirtualKind",
]
