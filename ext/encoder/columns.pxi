# Columns: a pyarrow array as a tree of `Col` nodes (the addresses and sizes of its
# buffers), and the bounds-checked readers of its values. Relies on wire.pxi (nothing
# of it but the includes' order); used by every writer.
#
# Every reader takes a logical index of its node and checks, before touching a
# buffer: the index against the node's length; the validity bit's byte against the
# validity buffer's size; a value's bytes against the data buffer's size; both offsets
# against the offsets buffer's size, that they do not decrease and that the end is
# within the data buffer (strings, binary) or the child's length (lists, maps). The
# node's offset (a sliced array) is added first, so sliced arrays read their own rows.
# A failed check raises ValueError naming the column: garbled input never reads
# outside its buffers.

cdef enum ColKind:
    K_FIXED = 0     # fixed width values, `width` bytes each
    K_BOOL = 1      # bit-packed booleans
    K_BYTES = 2     # string or binary: int32 offsets into data
    K_LIST = 3      # list or map: int32 offsets into the one child
    K_STRUCT = 4    # children in the type's field order


ctypedef struct Col:
    int64_t offset
    int64_t length
    const uint8_t* valid      # NULL: no validity buffer, nothing is null
    int64_t valid_size
    const uint8_t* offsets    # int32 offsets (K_BYTES, K_LIST)
    int64_t offsets_size
    const uint8_t* data       # values (K_FIXED, K_BOOL, K_BYTES)
    int64_t data_size
    int kind
    int width
    int nchild
    Col* child                # the first of `nchild` consecutive nodes
    const char* name          # for error messages: the top-level column


cdef int col_fail(const Col* c, const char* what, int64_t i) except -1 nogil:
    with gil:
        raise ValueError(f"column {c.name.decode()!r}: {what.decode()} (at index {i})")


cdef inline int col_null(const Col* c, int64_t i) except -1 nogil:
    """1 if value `i` is null, else 0."""
    cdef int64_t j
    if i < 0 or i >= c.length:  # bounds: the node's own length
        col_fail(c, b"index beyond the array's length", i)
    if c.valid == NULL:
        return 0
    j = c.offset + i
    if (j >> 3) >= c.valid_size:  # bounds: the validity bitmap's size
        col_fail(c, b"validity bitmap too short", i)
    return 0 if (c.valid[j >> 3] >> (j & 7)) & 1 else 1


cdef inline int col_range(const Col* c, int64_t i, int64_t* start, int64_t* stop) except -1 nogil:
    """[start, stop) of value `i` of a string, binary, list or map: 1, or 0 (empty) if null."""
    cdef int64_t j
    cdef int32_t a, z
    if col_null(c, i):
        start[0] = 0
        stop[0] = 0
        return 0
    j = c.offset + i
    if j < 0 or (j + 2) * 4 > c.offsets_size:  # bounds: both offsets inside the offsets buffer
        col_fail(c, b"offsets buffer too short", i)
    memcpy(&a, c.offsets + j * 4, 4)
    memcpy(&z, c.offsets + j * 4 + 4, 4)
    if a < 0 or z < a:  # offsets never decrease
        col_fail(c, b"offsets out of order", i)
    if c.kind == K_BYTES:
        if z > c.data_size:  # bounds: the value's bytes inside the data buffer
            col_fail(c, b"value beyond the data buffer", i)
    elif z > c.child.length:  # bounds: the list's items inside its child
        col_fail(c, b"list beyond its values", i)
    start[0] = a
    stop[0] = z
    return 1


cdef inline int col_bytes(const Col* c, int64_t i, const uint8_t** p, int64_t* n) except -1 nogil:
    """The bytes of string/binary value `i` (empty if null): 1, or 0 if null."""
    cdef int64_t a, z
    cdef int present = col_range(c, i, &a, &z)
    p[0] = c.data + a
    n[0] = z - a
    return present


cdef inline int col_fixed(const Col* c, int64_t i, void* out) except -1 nogil:
    """Copy fixed-width value `i` into `out` (zeros if null): 1, or 0 if null."""
    cdef int64_t j
    if col_null(c, i):
        memset(out, 0, c.width)
        return 0
    j = c.offset + i
    if (j + 1) * c.width > c.data_size:  # bounds: the value inside the data buffer
        col_fail(c, b"data buffer too short", i)
    memcpy(out, c.data + j * c.width, c.width)
    return 1


