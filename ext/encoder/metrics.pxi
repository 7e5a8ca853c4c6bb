# Metric (its data message and the five data point types, exemplars) from the rows of
# the metrics columns, and the metric group of a row. Relies on wire.pxi, columns.pxi,
# common.pxi and traces.pxi (w_bytes_of); used by groups.pxi.

# the metrics data columns (DATA_COLUMNS["metrics"], checked at import)
cdef enum:
    M_NAME = 0
    M_DESCRIPTION = 1
    M_UNIT = 2
    M_METADATA = 3
    M_TYPE = 6
    M_TEMPORALITY = 7
    M_MONOTONIC = 8
    M_ATTRIBUTES = 9
    M_START_TIME = 12
    M_TIME = 13
    M_FLAGS = 14
    M_VALUE_DOUBLE = 15
    M_VALUE_INT = 16
    M_COUNT = 17
    M_SUM = 18
    M_MIN = 19
    M_MAX = 20
    M_BUCKET_COUNTS = 21
    M_EXPLICIT_BOUNDS = 22
    M_SCALE = 23
    M_ZERO_COUNT = 24
    M_ZERO_THRESHOLD = 25
    M_POSITIVE_OFFSET = 26
    M_POSITIVE_COUNTS = 27
    M_NEGATIVE_OFFSET = 28
    M_NEGATIVE_COUNTS = 29
    M_QUANTILES = 30
    M_EXEMPLARS = 31
cdef enum:
    X_ATTRIBUTES = 0
    X_TIME = 3
    X_VALUE_DOUBLE = 4
    X_VALUE_INT = 5
    X_SPAN_ID = 6
    X_TRACE_ID = 7
# metric types (the order of otlpd.schema._METRIC_TYPES) and their Metric field numbers
cdef enum:
    GAUGE = 1
    SUM = 2
    HISTOGRAM = 3
    EXPONENTIAL_HISTOGRAM = 4
    SUMMARY = 5


cdef inline uint32_t data_field(int kind) noexcept nogil:
    """The Metric field of the data message of metric type `kind`."""
    return 5 if kind == GAUGE else 7 if kind == SUM else 9 if kind == HISTOGRAM else 10 if kind == EXPONENTIAL_HISTOGRAM else 11


cdef int metric_kind(const Col* c, int64_t i) except -1 nogil:
    """The metric type of row `i`, 1 gauge ... 5 summary; ValueError for any other."""
    cdef const uint8_t* p
    cdef int64_t n
    if col_bytes(&c[M_TYPE], i, &p, &n):
        if n == 5 and memcmp(p, b"gauge", 5) == 0:
            return GAUGE
        if n == 3 and memcmp(p, b"sum", 3) == 0:
            return SUM
        if n == 9 and memcmp(p, b"histogram", 9) == 0:
            return HISTOGRAM
        if n == 21 and memcmp(p, b"exponential_histogram", 21) == 0:
            return EXPONENTIAL_HISTOGRAM
        if n == 7 and memcmp(p, b"summary", 7) == 0:
            return SUMMARY
    return fail(b"unknown metric_type")


cdef int64_t metric_group(Enc* e, int64_t scope, int64_t i) except -1 nogil:
    """The metric group of row `i` within its scope group: rows with equal metric columns
    (metric_name ... is_monotonic) are one Metric, as to_request groups them."""
    cdef Buf* key = &e.key
    cdef const Col* c = e.cols
    cdef int kind = metric_kind(c, i)
    cdef int32_t temporality
    cdef int monotonic
    cdef int64_t id_, extra = 0
    key.len = 0
    w_raw(key, b"\0\0\0\0\0\0\0", 7)
    key.data[0] = (col_null(&c[M_NAME], i) | col_null(&c[M_DESCRIPTION], i) << 1
                   | col_null(&c[M_UNIT], i) << 2 | attributes_null(&c[M_METADATA], i) << 3
                   | (1 - col_fixed(&c[M_TEMPORALITY], i, &temporality)) << 4
                   | (1 - col_bool(&c[M_MONOTONIC], i, &monotonic)) << 5)
    key.data[1] = <uint8_t>kind
    memcpy(key.data + 2, &temporality, 4)
    key.data[6] = <uint8_t>monotonic
    w_metric_fields(key, &e.scratch, c, i)
    id_ = intern(&e.metrics, scope, key.data, <int64_t>key.len, i)
    if kind == SUM or kind == HISTOGRAM or kind == EXPONENTIAL_HISTOGRAM:
        if temporality:
            extra += 1 + varint_size(<uint64_t><int64_t>temporality)
    if kind == SUM and monotonic:
        extra += 2
    e.metrics.size[id_] = <int64_t>key.len - 7
    e.metrics.extra[id_] = extra
    e.metrics.kind[id_] = kind
    return id_


