# LogRecord from a row of the logs columns: not native yet (otlpd._encoder.NATIVE).
# Relies on common.pxi; used by groups.pxi.

cdef int w_log(Buf* b, Scratch* s, const Col* c, int64_t i) except -1 nogil:
    return fail(b"logs are not encoded natively yet")
