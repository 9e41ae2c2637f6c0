"""Exceptions raised by the hot path, shared by ``purelb._native`` and ``purelb._fallback``.

They live in their own pure module so both implementations raise the very same classes:
callers catch ``purelb.fast.SpaceFull`` whichever implementation is active.

    PurelbError
    ├── AllocationError
    │   ├── SpaceFull            reason "exhausted": no free offset left
    │   └── OffsetInUse          reason "address_in_use": a specific offset is taken
    ├── OffsetOutOfRange (+ ValueError)   an offset or size outside what the space allows
    └── NotAllocatedError (+ KeyError)    releasing an offset that is free
"""

from __future__ import annotations

from purelb.errors import AllocationError, PurelbError

#: Largest address space the allocator accepts: an IPv6 /0.
MAX_SPACE_SIZE = 1 << 128


class SpaceFull(AllocationError):
    """Every offset of the address space is allocated."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="exhausted")


class OffsetInUse(AllocationError):
    """The requested offset is already allocated."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message, reason="address_in_use")
        self.offset = offset


class OffsetOutOfRange(PurelbError, ValueError):
    """An offset (or a space size) lies outside the allowed range; names both."""

    def __init__(self, message: str, *, value: int) -> None:
        super().__init__(message)
        self.value = value


class NotAllocatedError(PurelbError, KeyError):
    """Releasing an offset that is not allocated (a double release is a caller bug)."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __str__(self) -> str:  # KeyError would repr() the message with quotes
        return str(self.args[0])


def check_size(size: object) -> int:
    """Validate an address-space size: an int in ``[1, 2**128]``."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"address space size must be an int, not {type(size).__name__}")
    if size < 1 or size > MAX_SPACE_SIZE:
        raise OffsetOutOfRange(
            f"address space size {size} is outside [1, 2**128]", value=size
        )
    return size


def out_of_range(offset: object, size: int) -> Exception:
    """The error for an offset outside ``[0, size)`` (TypeError for a non-int)."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        return TypeError(f"offset must be an int, not {type(offset).__name__}")
    return OffsetOutOfRange(
        f"offset {offset} is outside the address space [0, {size})", value=offset
    )


def space_full(size: int) -> SpaceFull:
    return SpaceFull(f"all {size} offsets of the address space are allocated")


def offset_in_use(offset: int) -> OffsetInUse:
    return OffsetInUse(f"offset {offset} is already allocated", offset=offset)


def not_allocated(offset: int) -> NotAllocatedError:
    return NotAllocatedError(f"offset {offset} is not allocated, cannot release it", offset=offset)
