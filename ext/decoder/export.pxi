# Export: copy a Col tree into one block of ArrowArray nodes and their buffers
# (export_size counts, export_fill copies). Relies on columns.pxi (anyvalue_finish)
# and block.pxi; called by run() in driver.pxi.

# ============================================================== export

cdef int export_size(Col* col, int64_t* nodes, int64_t* nbytes) noexcept nogil:
    """First pass: finish AnyValue columns; count nodes and the bytes of the block."""
    cdef Ctx tmp
    cdef int i
    if col.flags & F_ANYVALUE:
        memset(&tmp, 0, sizeof(Ctx))
        anyvalue_finish(&tmp, col)
        if tmp.status:
            return tmp.status
    nodes[0] += 1
    nbytes[0] += node_meta(col)
    if col.null_count > 0:
        nbytes[0] += aligned(col.valid.len)
    if col.kind != C_STRUCT:
        nbytes[0] += aligned(col.vals.len)
    if col.kind == C_BIN:
        nbytes[0] += aligned(col.data.len)
    for i in range(col.n_children):
        if export_size(&col.children[i], nodes, nbytes):
            return ST_NOMEM
    return ST_OK


cdef inline const void* put(Buf* b, uint8_t** cur) noexcept nogil:
    """Copy a buffer to the block at *cur (the shared zero buffer if empty)."""
    cdef uint8_t* q = cur[0]
    if b.len == 0:
        return <const void*>ZERO_BUF
    memcpy(q, b.p, <size_t>b.len)
    cur[0] = q + aligned(b.len)
    return <const void*>q


cdef void export_fill(Col* col, ArrowArray* a, uint8_t** cur, Block* block) noexcept nogil:
    """Second pass: fill node `a` from col, with everything placed in the block at *cur
    (export_size counted exactly these bytes)."""
    cdef int i
    cdef const void** bufs = <const void**>node_start(a, col.kind, col.n_children, col.length,
                                                      col.null_count, cur, block)
    # Validity bitmap only where the column has nulls (null_count 0 -> NULL).
    bufs[0] = put(&col.valid, cur) if col.null_count > 0 else NULL
    if col.kind != C_STRUCT:
        bufs[1] = put(&col.vals, cur)  # values, bits or int32 offsets ([0] if empty)
    if col.kind == C_BIN:
        bufs[2] = put(&col.data, cur)
    for i in range(col.n_children):
        export_fill(&col.children[i], a.children[i], cur, block)


cdef int export_tree(Col* root, ArrowArray* a, int64_t* size) noexcept nogil:
    """Copy the batch in `root` into one block owned by the zeroed node `a`; *size
    is set to the block's bytes. The tree keeps its buffers (for reuse); on failure
    `a` is left untouched."""
    cdef int64_t nodes = 0
    cdef int64_t nbytes = aligned(sizeof(Block))
    cdef Block* block
    cdef uint8_t* cur
    if export_size(root, &nodes, &nbytes):
        return ST_NOMEM
    block = block_new(&nbytes, nodes, 0)
    if block == NULL:
        return ST_NOMEM
    size[0] = nbytes
    cur = <uint8_t*>block + aligned(sizeof(Block))
    export_fill(root, a, &cur, block)
    return ST_OK
