"""Gossip membership (SWIM + Lifeguard over sealed UDP) and subnet-aware election.

Layers, bottom up: ``_timings`` (named configuration), ``_wire`` (message types and their
binary encoding), ``_crypto`` / ``_codec`` (AES-256-GCM envelope, replay window, rate
limit), ``_swim`` (the sans-I/O state machine), ``_election`` (rendezvous over members
whose subnets contain the address), ``_member`` (the Trio UDP shell). See docs/gossip.md.
"""

from ._crypto import GossipKey as GossipKey
from ._crypto import Keyring as Keyring
from ._crypto import parse_secret_data as parse_secret_data
from ._crypto import secret_data as secret_data
from ._election import candidates as candidates
from ._election import winner as winner
from ._election import winners as winners
from ._member import Member as Member
from ._member import MemberConfig as MemberConfig
from ._member import MembershipView as MembershipView
from ._member import MemberStatistics as MemberStatistics
from ._member import serve_member as serve_member
from ._metrics import GossipMetrics as GossipMetrics
from ._reasons import RejectReason as RejectReason
from ._seeds import SeedProvider as SeedProvider
from ._seeds import parse_address as parse_address
from ._seeds import static_seeds as static_seeds
from ._subnets import InterfaceAddress as InterfaceAddress
from ._subnets import serving_subnets as serving_subnets
from ._swim import EventKind as EventKind
from ._swim import MemberEvent as MemberEvent
from ._swim import MemberInfo as MemberInfo
from ._swim import Swim as Swim
from ._timings import DEFAULT_LIMITS as DEFAULT_LIMITS
from ._timings import DEFAULT_TIMINGS as DEFAULT_TIMINGS
from ._timings import GossipLimits as GossipLimits
from ._timings import GossipTimings as GossipTimings
from ._timings import lan as lan
from ._timings import local as local
from ._wire import DEFAULT_PORT as DEFAULT_PORT
from ._wire import Address as Address
from ._wire import MemberMeta as MemberMeta
from ._wire import MemberState as MemberState
from ._wire import NodeName as NodeName

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PORT",
    "DEFAULT_TIMINGS",
    "Address",
    "EventKind",
    "GossipKey",
    "GossipLimits",
    "GossipMetrics",
    "GossipTimings",
    "InterfaceAddress",
    "Keyring",
    "Member",
    "MemberConfig",
    "MemberEvent",
    "MemberInfo",
    "MemberMeta",
    "MemberState",
    "MemberStatistics",
    "MembershipView",
    "NodeName",
    "RejectReason",
    "SeedProvider",
    "Swim",
    "candidates",
    "lan",
    "local",
    "parse_address",
    "parse_secret_data",
    "secret_data",
    "serve_member",
    "serving_subnets",
    "static_seeds",
    "winner",
    "winners",
]
