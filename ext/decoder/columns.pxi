# Column builders: growable buffers, the appends of every column kind (values, bits,
# offsets, lists, structs, nulls, sparse ANYVALUE members), column trees built from a
# Spec (tree_new/tree_free/col_reset), and the replication of one-row templates onto
# many rows (col_repeat, replicate). Relies on core.pxi.

# ============================================================== column builders
# Every append starts with `if c.status: return`: after the first failure
# nothing is written any more (the batch is discarded), so a failed reserve can
# never be followed by an out-of-bounds write.

cdef int buf_grow(Buf* b, int64_t need) noexcept nogil:
    cdef int64_t cap = b.cap * 2 if b.cap > 0 else 64
    cdef uint8_t* q
    if need > (<int64_t>1 << 40):  # no column gets near this; keeps `cap` from overflowing
        return ST_NOMEM
    while cap < need:
        cap *= 2
    q = <uint8_t*>realloc(b.p, <size_t>cap)
    if q == NULL:
        return ST_NOMEM
    b.p = q
    b.cap = cap
    return ST_OK


cdef inline bint buf_reserve(Ctx* c, Buf* b, int64_t extra) noexcept nogil:
    """Make room for `extra` more bytes (geometric growth); False on failure."""
    if b.len + extra <= b.cap:
        return True
    if buf_grow(b, b.len + extra):
        st_set(c, ST_NOMEM)
        return False
    return True


cdef inline void bits_push(Ctx* c, Buf* b, int64_t i, bint bit) noexcept nogil:
    """Set bit i of a bitmap holding bits [0, i) in ceil(i/8) bytes."""
    if c.status:
        return
    if (i & 7) == 0:
        if not buf_reserve(c, b, 1):
            return
        b.p[b.len] = 0  # bounds: reserved above
        b.len += 1
    if (i >> 3) >= b.len:  # bounds: never true while the invariant holds; defensive
        st_set(c, ST_ERR)
        c.err = "internal error: bitmap out of sync"
        return
    if bit:
        b.p[i >> 3] |= <uint8_t>(1 << (i & 7))
    else:
        b.p[i >> 3] &= <uint8_t>~(1 << (i & 7))


cdef void valid_first_null(Ctx* c, Col* col, int64_t i) noexcept nogil:
    """Slot i is the column's first null: materialize the bitmap, slots [0, i) valid."""
    cdef int64_t nbytes = (i >> 3) + 1
    col.valid.len = 0
    if not buf_reserve(c, &col.valid, nbytes):
        return
    memset(col.valid.p, 0xFF, <size_t>nbytes)  # bounds: nbytes reserved above
    col.valid.len = nbytes
    col.valid.p[i >> 3] &= <uint8_t>~(1 << (i & 7))
    col.null_count = 1


cdef inline void valid_push(Ctx* c, Col* col, int64_t i, bint ok) noexcept nogil:
    """Record validity of slot i (== number of slots recorded so far)."""
    if col.null_count == 0:
        if not ok:
            valid_first_null(c, col, i)
        return
    bits_push(c, &col.valid, i, ok)
    if not ok:
        col.null_count += 1


cdef inline void app_w8(Ctx* c, Col* col, uint64_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 8):
        return
    memcpy(col.vals.p + col.vals.len, &v, 8)  # bounds: reserved above
    col.vals.len += 8
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_w4(Ctx* c, Col* col, uint32_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 4):
        return
    memcpy(col.vals.p + col.vals.len, &v, 4)  # bounds: reserved above
    col.vals.len += 4
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_u8(Ctx* c, Col* col, uint8_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 1):
        return
    col.vals.p[col.vals.len] = v  # bounds: reserved above
    col.vals.len += 1
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_bool(Ctx* c, Col* col, bint v) noexcept nogil:
    if c.status:
        return
    bits_push(c, &col.vals, col.length, v)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


# Offsets (C_BIN/C_LIST vals) are allocated lazily: vals.len == 0 stands for
# the single leading offset 0; the first push writes that 0 first.

cdef inline bint offsets_start(Ctx* c, Col* col) noexcept nogil:
    if col.vals.len == 0:
        if not buf_reserve(c, &col.vals, 8):
            return False
        memset(col.vals.p, 0, 4)
        col.vals.len = 4
    return True


cdef inline int32_t last_offset(Col* col) noexcept nogil:
    cdef int32_t last = 0
    if col.vals.len >= 4:  # bounds: at least one offset stored
        memcpy(&last, col.vals.p + col.vals.len - 4, 4)
    return last


