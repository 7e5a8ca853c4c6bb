# Merging: concatenate exported batches of one signal into one new block, after
# checking every source node against the signal's Spec (else ST_FALLBACK: pyarrow
# concatenates). Relies on block.pxi; called by merge() in api.pxi.

# ============================================================== merging exported batches
# The writer concatenates the batches of many requests before writing them
# (otlpd.writer._coalesce). Batches still in this module's export form (Chunk:
# exported, never imported into pyarrow) are concatenated here, into one block
# that pyarrow imports once: no import per request (~50 us each) and none of
# pyarrow's per-array concatenation work (docs/DECODER.md, "Merging").
#
# The sources are trees this module exported, so their shape is the schema's
# Spec. Everything the merge relies on is checked first (merge_size): buffer and
# child counts, offset 0, null counts, offsets starting at 0, child lengths,
# totals within int32 offsets. Anything else is ST_FALLBACK (pyarrow concatenates
# instead) or ST_TOO_LARGE.

cdef enum:
    MERGE_MAX_DEPTH = 32   # deeper than any schema (checked at import)


cdef void bits_append(uint8_t* dst, int64_t pos, const uint8_t* src, int64_t n) noexcept nogil:
    """Write bits [pos, pos + n) of dst from bits [0, n) of src.

    dst's bits from pos on are zero in byte pos >> 3, and the bits after pos + n
    are left zero in their byte: appends must follow each other. Writes up to
    byte (pos + n) >> 3 + 1 (the bitmaps have one byte of slack)."""
    cdef int64_t nb = (n + 7) >> 3
    cdef int s = <int>(pos & 7)
    cdef uint8_t* d = dst + (pos >> 3)
    cdef uint8_t last = 0xFF if (n & 7) == 0 else <uint8_t>((1 << (n & 7)) - 1)
    cdef uint8_t b
    cdef int64_t i
    if n <= 0:
        return
    if s == 0:
        memcpy(d, src, <size_t>nb)
        d[nb - 1] &= last
        return
    for i in range(nb):
        b = src[i]
        if i == nb - 1:
            b &= last
        d[i] |= <uint8_t>(b << s)
        d[i + 1] = <uint8_t>(b >> (8 - s))  # bounds: one byte of slack


cdef void bits_ones(uint8_t* dst, int64_t pos, int64_t n) noexcept nogil:
    """Set bits [pos, pos + n) of dst, with bits_append's contract."""
    cdef int64_t full
    while n > 0 and (pos & 7):
        dst[pos >> 3] |= <uint8_t>(1 << (pos & 7))
        pos += 1
        n -= 1
    full = n >> 3
    if full:
        memset(dst + (pos >> 3), 0xFF, <size_t>full)
        pos += full * 8
        n -= full * 8
    if n:
        dst[pos >> 3] = <uint8_t>((1 << n) - 1)


cdef inline int64_t bitmap_bytes(int64_t n) noexcept nogil:
    return ((n + 7) >> 3) + 1   # one byte of slack for bits_append


cdef int merge_size(const Spec* spec, int* si, ArrowArray** srcs, int k, ArrowArray** rows,
                    int depth, int64_t* nodes, int64_t* nbytes) noexcept nogil:
    """First pass over node spec[*si] of k sources (srcs, row `depth` of `rows`):
    check them, count the merged node and its bytes, recurse into the children."""
    cdef Spec sp = spec[si[0]]
    cdef int nb = n_buffers(sp.kind)
    cdef int64_t total = 0
    cdef int64_t nulls = 0
    cdef int64_t inner = 0   # BIN: data bytes; LIST: child rows
    cdef int i, j, rc
    cdef ArrowArray* a
    cdef const int32_t* off
    cdef ArrowArray** kids
    si[0] += 1
    if depth + 1 >= MERGE_MAX_DEPTH:
        return ST_FALLBACK
    for i in range(k):
        a = srcs[i]
        if (a.release == NULL or a.offset != 0 or a.n_buffers != nb or a.length < 0
                or a.n_children != sp.n_children or a.null_count < 0
                or (a.null_count > 0 and a.buffers[0] == NULL)):
            return ST_FALLBACK
        if sp.kind != C_STRUCT and a.buffers[1] == NULL:
            return ST_FALLBACK
        if sp.kind == C_BIN or sp.kind == C_LIST:
            off = <const int32_t*>a.buffers[1]
            if off[0] != 0 or off[a.length] < 0:
                return ST_FALLBACK
            if sp.kind == C_BIN and a.buffers[2] == NULL:
                return ST_FALLBACK
            if sp.kind == C_LIST and a.children[0].length != off[a.length]:
                return ST_FALLBACK
            inner += off[a.length]
        if sp.kind == C_STRUCT:
            for j in range(sp.n_children):
                if a.children[j].length != a.length:
                    return ST_FALLBACK
        total += a.length
        nulls += a.null_count
    if total > INT32_MAX_ or inner > INT32_MAX_:
        return ST_TOO_LARGE
    nodes[0] += 1
    nbytes[0] += kind_meta(sp.kind, sp.n_children)
    if nulls > 0:
        nbytes[0] += aligned(bitmap_bytes(total))
    if sp.kind == C_PRIM:
        nbytes[0] += aligned(total * sp.width)
    elif sp.kind == C_BOOL:
        nbytes[0] += aligned(bitmap_bytes(total))
    elif sp.kind == C_BIN or sp.kind == C_LIST:
        nbytes[0] += aligned(4 * (total + 1))
        if sp.kind == C_BIN:
            nbytes[0] += aligned(inner)
    kids = rows + (depth + 1) * k
    for j in range(sp.n_children):
        for i in range(k):
            kids[i] = srcs[i].children[j]
        rc = merge_size(spec, si, kids, k, rows, depth + 1, nodes, nbytes)
        if rc:
            return rc
    return ST_OK


