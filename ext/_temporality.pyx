# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True
#
# Directives: boundscheck/wraparound only concern Python-level indexing, which the row loop
# does not do; every C index into an Arrow buffer is checked against that array's length (the
# `_list` and `_text` helpers check offsets against their child's length, and `_columns`
# checks every column is as long as the batch). Integer arithmetic on values is done in
# uint64_t, where wrapping is defined (int64 values and uint64 counts wrap as the reference's
# do, docs/TEMPORALITY.md "Integers").
"""Native temporality conversion: the stream table and the per-row arithmetic over the Arrow
buffers of stored metric rows (the layout of ``otlpd.sources.rows_schema("metrics")``).

The specification is the reference ``otlpd.temporality.Converter`` (read it first); the
Python class ``otlpd.temporality.NativeConverter`` wraps a :class:`StreamTable` with the
reference's interface, and the tests run every rule against both.

A convert call: Python gathers the columns' buffers and precomputes what needs Python (the
rare rows with ``attributes_other`` entries, and each row's source key); the row loop then
runs without the GIL: it builds each convertible row's stream identity (the same bytes as
``temporality.stream_key``), finds its stream in an open-addressing table keyed by a hash of
the identity (the identity bytes are kept and compared, so two streams never
merge), applies the rule and writes the output columns. Python finally wraps those columns
as Arrow arrays.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset


import sys

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["StreamTable"]

if sys.byteorder != "little":  # the saved state's u64 counts and f64 bounds are copied as the host's bytes
    raise ImportError("otlpd._temporality supports little-endian hosts only")

# -- declarations ------------------------------------------------------------

cdef enum:
    K_OTHER = 0
    K_SUM = 1
    K_HIST = 2
    K_EXP = 3
    DELTA = 1
    CUMULATIVE = 2
    NO_RECORDED_VALUE = 1
    INIT_AUTO = 0
    INIT_KEEP = 1
    INIT_DROP = 2
    ACT_PASS = 0
    ACT_DROP = 1
    ACT_OUT = 2
    TAKE_COPY = 0
    TAKE_SWAP = 1
    TAKE_SAME_SHAPE = 2

cdef struct Col:
    const uint8_t* valid      # validity bitmap, NULL: all valid
    const uint8_t* data       # values (fixed width), the bitmap (bool) or the bytes (string)
    const int32_t* offsets    # string, binary, list and map arrays
    int64_t off               # the array's offset (a slice)
    int64_t length
    int64_t child_len         # list and map: the child's length; string: the data's size

cdef struct U64s:             # a growable vector of uint64 (bucket counts)
    uint64_t* data
    int64_t n
    int64_t cap

cdef struct Val:              # one point's value; in a stream, a copy it owns
    uint8_t has_int, has_double, has_sum, has_min, has_max
    int64_t vi
    double vd, sum, mn, mx
    uint64_t count, zero_count
    U64s buckets              # explicit histogram bucket_counts
    U64s pos, neg             # exponential: counts of bucket indexes lo..lo+n-1, trimmed to
    int64_t pos_lo, neg_lo    # the first and last non-zero ones (the reference's dict keys)

cdef struct Shape:            # a change resets the stream
    int64_t nbuckets
    double* bounds
    int64_t nbounds
    int32_t scale
    double zero_threshold

cdef struct Stream:
    uint8_t* key
    int64_t key_len
    uint64_t hash
    int64_t start, time, seen
    uint8_t kind
    Val val
    Shape shape
    int64_t prev, next        # in order of last use (the LRU list), or the free list
    uint8_t dirty             # changed since the state was last saved (the dirty streams are
                              # the end of the LRU list: each change moves its stream there)
    uint64_t serial           # its number (temporality.py, "The saved state's format")
    uint8_t persisted         # its identity is in the saved state or a saved change: a change
                              # names it by serial alone
    int64_t succ              # index + 1 of the stream the row after this one's last took (0:
                              # none): reports list their series in the same order every time, so
                              # it is the next row's first guess (checked in full; a hint only)

cdef struct Settings:
    int target                # DELTA, CUMULATIVE
    int initial               # INIT_*
    int64_t max_streams, max_stale, started_at, now

cdef struct Counts:
    int64_t converted, passed, over_limit, baseline, old, overlap

cdef struct Out:              # the output columns, a row each
    uint8_t* act
    int64_t* start
    int32_t* temporality
    int64_t* vi
    double* vd
    uint64_t* count
    double* sum
    double* mn
    double* mx
    uint64_t* zero_count
    int32_t* pos_off
    int32_t* neg_off
    uint8_t* ok_start         # validity, a byte a row (packed into bitmaps at the end)
    uint8_t* ok_temporality
    uint8_t* ok_count
    uint8_t* ok_zero_count
    uint8_t* ok_buckets
    uint8_t* ok_vi
    uint8_t* ok_vd
    uint8_t* ok_sum
    uint8_t* ok_mn
    uint8_t* ok_mx
    uint8_t* ok_pos_off
    uint8_t* ok_neg_off
    uint8_t* ok_pos
    uint8_t* ok_neg
    int32_t* buckets_offsets  # list columns: offsets (rows + 1) and values
    int32_t* pos_offsets
    int32_t* neg_offsets
    U64s buckets, pos, neg
    uint8_t any_hist, any_exp, any_sum

cdef struct Batch:            # the input columns
    int64_t rows
    Col source_id, name, kind, unit, mono, attrs, akeys, avals, atypes, aother
    Col start, time, flags, temporality, vd, vi, count, sum, mn, mx
    Col buckets, buckets_v, bounds, bounds_v, scale, zero_count, zero_threshold
    Col pos_off, pos, pos_v, neg_off, neg, neg_v
    const uint8_t** src_key
    int64_t* src_len
    int64_t nsources
    int32_t* source_index     # each row's source (an index of src_key), found by _index_sources
    const uint8_t** attr_id   # a row's precomputed attribute identity (attributes_other), or NULL
    int64_t* attr_len
    void* scratch             # the block of source_index, attr_id and attr_len (a spare's)
    int64_t scratch_cap

cdef struct Entry:            # one map attribute, while its identity is built
    const uint8_t* key
    int64_t key_len
    uint8_t tag
    const uint8_t* val
    int64_t val_len


# -- reading Arrow buffers ----------------------------------------------------

cdef inline bint _valid(const Col* c, int64_t i) noexcept nogil:
    cdef int64_t bit
    if c.valid == NULL:
        return 1
    bit = c.off + i
    return (c.valid[bit >> 3] >> (bit & 7)) & 1

cdef inline bint _bit(const Col* c, int64_t i) noexcept nogil:
    cdef int64_t bit = c.off + i
    return (c.data[bit >> 3] >> (bit & 7)) & 1

cdef inline int64_t _i64(const Col* c, int64_t i) noexcept nogil:
    return (<const int64_t*>c.data)[c.off + i]

cdef inline uint64_t _u64(const Col* c, int64_t i) noexcept nogil:
    return (<const uint64_t*>c.data)[c.off + i]

cdef inline int32_t _i32(const Col* c, int64_t i) noexcept nogil:
    return (<const int32_t*>c.data)[c.off + i]

cdef inline uint32_t _u32(const Col* c, int64_t i) noexcept nogil:
    return (<const uint32_t*>c.data)[c.off + i]

cdef inline double _f64(const Col* c, int64_t i) noexcept nogil:
    return (<const double*>c.data)[c.off + i]

cdef inline int _list(const Col* c, int64_t i, int64_t* lo, int64_t* hi) noexcept nogil:
    """The child range of list row i (empty for a null row); -1 if its offsets are out of range."""
    if not _valid(c, i):
        lo[0] = hi[0] = 0
        return 0
    lo[0] = c.offsets[c.off + i]
    hi[0] = c.offsets[c.off + i + 1]
    if lo[0] < 0 or hi[0] < lo[0] or hi[0] > c.child_len:
        return -1
    return 0

cdef inline const uint8_t* _text(const Col* c, int64_t i, int64_t* n) noexcept nogil:
    """String or binary row i (empty when null; NULL if its offsets are out of range)."""
    cdef int64_t lo, hi
    if not _valid(c, i):
        n[0] = 0
        return c.data
    lo = c.offsets[c.off + i]
    hi = c.offsets[c.off + i + 1]
    if lo < 0 or hi < lo or hi > c.child_len:
        return NULL
    n[0] = hi - lo
    return c.data + lo

cdef object _address(object buf):
    return 0 if buf is None else buf.address

cdef enum:
    FIXED = 0     # fixed width (and bool): [validity, values]
    TEXT = 1      # string and binary: [validity, offsets, bytes]
    NESTED = 2    # list and map: [validity, offsets], the child read by the caller

cdef int _col(Col* c, object arr, int64_t rows, int layout) except -1:
    """c: the buffers of arr, a column of a batch of ``rows`` rows (or a child, rows 0)."""
    bufs = arr.buffers()
    c.valid = <const uint8_t*><uintptr_t>_address(bufs[0]) if arr.null_count else NULL
    c.offsets = <const int32_t*><uintptr_t>_address(bufs[1]) if layout != FIXED else NULL
    c.data = NULL if layout == NESTED else <const uint8_t*><uintptr_t>_address(bufs[2 if layout == TEXT else 1])
    c.off = arr.offset
    c.length = len(arr)
    if layout == TEXT:
        c.child_len = 0 if bufs[2] is None else bufs[2].size
    else:
        c.child_len = len(arr.values) if layout == NESTED else 0
    if c.length < rows:
        raise ValueError("a column is shorter than its batch")
    return 0

cdef inline int _fixed(Col* c, object arr, int64_t rows) except -1:
    return _col(c, arr, rows, FIXED)

cdef inline int _string(Col* c, object arr, int64_t rows) except -1:
    return _col(c, arr, rows, TEXT)

cdef inline int _nested(Col* c, object arr, int64_t rows) except -1:
    return _col(c, arr, rows, NESTED)

# -- small vectors ------------------------------------------------------------

cdef int _reserve(U64s* v, int64_t n) noexcept nogil:
    cdef int64_t cap
    cdef uint64_t* data
    if n <= v.cap:
        return 0
    cap = v.cap * 2 if v.cap else 16
    while cap < n:
        cap *= 2
    data = <uint64_t*>realloc(v.data, cap * sizeof(uint64_t))
    if data == NULL:
        return -1
    v.data = data
    v.cap = cap
    return 0

cdef int _assign(U64s* v, const uint64_t* src, int64_t n) noexcept nogil:
    if _reserve(v, n) < 0:
        return -1
    if n:
        memcpy(v.data, src, n * sizeof(uint64_t))
    v.n = n
    return 0

cdef int _append(U64s* v, const uint64_t* src, int64_t n) noexcept nogil:
    if _reserve(v, v.n + n) < 0:
        return -1
    if n:
        memcpy(v.data + v.n, src, n * sizeof(uint64_t))
    v.n += n
    return 0

cdef void _release_val(Val* v) noexcept nogil:
    free(v.buckets.data)
    free(v.pos.data)
    free(v.neg.data)
    memset(v, 0, sizeof(Val))

cdef int _copy_val(Val* dst, const Val* src) noexcept nogil:
    """dst (owned) takes src's value, reusing dst's vectors."""
    cdef U64s b = dst.buckets, p = dst.pos, n = dst.neg
    dst[0] = src[0]
    dst.buckets = b
    dst.pos = p
    dst.neg = n
    if (_assign(&dst.buckets, src.buckets.data, src.buckets.n) < 0 or _assign(&dst.pos, src.pos.data, src.pos.n) < 0
            or _assign(&dst.neg, src.neg.data, src.neg.n) < 0):
        return -1
    return 0

# -- the stream identity --------------------------------------------------------

cdef struct Bytes:
    uint8_t* data
    int64_t n
    int64_t cap

cdef int _grow(Bytes* b, int64_t need) noexcept nogil:
    """Room for need bytes in b (doubling); -1: no memory."""
    cdef int64_t cap = b.cap * 2 if b.cap else 256
    cdef uint8_t* data
    while cap < need:
        cap *= 2
    data = <uint8_t*>realloc(b.data, cap)
    if data == NULL:
        return -1
    b.data = data
    b.cap = cap
    return 0

cdef inline int _put(Bytes* b, const uint8_t* src, int64_t n) noexcept nogil:
    if b.n + n > b.cap and _grow(b, b.n + n) < 0:
        return -1
    if n:
        memcpy(b.data + b.n, src, n)
    b.n += n
    return 0

cdef inline int _put_u32(Bytes* b, uint32_t value) noexcept nogil:
    cdef uint8_t le[4]
    le[0] = value & 0xFF
    le[1] = (value >> 8) & 0xFF
    le[2] = (value >> 16) & 0xFF
    le[3] = (value >> 24) & 0xFF
    return _put(b, le, 4)

cdef inline int _put_text(Bytes* b, const uint8_t* src, int64_t n) noexcept nogil:
    if _put_u32(b, <uint32_t>n) < 0:
        return -1
    return _put(b, src, n)

cdef inline int _put_byte(Bytes* b, uint8_t value) noexcept nogil:
    return _put(b, &value, 1)

cdef inline int _bytes_cmp(const uint8_t* a, int64_t an, const uint8_t* b, int64_t bn) noexcept nogil:
    """Python's order of bytes: memcmp over the common part, then the shorter first."""
    cdef int r = memcmp(a, b, an if an < bn else bn) if (an and bn) else 0
    if r:
        return r
    return -1 if an < bn else (1 if an > bn else 0)