cdef inline void push_offset(Ctx* c, Col* col, int64_t off) noexcept nogil:
    cdef int32_t o32
    if off > INT32_MAX_:
        st_set(c, ST_TOO_LARGE)
        return
    if not offsets_start(c, col) or not buf_reserve(c, &col.vals, 4):
        return
    o32 = <int32_t>off
    memcpy(col.vals.p + col.vals.len, &o32, 4)  # bounds: reserved above
    col.vals.len += 4


cdef inline void app_bin(Ctx* c, Col* col, const uint8_t* s, int64_t n) noexcept nogil:
    if c.status:
        return
    if col.data.len + n > INT32_MAX_:
        st_set(c, ST_TOO_LARGE)
        return
    if n > 0:
        if not buf_reserve(c, &col.data, n):
            return
        memcpy(col.data.p + col.data.len, s, <size_t>n)  # bounds: reserved above
        col.data.len += n
    push_offset(c, col, col.data.len)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_list(Ctx* c, Col* col) noexcept nogil:
    """Close the current list slot: its elements are the child's new entries."""
    if c.status:
        return
    push_offset(c, col, col.children[0].length)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_struct(Ctx* c, Col* col) noexcept nogil:
    """Close the current struct slot (its children were appended already)."""
    if c.status:
        return
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef void app_null(Ctx* c, Col* col) noexcept nogil:
    cdef int i
    cdef int32_t last
    cdef uint64_t zero = 0
    if c.status:
        return
    if col.kind == C_PRIM:
        if not buf_reserve(c, &col.vals, 8):
            return
        memcpy(col.vals.p + col.vals.len, &zero, 8)  # bounds: 8 >= width reserved above
        col.vals.len += col.width
    elif col.kind == C_BOOL:
        bits_push(c, &col.vals, col.length, False)
    elif col.kind == C_BIN or col.kind == C_LIST:
        push_offset(c, col, last_offset(col))  # an empty slot
    elif col.flags & F_ANYVALUE:
        app_u8(c, &col.children[0], 0)  # members: padded with empty values later
    else:
        for i in range(col.n_children):
            app_null(c, &col.children[i])
    valid_push(c, col, col.length, False)
    col.length += 1


cdef inline void col_pad(Ctx* c, Col* col, int64_t k) noexcept nogil:
    """Append empty non-null values (0, false, "") until the column has k slots.

    Only for ANYVALUE members, whose validity is derived at export.
    """
    if col.length < k:
        col_pad_slow(c, col, k)


cdef void col_pad_slow(Ctx* c, Col* col, int64_t k) noexcept nogil:
    cdef int64_t add = k - col.length
    cdef int64_t i, nbytes
    cdef int32_t last
    cdef int32_t* offsets
    if add <= 0 or c.status:
        return
    if col.kind == C_PRIM:
        if not buf_reserve(c, &col.vals, add * col.width):
            return
        memset(col.vals.p + col.vals.len, 0, <size_t>(add * col.width))  # bounds: reserved
        col.vals.len += add * col.width
    elif col.kind == C_BOOL:
        # bits [length, k) false, in bits_push's layout: bits [0, k) in ceil(k/8) bytes
        nbytes = (k + 7) >> 3
        if col.vals.len != (col.length + 7) >> 3:  # bounds: the bitmap invariant; defensive
            st_set(c, ST_ERR)
            c.err = "internal error: bitmap out of sync"
            return
        if not buf_reserve(c, &col.vals, nbytes - col.vals.len):
            return
        if col.length & 7:
            col.vals.p[col.length >> 3] &= <uint8_t>((1 << (col.length & 7)) - 1)
        memset(col.vals.p + col.vals.len, 0, <size_t>(nbytes - col.vals.len))  # bounds: reserved
        col.vals.len = nbytes
    else:  # C_BIN
        last = last_offset(col)
        if not offsets_start(c, col) or not buf_reserve(c, &col.vals, 4 * add):
            return
        # int32 stores into a buffer from realloc (aligned for any type); vals.len is
        # a multiple of 4 (offsets only)
        offsets = <int32_t*>(col.vals.p + col.vals.len)
        for i in range(add):
            offsets[i] = last  # bounds: 4 * add bytes reserved
        col.vals.len += 4 * add
    col.length = k


cdef inline void anyvalue_pad(Ctx* c, Col* col) noexcept nogil:
    cdef int m
    for m in range(1, 6):
        col_pad(c, &col.children[m], col.length)