cdef void merge_offsets(int32_t* dst, ArrowArray** srcs, int k) noexcept nogil:
    """Concatenate the sources' offsets, each rebased to where its values land."""
    cdef int64_t pos = 0
    cdef int32_t base = 0
    cdef int64_t r, n
    cdef const int32_t* off
    cdef int i
    dst[0] = 0
    for i in range(k):
        off = <const int32_t*>srcs[i].buffers[1]
        n = srcs[i].length
        for r in range(1, n + 1):
            dst[pos + r] = off[r] + base
        pos += n
        base += off[n]


cdef void merge_fill(const Spec* spec, int* si, ArrowArray** srcs, int k, ArrowArray** rows,
                     int depth, ArrowArray* a, uint8_t** cur, Block* block) noexcept nogil:
    """Second pass: fill the merged node `a` in the block at *cur (merge_size
    checked the sources and counted exactly these bytes)."""
    cdef Spec sp = spec[si[0]]
    cdef int64_t total = 0
    cdef int64_t nulls = 0
    cdef int64_t pos, n, size
    cdef int i, j
    cdef uint8_t* q
    cdef const int32_t* off
    cdef ArrowArray** kids
    cdef const void** bufs
    si[0] += 1
    for i in range(k):
        total += srcs[i].length
        nulls += srcs[i].null_count
    bufs = <const void**>node_start(a, sp.kind, sp.n_children, total, nulls, cur, block)
    if nulls > 0:
        q = cur[0]
        cur[0] = q + aligned(bitmap_bytes(total))
        q[0] = 0
        pos = 0
        for i in range(k):
            if srcs[i].null_count > 0:
                bits_append(q, pos, <const uint8_t*>srcs[i].buffers[0], srcs[i].length)
            else:
                bits_ones(q, pos, srcs[i].length)
            pos += srcs[i].length
        bufs[0] = q
    if sp.kind == C_PRIM or sp.kind == C_BOOL:
        size = total * sp.width if sp.kind == C_PRIM else bitmap_bytes(total)
        if total == 0:
            bufs[1] = <const void*>ZERO_BUF
        else:
            q = cur[0]
            cur[0] = q + aligned(size)
            q[0] = 0
            pos = 0
            for i in range(k):
                n = srcs[i].length
                if sp.kind == C_PRIM:
                    memcpy(q + pos * sp.width, srcs[i].buffers[1], <size_t>(n * sp.width))
                else:
                    bits_append(q, pos, <const uint8_t*>srcs[i].buffers[1], n)
                pos += n
            bufs[1] = q
    elif sp.kind == C_BIN or sp.kind == C_LIST:
        q = cur[0]
        cur[0] = q + aligned(4 * (total + 1))
        merge_offsets(<int32_t*>q, srcs, k)
        bufs[1] = q
        if sp.kind == C_BIN:
            size = (<const int32_t*>q)[total]
            if size == 0:
                bufs[2] = <const void*>ZERO_BUF
            else:
                q = cur[0]
                cur[0] = q + aligned(size)
                pos = 0
                for i in range(k):
                    off = <const int32_t*>srcs[i].buffers[1]
                    n = off[srcs[i].length]
                    memcpy(q + pos, srcs[i].buffers[2], <size_t>n)
                    pos += n
                bufs[2] = q
    kids = rows + (depth + 1) * k
    for j in range(sp.n_children):
        for i in range(k):
            kids[i] = srcs[i].children[j]
        merge_fill(spec, si, kids, k, rows, depth + 1, a.children[j], cur, block)


cdef int merge_arrays(int sig, const Spec* spec, ArrowArray** srcs, int k, ArrowArray* out,
                      int64_t* size) noexcept nogil:
    """Concatenate k exported batches of one signal (its `spec`) into one block owned by the
    zeroed node `out`; the sources are only read. ST_OK, ST_FALLBACK, ST_TOO_LARGE
    or ST_NOMEM (then `out` is untouched)."""
    cdef ArrowArray** rows = <ArrowArray**>malloc(MERGE_MAX_DEPTH * k * sizeof(ArrowArray*))
    cdef int64_t nodes = 0
    cdef int64_t nbytes = aligned(sizeof(Block))
    cdef int si = 0
    cdef int rc
    cdef Block* block
    cdef uint8_t* cur
    if rows == NULL:
        return ST_NOMEM
    memcpy(rows, srcs, k * sizeof(ArrowArray*))
    rc = merge_size(spec, &si, rows, k, rows, 0, &nodes, &nbytes)
    if rc == ST_OK:
        block = block_new(&nbytes, nodes, sig + 1)
        if block == NULL:
            rc = ST_NOMEM
        else:
            size[0] = nbytes
            cur = <uint8_t*>block + aligned(sizeof(Block))
            si = 0
            merge_fill(spec, &si, rows, k, rows, 0, out, &cur, block)
    free(rows)
    return rc
