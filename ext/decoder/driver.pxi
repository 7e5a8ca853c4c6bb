# Driver: the column specs of each signal (SPECS, filled at import by layout.pxi), the
# pools of column trees, and run(), which decodes and exports one request without the
# GIL. Relies on request.pxi and export.pxi; called by _decode() in api.pxi.

# ============================================================== driver

cdef enum:
    MAX_SPEC = 512

# SPECS: the trees a request is decoded into (the full layout, then source_id);
# ROW_SPECS: the rows as exported (sources.rows_schema: what merge() walks);
# SRC_SPEC: the request's sources (sources.SOURCES_SCHEMA). ROW_MAP[sig][j] is the
# column of the decoding tree that is column j of the exported rows.
cdef Spec SPECS[3][MAX_SPEC]
cdef int SPEC_LEN[3]
cdef Spec ROW_SPECS[3][MAX_SPEC]
cdef int ROW_SPEC_LEN[3]
cdef Spec SRC_SPEC[MAX_SPEC]
cdef int SRC_SPEC_LEN
cdef int ROW_MAP[3][128]
cdef int ROW_N[3]
cdef int SRC_COL[3]      # the source_id column of the decoding tree

cdef enum:
    POOL_TMPL = 0
    POOL_OUT = 1
    POOL_SRC = 2
    POOL_SIZE = 8

# Column trees are reused across requests, their buffers keeping their capacity:
# templates (POOL_TMPL) and the trees the batches are built in (POOL_OUT), which
# export copies out of. A tree grown beyond POOL_MAX_BYTES by a large request is
# freed instead, so the pools pin at most 3 signals x 8 x (1 + 4) MiB, and only
# as many trees as requests were decoded at once. The pools are only touched
# with the GIL held (before/after the nogil section).
cdef int64_t POOL_MAX_BYTES[3]
POOL_MAX_BYTES[POOL_TMPL] = 1 << 20
POOL_MAX_BYTES[POOL_OUT] = 4 << 20
POOL_MAX_BYTES[POOL_SRC] = 1 << 20
cdef Col* TREE_POOL[3][3][POOL_SIZE]
cdef int TREE_POOL_N[3][3]
memset(TREE_POOL_N, 0, sizeof(TREE_POOL_N))


cdef int64_t tree_capacity(Col* cols, int n) noexcept nogil:
    cdef int64_t total = 0
    cdef int i
    for i in range(n):
        total += cols[i].valid.cap + cols[i].vals.cap + cols[i].data.cap
    return total


cdef inline int tree_len(int kind, int sig) noexcept nogil:
    return SRC_SPEC_LEN if kind == POOL_SRC else SPEC_LEN[sig]


cdef int export_rows(Ctx* c, int sig, ArrowArray* arr, int64_t* size) noexcept nogil:
    """Export the columns of the stored layout (ROW_MAP) of c.out: they are moved into a
    root of their own for the export, then back (export may grow their buffers)."""
    cdef Col root
    cdef int j, rc
    memset(&root, 0, sizeof(Col))
    root.kind = C_STRUCT
    root.length = c.rows
    root.n_children = ROW_N[sig]
    root.children = <Col*>malloc(ROW_N[sig] * sizeof(Col))
    if root.children == NULL:
        return ST_NOMEM
    for j in range(ROW_N[sig]):
        root.children[j] = c.O[ROW_MAP[sig][j]]
    rc = export_tree(&root, arr, size)
    for j in range(ROW_N[sig]):
        c.O[ROW_MAP[sig][j]] = root.children[j]
    free(root.children)
    return rc


cdef int run(Ctx* c, int sig, const uint8_t* data, int64_t size, ArrowArray** out,
             ArrowArray** srcs) noexcept nogil:
    """Validate, decode and export: the rows in *out, their sources in *srcs. c.out,
    c.tmpl and c.src may hold pooled trees (else they are allocated here); the caller
    pools or frees them, and frees the c.src_* buffers. Each batch owns one block
    (released through its release callback)."""
    cdef int i
    cdef int64_t src_size = 0
    cdef ArrowArray* arr
    cdef ArrowArray* sarr
    if c.out == NULL:
        c.out = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.tmpl == NULL:
        c.tmpl = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.src == NULL:
        c.src = tree_new(SRC_SPEC, SRC_SPEC_LEN)
    if c.out == NULL or c.tmpl == NULL or c.src == NULL:
        st_set(c, ST_NOMEM)
    else:
        c.O = c.out.children
        c.T = c.tmpl.children
        c.S = c.src.children
        c.src_col = SRC_COL[sig]
    if c.status == ST_OK:
        dec_request(c, sig, data, data + size)  # validates as it decodes
    if c.status == ST_OK:
        for i in range(ROW_N[sig]):  # sanity: every stored column has one entry per row
            if c.O[ROW_MAP[sig][i]].length != c.rows:
                c.err = "internal error: column length mismatch"
                c.err_off = 0
                c.status = ST_ERR
        for i in range(c.src.n_children):
            if c.S[i].length != c.n_src:
                c.err = "internal error: source column length mismatch"
                c.err_off = 0
                c.status = ST_ERR
        c.out.length = c.rows
    if c.status == ST_OK:
        arr = <ArrowArray*>calloc(1, sizeof(ArrowArray))
        sarr = <ArrowArray*>calloc(1, sizeof(ArrowArray))
        if arr == NULL or sarr == NULL:
            free(arr)
            free(sarr)
            c.status = ST_NOMEM
        elif export_rows(c, sig, arr, &c.exported):
            free(arr)
            free(sarr)
            c.status = ST_NOMEM
        elif export_tree(c.src, sarr, &src_size):
            arr.release(arr)
            free(arr)
            free(sarr)
            c.status = ST_NOMEM
        else:
            c.exported += src_size
            out[0] = arr
            srcs[0] = sarr
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
            and tree_capacity(tree, tree_len(kind, sig)) <= POOL_MAX_BYTES[kind]):
        col_reset(tree)
        TREE_POOL[kind][sig][TREE_POOL_N[kind][sig]] = tree
        TREE_POOL_N[kind][sig] += 1
    else:
        tree_free(tree, tree_len(kind, sig))
