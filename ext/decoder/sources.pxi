# Resource and scope once per file (otlpd/sources.py is the reference and says the rules):
# at the end of each scope group with rows, the canonical encoding of its resource and
# scope template values (canon), their FNV-1a 64 source_id, one row of the request's
# sources tree per distinct source (a later source whose id is taken gets the next free
# one), and the group's rows get service_name and source_id (replicate_group). Relies on
# columns.pxi (col_repeat, anyvalue_pad, ANY_MEMBERS) and core.pxi.

# ============================================================== sources

cdef int N_SRC_COLS = 13
# the template columns of a source, in SOURCES_SCHEMA order after source_id (layout.pxi
# checks it against the schemas): the common columns without service_name (6)
cdef int SRC_MAP[13]
SRC_MAP[:] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13]
cdef enum:
    COL_SERVICE = 6    # service_name among the common columns
cdef uint64_t SRC_ID_MASK = 0xFFFFFFFFFFFFFFFFULL   # tests narrow it to force collisions


cdef struct SrcMeta:
    uint64_t id
    int64_t key_off
    int64_t key_len


cdef inline void kb_put(Ctx* c, Buf* b, const void* p, int64_t n) noexcept nogil:
    if n > 0 and buf_reserve(c, b, n):
        memcpy(b.p + b.len, p, <size_t>n)  # bounds: reserved
        b.len += n


cdef inline void kb_u8(Ctx* c, Buf* b, uint8_t v) noexcept nogil:
    kb_put(c, b, &v, 1)


cdef inline void kb_u32(Ctx* c, Buf* b, int64_t v) noexcept nogil:
    cdef uint32_t u = <uint32_t>v
    kb_put(c, b, &u, 4)


cdef inline bint col_valid(Col* col, int64_t i) noexcept nogil:
    return col.null_count == 0 or ((col.valid.p[i >> 3] >> (i & 7)) & 1)


cdef inline void offsets_at(Col* col, int64_t i, int32_t* s, int32_t* e) noexcept nogil:
    # bounds: i < col.length, so offsets [i] and [i + 1] are stored (offsets_start wrote [0])
    memcpy(s, col.vals.p + 4 * i, 4)
    memcpy(e, col.vals.p + 4 * (i + 1), 4)


cdef void canon(Ctx* c, Buf* b, Col* col, int64_t i, int depth) noexcept nogil:
    """Slot i of a template column, in sources.canonical_bytes' encoding: 0 for a null,
    else 1 and the value."""
    if c.status:
        return
    if i >= col.length or depth > MERGE_MAX_DEPTH:  # defensive: templates hold their rows
        st_set(c, ST_ERR)
        c.err = "internal error: source template out of shape"
        return
    if not col_valid(col, i):
        kb_u8(c, b, 0)
        return
    kb_u8(c, b, 1)
    canon_value(c, b, col, i, depth)


cdef void canon_value(Ctx* c, Buf* b, Col* col, int64_t i, int depth) noexcept nogil:
    cdef int32_t s, e
    cdef int64_t j
    cdef uint8_t t, bit
    cdef int m
    if col.kind == C_PRIM:
        kb_put(c, b, col.vals.p + i * col.width, col.width)
    elif col.kind == C_BOOL:
        bit = (col.vals.p[i >> 3] >> (i & 7)) & 1
        kb_u8(c, b, bit)
    elif col.kind == C_BIN:
        offsets_at(col, i, &s, &e)
        kb_u32(c, b, e - s)
        kb_put(c, b, col.data.p + s, e - s)
    elif col.kind == C_LIST:
        offsets_at(col, i, &s, &e)
        kb_u32(c, b, e - s)
        for j in range(s, e):
            canon(c, b, &col.children[0], j, depth + 1)
    elif col.flags & F_ANYVALUE:
        # members are sparse until padded; valid iff the type selects them (as exported)
        anyvalue_pad(c, col)
        if c.status:
            return
        t = col.children[0].vals.p[i]
        canon(c, b, &col.children[0], i, depth + 1)
        for m in range(1, 6):
            if ANY_MEMBERS[t] & (1 << m):
                kb_u8(c, b, 1)
                canon_value(c, b, &col.children[m], i, depth + 1)
            else:
                kb_u8(c, b, 0)
    else:
        for m in range(col.n_children):
            canon(c, b, &col.children[m], i, depth + 1)


cdef uint64_t fnv1a64(const uint8_t* p, int64_t n) noexcept nogil:
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef int64_t i
    for i in range(n):
        h = (h ^ p[i]) * 0x100000001B3ULL
    return h