cdef int w_metric_fields(Buf* b, Scratch* s, const Col* c, int64_t i) except -1 nogil:
    """A Metric's own fields but its data: name, description, unit, metadata."""
    w_bytes_of(b, 1, &c[M_NAME], i)
    w_bytes_of(b, 2, &c[M_DESCRIPTION], i)
    w_bytes_of(b, 3, &c[M_UNIT], i)
    return w_attributes(b, s, 12, &c[M_METADATA], i)


cdef int w_metric(Enc* e, Buf* b, int64_t m) except -1 nogil:
    """Field 2 of a ScopeMetrics: metric group `m` with the range's rows as its data points,
    in field number order (name, description, unit, the data, metadata)."""
    cdef const Col* c = e.cols
    cdef int64_t rep = e.metrics.rep[m]
    cdef int kind = <int>e.metrics.kind[m]
    cdef int monotonic
    cdef int64_t i = e.metric_first[m]
    cdef size_t mark = begin(b, 2)
    cdef size_t data, point
    w_bytes_of(b, 1, &c[M_NAME], rep)
    w_bytes_of(b, 2, &c[M_DESCRIPTION], rep)
    w_bytes_of(b, 3, &c[M_UNIT], rep)
    data = begin(b, data_field(kind))
    while i != -1:
        point = begin(b, 1)
        w_point(e, b, kind, i)
        end(b, point)
        i = e.row_next[i]
    if kind == SUM or kind == HISTOGRAM or kind == EXPONENTIAL_HISTOGRAM:
        w_int32(b, 2, col_i32(&c[M_TEMPORALITY], rep))
    if kind == SUM:
        col_bool(&c[M_MONOTONIC], rep, &monotonic)
        if monotonic:
            w_tag(b, 3, 0)
            w_varint(b, 1)
    end(b, data)
    w_attributes(b, &e.scratch, 12, &c[M_METADATA], rep)
    return end(b, mark)


cdef int w_optional_double(Buf* b, uint32_t field, const Col* c, int64_t i) except -1 nogil:
    """A double with presence (optional, oneof) from a nullable column: null is not set."""
    cdef double v
    if col_fixed(c, i, &v):
        w_double(b, field, v)
    return 0


cdef int w_as_double(Buf* b, uint32_t field, const Col* doubles, const Col* ints, int64_t i) except -1 nogil:
    """The as_double member of an as_double/as_int oneof; not when as_int is set too (the
    constructor keeps the last one, as_int)."""
    if col_null(ints, i):
        w_optional_double(b, field, doubles, i)
    return 0


cdef int w_as_int(Buf* b, uint32_t field, const Col* ints, int64_t i) except -1 nogil:
    """The as_int (sfixed64) member of an as_double/as_int oneof."""
    cdef int64_t integer
    if col_fixed(ints, i, &integer):
        w_tag(b, field, 1)
        w_fixed64_raw(b, <uint64_t>integer)
    return 0


cdef int w_packed_fixed64(Buf* b, uint32_t field, const Col* c, int64_t i) except -1 nogil:
    """Row `i` of a list<uint64> or list<float64> as a packed repeated fixed64/double field."""
    cdef int64_t start, stop, k, first
    cdef uint64_t v
    cdef const Col* items = c.child
    col_range(c, i, &start, &stop)
    if stop == start:
        return 0
    w_tag(b, field, 2)
    w_varint(b, <uint64_t>((stop - start) * 8))
    first = items.offset + start
    if items.valid == NULL and (items.offset + stop) * 8 <= items.data_size:
        # bounds: the whole run of values inside the data buffer, no nulls among them
        return w_raw(b, items.data + first * 8, <size_t>((stop - start) * 8))
    for k in range(start, stop):
        col_fixed(items, k, &v)
        w_fixed64_raw(b, v)
    return 0


cdef int w_buckets(Buf* b, uint32_t field, const Col* offsets, const Col* counts, int64_t i) except -1 nogil:
    """The positive or negative Buckets of an exponential histogram: absent iff the offset is null."""
    cdef int32_t offset
    cdef int64_t start, stop, k, size = 0
    cdef uint64_t v
    cdef size_t mark
    if not col_fixed(offsets, i, &offset):
        return 0
    mark = begin(b, field)
    w_sint32(b, 1, offset)
    col_range(counts, i, &start, &stop)
    for k in range(start, stop):
        col_fixed(counts.child, k, &v)
        size += varint_size(v)
    if stop > start:
        w_tag(b, 2, 2)
        w_varint(b, <uint64_t>size)
        for k in range(start, stop):
            col_fixed(counts.child, k, &v)
            w_varint(b, v)
    return end(b, mark)


