# LogRecord from a row of the logs columns.
# Relies on wire.pxi, columns.pxi, common.pxi and traces.pxi (w_bytes_of); used by groups.pxi.

# the logs data columns (DATA_COLUMNS["logs"], checked at import)
cdef enum:
    L_TIME = 0
    L_OBSERVED_TIME = 1
    L_SEVERITY_NUMBER = 2
    L_SEVERITY_TEXT = 3
    L_BODY = 4
    L_BODY_OTHER = 5
    L_ATTRIBUTES = 6
    L_DROPPED_ATTRIBUTES = 9
    L_FLAGS = 10
    L_TRACE_ID = 11
    L_SPAN_ID = 12
    L_EVENT_NAME = 13


cdef int w_log(Buf* b, Scratch* s, const Col* c, int64_t i) except -1 nogil:
    """The fields of the LogRecord of row `i`, in field number order. The body: a string
    from `body`, else the AnyValue of `body_other`, else none (otlpd.attributes.from_lean)."""
    cdef const uint8_t* p
    cdef int64_t n
    cdef size_t mark
    w_fixed64(b, 1, <uint64_t>col_i64(&c[L_TIME], i))
    w_int32(b, 2, col_i32(&c[L_SEVERITY_NUMBER], i))
    w_bytes_of(b, 3, &c[L_SEVERITY_TEXT], i)
    if col_bytes(&c[L_BODY], i, &p, &n):
        mark = begin(b, 5)
        w_ld(b, 1, p, n)
        end(b, mark)
    else:
        w_anyvalue(b, 5, &c[L_BODY_OTHER], i)
    w_attributes(b, s, 6, &c[L_ATTRIBUTES], i)
    w_uint(b, 7, col_u32(&c[L_DROPPED_ATTRIBUTES], i))
    w_fixed32(b, 8, col_u32(&c[L_FLAGS], i))
    w_bytes_of(b, 9, &c[L_TRACE_ID], i)
    w_bytes_of(b, 10, &c[L_SPAN_ID], i)
    w_fixed64(b, 11, <uint64_t>col_i64(&c[L_OBSERVED_TIME], i))
    return w_bytes_of(b, 12, &c[L_EVENT_NAME], i)