cdef int64_t src_find(Ctx* c, uint64_t id) noexcept nogil:
    """Index of the request's source with this id, or -1 (open addressing over c.src_slots)."""
    cdef int64_t mask = c.src_cap - 1
    cdef int64_t slot
    cdef int32_t* slots = <int32_t*>c.src_slots.p
    cdef SrcMeta* meta = <SrcMeta*>c.src_meta.p
    if c.src_cap == 0:
        return -1
    slot = <int64_t>(id & <uint64_t>mask)
    while slots[slot] != 0:  # bounds: slot <= mask < src_cap; never full (load <= 1/2)
        if meta[slots[slot] - 1].id == id:
            return slots[slot] - 1
        slot = (slot + 1) & mask
    return -1


cdef inline void src_insert(Ctx* c, int64_t k) noexcept nogil:
    cdef int64_t mask = c.src_cap - 1
    cdef int32_t* slots = <int32_t*>c.src_slots.p
    cdef SrcMeta* meta = <SrcMeta*>c.src_meta.p
    cdef int64_t slot = <int64_t>(meta[k].id & <uint64_t>mask)
    while slots[slot] != 0:  # bounds: slot <= mask; never full (load <= 1/2)
        slot = (slot + 1) & mask
    slots[slot] = <int32_t>(k + 1)


cdef bint src_add(Ctx* c, uint64_t id, int64_t key_off, int64_t key_len) noexcept nogil:
    """Record a new source (its key is already in c.src_keys); False on failure."""
    cdef SrcMeta m
    cdef int64_t cap, k
    m.id = id
    m.key_off = key_off
    m.key_len = key_len
    kb_put(c, &c.src_meta, &m, sizeof(SrcMeta))
    if c.status:
        return False
    c.n_src += 1
    if 2 * c.n_src > c.src_cap:  # grow and rehash: load stays at most 1/2
        cap = 16 if c.src_cap == 0 else 2 * c.src_cap
        c.src_slots.len = 0
        if not buf_reserve(c, &c.src_slots, 4 * cap):
            return False
        c.src_cap = cap
        memset(c.src_slots.p, 0, <size_t>(4 * cap))
        for k in range(c.n_src):
            src_insert(c, k)
    else:
        src_insert(c, c.n_src - 1)
    return True


cdef enum:
    # Distinct sources one request may hold natively (more go to the reference path):
    # bounds the canonical keys kept per request.
    MAX_SOURCES = 4096


cdef void source_of_group(Ctx* c) noexcept nogil:
    """The current resource+scope templates as a source: c.cur_source is its id, and a
    source new to this request is appended to the sources tree c.src."""
    cdef int64_t key_off = c.src_keys.len
    cdef int64_t key_len, k
    cdef uint64_t id
    cdef SrcMeta* meta
    cdef int j
    for j in range(N_SRC_COLS):
        canon(c, &c.src_keys, &c.T[SRC_MAP[j]], 0, 0)
    if c.status:
        return
    key_len = c.src_keys.len - key_off
    id = fnv1a64(c.src_keys.p + key_off, key_len) & SRC_ID_MASK
    while True:
        k = src_find(c, id)
        if k < 0:
            break
        meta = <SrcMeta*>c.src_meta.p
        if meta[k].key_len == key_len and memcmp(c.src_keys.p + meta[k].key_off,
                                                 c.src_keys.p + key_off, <size_t>key_len) == 0:
            c.src_keys.len = key_off  # known: drop the copy of its key
            c.cur_source = id
            return
        id += 1  # a different source has this id in this request: the next free one
    if c.n_src >= MAX_SOURCES:
        # FALLBACK: the reference path takes requests of this many distinct sources
        st_set(c, ST_FALLBACK)
        c.fallback = "more than 4096 distinct resource+scope pairs"
        return
    if not src_add(c, id, key_off, key_len):
        return
    app_w8(c, &c.S[0], id)
    for j in range(N_SRC_COLS):
        col_repeat(c, &c.S[1 + j], &c.T[SRC_MAP[j]], 1)
    c.src.length += 1
    c.cur_source = id


cdef void replicate_group(Ctx* c, int64_t times) noexcept nogil:
    """The group's `times` new rows get its service_name and source_id."""
    cdef Col* ids = &c.O[c.src_col]
    cdef uint64_t* out
    cdef int64_t i
    if times <= 0 or c.status:
        return
    source_of_group(c)
    replicate(c, COL_SERVICE, COL_SERVICE + 1, times)
    if c.status or not buf_reserve(c, &ids.vals, 8 * times):
        return
    out = <uint64_t*>(ids.vals.p + ids.vals.len)  # realloc'd: aligned; vals.len is 8 * length
    for i in range(times):
        out[i] = c.cur_source  # bounds: 8 * times reserved
    ids.vals.len += 8 * times
    ids.length += times
