# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# (wraparound=False: a negative index reads out of bounds; never write x[-1] here.)
"""Native hot path: sparse bitmap-trie address spaces and rendezvous election.

The twin of ``purelb/_fallback.py`` (read its docstring for the design): same names, same
answers. Everything hot is a ``cdef ... noexcept nogil`` function on C structs; the
``def`` methods are thin wrappers (calling a ``def`` from Cython is a Python call).

Address space: offsets live in segments of 2**64 (uint64 arithmetic inside); a space of
at most 2**64 offsets has one segment held inline, larger ones keep a dict of the
segments that hold allocations. Each segment is a 64-ary trie: leaves of 64 words
(4096 bits); inner nodes hold only their existing children, packed in slot order and
found by popcount (so a lone address deep in a /64 costs ~1 KiB, not 10 full nodes).
Every node has a ``full`` mask (skip full children in one ctz) and a ``used`` mask
(non-empty children; empty ones are freed).
Each segment also caches the path to the leaf holding its lowest free offset, so
``allocate_lowest`` scans one leaf per call and descends once per 4096 allocations.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memmove

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

#: Must equal purelb.fast.NATIVE_ABI_VERSION, or fast.py treats this build as stale.
ABI_VERSION = 1
LEAF_BITS = 4096


cdef extern from *:
    int ctz64 "__builtin_ctzll" (unsigned long long) nogil
    int popcount64 "__builtin_popcountll" (unsigned long long) nogil


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL


cdef enum:
    LEAF_SHIFT = 12
    FAN_SHIFT = 6
    SLOT_MASK = 63
    FAN = 64
    MAX_HEIGHT = 9      # 12 + 6*9 = 66 >= 64 bits of a segment

cdef uint64_t ALL = 0xFFFFFFFFFFFFFFFFULL
cdef object SEGMENT = 1 << 64
cdef object SEGMENT_MASK = (1 << 64) - 1


ctypedef struct Leaf:
    uint64_t full       # word w is all ones
    uint64_t used       # word w is non-zero
    uint64_t word[64]   # 4096 bits, one per offset


ctypedef struct Inner:
    uint64_t full       # child s is completely allocated
    uint64_t used       # child s exists (a child is freed when it empties)
    void** kid          # the popcount(used) existing children, in slot order
    int cap             # room in kid[] (grows 1, 2, 4 ... 64; freed with the node)


ctypedef struct Tree:
    void* root          # Leaf* when height == 0, else Inner*
    int height          # inner levels above the leaves
    uint64_t last       # size - 1 (a 2**64 segment does not fit in a uint64 size)
    uint64_t count
    uint64_t bytes      # bytes malloc'd for nodes and child arrays, for memory_bytes()
    uint64_t root_slots # mask of the root's slots that hold offsets <= last
    # Lowest-free cache: the leaf that held the lowest free offset at the last slow
    # allocate_lowest, with the inner nodes above it. Valid while no release happened
    # (releases may free nodes or open lower holes); allocations only fill, so every
    # offset below ``hint_base`` stays allocated. Node structs never move (only their
    # child arrays are reallocated), so the cached pointers stay valid until a release.
    # Makes allocate_lowest O(1): one descent per 4096 allocations, not one per call.
    bint hint_valid
    uint64_t hint_base
    Leaf* hint_leaf
    Inner* hint_inner[MAX_HEIGHT]     # [0] = root ... [height - 1] = the leaf's parent
    int hint_slot[MAX_HEIGHT]         # child slot taken below hint_inner[i]


cdef void tree_init(Tree* t, uint64_t last) noexcept nogil:
    cdef uint64_t top
    t.root = NULL
    t.count = 0
    t.bytes = 0
    t.last = last
    t.height = tree_height(last)
    t.root_slots = ALL
    t.hint_valid = False
    if t.height > 0:
        top = last >> shift_of(t.height)
        if top < 63:
            t.root_slots = (<uint64_t>2 << top) - 1


cdef inline int shift_of(int height) noexcept nogil:
    return LEAF_SHIFT + FAN_SHIFT * (height - 1)


cdef inline uint64_t low_mask(int shift) noexcept nogil:
    return (<uint64_t>1 << shift) - 1


cdef inline uint64_t above(int index) noexcept nogil:
    """Bits strictly above ``index`` (0 when index is 63)."""
    if index >= 63:
        return 0
    return ALL << (index + 1)


cdef int tree_height(uint64_t last) noexcept nogil:
    cdef int bits = 0
    cdef int height = 0
    while last:
        bits += 1
        last >>= 1
    while LEAF_SHIFT + FAN_SHIFT * height < bits:
        height += 1
    return height


# -- nodes ---------------------------------------------------------------------------------

cdef inline int kid_index(Inner* n, int s) noexcept nogil:
    """Position of slot ``s`` in ``n.kid``: the number of existing children below it."""
    return popcount64(n.used & ((<uint64_t>1 << s) - 1))


cdef inline void* kid_at(Inner* n, int s) noexcept nogil:
    if not (n.used >> s) & 1:
        return NULL
    return n.kid[kid_index(n, s)]


cdef int kid_insert(Tree* t, Inner* n, int s, void* child) noexcept nogil:
    """Add a child at the free slot ``s``: 0, or -1 when out of memory (n unchanged)."""
    cdef int count = popcount64(n.used)
    cdef int idx = kid_index(n, s)
    cdef int cap
    cdef void** grown
    if count == n.cap:
        cap = 1 if n.cap == 0 else min(FAN, 2 * n.cap)
        grown = <void**>realloc(n.kid, cap * sizeof(void*))
        if grown == NULL:
            return -1
        t.bytes += (cap - n.cap) * sizeof(void*)
        n.kid = grown
        n.cap = cap
    memmove(&n.kid[idx + 1], &n.kid[idx], (count - idx) * sizeof(void*))
    n.kid[idx] = child
    n.used |= <uint64_t>1 << s
    return 0


cdef void kid_remove(Inner* n, int s) noexcept nogil:
    """Drop the (already freed) child at slot ``s``."""
    cdef int count = popcount64(n.used)
    cdef int idx = kid_index(n, s)
    memmove(&n.kid[idx], &n.kid[idx + 1], (count - idx - 1) * sizeof(void*))
    n.used &= ~(<uint64_t>1 << s)


cdef Leaf* new_leaf(Tree* t) noexcept nogil:
    cdef Leaf* leaf = <Leaf*>calloc(1, sizeof(Leaf))
    if leaf != NULL:
        t.bytes += sizeof(Leaf)
    return leaf


cdef Inner* new_inner(Tree* t) noexcept nogil:
    cdef Inner* n = <Inner*>calloc(1, sizeof(Inner))
    if n != NULL:
        t.bytes += sizeof(Inner)
    return n


cdef void free_leaf(Tree* t, Leaf* leaf) noexcept nogil:
    t.bytes -= sizeof(Leaf)
    free(leaf)


cdef void free_inner(Tree* t, Inner* n) noexcept nogil:
    t.bytes -= sizeof(Inner) + n.cap * sizeof(void*)
    free(n.kid)
    free(n)


cdef void free_tree(Tree* t, void* p, int h) noexcept nogil:
    cdef Inner* n
    cdef int i
    if p == NULL:
        return
    if h == 0:
        free_leaf(t, <Leaf*>p)
        return
    n = <Inner*>p
    for i in range(popcount64(n.used)):
        free_tree(t, n.kid[i], h - 1)
    free_inner(t, n)


# -- searches --------------------------------------------------------------------------------

cdef bint find_free(
    void* p, int h, uint64_t start, uint64_t allowed, uint64_t* out
) noexcept nogil:
    """Lowest free position >= start below node ``p`` (relative); False if none.

    ``allowed`` masks the slots of ``p`` that may be searched: at the root of a 2**64
    segment (span 2**66) only slots 0..15 exist, the others would overflow uint64.
    """
    cdef Leaf* leaf
    cdef Inner* n
    cdef uint64_t word, m, r
    cdef int w, s, shift
    if p == NULL:
        out[0] = start
        return True
    if h == 0:
        leaf = <Leaf*>p
        w = <int>(start >> 6)
        word = leaf.word[w] | ((<uint64_t>1 << (start & 63)) - 1)
        if word != ALL:
            out[0] = (<uint64_t>w << 6) | <uint64_t>ctz64(~word)
            return True
        m = ~leaf.full & above(w)
        if m == 0:
            return False
        w = ctz64(m)
        out[0] = (<uint64_t>w << 6) | <uint64_t>ctz64(~leaf.word[w])
        return True
    n = <Inner*>p
    shift = shift_of(h)
    s = <int>(start >> shift)
    if not (n.full >> s) & 1:
        if find_free(kid_at(n, s), h - 1, start & low_mask(shift), ALL, &r):
            out[0] = (<uint64_t>s << shift) | r
            return True
    m = ~n.full & above(s) & allowed
    if m == 0:
        return False
    s = ctz64(m)
    # A child that is not full always has a free position from its start.
    find_free(kid_at(n, s), h - 1, 0, ALL, &r)
    out[0] = (<uint64_t>s << shift) | r
    return True


cdef bint find_set(void* p, int h, uint64_t start, uint64_t* out) noexcept nogil:
    """Lowest allocated position >= start below node ``p`` (relative); False if none."""
    cdef Leaf* leaf
    cdef Inner* n
    cdef uint64_t word, m, r
    cdef int w, s, shift
    if p == NULL:
        return False
    if h == 0:
        leaf = <Leaf*>p
        w = <int>(start >> 6)
        word = leaf.word[w] & (ALL << (start & 63))
        if word:
            out[0] = (<uint64_t>w << 6) | <uint64_t>ctz64(word)
            return True
        m = leaf.used & above(w)
        if m == 0:
            return False
        w = ctz64(m)
        out[0] = (<uint64_t>w << 6) | <uint64_t>ctz64(leaf.word[w])
        return True
    n = <Inner*>p
    shift = shift_of(h)
    s = <int>(start >> shift)
    if (n.used >> s) & 1:
        if find_set(kid_at(n, s), h - 1, start & low_mask(shift), &r):
            out[0] = (<uint64_t>s << shift) | r
            return True
    m = n.used & above(s)
    if m == 0:
        return False
    s = ctz64(m)
    find_set(kid_at(n, s), h - 1, 0, &r)
    out[0] = (<uint64_t>s << shift) | r
    return True


cdef bint test_bit(void* p, int h, uint64_t off) noexcept nogil:
    cdef Inner* n
    cdef Leaf* leaf
    cdef int shift, s
    while p != NULL and h > 0:
        n = <Inner*>p
        shift = shift_of(h)
        s = <int>(off >> shift)
        if (n.full >> s) & 1:
            return True
        p = kid_at(n, s)
        off &= low_mask(shift)
        h -= 1
    if p == NULL:
        return False
    leaf = <Leaf*>p
    return (leaf.word[off >> 6] >> (off & 63)) & 1


# -- changes ---------------------------------------------------------------------------------

cdef int set_bit(Tree* t, void** where, int h, uint64_t off) noexcept nogil:
    """Mark a free position allocated: 1 if the node became full, 0 if not, -1 no memory.

    On -1 nothing changed: nodes created for this call are freed again.
    """
    cdef Leaf* leaf
    cdef Inner* n
    cdef void* child
    cdef int shift, s, w, r
    if h == 0:
        leaf = <Leaf*>where[0]
        if leaf == NULL:
            leaf = new_leaf(t)
            if leaf == NULL:
                return -1
            where[0] = leaf
        w = <int>(off >> 6)
        leaf.word[w] |= <uint64_t>1 << (off & 63)
        leaf.used |= <uint64_t>1 << w
        if leaf.word[w] == ALL:
            leaf.full |= <uint64_t>1 << w
        return leaf.full == ALL
    n = <Inner*>where[0]
    if n == NULL:
        n = new_inner(t)
        if n == NULL:
            return -1
        where[0] = n
    shift = shift_of(h)
    s = <int>(off >> shift)
    if (n.used >> s) & 1:
        r = set_bit(t, &n.kid[kid_index(n, s)], h - 1, off & low_mask(shift))
    else:
        child = NULL
        r = set_bit(t, &child, h - 1, off & low_mask(shift))
        if r >= 0 and kid_insert(t, n, s, child) < 0:
            free_tree(t, child, h - 1)
            r = -1
    if r < 0:
        if n.used == 0:  # created for this call only: leave no empty node behind
            free_inner(t, n)
            where[0] = NULL
        return -1
    if r:
        n.full |= <uint64_t>1 << s
    return n.full == ALL


cdef bint clear_bit(Tree* t, void** where, int h, uint64_t off) noexcept nogil:
    """Mark an allocated position free; frees nodes that become empty (returns True then)."""
    cdef Leaf* leaf
    cdef Inner* n
    cdef int shift, s, w
    if h == 0:
        leaf = <Leaf*>where[0]
        w = <int>(off >> 6)
        leaf.word[w] &= ~(<uint64_t>1 << (off & 63))
        leaf.full &= ~(<uint64_t>1 << w)
        if leaf.word[w] == 0:
            leaf.used &= ~(<uint64_t>1 << w)
        if leaf.used == 0:
            free_leaf(t, leaf)
            where[0] = NULL
            return True
        return False
    n = <Inner*>where[0]
    shift = shift_of(h)
    s = <int>(off >> shift)
    if clear_bit(t, &n.kid[kid_index(n, s)], h - 1, off & low_mask(shift)):
        kid_remove(n, s)
    n.full &= ~(<uint64_t>1 << s)
    if n.used == 0:
        free_inner(t, n)
        where[0] = NULL
        return True
    return False


cdef inline bint tree_lowest(Tree* t, uint64_t start, uint64_t* out) noexcept nogil:
    if start > t.last:
        return False
    if not find_free(t.root, t.height, start, t.root_slots, out):
        return False
    return out[0] <= t.last


cdef inline int tree_allocate(Tree* t, uint64_t off) noexcept nogil:
    """0 done, 1 already allocated, -1 no memory."""
    if test_bit(t.root, t.height, off):
        return 1
    if set_bit(t, &t.root, t.height, off) < 0:
        return -1
    t.count += 1
    return 0


cdef inline bint tree_release(Tree* t, uint64_t off) noexcept nogil:
    if not test_bit(t.root, t.height, off):
        return False
    t.hint_valid = False
    clear_bit(t, &t.root, t.height, off)
    t.count -= 1
    return True


cdef void remember_leaf(Tree* t, uint64_t pos) noexcept nogil:
    """Cache the path to the leaf holding ``pos`` (just allocated, so the path exists)."""
    cdef void* p = t.root
    cdef Inner* n
    cdef int level, s
    for level in range(t.height):
        n = <Inner*>p
        s = <int>((pos >> shift_of(t.height - level)) & SLOT_MASK)
        t.hint_inner[level] = n
        t.hint_slot[level] = s
        p = kid_at(n, s)
    t.hint_leaf = <Leaf*>p
    t.hint_base = pos & ~((<uint64_t>1 << LEAF_SHIFT) - 1)
    t.hint_valid = t.hint_leaf.full != ALL


cdef int tree_alloc_lowest(Tree* t, uint64_t* out) noexcept nogil:
    """Allocate the lowest free offset: 0 done, 1 full, -1 no memory."""
    cdef Leaf* leaf
    cdef Inner* parent
    cdef uint64_t pos
    cdef int w, level
    if t.hint_valid:
        leaf = t.hint_leaf
        if leaf.full != ALL:
            w = ctz64(~leaf.full)
            pos = t.hint_base | (<uint64_t>w << 6) | <uint64_t>ctz64(~leaf.word[w])
            if pos > t.last:
                return 1  # everything below the cached leaf is allocated
            leaf.word[w] |= <uint64_t>1 << (pos & 63)
            leaf.used |= <uint64_t>1 << w
            if leaf.word[w] == ALL:
                leaf.full |= <uint64_t>1 << w
                if leaf.full == ALL:  # the leaf filled: tell the ancestors, drop the cache
                    t.hint_valid = False
                    for level in range(t.height - 1, -1, -1):
                        parent = t.hint_inner[level]
                        parent.full |= <uint64_t>1 << t.hint_slot[level]
                        if parent.full != ALL:
                            break
            t.count += 1
            out[0] = pos
            return 0
    if not tree_lowest(t, 0, &pos):
        return 1
    if set_bit(t, &t.root, t.height, pos) < 0:
        return -1
    t.count += 1
    remember_leaf(t, pos)
    out[0] = pos
    return 0


cdef list tree_batch(Tree* t, uint64_t start, Py_ssize_t limit, object base):
    """Up to ``limit`` allocated offsets >= start, as Python ints plus ``base``."""
    cdef list out = []
    cdef uint64_t pos
    cdef Py_ssize_t n = 0
    if start > t.last:
        return out
    while n < limit and find_set(t.root, t.height, start, &pos):
        out.append(base + pos if base else pos)
        n += 1
        if pos >= t.last:  # never search past the end: slot indexes would exceed 63
            break
        start = pos + 1
    return out


#: Approximate bytes of a Python object header or dict entry, for memory_bytes().
cdef Py_ssize_t OBJECT_OVERHEAD = 64
#: Offsets handed from C to Python per step of iter_allocated.
cdef Py_ssize_t ITER_BATCH = 4096


cdef class _Segment:
    """One 2**64 slice of a space larger than 2**64."""

    cdef Tree t

    def __dealloc__(self):
        free_tree(&self.t, self.t.root, self.t.height)


cdef class AddressSpace:
    """Offsets ``[0, size)``, each free or allocated; ``size`` up to ``2**128``."""

    cdef Tree t          # the only segment when size <= 2**64
    cdef bint big
    cdef object size
    cdef dict segs       # big spaces: segment number -> _Segment holding allocations

    def __cinit__(self, size):
        self.size = check_size(size)
        self.big = self.size > SEGMENT
        tree_init(&self.t, <uint64_t>(self.size - 1) if not self.big else 0)
        self.segs = {}

    def __dealloc__(self):
        free_tree(&self.t, self.t.root, self.t.height)

    def __repr__(self):
        return f"AddressSpace(size={self.size}, count={self.count}, impl='native')"

    @property
    def capacity(self):
        """The exact number of offsets (never saturated)."""
        return self.size

    @property
    def count(self):
        """How many offsets are allocated."""
        if not self.big:
            return self.t.count
        return sum([(<_Segment>s).t.count for s in self.segs.values()])

    def __len__(self):
        return self.count

    cdef inline uint64_t _small(self, object offset) except? 0:
        """A valid offset of a <= 2**64 space as uint64, or the error naming it."""
        cdef uint64_t off
        if type(offset) is not int:
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise out_of_range(offset, self.size)
            offset = int(offset)
        try:
            off = offset
        except OverflowError:
            raise out_of_range(offset, self.size) from None
        if off > self.t.last:
            raise out_of_range(offset, self.size)
        return off

    cdef _Segment _segment(self, object seg, bint create):
        cdef _Segment s = self.segs.get(seg)
        if s is None and create:
            s = _Segment()
            tree_init(&s.t, <uint64_t>(min(SEGMENT, self.size - (seg << 64)) - 1))
            self.segs[seg] = s
        return s

    cdef object _check_big(self, object offset):
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise out_of_range(offset, self.size)
        if offset < 0 or offset >= self.size:
            raise out_of_range(offset, self.size)
        return int(offset)

    # -- queries ----------------------------------------------------------------------

    def is_allocated(self, offset):
        """Whether ``offset`` is allocated."""
        cdef uint64_t off
        cdef _Segment s
        if not self.big:
            off = self._small(offset)
            return test_bit(self.t.root, self.t.height, off)
        offset = self._check_big(offset)
        s = self._segment(offset >> 64, False)
        return s is not None and test_bit(s.t.root, s.t.height, <uint64_t>(offset & SEGMENT_MASK))

    def lowest_free(self, start=0):
        """The lowest free offset ``>= start``, or None; changes nothing."""
        cdef uint64_t pos, low
        cdef _Segment s
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int, not {type(start).__name__}")
        if start < 0:
            raise OffsetOutOfRange(f"start {start} is negative", value=start)
        if start >= self.size:
            return None
        if not self.big:
            if tree_lowest(&self.t, <uint64_t>start, &pos):
                return pos
            return None
        seg = start >> 64
        low = <uint64_t>(start & SEGMENT_MASK)
        while (seg << 64) < self.size:
            s = self._segment(seg, False)
            if s is None:
                return (seg << 64) + low
            if tree_lowest(&s.t, low, &pos):
                return (seg << 64) + pos
            seg += 1
            low = 0
        return None

    def iter_allocated(self):
        """Allocated offsets in ascending order (batches of ITER_BATCH from C).

        Changing the space while iterating does not break the iterator, but what it then
        yields is unspecified: take ``list(...)`` first to change the space in the loop.
        """
        cdef _Segment s
        cdef list batch
        if not self.big:
            batch = tree_batch(&self.t, 0, ITER_BATCH, 0)
            while batch:
                yield from batch
                if batch[len(batch) - 1] >= self.t.last:
                    return
                batch = tree_batch(&self.t, <uint64_t>(batch[len(batch) - 1] + 1), ITER_BATCH, 0)
            return
        for seg in sorted(self.segs):
            s = self.segs.get(seg)
            if s is None:
                continue
            base = seg << 64
            batch = tree_batch(&s.t, 0, ITER_BATCH, base)
            while batch:
                yield from batch
                last = batch[len(batch) - 1] - base
                if last >= s.t.last:
                    break
                batch = tree_batch(&s.t, <uint64_t>(last + 1), ITER_BATCH, base)

    def memory_bytes(self):
        """Bytes held: trie nodes and child arrays, segment structs, the objects around."""
        cdef Py_ssize_t total = self.t.bytes + sizeof(Tree) + OBJECT_OVERHEAD
        for s in self.segs.values():
            total += (<_Segment>s).t.bytes + sizeof(Tree) + 2 * OBJECT_OVERHEAD
        return total

    # -- changes ----------------------------------------------------------------------

    def allocate_lowest(self):
        """Allocate and return the lowest free offset; SpaceFull when none is left."""
        cdef uint64_t pos
        cdef int r
        cdef _Segment s
        if not self.big:
            r = tree_alloc_lowest(&self.t, &pos)
            if r == 0:
                return pos
            if r > 0:
                raise space_full(self.size)
            raise MemoryError("no memory for an address-space node")
        seg = 0
        while (seg << 64) < self.size:
            s = self._segment(seg, True)
            r = tree_alloc_lowest(&s.t, &pos)
            if r == 0:
                return (seg << 64) + pos
            if s.t.count == 0:
                del self.segs[seg]
            if r < 0:
                raise MemoryError("no memory for an address-space node")
            seg += 1
        raise space_full(self.size)

    def allocate(self, offset):
        """Allocate exactly ``offset``; OffsetInUse if it is taken."""
        cdef uint64_t off
        cdef int r
        cdef _Segment s
        if not self.big:
            off = self._small(offset)
            r = tree_allocate(&self.t, off)
        else:
            offset = self._check_big(offset)
            seg = offset >> 64
            s = self._segment(seg, True)
            r = tree_allocate(&s.t, <uint64_t>(offset & SEGMENT_MASK))
            if s.t.count == 0:
                del self.segs[seg]
        if r == 1:
            raise offset_in_use(offset)
        if r < 0:
            raise MemoryError("no memory for an address-space node")

    def release(self, offset):
        """Free ``offset``; NotAllocatedError if it is free."""
        cdef uint64_t off
        cdef bint done
        cdef _Segment s
        if not self.big:
            off = self._small(offset)
            done = tree_release(&self.t, off)
        else:
            offset = self._check_big(offset)
            seg = offset >> 64
            s = self._segment(seg, False)
            done = s is not None and tree_release(&s.t, <uint64_t>(offset & SEGMENT_MASK))
            if done and s.t.count == 0:
                del self.segs[seg]
        if not done:
            raise not_allocated(offset)


# -- rendezvous election ---------------------------------------------------------------

cdef uint64_t FNV_OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t FNV_PRIME = 0x100000001B3ULL


cdef inline uint64_t c_fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xFF51AFD7ED558CCDULL
    k ^= k >> 33
    k *= 0xC4CEB9FE1A85EC53ULL
    k ^= k >> 33
    return k


cdef inline uint64_t c_fnv1a(const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = FNV_OFFSET
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ data[i]) * FNV_PRIME
    return h


cdef inline uint64_t hash_text(object text) except? 0:
    cdef Py_ssize_t n
    cdef const char* data
    if not isinstance(text, str):
        raise TypeError(f"stable_hash64 needs a str, not {type(text).__name__}")
    data = PyUnicode_AsUTF8AndSize(text, &n)
    return c_fmix64(c_fnv1a(<const unsigned char*>data, n))


def fmix64(value):
    """murmur3's 64-bit finalizer; a bijection on ``[0, 2**64)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"fmix64 needs an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"fmix64 input {value} is outside [0, 2**64)")
    return c_fmix64(<uint64_t>value)