cdef inline int col_bool(const Col* c, int64_t i, int* out) except -1 nogil:
    """Boolean value `i` (False if null): 1, or 0 if null."""
    cdef int64_t j
    out[0] = 0
    if col_null(c, i):
        return 0
    j = c.offset + i
    if (j >> 3) >= c.data_size:  # bounds: the bit inside the data buffer
        col_fail(c, b"data buffer too short", i)
    out[0] = (c.data[j >> 3] >> (j & 7)) & 1
    return 1


cdef inline int64_t col_i64(const Col* c, int64_t i) except? -1 nogil:
    cdef int64_t v
    col_fixed(c, i, &v)
    return v


cdef inline uint32_t col_u32(const Col* c, int64_t i) except? 0xFFFFFFFF nogil:
    cdef uint32_t v
    col_fixed(c, i, &v)
    return v


cdef inline int32_t col_i32(const Col* c, int64_t i) except? -1 nogil:
    cdef int32_t v
    col_fixed(c, i, &v)
    return v


# ------------------------------------------------------------------ building the trees

cdef int _node_count(object t) except -1:
    """How many Col nodes a value of Arrow type `t` needs."""
    if pa.types.is_struct(t):
        return 1 + sum(_node_count(t.field(k).type) for k in range(t.num_fields))
    if pa.types.is_map(t):
        return 2 + _node_count(t.key_type) + _node_count(t.item_type)
    if pa.types.is_list(t):
        return 1 + _node_count(t.value_type)
    return 1


cdef class Columns:
    """The Col trees of some pyarrow arrays, and the arrays, kept alive as long as the trees."""
    cdef Col* nodes
    cdef int used
    cdef int size
    cdef list arrays
    cdef list names

    def __cinit__(self):
        self.nodes = NULL
        self.arrays = []
        self.names = []

    def __dealloc__(self):
        free(self.nodes)

    cdef int build(self, list arrays, list names) except -1:
        """One tree per array, the roots first (`self.nodes[k]` is array k's root)."""
        cdef int k
        cdef int roots = len(arrays)
        self.size = roots + sum(_node_count(a.type) - 1 for a in arrays)
        self.nodes = <Col*>calloc(self.size if self.size else 1, sizeof(Col))
        if self.nodes == NULL:
            raise MemoryError()
        self.arrays = arrays
        self.names = [name.encode() for name in names]
        self.used = roots
        for k in range(roots):
            self._fill(arrays[k], &self.nodes[k], <const char*>self.names[k])
        return 0

    cdef int _fill(self, object array, Col* node, const char* name) except -1:
        cdef object t = array.type
        cdef list buffers = array.buffers()
        cdef int k
        node.offset = array.offset
        node.length = len(array)
        node.name = name
        _address(buffers[0], &node.valid, &node.valid_size)
        if pa.types.is_struct(t):
            node.kind = K_STRUCT
            node.nchild = t.num_fields
            node.child = self._children(node.nchild)
            for k in range(t.num_fields):
                self._fill(array.field(k), &node.child[k], name)
        elif pa.types.is_list(t) or pa.types.is_map(t):
            node.kind = K_LIST
            _address(buffers[1], &node.offsets, &node.offsets_size)
            node.nchild = 1
            node.child = self._children(1)
            self._fill(array.values, node.child, name)
        elif pa.types.is_string(t) or pa.types.is_binary(t):
            node.kind = K_BYTES
            _address(buffers[1], &node.offsets, &node.offsets_size)
            _address(buffers[2], &node.data, &node.data_size)
        elif pa.types.is_boolean(t):
            node.kind = K_BOOL
            _address(buffers[1], &node.data, &node.data_size)
        else:
            node.kind = K_FIXED
            node.width = t.bit_width // 8
            _address(buffers[1], &node.data, &node.data_size)
        return 0

    cdef Col* _children(self, int n) except NULL:
        cdef Col* first = &self.nodes[self.used]
        if self.used + n > self.size:
            raise AssertionError("column tree larger than counted")
        self.used += n
        return first


cdef int _address(object buffer, const uint8_t** pointer, int64_t* size) except -1:
    if buffer is None:
        pointer[0] = NULL
        size[0] = 0
    else:
        pointer[0] = <const uint8_t*><uintptr_t>buffer.address
        size[0] = buffer.size
    return 0
