"""IPAM: pools of addresses and the pure decisions made over them.

``pool`` maps ServiceGroup ranges onto the hot-path address spaces (``purelb.fast``).
"""

from purelb.ipam.pool import (
    AddressInUse as AddressInUse,
)
from purelb.ipam.pool import (
    AddressRange as AddressRange,
)
from purelb.ipam.pool import (
    NotAllocated as NotAllocated,
)
from purelb.ipam.pool import (
    NotInPool as NotInPool,
)
from purelb.ipam.pool import (
    Pool as Pool,
)
from purelb.ipam.pool import (
    PoolError as PoolError,
)
from purelb.ipam.pool import (
    PoolExhausted as PoolExhausted,
)
