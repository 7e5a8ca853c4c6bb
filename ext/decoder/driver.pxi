# Driver: the column specs of each signal (SPECS, filled at import by layout.pxi), the
# pools of column trees, and run(), which decodes and exports one request without the
# GIL. Relies on request.pxi and export.pxi; called by _decode() in api.pxi.

# ============================================================== driver

cdef enum:
    MAX_SPEC = 512

cdef Spec SPECS[3][MAX_SPEC]


cdef int SPEC_LEN[3]
cdef enum:
    POOL_TMPL = 0
    POOL_OUT = 1
    POOL_SIZE = 8

# Column trees are reused across requests, their buffers keeping their capacity:
# templates (POOL_TMPL) and the trees the batches are built in (POOL_OUT), which
# export copies out of. A tree grown beyond POOL_MAX_BYTES by a large request is
# freed instead, so the pools pin at most 3 signals x 8 x (1 + 4) MiB, and only
# as many trees as requests were decoded at once. The pools are only touched
# with the GIL held (before/after the nogil section).
cdef int64_t POOL_MAX_BYTES[2]
POOL_MAX_BYTES[POOL_TMPL] = 1 << 20
POOL_MAX_BYTES[POOL_OUT] = 4 << 20
cdef Col* TREE_POOL[2][3][POOL_SIZE]
cdef int TREE_POOL_N[2][3]
memset(TREE_POOL_N, 0, sizeof(TREE_POOL_N))


cdef int64_t tree_capacity(Col* cols, int n) noexcept nogil:
    cdef int64_t total = 0
    cdef int i
    for i in range(n):
        total += cols[i].valid.cap + cols[i].vals.cap + cols[i].data.cap
    return total


cdef int run(Ctx* c, int sig, const uint8_t* data, int64_t size, ArrowArray** out) noexcept nogil:
    """Validate, decode and export. c.out and c.tmpl may hold pooled trees (else
    they are allocated here); the caller pools or frees them. The batch in *out
    owns one block (released through its release callback)."""
    cdef int i
    cdef ArrowArray* arr
    if c.out == NULL:
        c.out = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.tmpl == NULL:
        c.tmpl = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.out == NULL or c.tmpl == NULL:
        st_set(c, ST_NOMEM)
    else:
        c.O = c.out.children
        c.T = c.tmpl.children
    if c.status == ST_OK:
        dec_request(c, sig, data, data + size)  # validates as it decodes
    if c.status == ST_OK:
        for i in range(c.out.n_children):  # sanity: every column has one entry per row
            if c.O[i].length != c.rows:
                c.err = "internal error: column length mismatch"
                c.err_off = 0
                c.status = ST_ERR
        c.out.length = c.rows
    if c.status == ST_OK:
        arr = <ArrowArray*>calloc(1, sizeof(ArrowArray))
        if arr == NULL:
            c.status = ST_NOMEM
        elif export_tree(c.out, arr, &c.exported):
            free(arr)
            c.status = ST_NOMEM
        else:
            out[0] = arr
    return c.status


cdef Col* pool_get(int kind, int sig) noexcept:
    """A pooled tree or NULL (GIL held)."""
    if TREE_POOL_N[kind][sig] > 0:
        TREE_POOL_N[kind][sig] -= 1
        return TREE_POOL[kind][sig][TREE_POOL_N[kind][sig]]
    return NULL


cdef void pool_put(int kind, int sig, Col* tree) noexcept:
    """Return a tree to its pool, emptied, or free it (GIL held)."""
    if tree == NULL:
        return
    if (TREE_POOL_N[kind][sig] < POOL_SIZE
            and tree_capacity(tree, SPEC_LEN[sig]) <= POOL_MAX_BYTES[kind]):
        col_reset(tree)
        TREE_POOL[kind][sig][TREE_POOL_N[kind][sig]] = tree
        TREE_POOL_N[kind][sig] += 1
    else:
        tree_free(tree, SPEC_LEN[sig])
