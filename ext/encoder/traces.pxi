# Span (with its Events, Links and Status) from a row of the traces columns.
# Relies on wire.pxi, columns.pxi and common.pxi; used by groups.pxi (w_record).

# the traces data columns (DATA_COLUMNS["traces"], checked at import), and the fields of
# an event and a link
cdef enum:
    T_TRACE_ID = 0
    T_SPAN_ID = 1
    T_TRACE_STATE = 2
    T_PARENT_SPAN_ID = 3
    T_FLAGS = 4
    T_NAME = 5
    T_KIND = 6
    T_START_TIME = 7
    T_END_TIME = 8
    T_ATTRIBUTES = 9
    T_DROPPED_ATTRIBUTES = 12
    T_EVENTS = 13
    T_DROPPED_EVENTS = 14
    T_LINKS = 15
    T_DROPPED_LINKS = 16
    T_STATUS_CODE = 17
    T_STATUS_MESSAGE = 18
cdef enum:
    EVENT_TIME = 0
    EVENT_NAME = 1
    EVENT_ATTRIBUTES = 2
    EVENT_DROPPED = 5
cdef enum:
    LINK_TRACE_ID = 0
    LINK_SPAN_ID = 1
    LINK_TRACE_STATE = 2
    LINK_ATTRIBUTES = 3
    LINK_DROPPED = 6
    LINK_FLAGS = 7


cdef inline int w_bytes_of(Buf* b, uint32_t field, const Col* c, int64_t i) except -1 nogil:
    """A proto3 string/bytes field from value `i` of a string/binary column."""
    cdef const uint8_t* p
    cdef int64_t n
    col_bytes(c, i, &p, &n)
    return w_bytes(b, field, p, n)


cdef int w_span(Buf* b, Scratch* s, const Col* c, int64_t i) except -1 nogil:
    """The fields of the Span of row `i`, in field number order (as upb writes them)."""
    cdef int64_t start, stop, k
    cdef const Col* events = c[T_EVENTS].child
    cdef const Col* links = c[T_LINKS].child
    cdef size_t mark
    cdef int has_code, has_message
    cdef int32_t code
    w_bytes_of(b, 1, &c[T_TRACE_ID], i)
    w_bytes_of(b, 2, &c[T_SPAN_ID], i)
    w_bytes_of(b, 3, &c[T_TRACE_STATE], i)
    w_bytes_of(b, 4, &c[T_PARENT_SPAN_ID], i)
    w_bytes_of(b, 5, &c[T_NAME], i)
    w_int32(b, 6, col_i32(&c[T_KIND], i))
    w_fixed64(b, 7, <uint64_t>col_i64(&c[T_START_TIME], i))  # the int64 bits are the fixed64's
    w_fixed64(b, 8, <uint64_t>col_i64(&c[T_END_TIME], i))
    w_attributes(b, s, 9, &c[T_ATTRIBUTES], i)
    w_uint(b, 10, col_u32(&c[T_DROPPED_ATTRIBUTES], i))
    col_range(&c[T_EVENTS], i, &start, &stop)
    for k in range(start, stop):
        if col_null(events, k):
            fail(b"events: a null event")
        mark = begin(b, 11)
        w_fixed64(b, 1, <uint64_t>col_i64(&events.child[EVENT_TIME], k))
        w_bytes_of(b, 2, &events.child[EVENT_NAME], k)
        w_attributes(b, s, 3, &events.child[EVENT_ATTRIBUTES], k)
        w_uint(b, 4, col_u32(&events.child[EVENT_DROPPED], k))
        end(b, mark)
    w_uint(b, 12, col_u32(&c[T_DROPPED_EVENTS], i))
    col_range(&c[T_LINKS], i, &start, &stop)
    for k in range(start, stop):
        if col_null(links, k):
            fail(b"links: a null link")
        mark = begin(b, 13)
        w_bytes_of(b, 1, &links.child[LINK_TRACE_ID], k)
        w_bytes_of(b, 2, &links.child[LINK_SPAN_ID], k)
        w_bytes_of(b, 3, &links.child[LINK_TRACE_STATE], k)
        w_attributes(b, s, 4, &links.child[LINK_ATTRIBUTES], k)
        w_uint(b, 5, col_u32(&links.child[LINK_DROPPED], k))
        w_fixed32(b, 6, col_u32(&links.child[LINK_FLAGS], k))
        end(b, mark)
    w_uint(b, 14, col_u32(&c[T_DROPPED_LINKS], i))
    # a status message iff its code or its message is set (null columns: no status)
    has_code = not col_null(&c[T_STATUS_CODE], i)
    has_message = not col_null(&c[T_STATUS_MESSAGE], i)
    if has_code or has_message:
        mark = begin(b, 15)
        w_bytes_of(b, 2, &c[T_STATUS_MESSAGE], i)
        code = col_i32(&c[T_STATUS_CODE], i)
        w_int32(b, 3, code)
        end(b, mark)
    return w_fixed32(b, 16, col_u32(&c[T_FLAGS], i))