cdef inline int _entry_cmp(const Entry* a, const Entry* b) noexcept nogil:
    cdef int r = _bytes_cmp(a.key, a.key_len, b.key, b.key_len)
    if r:
        return r
    if a.tag != b.tag:
        return -1 if a.tag < b.tag else 1
    return _bytes_cmp(a.val, a.val_len, b.val, b.val_len)

cdef int _identity(const Batch* x, int64_t i, int kind, Bytes* key, int64_t* key_src, Entry** scratch,
                   int64_t* scratch_cap) noexcept nogil:
    """The stream identity of row i into key (temporality.stream_key's bytes); -1: no memory,
    -2: offsets out of range. key_src: the source (of x) whose key starts key, or -1; the
    rows of a source come together, so the next row's identity keeps that part."""
    cdef int64_t n, lo, hi, j, k, m, src
    cdef const uint8_t* p
    cdef Entry e
    cdef Entry* grown
    src = x.source_index[i]
    if src < 0 or src >= x.nsources:
        return -2
    if key_src[0] == src:
        key.n = 4 + x.src_len[src]  # (what _put_text put: its length, then the bytes)
    else:
        key.n = 0
        key_src[0] = -1
        if _put_text(key, x.src_key[src], x.src_len[src]) < 0:
            return -1
        key_src[0] = src
    p = _text(&x.name, i, &n)
    if p == NULL:
        return -2
    if _put_text(key, p, n) < 0 or _put_byte(key, <uint8_t>kind) < 0:
        return -1
    p = _text(&x.unit, i, &n)
    if p == NULL:
        return -2
    if _put_text(key, p, n) < 0:
        return -1
    if _put_byte(key, 1 if (_valid(&x.mono, i) and _bit(&x.mono, i)) else 0) < 0:
        return -1
    if x.attr_id[i] != NULL:  # attributes_other entries: computed by the reference
        return _put(key, x.attr_id[i], x.attr_len[i])
    if _list(&x.attrs, i, &lo, &hi) < 0:
        return -2
    m = hi - lo
    if m > scratch_cap[0]:
        grown = <Entry*>realloc(scratch[0], m * sizeof(Entry))
        if grown == NULL:
            return -1
        scratch[0] = grown
        scratch_cap[0] = m
    p = _text(&x.atypes, i, &n)
    if p == NULL:
        return -2
    for j in range(m):
        e.key = _text(&x.akeys, lo + j, &e.key_len)
        e.val = _text(&x.avals, lo + j, &e.val_len)
        if e.key == NULL or e.val == NULL:
            return -2
        e.tag = p[j] if j < n else 0
        k = j  # insertion sort: a point has few attributes
        while k > 0 and _entry_cmp(&scratch[0][k - 1], &e) > 0:
            scratch[0][k] = scratch[0][k - 1]
            k -= 1
        scratch[0][k] = e
    if _put_u32(key, <uint32_t>m) < 0:
        return -1
    for j in range(m):
        if (_put_text(key, scratch[0][j].key, scratch[0][j].key_len) < 0 or _put_byte(key, scratch[0][j].tag) < 0
                or _put_text(key, scratch[0][j].val, scratch[0][j].val_len) < 0):
            return -1
    return 0

cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    """MurmurHash3's fmix64 (the finish of _hash; source ids are hashes already, but may be masked or chosen)."""
    h ^= h >> 33
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t _hash(const uint8_t* data, int64_t n) noexcept nogil:
    """The identity's hash, 8 bytes a step (a multiply-xorshift, finished with MurmurHash3's
    fmix64): the table compares the whole identity, so the hash needs spread, not strength,
    and byte-wise FNV-1a cost two thirds of the row loop."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n, w
    while n >= 8:
        memcpy(&w, data, 8)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 32
        data += 8
        n -= 8
    w = 0
    if n:
        memcpy(&w, data, n)
    return _mix(h ^ w)


cdef inline int _put_i64(Bytes* b, int64_t value) noexcept nogil:
    cdef uint8_t le[8]
    cdef uint64_t u = <uint64_t>value
    cdef int k
    for k in range(8):
        le[k] = (u >> (8 * k)) & 0xFF
    return _put(b, le, 8)

cdef inline int _put_f64(Bytes* b, double value) noexcept nogil:
    cdef int64_t bits
    memcpy(&bits, &value, 8)
    return _put_i64(b, bits)

cdef int _put_counts(Bytes* b, int64_t lo, const U64s* v, bint indexed) noexcept nogil:
    """Counts as [i64 first index (exponential only)] u32 n, u64[n]: an exponential side
    without its zero counts at either end (the reference's buckets have no zero ones)."""
    cdef int64_t a = 0, z = v.n, k
    if indexed:
        while a < z and v.data[a] == 0:
            a += 1
        while z > a and v.data[z - 1] == 0:
            z -= 1
        if _put_i64(b, lo + a if z > a else 0) < 0:
            return -1
    if _put_u32(b, <uint32_t>(z - a)) < 0:
        return -1
    # the u64s as they are in memory: little-endian, as the format (and the bounds, below)
    return _put(b, <const uint8_t*>(v.data + a), (z - a) * 8)

cdef struct Cursor:           # reading a saved state: at < 0 once it ran out
    const uint8_t* p
    int64_t n
    int64_t at

cdef inline const uint8_t* _get(Cursor* c, int64_t n) noexcept nogil:
    cdef const uint8_t* at
    if c.at < 0 or n < 0 or c.at + n > c.n:
        c.at = -1
        return NULL
    at = c.p + c.at
    c.at += n
    return at

cdef inline uint32_t _u32_at(const uint8_t* p) noexcept nogil:
    return p[0] | (p[1] << 8) | (p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline int64_t _get_u32(Cursor* c) noexcept nogil:
    cdef const uint8_t* p = _get(c, 4)
    return 0 if p == NULL else _u32_at(p)

cdef inline int _get_byte(Cursor* c) noexcept nogil:
    cdef const uint8_t* p = _get(c, 1)
    return -1 if p == NULL else p[0]

cdef inline int64_t _get_i64(Cursor* c) noexcept nogil:
    cdef const uint8_t* p = _get(c, 8)
    cdef uint64_t u = 0
    cdef int k
    if p == NULL:
        return 0
    for k in range(8):
        u |= (<uint64_t>p[k]) << (8 * k)
    return <int64_t>u

cdef inline double _get_f64(Cursor* c) noexcept nogil:
    cdef int64_t bits = _get_i64(c)
    cdef double value
    memcpy(&value, &bits, 8)
    return value

cdef int _get_counts(Cursor* c, U64s* v) noexcept nogil:
    """u32 n, u64[n] into v (-1: no memory; a cut-short input leaves c.at < 0)."""
    cdef int64_t n = _get_u32(c), k
    if c.at < 0 or n * 8 > c.n - c.at:
        c.at = -1
        return 0
    if _reserve(v, n) < 0:
        return -1
    for k in range(n):
        v.data[k] = <uint64_t>_get_i64(c)
    v.n = n
    return 0


# -- a row's value ----------------------------------------------------------------

cdef int _trimmed(const Col* counts, const Col* values, const Col* offset, int64_t i,
                  const uint64_t** data, int64_t* n, int64_t* lo) noexcept nogil:
    """An exponential side of row i as its non-zero range: data[0..n) for indexes lo.."""
    cdef int64_t a, b
    cdef const uint64_t* v
    if _list(counts, i, &a, &b) < 0:
        return -1
    v = (<const uint64_t*>values.data) + values.off
    while a < b and v[a] == 0:
        a += 1
    while b > a and v[b - 1] == 0:
        b -= 1
    data[0] = v + a
    n[0] = b - a
    lo[0] = (<int64_t>_i32(offset, i) if _valid(offset, i) else 0) + (a - counts.offsets[counts.off + i] if b > a else 0)
    return 0

cdef int _read(const Batch* x, int64_t i, int kind, Val* v, Shape* s) noexcept nogil:
    """Row i's value and shape; the vectors point into the batch (v is not owned). -2: bad offsets."""
    cdef int64_t a, b
    cdef const uint64_t* data
    cdef int64_t n, lo
    memset(v, 0, sizeof(Val))
    memset(s, 0, sizeof(Shape))
    if kind == K_SUM:
        v.has_int = _valid(&x.vi, i)
        v.vi = _i64(&x.vi, i) if v.has_int else 0
        v.has_double = _valid(&x.vd, i)
        v.vd = _f64(&x.vd, i) if v.has_double else 0.0
        return 0
    v.count = _u64(&x.count, i) if _valid(&x.count, i) else 0
    v.has_sum = _valid(&x.sum, i)
    v.sum = _f64(&x.sum, i) if v.has_sum else 0.0
    v.has_min = _valid(&x.mn, i)
    v.mn = _f64(&x.mn, i) if v.has_min else 0.0
    v.has_max = _valid(&x.mx, i)
    v.mx = _f64(&x.mx, i) if v.has_max else 0.0
    if kind == K_HIST:
        if _list(&x.buckets, i, &a, &b) < 0:
            return -2
        v.buckets.data = (<uint64_t*>x.buckets_v.data) + x.buckets_v.off + a
        v.buckets.n = b - a
        s.nbuckets = b - a
        if _list(&x.bounds, i, &a, &b) < 0:
            return -2
        s.bounds = (<double*>x.bounds_v.data) + x.bounds_v.off + a
        s.nbounds = b - a
        return 0
    v.zero_count = _u64(&x.zero_count, i) if _valid(&x.zero_count, i) else 0
    s.scale = _i32(&x.scale, i) if _valid(&x.scale, i) else 0
    s.zero_threshold = _f64(&x.zero_threshold, i) if _valid(&x.zero_threshold, i) else 0.0
    if _trimmed(&x.pos, &x.pos_v, &x.pos_off, i, &data, &n, &lo) < 0:
        return -2
    v.pos.data = <uint64_t*>data
    v.pos.n = n
    v.pos_lo = lo
    if _trimmed(&x.neg, &x.neg_v, &x.neg_off, i, &data, &n, &lo) < 0:
        return -2
    v.neg.data = <uint64_t*>data
    v.neg.n = n
    v.neg_lo = lo
    return 0

cdef bint _same_shape(const Shape* a, const Shape* b, int kind) noexcept nogil:
    cdef int64_t j
    if kind == K_HIST:
        if a.nbuckets != b.nbuckets or a.nbounds != b.nbounds:
            return 0
        for j in range(a.nbounds):
            if not (a.bounds[j] == b.bounds[j]):  # NaN bounds never match (as in the reference)
                return 0
        return 1
    if kind == K_EXP:
        return a.scale == b.scale and a.zero_threshold == b.zero_threshold
    return 1

cdef inline uint64_t _at(const U64s* v, int64_t lo, int64_t k) noexcept nogil:
    return v.data[k - lo] if lo <= k < lo + v.n else 0

cdef bint _decreased(const Val* new, const Val* old, int kind) noexcept nogil:
    cdef int64_t j
    if kind == K_SUM:
        if new.has_int and old.has_int:
            return new.vi < old.vi
        return ((<double>new.vi if new.has_int else new.vd) < (<double>old.vi if old.has_int else old.vd))
    if new.count < old.count:
        return 1
    if kind == K_HIST:
        for j in range(new.buckets.n if new.buckets.n < old.buckets.n else old.buckets.n):
            if new.buckets.data[j] < old.buckets.data[j]:
                return 1
        return 0
    for j in range(old.pos.n):
        if _at(&new.pos, new.pos_lo, old.pos_lo + j) < old.pos.data[j]:
            return 1
    for j in range(old.neg.n):
        if _at(&new.neg, new.neg_lo, old.neg_lo + j) < old.neg.data[j]:
            return 1
    return 0

cdef int _side(U64s* out, int64_t* out_lo, const U64s* a, int64_t alo, const U64s* b, int64_t blo,
               uint64_t sign) noexcept nogil:
    """a + sign * b over the union of their ranges (sign 1 or -1 as uint64: wrapping)."""
    cdef int64_t lo, hi, k
    if a.n == 0 and b.n == 0:
        out.n = 0
        out_lo[0] = 0
        return 0
    if a.n == 0:
        lo, hi = blo, blo + b.n
    elif b.n == 0:
        lo, hi = alo, alo + a.n
    else:
        lo = alo if alo < blo else blo
        hi = alo + a.n if alo + a.n > blo + b.n else blo + b.n
    if _reserve(out, hi - lo) < 0:
        return -1
    for k in range(lo, hi):
        out.data[k - lo] = _at(a, alo, k) + sign * _at(b, blo, k)
    out.n = hi - lo
    out_lo[0] = lo
    return 0

cdef int _combine(Val* out, const Val* a, const Val* b, int sign, int kind) noexcept nogil:
    """out = a + sign * b, member by member, as the reference's _combine (out owns its
    vectors and is neither a nor b)."""
    cdef uint64_t s = <uint64_t>1 if sign > 0 else <uint64_t>(-1)
    cdef int64_t j
    out.has_int = a.has_int
    out.vi = <int64_t>(<uint64_t>a.vi + s * <uint64_t>(b.vi if b.has_int else 0)) if a.has_int else 0
    out.has_double = a.has_double
    out.vd = (a.vd + (sign * b.vd if b.has_double else 0.0)) if a.has_double else 0.0
    if kind == K_SUM:
        out.buckets.n = out.pos.n = out.neg.n = 0
        return 0
    out.count = a.count + s * b.count
    out.zero_count = a.zero_count + s * b.zero_count
    out.has_sum = a.has_sum
    out.sum = (a.sum + (sign * b.sum if b.has_sum else 0.0)) if a.has_sum else 0.0
    if sign > 0:  # accumulated: the least and greatest of the intervals (Python's min(a, b))
        out.has_min = a.has_min or b.has_min
        out.mn = a.mn if a.has_min and not (b.has_min and b.mn < a.mn) else b.mn
        out.has_max = a.has_max or b.has_max
        out.mx = a.mx if a.has_max and not (b.has_max and b.mx > a.mx) else b.mx
    else:         # a difference has neither
        out.has_min = out.has_max = 0
    if kind == K_HIST:
        if _reserve(&out.buckets, a.buckets.n) < 0:
            return -1
        for j in range(a.buckets.n):
            out.buckets.data[j] = a.buckets.data[j] + s * (b.buckets.data[j] if j < b.buckets.n else 0)
        out.buckets.n = a.buckets.n
        out.pos.n = out.neg.n = 0
        return 0
    out.buckets.n = 0
    if (_side(&out.pos, &out.pos_lo, &a.pos, a.pos_lo, &b.pos, b.pos_lo, s) < 0
            or _side(&out.neg, &out.neg_lo, &a.neg, a.neg_lo, &b.neg, b.neg_lo, s) < 0):
        return -1
    return 0

# -- the table ----------------------------------------------------------------------

cdef void _copy_fixed(const Col* c, void* data, uint8_t* ok, int64_t width, int64_t rows) noexcept nogil:
    """rows values of a fixed-width column into data, and a byte a row of its validity into ok."""
    cdef int64_t i
    if c.data == NULL:
        memset(data, 0, rows * width)
    else:
        memcpy(data, c.data + c.off * width, rows * width)
    if c.valid == NULL:
        memset(ok, 1, rows)
    else:
        for i in range(rows):
            ok[i] = _valid(c, i)


cdef int64_t _index_sources(Batch* x, list ids) except -2:
    """x.source_index: each row's source, by its source_id, from ``ids`` (the order of
    x.src_key): a hash table of the ids, and the row before's source tried first (the rows
    of a source come together). The first row whose id is not in ids, or -1."""
    cdef int64_t n = len(ids), nslots = 16, i, at, hint = -1
    cdef uint64_t mask, sid
    cdef uint64_t* keys
    cdef int32_t* slots
    if n >= 0x7FFFFFFF:
        raise ValueError("too many sources in one batch")
    while nslots < 2 * n:
        nslots *= 2
    mask = <uint64_t>(nslots - 1)
    keys = <uint64_t*>malloc(nslots * sizeof(uint64_t))
    slots = <int32_t*>malloc(nslots * sizeof(int32_t))  # the index + 1 of the id at that slot; 0: empty
    if keys == NULL or slots == NULL:
        free(keys)
        free(slots)
        raise MemoryError()
    try:
        memset(slots, 0, nslots * sizeof(int32_t))
        for i in range(n):
            sid = ids[i]
            at = <int64_t>(_mix(sid) & mask)
            while slots[at] and keys[at] != sid:
                at = (at + 1) & mask
            if not slots[at]:  # (an id given twice keeps its first index)
                keys[at] = sid
                slots[at] = <int32_t>(i + 1)
        with nogil:
            for i in range(x.rows):
                sid = _u64(&x.source_id, i)
                if hint >= 0 and keys[hint] == sid:
                    x.source_index[i] = x.source_index[i - 1]
                    continue
                at = <int64_t>(_mix(sid) & mask)
                while slots[at] and keys[at] != sid:
                    at = (at + 1) & mask
                if not slots[at]:
                    return i
                x.source_index[i] = slots[at] - 1
                hint = at
        return -1
    finally:
        free(keys)
        free(slots)


cdef class StreamTable:
    """Every stream's state: a pool of Stream structs, an open-addressing index by hash
    (linear probing, deletion by backward shift) and the list of streams in order of last
    use, whose front :meth:`convert` expires."""

    cdef Stream* streams
    cdef int64_t pool, size, free_head, lru_head, lru_tail
    cdef int64_t* slots        # stream index + 1; 0 = empty
    cdef int64_t nslots        # a power of two, at least twice size
    cdef Bytes key
    cdef int64_t key_src       # the source of this run's batch whose key starts key, or -1
    cdef Entry* scratch
    cdef int64_t scratch_cap
    cdef Val tmp, cur         # scratch values the table owns
    cdef Val row              # the last row's value (its vectors point into the batch)
    cdef Val* emitted         # what _emit stores for the last row converted: cur, row or a stream's
    cdef Bytes removed        # the serials (u64) of the streams expired since the state was last saved
    cdef bint whole           # the next save must be the whole state (nothing saved yet, or a reset)
    cdef int64_t prev_s       # the stream of the last row looked up in this run, or -1
    cdef uint64_t next_serial # the number of the next new stream
    cdef object by_serial     # while loading saved changes: {serial: stream index}, else None
    cdef int64_t dump_size, changes_size  # the last dump's and change's sizes: the next's first block

    def __cinit__(self):
        self.free_head = self.lru_head = self.lru_tail = self.prev_s = self.key_src = -1
        self.whole = 1
        self.nslots = 64
        self.slots = <int64_t*>malloc(self.nslots * sizeof(int64_t))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, self.nslots * sizeof(int64_t))

    def __dealloc__(self):
        self._clear()
        free(self.streams)
        free(self.slots)
        free(self.key.data)
        free(self.removed.data)
        free(self.scratch)
        _release_val(&self.tmp)
        _release_val(&self.cur)

    @property
    def size(self):
        return self.size

    def clear(self):
        """Forget every stream."""
        self._clear()
        self.by_serial = None

    cdef void _clear(self) noexcept nogil:
        cdef int64_t i = self.lru_head
        while i >= 0:
            free(self.streams[i].key)
            free(self.streams[i].shape.bounds)
            _release_val(&self.streams[i].val)
            i = self.streams[i].next
        # the pool stays allocated; every slot is free again
        self.free_head = -1
        for i in range(self.pool - 1, -1, -1):
            self.streams[i].key = NULL
            self.streams[i].next = self.free_head
            self.free_head = i
        self.size = 0
        self.lru_head = self.lru_tail = -1
        memset(self.slots, 0, self.nslots * sizeof(int64_t))
        self.removed.n = 0
        self.whole = 1
        self.prev_s = -1
        self.next_serial = 0

    # -- index

    cdef int64_t _find(self, const uint8_t* key, int64_t n, uint64_t h) noexcept nogil:
        cdef uint64_t mask = self.nslots - 1
        cdef uint64_t at = h & mask
        cdef int64_t s
        cdef Stream* st
        while self.slots[at]:
            s = self.slots[at] - 1
            st = &self.streams[s]
            if st.hash == h and st.key_len == n and memcmp(st.key, key, n) == 0:
                return s
            at = (at + 1) & mask
        return -1

    cdef int64_t _guess(self) noexcept nogil:
        """The stream of self.key if it is the one that followed the last row's stream last
        time (compared in full), else -1; then it is the last row's stream."""
        cdef int64_t g
        cdef Stream* st
        if self.prev_s < 0:
            return -1
        g = self.streams[self.prev_s].succ - 1
        if g < 0 or g >= self.pool:
            return -1
        st = &self.streams[g]
        if st.key == NULL or st.key_len != self.key.n or memcmp(st.key, self.key.data, self.key.n) != 0:
            return -1
        self.prev_s = g
        return g

    cdef inline void _follows(self, int64_t s) noexcept nogil:
        """Stream s took the row after the last row's stream: the next guess after that one."""
        if self.prev_s >= 0:
            self.streams[self.prev_s].succ = s + 1
        self.prev_s = s

    cdef inline void _number(self, int64_t s, uint64_t serial) noexcept nogil:
        """Stream s is number ``serial``; the next new one comes after the highest given."""
        self.streams[s].serial = serial
        if serial >= self.next_serial:
            self.next_serial = serial + 1

    cdef void _index(self, int64_t s) noexcept nogil:
        cdef uint64_t mask = self.nslots - 1
        cdef uint64_t at = self.streams[s].hash & mask
        while self.slots[at]:
            at = (at + 1) & mask
        self.slots[at] = s + 1

    cdef int _grow_index(self) noexcept nogil:
        cdef int64_t* old = self.slots
        cdef int64_t n = self.nslots, i
        cdef int64_t* grown = <int64_t*>malloc(n * 2 * sizeof(int64_t))
        if grown == NULL:
            return -1
        memset(grown, 0, n * 2 * sizeof(int64_t))
        self.slots = grown
        self.nslots = n * 2
        for i in range(n):
            if old[i]:
                self._index(old[i] - 1)
        free(old)
        return 0

    cdef void _unindex(self, int64_t s) noexcept nogil:
        cdef uint64_t mask = self.nslots - 1
        cdef uint64_t i = self.streams[s].hash & mask, j, home
        while self.slots[i] != s + 1:
            i = (i + 1) & mask
        self.slots[i] = 0
        j = i
        while True:  # backward shift: move later entries of the run into the hole
            j = (j + 1) & mask
            if not self.slots[j]:
                return
            home = self.streams[self.slots[j] - 1].hash & mask
            if ((j - home) & mask) >= ((j - i) & mask):
                self.slots[i] = self.slots[j]
                self.slots[j] = 0
                i = j

    # -- order of use

    cdef void _unlink(self, int64_t s) noexcept nogil:
        cdef Stream* st = &self.streams[s]
        if st.prev >= 0:
            self.streams[st.prev].next = st.next
        else:
            self.lru_head = st.next
        if st.next >= 0:
            self.streams[st.next].prev = st.prev
        else:
            self.lru_tail = st.prev

    cdef void _link_last(self, int64_t s) noexcept nogil:
        self.streams[s].prev = self.lru_tail
        self.streams[s].next = -1
        if self.lru_tail >= 0:
            self.streams[self.lru_tail].next = s
        else:
            self.lru_head = s
        self.lru_tail = s

    cdef void _remove(self, int64_t s) noexcept nogil:
        if not self.whole and _put_i64(&self.removed, <int64_t>self.streams[s].serial) < 0:
            self.whole = 1  # (no memory to note it: the next save is whole)
        self._unindex(s)
        self._unlink(s)
        free(self.streams[s].key)
        free(self.streams[s].shape.bounds)
        _release_val(&self.streams[s].val)
        memset(&self.streams[s], 0, sizeof(Stream))
        self.streams[s].next = self.free_head
        self.free_head = s
        self.size -= 1

    cdef int64_t _new(self, const uint8_t* key, int64_t n, uint64_t h, int kind, int64_t serial) noexcept nogil:
        """A new stream (last in use order) for this identity, numbered ``serial`` (a loaded
        one), or the next number if it is -1; or -1 (no memory)."""
        cdef int64_t s, pool, i
        cdef Stream* grown
        if (self.size + 1) * 2 > self.nslots and self._grow_index() < 0:
            return -1
        if self.free_head < 0:
            pool = self.pool * 2 if self.pool else 64
            grown = <Stream*>realloc(self.streams, pool * sizeof(Stream))
            if grown == NULL:
                return -1
            self.streams = grown
            memset(&self.streams[self.pool], 0, (pool - self.pool) * sizeof(Stream))
            for i in range(pool - 1, self.pool - 1, -1):
                self.streams[i].next = self.free_head
                self.free_head = i
            self.pool = pool
        s = self.free_head
        self.free_head = self.streams[s].next
        memset(&self.streams[s], 0, sizeof(Stream))
        self.streams[s].key = <uint8_t*>malloc(n if n else 1)
        if self.streams[s].key == NULL:
            self.streams[s].next = self.free_head
            self.free_head = s
            return -1
        memcpy(self.streams[s].key, key, n)
        self.streams[s].key_len = n
        self.streams[s].hash = h
        self.streams[s].kind = <uint8_t>kind
        self._number(s, <uint64_t>serial if serial >= 0 else self.next_serial)
        self._index(s)
        self._link_last(s)
        self.size += 1
        return s

    cdef int _take(self, int64_t s, int64_t start, int64_t time, Val* v, const Shape* shape,
                   int64_t now, int how) noexcept nogil:
        """Stream s is now (start, time, v, shape), seen now: the last in order of use. how:
        TAKE_COPY copies v; TAKE_SWAP swaps vectors with v (a scratch value the table owns,
        which gets the stream's old ones); TAKE_SAME_SHAPE (or'ed) skips the shape, known
        equal."""
        cdef Stream* st = &self.streams[s]
        cdef double* bounds
        cdef U64s b, p, n
        st.start = start
        st.time = time
        st.seen = now
        st.dirty = 1
        if how & TAKE_SWAP:
            b, p, n = st.val.buckets, st.val.pos, st.val.neg
            st.val = v[0]
            v.buckets, v.pos, v.neg = b, p, n
        elif _copy_val(&st.val, v) < 0:
            return -1
        if not (how & TAKE_SAME_SHAPE) and st.shape.bounds != shape.bounds:
            bounds = <double*>realloc(st.shape.bounds, (shape.nbounds if shape.nbounds else 1) * sizeof(double))
            if bounds == NULL:
                return -1
            if shape.nbounds:
                memcpy(bounds, shape.bounds, shape.nbounds * sizeof(double))
            st.shape.bounds = bounds
        st.shape.nbuckets = shape.nbuckets
        st.shape.nbounds = shape.nbounds
        st.shape.scale = shape.scale
        st.shape.zero_threshold = shape.zero_threshold
        self._unlink(s)
        self._link_last(s)
        return 0

    cdef void _expire(self, const Settings* st) noexcept nogil:
        while self.lru_head >= 0 and st.now - self.streams[self.lru_head].seen > st.max_stale:
            self._remove(self.lru_head)

    # -- the rules (otlpd.temporality.Converter._to_delta and _to_cumulative)

    cdef int _row(self, const Batch* x, int64_t i, const Settings* st, Counts* counts, Out* out,
                  int* kind_out) noexcept nogil:
        """Row i: act[i] and, when it is stored converted, its output value (self.emitted;
        start and temporality in out), its kind in kind_out. 0, or -1 (no memory), -2 (bad offsets)."""
        cdef int64_t n, s, start, time
        cdef uint64_t h
        cdef const uint8_t* p
        cdef int kind = K_OTHER, given, r
        cdef Val v
        cdef Shape shape
        cdef Stream* stream
        cdef bint first, keep, reset
        p = _text(&x.kind, i, &n)
        if p == NULL:
            return -2
        if n == 3 and memcmp(p, b"sum", 3) == 0:
            kind = K_SUM
        elif n == 9 and memcmp(p, b"histogram", 9) == 0:
            kind = K_HIST
        elif n == 21 and memcmp(p, b"exponential_histogram", 21) == 0:
            kind = K_EXP
        kind_out[0] = kind
        given = _i32(&x.temporality, i) if _valid(&x.temporality, i) else 0
        out.act[i] = ACT_PASS
        if (kind == K_OTHER or given == st.target or (given != DELTA and given != CUMULATIVE)
                or (st.target == DELTA and kind == K_SUM and not (_valid(&x.mono, i) and _bit(&x.mono, i)))
                or (_u32(&x.flags, i) & NO_RECORDED_VALUE)):
            counts.passed += 1
            return 0
        r = _identity(x, i, kind, &self.key, &self.key_src, &self.scratch, &self.scratch_cap)
        if r < 0:
            return r
        s = self._guess()
        if s >= 0:
            h = self.streams[s].hash
        else:
            h = _hash(self.key.data, self.key.n)
            s = self._find(self.key.data, self.key.n, h)
            if s >= 0:
                self._follows(s)
        if s < 0 and self.size >= st.max_streams:
            counts.over_limit += 1
            counts.passed += 1
            return 0  # unconverted; its aggregation_temporality says so
        r = _read(x, i, kind, &v, &shape)
        if r < 0:
            return r
        start = _i64(&x.start, i)
        time = _i64(&x.time, i)
        stream = &self.streams[s] if s >= 0 else NULL
        if stream != NULL and time <= stream.time:
            counts.old += 1
            out.act[i] = ACT_DROP
            return 0
        if st.target == DELTA:
            reset = (stream == NULL or not _same_shape(&shape, &stream.shape, kind) or start != stream.start
                     or _decreased(&v, &stream.val, kind))
            if not reset:
                if _combine(&self.cur, &v, &stream.val, -1, kind) < 0:
                    return -1
                self.emitted = &self.cur
                out.start[i] = stream.time
                if self._take(s, start, time, &v, &shape, st.now, TAKE_COPY | TAKE_SAME_SHAPE) < 0:
                    return -1
            else:
                first = stream == NULL
                if first:
                    keep = st.initial == INIT_KEEP
                    if st.initial == INIT_AUTO:
                        keep = start != time and start > 0 and start >= st.started_at
                else:
                    keep = start != time and start > 0 and start >= stream.time
                if first:
                    s = self._new(self.key.data, self.key.n, h, kind, -1)
                    if s < 0:
                        return -1
                    self._follows(s)
                if self._take(s, start, time, &v, &shape, st.now, TAKE_COPY) < 0:
                    return -1
                if not keep:
                    counts.baseline += 1
                    out.act[i] = ACT_DROP
                    return 0
                self.row = v
                self.emitted = &self.row
                out.start[i] = start
            if kind != K_SUM:  # a cumulative min and max say nothing about the interval
                self.emitted.has_min = self.emitted.has_max = 0
        else:
            if stream != NULL and start < stream.time:
                counts.overlap += 1
                out.act[i] = ACT_DROP
                return 0
            if stream == NULL or not _same_shape(&shape, &stream.shape, kind):
                if stream == NULL:
                    s = self._new(self.key.data, self.key.n, h, kind, -1)
                    if s < 0:
                        return -1
                    self._follows(s)
                if self._take(s, start, time, &v, &shape, st.now, TAKE_COPY) < 0:
                    return -1
            else:
                if _combine(&self.tmp, &stream.val, &v, 1, kind) < 0:
                    return -1
                if self._take(s, stream.start, time, &self.tmp, &shape, st.now, TAKE_SWAP | TAKE_SAME_SHAPE) < 0:
                    return -1
            self.emitted = &self.streams[s].val  # (no stream is added before _emit reads it)
            out.start[i] = self.streams[s].start
        counts.converted += 1
        out.act[i] = ACT_OUT
        out.temporality[i] = st.target
        return 0

    cdef int _run(self, const Batch* x, const Settings* st, Counts* counts, Out* out) noexcept nogil:
        """Every row: the rule, then its output columns. 0, -1 (no memory), -2 (bad offsets)."""
        cdef int64_t i
        cdef int r, kind
        self._expire(st)
        self.prev_s = -1  # (expiry may have freed it)
        self.key_src = -1  # (self.key's start is a source of an earlier batch)
        out.buckets_offsets[0] = out.pos_offsets[0] = out.neg_offsets[0] = 0
        self._copy_scalars(x, out)
        for i in range(x.rows):
            r = self._row(x, i, st, counts, out, &kind)
            if r < 0:
                return r
            r = self._emit(x, i, kind, out)
            if r < 0:
                return r
            if (<int64_t>out.buckets.n > 0x7FFFFFFF or <int64_t>out.pos.n > 0x7FFFFFFF
                    or <int64_t>out.neg.n > 0x7FFFFFFF):
                return -1
            out.buckets_offsets[i + 1] = <int32_t>out.buckets.n
            out.pos_offsets[i + 1] = <int32_t>out.pos.n
            out.neg_offsets[i + 1] = <int32_t>out.neg.n
        return 0

    cdef void _copy_scalars(self, const Batch* x, Out* out) noexcept nogil:
        """Every row's fixed-width columns as they came, a column at a time (_row and _emit
        then write the converted rows' own)."""
        _copy_fixed(&x.start, out.start, out.ok_start, 8, x.rows)
        _copy_fixed(&x.temporality, out.temporality, out.ok_temporality, 4, x.rows)
        _copy_fixed(&x.vi, out.vi, out.ok_vi, 8, x.rows)
        _copy_fixed(&x.vd, out.vd, out.ok_vd, 8, x.rows)
        _copy_fixed(&x.count, out.count, out.ok_count, 8, x.rows)
        _copy_fixed(&x.sum, out.sum, out.ok_sum, 8, x.rows)
        _copy_fixed(&x.mn, out.mn, out.ok_mn, 8, x.rows)
        _copy_fixed(&x.mx, out.mx, out.ok_mx, 8, x.rows)
        _copy_fixed(&x.zero_count, out.zero_count, out.ok_zero_count, 8, x.rows)
        _copy_fixed(&x.pos_off, out.pos_off, out.ok_pos_off, 4, x.rows)
        _copy_fixed(&x.neg_off, out.neg_off, out.ok_neg_off, 4, x.rows)

    cdef int _copy_list(self, const Col* c, const Col* values, int64_t i, U64s* out, uint8_t* ok) noexcept nogil:
        """Row i of a list<uint64> column as it came. -2: bad offsets, -1: no memory."""
        cdef int64_t a, b
        ok[i] = _valid(c, i)
        if _list(c, i, &a, &b) < 0:
            return -2
        return _append(out, (<const uint64_t*>values.data) + values.off + a, b - a)

    cdef int _emit(self, const Batch* x, int64_t i, int kind, Out* out) noexcept nogil:
        """Row i's output columns: as it came, or (ACT_OUT) from its converted value
        (self.emitted) with out.start[i] and out.temporality[i] already set by _row."""
        cdef Val* v = self.emitted
        cdef int r
        if out.act[i] != ACT_OUT:
            kind = K_OTHER  # (its fixed-width columns are copied already: _copy_scalars)
        if kind == K_SUM:
            out.any_sum = 1
            out.ok_vi[i] = v.has_int
            out.vi[i] = v.vi
            out.ok_vd[i] = v.has_double
            out.vd[i] = v.vd
        elif kind == K_HIST or kind == K_EXP:
            out.count[i] = v.count
            out.ok_sum[i] = v.has_sum
            out.sum[i] = v.sum
            out.ok_mn[i] = v.has_min
            out.mn[i] = v.mn
            out.ok_mx[i] = v.has_max
            out.mx[i] = v.mx
        if kind == K_HIST:
            out.any_hist = 1
            out.ok_buckets[i] = 1
            r = _append(&out.buckets, v.buckets.data, v.buckets.n)
        else:
            r = self._copy_list(&x.buckets, &x.buckets_v, i, &out.buckets, out.ok_buckets)
        if r < 0:
            return r
        if kind != K_EXP:
            r = self._copy_list(&x.pos, &x.pos_v, i, &out.pos, out.ok_pos)
            if r == 0:
                r = self._copy_list(&x.neg, &x.neg_v, i, &out.neg, out.ok_neg)
            return r
        out.any_exp = 1
        out.zero_count[i] = v.zero_count
        out.ok_zero_count[i] = 1
        # an absent side with no buckets stays absent; else it starts at its first bucket
        out.ok_pos[i] = _valid(&x.pos, i) or v.pos.n > 0
        if out.ok_pos[i]:
            out.ok_pos_off[i] = 1
            out.pos_off[i] = <int32_t>v.pos_lo if v.pos.n else (_i32(&x.pos_off, i) if _valid(&x.pos_off, i) else 0)
        out.ok_neg[i] = _valid(&x.neg, i) or v.neg.n > 0
        if out.ok_neg[i]:
            out.ok_neg_off[i] = 1
            out.neg_off[i] = <int32_t>v.neg_lo if v.neg.n else (_i32(&x.neg_off, i) if _valid(&x.neg_off, i) else 0)
        if _append(&out.pos, v.pos.data, v.pos.n) < 0 or _append(&out.neg, v.neg.data, v.neg.n) < 0:
            return -1
        return 0

    # -- Python's side: gather the buffers, run, wrap the output --------------------

    def convert(self, batch, source_keys, int target, str initial_value, int64_t max_streams,
                int64_t max_stale_ns, int64_t started_at_ns, int64_t now_ns, attributes_identity):
        """The rows to store for ``batch`` (stored metric rows; ``source_keys`` maps each
        source_id to its canonical key) and the counts (converted, passed_through, over_limit,
        baseline, not_after_last_point, overlapping). ``attributes_identity`` is the
        reference's, for the rows with ``attributes_other`` entries."""
        cdef Batch x
        cdef Out out
        cdef Settings st
        cdef Counts counts
        cdef int64_t rows = batch.num_rows, i
        cdef int r
        memset(&x, 0, sizeof(Batch))
        memset(&out, 0, sizeof(Out))
        memset(&counts, 0, sizeof(Counts))
        st.target = target
        st.initial = {"auto": INIT_AUTO, "keep": INIT_KEEP, "drop": INIT_DROP}[initial_value]
        st.max_streams = max_streams
        st.max_stale = max_stale_ns if max_stale_ns > 0 else 0x7FFFFFFFFFFFFFFF
        st.started_at = started_at_ns
        st.now = now_ns
        self.by_serial = None  # (a conversion may add and remove streams: the next load builds it again)
        if rows == 0:
            self._expire(&st)
            return batch, (0, 0, 0, 0, 0, 0)
        keep_alive = []
        buffers = {}
        try:
            self._gather(batch, source_keys, attributes_identity, &x, keep_alive)
            self._allocate(rows, &out, buffers)
            # the output lists are about as long as the input's (a growth is a copy)
            if (_reserve_spare(&out.buckets, x.buckets.child_len) < 0 or _reserve_spare(&out.pos, x.pos.child_len) < 0
                    or _reserve_spare(&out.neg, x.neg.child_len) < 0):
                raise MemoryError()
            with nogil:
                r = self._run(&x, &st, &counts, &out)
            if r == -1:
                raise MemoryError()
            if r == -2:
                raise ValueError("metric rows with list offsets out of range")
            result = self._wrap(batch, rows, &out, buffers)
        finally:
            free(x.src_key)
            free(x.src_len)
            _give_back(x.scratch, x.scratch_cap)
            _give_back(out.buckets.data, out.buckets.cap * sizeof(uint64_t))
            _give_back(out.pos.data, out.pos.cap * sizeof(uint64_t))
            _give_back(out.neg.data, out.neg.cap * sizeof(uint64_t))
        return result, (counts.converted, counts.passed, counts.over_limit, counts.baseline, counts.old,
                        counts.overlap)

    cdef int _gather(self, batch, source_keys, attributes_identity, Batch* x, list keep_alive) except -1:
        """x: the batch's columns (their buffers stay alive in keep_alive)."""
        cdef int64_t rows = batch.num_rows, i
        x.rows = rows
        column = batch.column
        keep_alive.append(batch)
        ids = list(source_keys)
        x.nsources = len(ids)
        x.src_key = <const uint8_t**>malloc((x.nsources + 1) * sizeof(uint8_t*))
        x.src_len = <int64_t*>malloc((x.nsources + 1) * sizeof(int64_t))
        x.scratch = _take(rows * (sizeof(uint8_t*) + sizeof(int64_t) + sizeof(int32_t)), &x.scratch_cap)
        if x.src_key == NULL or x.src_len == NULL or x.scratch == NULL:
            raise MemoryError()
        x.attr_id = <const uint8_t**>x.scratch  # (8-byte widths first: each part stays aligned)
        x.attr_len = <int64_t*>(<uint8_t*>x.scratch + rows * sizeof(uint8_t*))
        x.source_index = <int32_t*>(<uint8_t*>x.scratch + rows * (sizeof(uint8_t*) + sizeof(int64_t)))
        _fixed(&x.source_id, column("source_id"), rows)
        if x.source_id.valid != NULL:
            raise ValueError("a metric row without a source_id")
        missing = _index_sources(x, ids)
        if missing >= 0:
            raise ValueError(f"source_id {_u64(&x.source_id, missing)} has no canonical key")
        keys = [bytes(source_keys[key]) for key in ids]
        keep_alive.append(keys)
        for i in range(x.nsources):
            x.src_key[i] = <const uint8_t*>(<bytes>keys[i])
            x.src_len[i] = len(keys[i])
        _string(&x.name, column("metric_name"), rows)
        _string(&x.kind, column("metric_type"), rows)
        _string(&x.unit, column("metric_unit"), rows)
        _fixed(&x.mono, column("is_monotonic"), rows)
        attributes = column("attributes")
        _nested(&x.attrs, attributes, rows)
        entries = attributes.values
        _string(&x.akeys, entries.field(0), len(entries))
        _string(&x.avals, entries.field(1), len(entries))
        _string(&x.atypes, column("attributes_types"), rows)
        # rows whose attributes include attributes_other entries: their identity from the reference
        memset(x.attr_id, 0, rows * sizeof(uint8_t*))
        other = column("attributes_other")
        if len(other.values):
            lengths = pc.fill_null(pc.list_value_length(other), 0)
            where = pc.indices_nonzero(lengths).to_pylist()
            types = column("attributes_types")
            for i in where:
                part = attributes_identity(attributes[i].as_py(), types[i].as_py(), other[i].as_py())
                keep_alive.append(part)
                x.attr_id[i] = <const uint8_t*>(<bytes>part)
                x.attr_len[i] = len(part)
        _list_column(&x.buckets, &x.buckets_v, column("bucket_counts"), rows)
        _list_column(&x.bounds, &x.bounds_v, column("explicit_bounds"), rows)
        _list_column(&x.pos, &x.pos_v, column("positive_bucket_counts"), rows)
        _list_column(&x.neg, &x.neg_v, column("negative_bucket_counts"), rows)
        _fixed(&x.start, column("start_time"), rows)
        _fixed(&x.time, column("time"), rows)
        _fixed(&x.flags, column("flags"), rows)
        _fixed(&x.temporality, column("aggregation_temporality"), rows)
        _fixed(&x.vd, column("value_double"), rows)
        _fixed(&x.vi, column("value_int"), rows)
        _fixed(&x.count, column("count"), rows)
        _fixed(&x.sum, column("sum"), rows)
        _fixed(&x.mn, column("min"), rows)
        _fixed(&x.mx, column("max"), rows)
        _fixed(&x.scale, column("scale"), rows)
        _fixed(&x.zero_count, column("zero_count"), rows)
        _fixed(&x.zero_threshold, column("zero_threshold"), rows)
        _fixed(&x.pos_off, column("positive_offset"), rows)
        _fixed(&x.neg_off, column("negative_offset"), rows)
        return 0

    cdef int _allocate(self, int64_t rows, Out* out, dict buffers) except -1:
        """The output columns, in one block (a spare's, handed to Arrow without a copy; not
        zeroed: _run writes every row of every column). buffers: name -> its slice, and
        "whole" -> the buffer."""
        cdef int64_t at = 0, size
        cdef _Owned owner = _Owned()
        layout = []
        for name, width in _OUT_COLUMNS:
            size = (rows + 1) * width if name.endswith("_offsets") else rows * width
            layout.append((name, at, size))
            at += (size + 63) & ~63  # (64-byte aligned, as Arrow's own buffers)
        owner.data = _take(at + 64, &owner.cap)
        if owner.data == NULL:
            raise MemoryError()
        whole = pa.foreign_buffer((<uintptr_t>owner.data + 63) & ~(<uintptr_t>63), max(at, 1), base=owner)
        buffers["whole"] = whole
        for name, offset, size in layout:
            buffers[name] = whole.slice(offset, size)
        out.act = <uint8_t*>_at_place(buffers, "act")
        out.start = <int64_t*>_at_place(buffers, "start")
        out.temporality = <int32_t*>_at_place(buffers, "temporality")
        out.vi = <int64_t*>_at_place(buffers, "vi")
        out.vd = <double*>_at_place(buffers, "vd")
        out.count = <uint64_t*>_at_place(buffers, "count")
        out.sum = <double*>_at_place(buffers, "sum")
        out.mn = <double*>_at_place(buffers, "mn")
        out.mx = <double*>_at_place(buffers, "mx")
        out.zero_count = <uint64_t*>_at_place(buffers, "zero_count")
        out.pos_off = <int32_t*>_at_place(buffers, "pos_off")
        out.neg_off = <int32_t*>_at_place(buffers, "neg_off")
        out.ok_start = _at_place(buffers, "ok_start")
        out.ok_temporality = _at_place(buffers, "ok_temporality")
        out.ok_vi = _at_place(buffers, "ok_vi")
        out.ok_vd = _at_place(buffers, "ok_vd")
        out.ok_count = _at_place(buffers, "ok_count")
        out.ok_sum = _at_place(buffers, "ok_sum")
        out.ok_mn = _at_place(buffers, "ok_mn")
        out.ok_mx = _at_place(buffers, "ok_mx")
        out.ok_zero_count = _at_place(buffers, "ok_zero_count")
        out.ok_pos_off = _at_place(buffers, "ok_pos_off")
        out.ok_neg_off = _at_place(buffers, "ok_neg_off")
        out.ok_buckets = _at_place(buffers, "ok_buckets")
        out.ok_pos = _at_place(buffers, "ok_pos")
        out.ok_neg = _at_place(buffers, "ok_neg")
        out.buckets_offsets = <int32_t*>_at_place(buffers, "buckets_offsets")
        out.pos_offsets = <int32_t*>_at_place(buffers, "pos_offsets")
        out.neg_offsets = <int32_t*>_at_place(buffers, "neg_offsets")
        return 0

    cdef object _wrap(self, batch, int64_t rows, Out* out, dict buffers):
        """The output batch: the input's columns, those the conversion changed replaced, the
        dropped rows filtered out."""
        cdef const uint8_t* act = out.act
        cdef uint8_t* flags
        cdef int64_t i, converted = 0, dropped = 0
        for i in range(rows):
            converted += act[i] == ACT_OUT
            dropped += act[i] == ACT_DROP
        if not converted and not dropped:
            return batch
        schema = batch.schema
        columns = {}
        if converted:
            def fixed(name, key, ok):
                columns[name] = pa.Array.from_buffers(schema.field(name).type, rows,
                                                      [_bitmap(buffers[ok], rows), buffers[key]])
            fixed("start_time", "start", "ok_start")
            fixed("aggregation_temporality", "temporality", "ok_temporality")
            if out.any_sum:
                fixed("value_int", "vi", "ok_vi")
                fixed("value_double", "vd", "ok_vd")
            if out.any_hist or out.any_exp:
                fixed("count", "count", "ok_count")
                fixed("sum", "sum", "ok_sum")
                fixed("min", "mn", "ok_mn")
                fixed("max", "mx", "ok_mx")
            def listed(name, offsets, ok, values):
                child = pa.Array.from_buffers(schema.field(name).type.value_type, values.size // 8,
                                              [None, values])
                columns[name] = pa.Array.from_buffers(schema.field(name).type, rows,
                                                      [_bitmap(buffers[ok], rows), buffers[offsets]],
                                                      children=[child])
            if out.any_hist:
                listed("bucket_counts", "buckets_offsets", "ok_buckets", _vector(&out.buckets))
            if out.any_exp:
                fixed("zero_count", "zero_count", "ok_zero_count")
                fixed("positive_offset", "pos_off", "ok_pos_off")
                fixed("negative_offset", "neg_off", "ok_neg_off")
                listed("positive_bucket_counts", "pos_offsets", "ok_pos", _vector(&out.pos))
                listed("negative_bucket_counts", "neg_offsets", "ok_neg", _vector(&out.neg))
        result = pa.RecordBatch.from_arrays([columns.get(name, batch.column(k)) for k, name in enumerate(schema.names)],
                                            schema=schema)
        if dropped:
            keep = bytearray(rows)
            flags = <uint8_t*>PyByteArray_AS_STRING(keep)
            for i in range(rows):
                flags[i] = act[i] != ACT_DROP
            result = result.filter(pa.Array.from_buffers(pa.bool_(), rows, [None, _bitmap(pa.py_buffer(keep), rows, True)]))
        return result

    # -- the saved state (otlpd.temporality.Converter.state's "streams") -------------

    # -- the saved state, in binary (temporality.py, "The saved state's format") ---------

    def dump(self):
        """Every stream's record, in order of use: the whole state."""
        cdef Bytes out
        cdef int64_t s = self.lru_head
        memset(&out, 0, sizeof(Bytes))
        out.data = <uint8_t*>_take(self.dump_size, &out.cap)
        if out.data == NULL:
            raise MemoryError()
        try:
            if _put_u32(&out, <uint32_t>self.size) < 0:
                raise MemoryError()
            while s >= 0:
                if self._put_record(&out, s, 1) < 0:
                    raise MemoryError()
                s = self.streams[s].next
            self.dump_size = out.n
            return _handed(&out)
        finally:
            _give_back(out.data, out.cap)

    def dump_changes(self):
        """What changed since the state was last saved (the identities expired, then the
        records of the streams changed, in order of use), or None when only the whole state
        will do. Taking them marks them saved."""
        cdef Bytes out
        cdef int64_t s = self.lru_tail, first, changed = 0, n
        if self.whole:
            return None
        memset(&out, 0, sizeof(Bytes))
        out.data = <uint8_t*>_take(self.changes_size, &out.cap)
        if out.data == NULL:
            raise MemoryError()
        try:
            n = self.removed.n // 8  # (the serials of the streams expired)
            if _put_u32(&out, <uint32_t>n) < 0 or _put(&out, self.removed.data, n * 8) < 0:
                raise MemoryError()
            while s >= 0 and self.streams[s].dirty:  # the changed streams are the last used
                s = self.streams[s].prev
                changed += 1
            first = self.lru_head if s < 0 else self.streams[s].next
            if _put_u32(&out, <uint32_t>changed) < 0:
                raise MemoryError()
            s = first
            while s >= 0:
                if self._put_record(&out, s, not self.streams[s].persisted) < 0:
                    raise MemoryError()
                self.streams[s].dirty = 0
                self.streams[s].persisted = 1
                s = self.streams[s].next
            self.removed.n = 0
            self.changes_size = out.n
            return _handed(&out)
        finally:
            _give_back(out.data, out.cap)

    cdef int _put_record(self, Bytes* out, int64_t s, bint named) noexcept nogil:
        """Stream s's record; named: with its identity (else its serial alone names it)."""
        cdef Stream* st = &self.streams[s]
        cdef Val* v = &st.val
        cdef uint8_t flags
        if _put_i64(out, <int64_t>st.serial) < 0 or _put_byte(out, 1 if named else 0) < 0:
            return -1
        if named and _put_text(out, st.key, st.key_len) < 0:
            return -1
        if (_put_byte(out, st.kind) < 0 or _put_i64(out, st.start) < 0
                or _put_i64(out, st.time) < 0 or _put_i64(out, st.seen) < 0):
            return -1
        if st.kind == K_SUM:
            flags = (1 if v.has_int else 0) | (2 if v.has_double else 0)
            return -1 if (_put_byte(out, flags) < 0 or _put_i64(out, v.vi) < 0 or _put_f64(out, v.vd) < 0) else 0
        flags = (1 if v.has_sum else 0) | (2 if v.has_min else 0) | (4 if v.has_max else 0)
        if (_put_i64(out, <int64_t>v.count) < 0 or _put_byte(out, flags) < 0 or _put_f64(out, v.sum) < 0
                or _put_f64(out, v.mn) < 0 or _put_f64(out, v.mx) < 0):
            return -1
        if st.kind == K_HIST:
            if _put_counts(out, 0, &v.buckets, 0) < 0 or _put_i64(out, st.shape.nbuckets) < 0:
                return -1
            if _put_u32(out, <uint32_t>st.shape.nbounds) < 0:
                return -1
            return _put(out, <const uint8_t*>st.shape.bounds, st.shape.nbounds * 8)
        if (_put_i64(out, <int64_t>v.zero_count) < 0 or _put_i64(out, st.shape.scale) < 0
                or _put_f64(out, st.shape.zero_threshold) < 0):
            return -1
        if _put_counts(out, v.pos_lo, &v.pos, 1) < 0 or _put_counts(out, v.neg_lo, &v.neg, 1) < 0:
            return -1
        return 0

    def load_dump(self, data, bint replace=True):
        """Take a :meth:`dump` (replacing every stream), or (replace false) apply a
        :meth:`dump_changes` (any bytes-like object). What is loaded counts as saved.
        ValueError if it is not one."""
        cdef const uint8_t[::1] view = memoryview(data).cast("B")
        cdef Cursor c
        cdef int64_t n, i, s, serial
        c.p = &view[0] if len(view) else NULL
        c.n = len(view)
        c.at = 0
        if replace:
            self._clear()
            self.by_serial = {}
        else:
            if self.by_serial is None:  # (kept from one loaded change to the next, until a conversion)
                self.by_serial = {}
                s = self.lru_head
                while s >= 0:
                    self.by_serial[self.streams[s].serial] = s
                    s = self.streams[s].next
            n = _get_u32(&c)
            for i in range(n):
                serial = _get_i64(&c)
                if c.at < 0:
                    break
                s = self.by_serial.pop(<uint64_t>serial, -1)
                if s >= 0:
                    self._remove(s)
        n = _get_u32(&c)
        try:
            for i in range(n):
                if c.at < 0 or self._get_record(&c) < 0:
                    break
        finally:
            self._loaded()
        if c.at < 0 or c.at != c.n:
            raise ValueError("not a saved temporality state (cut short, or bytes left over)")

    cdef void _loaded(self) noexcept:
        """After a load: what was loaded is saved (its streams persisted as they were taken)."""
        cdef int64_t s = self.lru_tail
        while s >= 0 and self.streams[s].dirty:
            self.streams[s].dirty = 0
            s = self.streams[s].prev
        self.removed.n = 0
        self.whole = 0

    cdef int _get_record(self, Cursor* c) except -2:
        """One stream's record: taken (as its latest change), or -1 if the data ends."""
        cdef Val v
        cdef Shape shape
        cdef int64_t key_len, s, start, time, seen, serial
        cdef const uint8_t* key
        cdef const uint8_t* raw
        cdef uint8_t flags
        cdef int kind, r, named
        memset(&v, 0, sizeof(Val))
        memset(&shape, 0, sizeof(Shape))
        serial = _get_i64(c)
        named = _get_byte(c)
        key = NULL
        key_len = 0
        if named == 1:
            key_len = _get_u32(c)
            key = _get(c, key_len)
        elif named != 0:
            c.at = -1
        kind = _get_byte(c)
        start, time, seen = _get_i64(c), _get_i64(c), _get_i64(c)
        if c.at < 0 or (named and key == NULL) or kind < K_SUM or kind > K_EXP:
            c.at = -1
            return -1
        try:
            if kind == K_SUM:
                flags = _get_byte(c)
                v.has_int, v.has_double = flags & 1, (flags >> 1) & 1
                v.vi, v.vd = _get_i64(c), _get_f64(c)
            else:
                v.count = <uint64_t>_get_i64(c)
                flags = _get_byte(c)
                v.has_sum, v.has_min, v.has_max = flags & 1, (flags >> 1) & 1, (flags >> 2) & 1
                v.sum, v.mn, v.mx = _get_f64(c), _get_f64(c), _get_f64(c)
                if kind == K_HIST:
                    if _get_counts(c, &v.buckets) < 0:
                        raise MemoryError()
                    shape.nbuckets = _get_i64(c)
                    shape.nbounds = _get_u32(c)
                    raw = _get(c, shape.nbounds * 8)
                    if raw == NULL:
                        c.at = -1
                        return -1
                    shape.bounds = <double*>malloc((shape.nbounds + 1) * sizeof(double))
                    if shape.bounds == NULL:
                        raise MemoryError()
                    memcpy(shape.bounds, raw, shape.nbounds * 8)
                else:
                    v.zero_count = <uint64_t>_get_i64(c)
                    shape.scale = <int32_t>_get_i64(c)
                    shape.zero_threshold = _get_f64(c)
                    v.pos_lo = _get_i64(c)
                    if _get_counts(c, &v.pos) < 0:
                        raise MemoryError()
                    v.neg_lo = _get_i64(c)
                    if _get_counts(c, &v.neg) < 0:
                        raise MemoryError()
            if c.at < 0:
                return -1
            if not named:  # a change of a stream saved before: its serial names it
                s = self.by_serial.get(<uint64_t>serial, -1)
                if s < 0:
                    raise ValueError("not a saved temporality state (a change of no known stream)")
            else:
                h = _hash(key, key_len)
                s = self._find(key, key_len, h)
                if s < 0:
                    s = self._new(key, key_len, h, kind, serial)
                    if s < 0:
                        raise MemoryError()
                elif self.streams[s].serial != <uint64_t>serial:
                    self.by_serial.pop(self.streams[s].serial, None)
                    self._number(s, <uint64_t>serial)
                self.by_serial[<uint64_t>serial] = s
            if self._take(s, start, time, &v, &shape, seen, TAKE_COPY) < 0:
                raise MemoryError()
            self.streams[s].persisted = 1
            return 0
        finally:
            _release_val(&v)
            free(shape.bounds)

    def mark_saved(self):
        """The whole state was saved: nothing is changed since, every stream's identity is saved."""
        cdef int64_t s = self.lru_head
        while s >= 0:
            self.streams[s].dirty = 0
            self.streams[s].persisted = 1
            s = self.streams[s].next
        self.removed.n = 0
        self.whole = 0


# -- spare blocks ---------------------------------------------------------------
#
# A conversion's large blocks (the output columns, the output lists, the scratch arrays, a
# dump) are about as large from one call to the next. Freed to glibc, those of 4 MiB or more
# go back to the kernel (otlpd.memory fixes the mmap threshold there) and the next call's
# first write of each page is a page fault: in the daemon, those were most of the writer's
# extra page faults under delta (docs/PERFORMANCE.md, "fifth step"). So freed blocks of
# SPARE_MIN bytes or more are kept, SPARES of them and SPARE_BYTES in all at most, for the
# next block of about their size. Every block is a malloc block (realloc and free take it);
# the GIL guards the list.

cdef enum:
    SPARES = 12
    SPARE_MIN = 64 * 1024
    SPARE_BYTES = 64 * 1024 * 1024

cdef void* _spare_data[SPARES]
cdef int64_t _spare_cap[SPARES]
cdef int _spares = 0
cdef int64_t _spare_total = 0


cdef void* _unlist(int i) noexcept:
    """Spare i, taken off the list."""
    global _spares, _spare_total
    cdef void* data = _spare_data[i]
    _spare_total -= _spare_cap[i]
    _spares -= 1
    _spare_data[i] = _spare_data[_spares]
    _spare_cap[i] = _spare_cap[_spares]
    return data


cdef void* _take(int64_t need, int64_t* cap) noexcept:
    """A block of at least need bytes (its size in cap): the smallest spare that fits and is
    at most four times as large, else a new one. NULL: no memory. Call with the GIL."""
    cdef int i, best = -1
    if need < 1:
        need = 1
    if need >= SPARE_MIN // 4:
        for i in range(_spares):
            if need <= _spare_cap[i] <= 4 * need and (best < 0 or _spare_cap[i] < _spare_cap[best]):
                best = i
    if best < 0:
        cap[0] = need
        return malloc(need)
    cap[0] = _spare_cap[best]
    return _unlist(best)


cdef void _give_back(void* data, int64_t cap) noexcept:
    """Frees a block of cap bytes, or keeps it as a spare (in place of smaller ones when the
    list is full). Call with the GIL."""
    global _spares, _spare_total
    cdef int i, smallest
    if data == NULL:
        return
    if SPARE_MIN <= cap <= SPARE_BYTES:
        # (with no spares the total is 0 and cap fits: the loop ends before the list is empty)
        while _spares == SPARES or _spare_total + cap > SPARE_BYTES:
            smallest = 0
            for i in range(1, _spares):
                if _spare_cap[i] < _spare_cap[smallest]:
                    smallest = i
            if _spare_cap[smallest] >= cap:
                free(data)
                return
            free(_unlist(smallest))
        _spare_data[_spares] = data
        _spare_cap[_spares] = cap
        _spares += 1
        _spare_total += cap
        return
    free(data)


def release_spares():
    """Frees the spare blocks (they are kept for the next conversion); returns the bytes
    freed."""
    freed = _spare_total
    while _spares:
        free(_unlist(_spares - 1))
    return freed


def spare_bytes():
    """The bytes held as spare blocks."""
    return _spare_total


cdef class _Owned:
    """Owns memory handed to Arrow without a copy (the output columns, an output list, a
    dump); gives it back when Arrow is done with it."""
    cdef void* data
    cdef int64_t cap

    def __dealloc__(self):
        _give_back(self.data, self.cap)


cdef object _handed(Bytes* b):
    """b's bytes as a pyarrow Buffer that owns them, without a copy (b is left empty: the
    caller's _give_back of it is a no-op)."""
    cdef _Owned owner
    if b.data == NULL or b.n == 0:
        _give_back(b.data, b.cap)
        b.data = NULL
        b.n = b.cap = 0
        return pa.py_buffer(b"")
    owner = _Owned()
    owner.data = b.data
    owner.cap = b.cap
    size = b.n
    b.data = NULL
    b.n = b.cap = 0
    return pa.foreign_buffer(<uintptr_t>owner.data, size, base=owner)


cdef int _reserve_spare(U64s* v, int64_t n) noexcept:
    """Room for n values in the empty vector v, in a spare block when there is one."""
    cdef int64_t cap
    if n <= 0 or v.data != NULL:
        return _reserve(v, n)
    v.data = <uint64_t*>_take(n * sizeof(uint64_t), &cap)
    if v.data == NULL:
        return -1
    v.cap = cap // sizeof(uint64_t)
    return 0


cdef object _vector(U64s* v):
    """v's values as a pyarrow Buffer that owns them (v is left empty)."""
    cdef Bytes b
    b.data = <uint8_t*>v.data
    b.n = v.n * sizeof(uint64_t)
    b.cap = v.cap * sizeof(uint64_t)
    v.data = NULL
    v.n = v.cap = 0
    return _handed(&b)


cdef int _list_column(Col* c, Col* values, object arr, int64_t rows) except -1:
    _nested(c, arr, rows)
    _fixed(values, arr.values, 0)
    return 0


cdef object _bitmap(object flags, int64_t rows, bint always=False):
    """A validity bitmap from a byte a row (a pyarrow Buffer; None when every row is valid,
    unless always)."""
    cdef const uint8_t* f = <const uint8_t*><uintptr_t>flags.address
    cdef int64_t i, nulls = 0
    if flags.size < rows:
        raise ValueError("a flags buffer shorter than its rows")
    bits = bytearray((rows + 7) // 8)
    cdef uint8_t* b = <uint8_t*>PyByteArray_AS_STRING(bits)
    for i in range(rows):
        if f[i]:
            b[i >> 3] |= 1 << (i & 7)
        else:
            nulls += 1
    if nulls == 0 and not always:
        return None
    return pa.py_buffer(bits)


cdef uint8_t* _at_place(dict buffers, str name) except NULL:
    """Where the output column ``name`` (a slice of one pool buffer) starts."""
    return <uint8_t*><uintptr_t>buffers[name].address


_OUT_COLUMNS = (("act", 1), ("start", 8), ("temporality", 4), ("vi", 8), ("vd", 8), ("count", 8), ("sum", 8),
                ("mn", 8), ("mx", 8), ("zero_count", 8), ("pos_off", 4), ("neg_off", 4), ("ok_start", 1),
                ("ok_temporality", 1), ("ok_vi", 1), ("ok_vd", 1), ("ok_count", 1), ("ok_sum", 1), ("ok_mn", 1),
                ("ok_mx", 1), ("ok_zero_count", 1), ("ok_pos_off", 1), ("ok_neg_off", 1), ("ok_buckets", 1),
                ("ok_pos", 1), ("ok_neg", 1), ("buckets_offsets", 4), ("pos_offsets", 4), ("neg_offsets", 4))
