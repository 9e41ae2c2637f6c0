"""Pure-Python twin of ``purelb._native``: same names, bit-identical answers.

``purelb.fast`` uses this module when the Cython extension is not built (no compiler at
install time) or when ``PURELB_PURE=1``. The shared property tests run every function of
both modules against a trivial reference model and against each other.

Address space (``AddressSpace``)
    A sparse 64-ary bitmap trie over offsets ``[0, size)``. A leaf covers 4096 offsets (one
    Python int used as a 4096-bit bitmap); an inner node covers 64 children and keeps a
    64-bit ``full`` mask, one bit per child that is completely allocated. Absent children
    are completely free, so memory follows what is allocated, not the size of the range.
    ``lowest_free`` descends one path, jumping over full children with the mask: its cost
    depends only on the trie height (at most 20 for 2**128), never on occupancy.
    ``allocate_lowest`` caches the path to the leaf holding the lowest free offset, so a
    run of allocations costs one descent per 4096, whatever the size.

Rendezvous election
    Every name and key is hashed once with ``stable_hash64`` (FNV-1a 64 over UTF-8, then
    the murmur3 ``fmix64`` finalizer); a (node, key) pair scores ``fmix64(node ^ key)``.
    The highest score wins; equal scores go to the smaller name. No Python ``hash()``:
    it is randomized per process and nodes would disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence

from purelb._fasterrors import (
    NotAllocatedError,
    OffsetInUse,
    OffsetOutOfRange,
    SpaceFull,
    check_size,
    not_allocated,
    offset_in_use,
    out_of_range,
    space_full,
)

__all__ = [
    "LEAF_BITS",
    "AddressSpace",
    "NotAllocatedError",
    "OffsetInUse",
    "OffsetOutOfRange",
    "Rendezvous",
    "SpaceFull",
    "fmix64",
    "stable_hash64",
    "winner",
    "winners",
]

#: log2 of the offsets one leaf covers. 4096 bits = 512 bytes: one leaf per /20 of IPv4.
LEAF_SHIFT = 12
LEAF_BITS = 1 << LEAF_SHIFT
_LEAF_FULL = (1 << LEAF_BITS) - 1
#: log2 of the children of an inner node (one 64-bit mask word).
FAN_SHIFT = 6
_FAN = 1 << FAN_SHIFT
_ALL64 = (1 << 64) - 1


def trie_height(size: int) -> int:
    """Inner levels needed so that ``2**(LEAF_SHIFT + FAN_SHIFT*height) >= size``."""
    bits = (size - 1).bit_length()
    height = 0
    while LEAF_SHIFT + FAN_SHIFT * height < bits:
        height += 1
    return height


def _low_bit(value: int) -> int:
    """Index of the lowest set bit (value != 0; works for negative ints too)."""
    return (value & -value).bit_length() - 1


class _Node:
    """An inner trie node: children by slot, ``full`` bit per completely allocated child."""

    __slots__ = ("full", "kids")

    def __init__(self) -> None:
        self.full = 0
        self.kids: dict[int, _Node | int] = {}


_Child = _Node | int | None


class AddressSpace:
    """Offsets ``[0, size)``, each free or allocated; ``size`` up to ``2**128``."""

    __slots__ = ("_count", "_height", "_hint", "_root", "_size")

    def __init__(self, size: int) -> None:
        self._size = check_size(size)
        self._height = trie_height(self._size)
        self._root: _Child = None
        self._count = 0
        # Lowest-free cache: (first offset of the leaf that held the lowest free offset at
        # the last slow allocate_lowest, [(inner node, slot)] from the root down to that
        # leaf). Dropped on release (nodes may vanish, lower holes may open); allocations
        # only fill, so everything below the leaf stays allocated. One descent per 4096
        # allocations instead of one per allocation.
        self._hint: tuple[int, list[tuple[_Node, int]]] | None = None

    def __repr__(self) -> str:
        return f"AddressSpace(size={self._size}, count={self._count}, impl='fallback')"

    @property
    def capacity(self) -> int:
        """The exact number of offsets (never saturated)."""
        return self._size

    @property
    def count(self) -> int:
        """How many offsets are allocated."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def _check(self, offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int) or not (
            0 <= offset < self._size
        ):
            raise out_of_range(offset, self._size)

    # -- queries -------------------------------------------------------------------------

    def is_allocated(self, offset: int) -> bool:
        """Whether ``offset`` is allocated."""
        self._check(offset)
        node = self._root
        shift = LEAF_SHIFT + FAN_SHIFT * self._height
        while isinstance(node, _Node):
            shift -= FAN_SHIFT
            slot = (offset >> shift) & (_FAN - 1)
            if (node.full >> slot) & 1:
                return True
            node = node.kids.get(slot)
        if node is None:
            return False
        return bool((node >> (offset & (LEAF_BITS - 1))) & 1)

    def lowest_free(self, start: int = 0) -> int | None:
        """The lowest free offset ``>= start``, or None; changes nothing."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int, not {type(start).__name__}")
        if start < 0:
            raise OffsetOutOfRange(f"start {start} is negative", value=start)
        if start >= self._size:
            return None
        found = _find_free(self._root, self._height, start)
        if found < 0 or found >= self._size:
            return None
        return found

    def iter_allocated(self) -> Iterator[int]:
        """Allocated offsets in ascending order.

        Changing the space while iterating does not break the iterator, but what it then
        yields is unspecified: take ``list(...)`` first to change the space in the loop.
        """
        return _iter_set(self._root, self._height, 0)

    def memory_bytes(self) -> int:
        """Approximate bytes held by the trie (``sys.getsizeof`` of every node)."""
        total = sys.getsizeof(self)
        stack: list[_Child] = [self._root]
        while stack:
            node = stack.pop()
            if node is None:
                continue
            if isinstance(node, _Node):
                total += sys.getsizeof(node) + sys.getsizeof(node.kids)
                stack.extend(node.kids.values())
            else:
                total += sys.getsizeof(node)
        return total

    # -- changes -------------------------------------------------------------------------

    def allocate_lowest(self) -> int:
        """Allocate and return the lowest free offset; SpaceFull when none is left."""
        if self._hint is not None:
            found = self._allocate_in_hint_leaf(*self._hint)
            if found is not None:
                return found
        found = _find_free(self._root, self._height, 0)
        if found < 0 or found >= self._size:
            raise space_full(self._size)
        self._root = _set(self._root, self._height, found)[0]
        self._count += 1
        self._remember_leaf(found)
        return found

    def _allocate_in_hint_leaf(self, base: int, path: list[tuple[_Node, int]]) -> int | None:
        """Allocate in the cached leaf; None when it is full (take the slow path)."""
        if path:
            parent, slot = path[-1]
            leaf = parent.kids[slot]
        else:
            leaf = self._root
        assert isinstance(leaf, int)
        low = _low_bit(~leaf)
        if low >= LEAF_BITS:
            return None
        found = base + low
        if found >= self._size:
            raise space_full(self._size)  # everything below the cached leaf is allocated
        leaf |= 1 << low
        if path:
            parent.kids[slot] = leaf
        else:
            self._root = leaf
        if leaf == _LEAF_FULL:  # the leaf filled: tell the ancestors, drop the cache
            self._hint = None
            for node, slot_above in reversed(path):
                node.full |= 1 << slot_above
                if node.full != _ALL64:
                    break
        self._count += 1
        return found

    def _remember_leaf(self, offset: int) -> None:
        path: list[tuple[_Node, int]] = []
        node = self._root
        shift = LEAF_SHIFT + FAN_SHIFT * self._height
        while isinstance(node, _Node):
            shift -= FAN_SHIFT
            slot = (offset >> shift) & (_FAN - 1)
            path.append((node, slot))
            node = node.kids[slot]
        self._hint = None if node == _LEAF_FULL else (offset & ~(LEAF_BITS - 1), path)

    def allocate(self, offset: int) -> None:
        """Allocate exactly ``offset``; OffsetInUse if it is taken."""
        if self.is_allocated(offset):
            raise offset_in_use(offset)
        self._root = _set(self._root, self._height, offset)[0]
        self._count += 1

    def release(self, offset: int) -> None:
        """Free ``offset``; NotAllocatedError if it is free."""
        if not self.is_allocated(offset):
            raise not_allocated(offset)
        self._hint = None
        self._root = _clear(self._root, self._height, offset)
        self._count -= 1


def _find_free(node: _Child, height: int, start: int) -> int:
    """Lowest free position ``>= start`` inside ``node`` (relative), or -1."""
    if node is None:
        return start
    if height == 0:
        assert isinstance(node, int)
        pos = start + _low_bit(~node >> start)
        return pos if pos < LEAF_BITS else -1
    assert isinstance(node, _Node)
    shift = LEAF_SHIFT + FAN_SHIFT * (height - 1)
    slot = start >> shift
    if not (node.full >> slot) & 1:
        found = _find_free(node.kids.get(slot), height - 1, start & ((1 << shift) - 1))
        if found >= 0:
            return (slot << shift) | found
    later = ~node.full & (_ALL64 << (slot + 1)) & _ALL64
    if not later:
        return -1
    slot = _low_bit(later)
    # A child that is not full always has a free position from its start.
    return (slot << shift) | _find_free(node.kids.get(slot), height - 1, 0)


def _set(node: _Child, height: int, offset: int) -> tuple[_Node | int, bool]:
    """Mark ``offset`` (known free) allocated; returns (new node, node is now full)."""
    if height == 0:
        leaf = (node or 0) | (1 << offset)
        return leaf, leaf == _LEAF_FULL
    if node is None:
        node = _Node()
    assert isinstance(node, _Node)
    shift = LEAF_SHIFT + FAN_SHIFT * (height - 1)
    slot = offset >> shift
    child, full = _set(node.kids.get(slot), height - 1, offset & ((1 << shift) - 1))
    node.kids[slot] = child
    if full:
        node.full |= 1 << slot
    return node, node.full == _ALL64


def _clear(node: _Child, height: int, offset: int) -> _Node | int | None:
    """Mark ``offset`` (known allocated) free; returns the node, or None once empty."""
    if height == 0:
        assert isinstance(node, int)
        return (node & ~(1 << offset)) or None
    assert isinstance(node, _Node)
    shift = LEAF_SHIFT + FAN_SHIFT * (height - 1)
    slot = offset >> shift
    child = _clear(node.kids[slot], height - 1, offset & ((1 << shift) - 1))
    node.full &= ~(1 << slot)
    if child is None:
        del node.kids[slot]
        return node if node.kids else None
    node.kids[slot] = child
    return node


def _iter_set(node: _Child, height: int, base: int) -> Iterator[int]:
    if node is None:
        return
    if height == 0:
        assert isinstance(node, int)
        bits = node
        while bits:
            low = bits & -bits
            yield base + low.bit_length() - 1
            bits ^= low
        return
    assert isinstance(node, _Node)
    shift = LEAF_SHIFT + FAN_SHIFT * (height - 1)
    for slot in sorted(node.kids):
        # .get: a release during iteration may have removed the child (no crash; what
        # iteration yields after a concurrent change is unspecified, as in native).
        yield from _iter_set(node.kids.get(slot), height - 1, base + (slot << shift))


# -- rendezvous election -------------------------------------------------------------------

_MASK64 = _ALL64
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_FMIX_C1 = 0xFF51AFD7ED558CCD
_FMIX_C2 = 0xC4CEB9FE1A85EC53


def fmix64(value: int) -> int:
    """murmur3's 64-bit finalizer: every input bit flips each output bit with p ~ 1/2.

    A bijection on ``[0, 2**64)``; other values raise ValueError (TypeError if not int).
    """
    _check_u64(value)
    value ^= value >> 33
    value = (value * _FMIX_C1) & _MASK64
    value ^= value >> 33
    value = (value * _FMIX_C2) & _MASK64
    value ^= value >> 33
    return value


def _check_u64(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"fmix64 needs an int, not {type(value).__name__}")
    if not 0 <= value <= _MASK64:
        raise ValueError(f"fmix64 input {value} is outside [0, 2**64)")


def stable_hash64(text: str) -> int:
    """``fmix64(FNV-1a-64(text.encode("utf-8")))``: the same on every process and machine."""
    if not isinstance(text, str):
        raise TypeError(f"stable_hash64 needs a str, not {type(text).__name__}")
    value = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return fmix64(value)


class Rendezvous:
    """Rendezvous (highest-random-weight) election over a fixed set of node names.

    Names are hashed once here; each election then costs one 64-bit mix per candidate.
    Duplicate names count once.
    """

    __slots__ = ("_by_rank", "_names", "_nodes")

    def __init__(self, candidates: Iterable[str]) -> None:
        names: list[str] = []
        seen: set[str] = set()
        for name in candidates:
            if not isinstance(name, str):
                raise TypeError(f"candidate names must be str, not {type(name).__name__}: {name!r}")
            if name not in seen:
                seen.add(name)
                names.append(name)
        self._names = tuple(names)
        # Ties (equal 64-bit scores) go to the smaller name: rank = position in sorted order.
        rank = {name: i for i, name in enumerate(sorted(names))}
        self._nodes = tuple((stable_hash64(name), rank[name], name) for name in names)
        self._by_rank = tuple(sorted(names))

    def __repr__(self) -> str:
        return f"Rendezvous({list(self._names)!r})"

    @property
    def candidates(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def winner(self, key: str) -> str | None:
        """The node that wins ``key``, or None without candidates."""
        return self._winner_hashed(stable_hash64(key))

    def winners(self, keys: Sequence[str]) -> list[str | None]:
        """``[self.winner(k) for k in keys]``."""
        return [self._winner_hashed(stable_hash64(key)) for key in keys]

    def ranking(self, key: str) -> list[str]:
        """All candidates, the winner first, then in falling score."""
        key_hash = stable_hash64(key)
        scored = [(fmix64(h ^ key_hash), -rank, name) for h, rank, name in self._nodes]
        scored.sort(reverse=True)
        return [name for _, _, name in scored]

    def _winner_hashed(self, key_hash: int) -> str | None:
        best = -1
        best_rank = 0
        best_name = None
        for node_hash, rank, name in self._nodes:
            # fmix64 inlined: this loop is the whole cost of the fallback election.
            value = node_hash ^ key_hash
            value ^= value >> 33
            value = (value * _FMIX_C1) & _MASK64
            value ^= value >> 33
            value = (value * _FMIX_C2) & _MASK64
            value ^= value >> 33
            if value > best or (value == best and rank < best_rank):
                best, best_rank, best_name = value, rank, name
        return best_name


def winner(key: str, candidates: Sequence[str]) -> str | None:
    """The candidate that wins ``key`` (None if there are none)."""
    return Rendezvous(candidates).winner(key)


def winners(keys: Sequence[str], candidates: Sequence[str]) -> list[str | None]:
    """The winner of every key, in order, hashing each candidate once."""
    return Rendezvous(candidates).winners(keys)
