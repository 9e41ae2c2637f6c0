"""IPAM: pools of addresses and the pure decisions made over them.

``pool`` maps ServiceGroup ranges onto the hot-path address spaces (``purelb.fast``).
"""

from purelb.ipam.pool import (
    AddressInUse,
    AddressRange,
    NoFamilyRange,
    NotAllocated,
    NotInPool,
    Pool,
    PoolError,
    PoolExhausted,
    parse_range,
    range_within,
    require_within,
)

__all__ = [
    "AddressInUse",
    "AddressRange",
    "NoFamilyRange",
    "NotAllocated",
    "NotInPool",
    "Pool",
    "PoolError",
    "PoolExhausted",
    "parse_range",
    "range_within",
    "require_within",
]