cdef uint8_t ANY_MEMBERS[256]   # type -> bit m set if member m (1..5) holds that type
memset(ANY_MEMBERS, 0, sizeof(ANY_MEMBERS))
ANY_MEMBERS[1] = 1 << 1
ANY_MEMBERS[2] = 1 << 2
ANY_MEMBERS[3] = 1 << 3
ANY_MEMBERS[8] = 1 << 3
ANY_MEMBERS[4] = 1 << 4
ANY_MEMBERS[5] = 1 << 5
ANY_MEMBERS[6] = 1 << 5
ANY_MEMBERS[7] = 1 << 5


cdef extern from *:
    """
    static inline int otlpd_popcount8(unsigned char b) { return __builtin_popcount(b); }
    """
    int popcount8 "otlpd_popcount8"(uint8_t b) noexcept nogil


cdef void anyvalue_finish(Ctx* c, Col* col) noexcept nogil:
    """Before export: pad the members and derive their validity bitmaps from `type`
    (one pass, a byte of each bitmap at a time)."""
    cdef const uint8_t* types
    cdef uint8_t* bm[6]
    cdef uint8_t acc[6]
    cdef int64_t nulls[6]
    cdef int64_t n = col.length
    cdef int64_t nbytes = (n + 7) >> 3
    cdef int64_t i, j
    cdef uint8_t ok
    cdef uint64_t word
    cdef int m
    anyvalue_pad(c, col)
    if c.status:
        return
    types = col.children[0].vals.p
    for m in range(1, 6):
        col.children[m].valid.len = 0
        if not buf_reserve(c, &col.children[m].valid, nbytes + 1):
            return
        bm[m] = col.children[m].valid.p
        nulls[m] = 0
    # Eight slots at a time: their member masks as the bytes of one word, then
    # bit m of every byte gathered into bitmap byte m (multiply trick: byte j's
    # bit 0 moves to bit 56 + j, no two partial products overlap).
    for i in range(0, n, 8):
        word = 0
        for j in range(min(8, n - i)):
            ok = ANY_MEMBERS[types[i + j]]  # bounds: i + j < n
            if col.null_count > 0 and not ((col.valid.p[(i + j) >> 3] >> ((i + j) & 7)) & 1):
                ok = 0x3E  # null struct slot: pyarrow stores non-null empty members
            word |= (<uint64_t>ok) << (8 * j)
        for m in range(1, 6):
            acc[m] = <uint8_t>((((word >> m) & 0x0101010101010101ULL)
                                * 0x0102040810204080ULL) >> 56)
            bm[m][i >> 3] = acc[m]  # bounds: i >> 3 < nbytes, reserved
            nulls[m] += min(8, n - i) - popcount8(acc[m])
    for m in range(1, 6):
        col.children[m].null_count = nulls[m]
        col.children[m].valid.len = nbytes


cdef inline void app_opt_w8(Ctx* c, Col* col, bint present, uint64_t v) noexcept nogil:
    if present:
        app_w8(c, col, v)
    else:
        app_null(c, col)


cdef void tree_fill(Col* cols, int* nxt, const Spec* spec, int* si, Col* node) noexcept nogil:
    """Fill `node` from spec[si] (preorder); its children get contiguous slots."""
    cdef Spec sp = spec[si[0]]
    cdef int j
    si[0] += 1
    node.kind = sp.kind
    node.width = sp.width
    node.flags = sp.flags
    node.n_children = sp.n_children
    if sp.n_children:
        node.children = &cols[nxt[0]]
        nxt[0] += sp.n_children
        for j in range(sp.n_children):
            tree_fill(cols, nxt, spec, si, &node.children[j])


cdef Col* tree_new(const Spec* spec, int n) noexcept nogil:
    """All n columns of a batch in one zeroed block; cols[0] is the root struct."""
    cdef Col* cols = <Col*>calloc(n, sizeof(Col))
    cdef int nxt = 1
    cdef int si = 0
    if cols != NULL:
        tree_fill(cols, &nxt, spec, &si, &cols[0])
    return cols


cdef void tree_free(Col* cols, int n) noexcept nogil:
    cdef int i
    if cols == NULL:
        return
    for i in range(n):
        free(cols[i].valid.p)
        free(cols[i].vals.p)
        free(cols[i].data.p)
    free(cols)


cdef void col_reset(Col* col) noexcept nogil:
    """Empty the column, keeping its memory."""
    cdef int i
    col.length = 0
    col.null_count = 0
    col.valid.len = 0
    col.data.len = 0
    col.vals.len = 0
    for i in range(col.n_children):
        col_reset(&col.children[i])


cdef int64_t col_nbytes(Col* col) noexcept nogil:
    cdef int64_t n = col.valid.len + col.vals.len + col.data.len
    cdef int i
    for i in range(col.n_children):
        n += col_nbytes(&col.children[i])
    return n