cdef int w_exemplars(Buf* b, Scratch* s, uint32_t field, const Col* c, int64_t i) except -1 nogil:
    cdef int64_t start, stop, k
    cdef const Col* x = c.child
    cdef size_t mark
    col_range(c, i, &start, &stop)
    for k in range(start, stop):
        if col_null(x, k):
            fail(b"exemplars: a null exemplar")
        mark = begin(b, field)
        w_fixed64(b, 2, <uint64_t>col_i64(&x.child[X_TIME], k))
        w_as_double(b, 3, &x.child[X_VALUE_DOUBLE], &x.child[X_VALUE_INT], k)
        w_bytes_of(b, 4, &x.child[X_SPAN_ID], k)
        w_bytes_of(b, 5, &x.child[X_TRACE_ID], k)
        w_as_int(b, 6, &x.child[X_VALUE_INT], k)
        w_attributes(b, s, 7, &x.child[X_ATTRIBUTES], k)
        end(b, mark)
    return 0


cdef int w_point(Enc* e, Buf* b, int kind, int64_t i) except -1 nogil:
    """The fields of the data point of row `i`, of metric type `kind`, in field number order."""
    cdef const Col* c = e.cols
    cdef Scratch* s = &e.scratch
    cdef int64_t start, stop, k
    cdef double v
    cdef size_t mark
    cdef const Col* quantiles
    if kind == EXPONENTIAL_HISTOGRAM:
        w_attributes(b, s, 1, &c[M_ATTRIBUTES], i)
    w_fixed64(b, 2, <uint64_t>col_i64(&c[M_START_TIME], i))
    w_fixed64(b, 3, <uint64_t>col_i64(&c[M_TIME], i))
    if kind == GAUGE or kind == SUM:
        w_as_double(b, 4, &c[M_VALUE_DOUBLE], &c[M_VALUE_INT], i)
        w_exemplars(b, s, 5, &c[M_EXEMPLARS], i)
        w_as_int(b, 6, &c[M_VALUE_INT], i)
        w_attributes(b, s, 7, &c[M_ATTRIBUTES], i)
        return w_uint(b, 8, col_u32(&c[M_FLAGS], i))
    w_fixed64(b, 4, <uint64_t>col_i64(&c[M_COUNT], i))
    if kind == SUMMARY:
        col_fixed(&c[M_SUM], i, &v)
        w_double3(b, 5, v)
        col_range(&c[M_QUANTILES], i, &start, &stop)
        quantiles = c[M_QUANTILES].child
        for k in range(start, stop):
            if col_null(quantiles, k):
                fail(b"quantile_values: a null entry")
            mark = begin(b, 6)
            col_fixed(&quantiles.child[0], k, &v)
            w_double3(b, 1, v)
            col_fixed(&quantiles.child[1], k, &v)
            w_double3(b, 2, v)
            end(b, mark)
        w_attributes(b, s, 7, &c[M_ATTRIBUTES], i)
        return w_uint(b, 8, col_u32(&c[M_FLAGS], i))
    w_optional_double(b, 5, &c[M_SUM], i)
    if kind == HISTOGRAM:
        w_packed_fixed64(b, 6, &c[M_BUCKET_COUNTS], i)
        w_packed_fixed64(b, 7, &c[M_EXPLICIT_BOUNDS], i)
        w_exemplars(b, s, 8, &c[M_EXEMPLARS], i)
        w_attributes(b, s, 9, &c[M_ATTRIBUTES], i)
        w_uint(b, 10, col_u32(&c[M_FLAGS], i))
        w_optional_double(b, 11, &c[M_MIN], i)
        return w_optional_double(b, 12, &c[M_MAX], i)
    w_sint32(b, 6, col_i32(&c[M_SCALE], i))
    w_fixed64(b, 7, <uint64_t>col_i64(&c[M_ZERO_COUNT], i))
    w_buckets(b, 8, &c[M_POSITIVE_OFFSET], &c[M_POSITIVE_COUNTS], i)
    w_buckets(b, 9, &c[M_NEGATIVE_OFFSET], &c[M_NEGATIVE_COUNTS], i)
    w_uint(b, 10, col_u32(&c[M_FLAGS], i))
    w_exemplars(b, s, 11, &c[M_EXEMPLARS], i)
    w_optional_double(b, 12, &c[M_MIN], i)
    w_optional_double(b, 13, &c[M_MAX], i)
    col_fixed(&c[M_ZERO_THRESHOLD], i, &v)
    return w_double3(b, 14, v)
