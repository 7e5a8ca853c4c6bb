# Metrics: not native yet (otlpd._encoder.NATIVE). Relies on common.pxi; used by groups.pxi.

cdef int64_t metric_group(Enc* e, int64_t scope, int64_t i) except -1 nogil:
    return fail(b"metrics are not encoded natively yet")


cdef int w_metric(Enc* e, Buf* b, int64_t m) except -1 nogil:
    return fail(b"metrics are not encoded natively yet")


cdef int w_point(Enc* e, Buf* b, int kind, int64_t i) except -1 nogil:
    return fail(b"metrics are not encoded natively yet")