cdef void repeat_bytes(uint8_t* dst, const uint8_t* src, int64_t nb, int64_t times) noexcept nogil:
    """dst[0 : nb*times] = src[0 : nb] repeated (room reserved by the caller):
    one copy, then doubling copies of what is already there."""
    cdef int64_t done, chunk
    if nb == 0 or times == 0:
        return
    memcpy(dst, src, <size_t>nb)
    done = nb
    while done < nb * times:
        chunk = done if done <= nb * times - done else nb * times - done
        memcpy(dst + done, dst, <size_t>chunk)
        done += chunk


cdef void repeat_offsets(uint8_t* dst, const uint8_t* src, int64_t n, int64_t times,
                         int64_t base, int64_t step) noexcept nogil:
    """Offsets src[1..n] (int32, src[0] == 0) shifted by base + t*step, t < times
    (room reserved and int32 range checked by the caller)."""
    cdef int32_t* out = <int32_t*>dst     # dst/src are malloc'd and 4-byte aligned here
    cdef const int32_t* so = <const int32_t*>src
    cdef int64_t t, i
    cdef int64_t k = 0
    for t in range(times):
        for i in range(1, n + 1):
            out[k] = <int32_t>(base + so[i])
            k += 1
        base += step


cdef void col_repeat(Ctx* c, Col* d, Col* s, int64_t times) noexcept nogil:
    """Append all rows of template column `s` to `d`, `times` times.

    Templates are reset before use, so their offsets start at 0 and their
    children hold exactly the elements of their rows.
    """
    cdef int64_t n = s.length
    cdef int64_t t, i, k, base, nb, cl
    cdef int32_t o
    cdef bint ok
    if c.status or n == 0 or times == 0:
        return
    if s.null_count > 0 or d.null_count > 0:
        k = d.length
        for t in range(times):
            for i in range(n):
                ok = s.null_count == 0 or ((s.valid.p[i >> 3] >> (i & 7)) & 1)
                valid_push(c, d, k, ok)
                k += 1
    if s.kind == C_PRIM:
        nb = n * s.width
        if not buf_reserve(c, &d.vals, nb * times):
            return
        repeat_bytes(d.vals.p + d.vals.len, s.vals.p, nb, times)
        d.vals.len += nb * times
    elif s.kind == C_BOOL:
        k = d.length
        for t in range(times):
            for i in range(n):
                bits_push(c, &d.vals, k, (s.vals.p[i >> 3] >> (i & 7)) & 1)
                k += 1
    elif s.kind == C_BIN:
        nb = s.data.len
        if d.data.len + nb * times > INT32_MAX_:
            st_set(c, ST_TOO_LARGE)
            return
        if (not offsets_start(c, d) or not buf_reserve(c, &d.data, nb * times)
                or not buf_reserve(c, &d.vals, 4 * n * times)):
            return
        repeat_bytes(d.data.p + d.data.len, s.data.p, nb, times)
        base = d.data.len
        d.data.len += nb * times
        repeat_offsets(d.vals.p + d.vals.len, s.vals.p, n, times, base, nb)
        d.vals.len += 4 * n * times
    elif s.kind == C_LIST:
        cl = s.children[0].length
        base = d.children[0].length
        if base + cl * times > INT32_MAX_:
            st_set(c, ST_TOO_LARGE)
            return
        if not offsets_start(c, d) or not buf_reserve(c, &d.vals, 4 * n * times):
            return
        repeat_offsets(d.vals.p + d.vals.len, s.vals.p, n, times, base, cl)
        d.vals.len += 4 * n * times
        col_repeat(c, &d.children[0], &s.children[0], times)
    else:
        if s.flags & F_ANYVALUE:
            anyvalue_pad(c, s)
            anyvalue_pad(c, d)
        for i in range(s.n_children):
            col_repeat(c, &d.children[i], &s.children[i], times)
    if c.status == ST_OK:
        d.length += n * times


cdef void replicate(Ctx* c, int lo, int hi, int64_t times) noexcept nogil:
    """Copy the one-row templates T[lo:hi] onto `times` new rows of O[lo:hi]."""
    cdef int64_t nb = 0
    cdef int i
    if times <= 0 or c.status:
        return
    for i in range(lo, hi):
        nb += col_nbytes(&c.T[i])
    if nb > (MAX_REPLICATED - c.replicated) // times:
        st_set(c, ST_TOO_LARGE)
        return
    c.replicated += nb * times
    for i in range(lo, hi):
        col_repeat(c, &c.O[i], &c.T[i], times)