def stable_hash64(text):
    """``fmix64(FNV-1a-64(text.encode("utf-8")))``: the same on every process and machine."""
    return hash_text(text)


cdef class Rendezvous:
    """Rendezvous (highest-random-weight) election over a fixed set of node names."""

    cdef uint64_t* hashes
    cdef Py_ssize_t* ranks
    cdef Py_ssize_t n
    cdef tuple names
    cdef bint distinct   # no two names share a 64-bit hash (so no score can tie)

    def __cinit__(self, candidates):
        cdef Py_ssize_t i
        names = []
        seen = set()
        for name in candidates:
            if not isinstance(name, str):
                raise TypeError(
                    f"candidate names must be str, not {type(name).__name__}: {name!r}"
                )
            if name not in seen:
                seen.add(name)
                names.append(name)
        self.names = tuple(names)
        self.n = len(names)
        self.hashes = <uint64_t*>calloc(self.n + 1, sizeof(uint64_t))
        self.ranks = <Py_ssize_t*>calloc(self.n + 1, sizeof(Py_ssize_t))
        if self.hashes == NULL or self.ranks == NULL:
            raise MemoryError("no memory for rendezvous candidates")
        # Ties (equal 64-bit scores) go to the smaller name: rank = position in sorted order.
        rank = {name: i for i, name in enumerate(sorted(names))}
        for i in range(self.n):
            self.hashes[i] = hash_text(names[i])
            self.ranks[i] = rank[names[i]]
        self.distinct = len({self.hashes[i] for i in range(self.n)}) == self.n

    def __dealloc__(self):
        free(self.hashes)
        free(self.ranks)

    def __repr__(self):
        return f"Rendezvous({list(self.names)!r})"

    @property
    def candidates(self):
        return self.names

    def __len__(self):
        return self.n

    cdef inline Py_ssize_t best(self, uint64_t key_hash) noexcept nogil:
        cdef Py_ssize_t i, best_i = 0
        cdef uint64_t score, best_score = c_fmix64(self.hashes[0] ^ key_hash)
        if self.distinct:
            # fmix64 is a bijection: distinct node hashes never tie, skip the name check.
            for i in range(1, self.n):
                score = c_fmix64(self.hashes[i] ^ key_hash)
                if score > best_score:
                    best_score = score
                    best_i = i
            return best_i
        for i in range(1, self.n):
            score = c_fmix64(self.hashes[i] ^ key_hash)
            if score > best_score or (score == best_score and self.ranks[i] < self.ranks[best_i]):
                best_score = score
                best_i = i
        return best_i

    def winner(self, key):
        """The node that wins ``key``, or None without candidates."""
        cdef uint64_t key_hash = hash_text(key)
        if self.n == 0:
            return None
        return self.names[self.best(key_hash)]

    def winners(self, keys):
        """``[self.winner(k) for k in keys]``, hashing and scoring in C."""
        cdef list out = []
        cdef uint64_t key_hash
        cdef tuple names = self.names
        if self.n == 0:
            for key in keys:
                hash_text(key)
                out.append(None)
            return out
        for key in keys:
            key_hash = hash_text(key)
            out.append(names[self.best(key_hash)])
        return out

    def ranking(self, key):
        """All candidates, the winner first, then in falling score."""
        cdef uint64_t key_hash = hash_text(key)
        cdef Py_ssize_t i
        scored = [
            (c_fmix64(self.hashes[i] ^ key_hash), -self.ranks[i], i) for i in range(self.n)
        ]
        scored.sort(reverse=True)
        return [self.names[item[2]] for item in scored]


def winner(key, candidates):
    """The candidate that wins ``key`` (None if there are none)."""
    return Rendezvous(candidates).winner(key)


def winners(keys, candidates):
    """The winner of every key, in order, hashing each candidate once."""
    return Rendezvous(candidates).winners(keys)
