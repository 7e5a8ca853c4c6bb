# Metrics: Metric (its data oneof in three scans), the five data point types and exemplars
# -> columns 14..45, one row per data point; relies on common.pxi and columns.pxi.
# Every dec_* function is one loop over one message's fields: alike because that is the
# shape of a protobuf parser, apart because each reads other fields into other columns;
# the fields every point has go through one dec_common_field() and app_point_common().

# ---------------------------------------------------------------- metrics
# Metric columns (templates): 14 metric_name, 15 metric_description, 16 metric_unit,
# 17-19 metric_metadata(_types, _other), 20 metric_type, 21 aggregation_temporality,
# 22 is_monotonic. Point columns: 23-25 attributes(_types, _other), 26 start_time, 27 time,
# 28 flags, 29 value_double, 30 value_int, 31 count, 32 sum, 33 min, 34 max,
# 35 bucket_counts, 36 explicit_bounds, 37 scale, 38 zero_count, 39 zero_threshold,
# 40 positive_offset, 41 positive_bucket_counts, 42 negative_offset,
# 43 negative_bucket_counts, 44 quantile_values, 45 exemplars.

cdef enum:
    X_METRIC = 14      # metric_name: the metric's template columns X_METRIC..X_POINT-1
    X_METADATA = 17
    X_MTYPE = 20
    X_POINT = 23       # attributes: the first point column
    X_START = 26
    X_VDOUBLE = 29
    X_COUNT = 31
    X_SUM = 32         # sum, min, max
    X_BUCKETS = 35
    X_BOUNDS = 36
    X_SCALE = 37
    X_SIDE = 40        # positive_offset, positive_bucket_counts, negative_...
    X_QUANTILES = 44
    X_EXEMPLARS = 45

cdef struct PointCommon:
    uint64_t start
    uint64_t time
    uint32_t flags


cdef inline void app_nulls(Ctx* c, int lo, int hi) noexcept nogil:
    cdef int i
    for i in range(lo, hi):
        app_null(c, &c.O[i])


cdef inline void app_point_common(Ctx* c, PointCommon* pc) noexcept nogil:
    app_attrs_row(c, &c.O[X_POINT])
    app_w8(c, &c.O[X_START], pc.start)
    app_w8(c, &c.O[X_START + 1], pc.time)
    app_w4(c, &c.O[X_START + 2], pc.flags)


cdef int dec_exemplar(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* ex) noexcept nogil:
    """Exemplar -> struct<filtered_attributes(_types, _other), time, value_double, value_int,
    span_id, trace_id>."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t time = 0
    cdef uint64_t val = 0
    cdef int vkind = 0
    cdef const uint8_t* span = NULL
    cdef int64_t span_n = 0
    cdef const uint8_t* trace = NULL
    cdef int64_t trace_n = 0
    cdef Col* ch = ex.children
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x3A:
            if dec_attr(c, &p, end, depth, &ch[0]):
                return c.status
        elif tag == 0x11:
            if vf64(c, &p, end, &time):
                return c.status
        elif tag == 0x19 or tag == 0x31:  # as_double / as_int: a oneof, last wins
            if vf64(c, &p, end, &val):
                return c.status
            vkind = 1 if tag == 0x19 else 2
        elif tag == 0x22:
            if vlen(c, &p, end, &span, &span_n):
                return c.status
        elif tag == 0x2A:
            if vlen(c, &p, end, &trace, &trace_n):
                return c.status
        elif vfield(c, MT[M_EXEMPLAR], t0, &p, end, tag, depth):
            return c.status
    app_attrs_row(c, &ch[0])
    app_w8(c, &ch[3], time)
    app_opt_w8(c, &ch[4], vkind == 1, val)
    app_opt_w8(c, &ch[5], vkind == 2, val)
    app_bin(c, &ch[6], span, span_n)
    app_bin(c, &ch[7], trace, trace_n)
    app_struct(c, ex)
    return c.status


cdef inline int dec_common_field(Ctx* c, uint32_t tag, const uint8_t** pp, const uint8_t* end,
                                 int depth, PointCommon* pc, uint32_t attrs_tag) noexcept nogil:
    """Fields shared by all points: 1 if `tag` was one of them, 0 if not, <0 on error."""
    if tag == attrs_tag:
        return 1 if dec_attr(c, pp, end, depth, &c.O[X_POINT]) == 0 else -1
    if tag == 0x11:
        return 1 if vf64(c, pp, end, &pc.start) == 0 else -1
    if tag == 0x19:
        return 1 if vf64(c, pp, end, &pc.time) == 0 else -1
    return 0


cdef int dec_number_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t val = 0
    cdef int vkind = 0
    cdef int r
    memset(&pc, 0, sizeof(PointCommon))
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x3A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21 or tag == 0x31:
            if vf64(c, &p, end, &val):
                return c.status
            vkind = 1 if tag == 0x21 else 2
        elif tag == 0x2A:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1,
                                                           &c.O[X_EXEMPLARS].children[0]):
                return c.status
        elif tag == 0x40:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_NDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_opt_w8(c, &c.O[X_VDOUBLE], vkind == 1, val)
    app_opt_w8(c, &c.O[X_VDOUBLE + 1], vkind == 2, val)
    app_nulls(c, X_COUNT, X_EXEMPLARS)
    app_list(c, &c.O[X_EXEMPLARS])
    c.rows += 1
    return c.status


cdef int dec_histogram_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n, k
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t opt[3]      # sum, min, max
    cdef bint has[3]
    cdef int r, i
    cdef Col* bc = &c.O[X_BUCKETS].children[0]
    cdef Col* eb = &c.O[X_BOUNDS].children[0]
    memset(&pc, 0, sizeof(PointCommon))
    for i in range(3):
        opt[i] = 0
        has[i] = False
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x4A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21:
            if vf64(c, &p, end, &count):
                return c.status
        elif tag == 0x29 or tag == 0x59 or tag == 0x61:
            i = 0 if tag == 0x29 else (1 if tag == 0x59 else 2)
            if vf64(c, &p, end, &opt[i]):
                return c.status
            has[i] = True
        elif tag == 0x31 or tag == 0x39:  # unpacked bucket_counts / explicit_bounds
            if vf64(c, &p, end, &v):
                return c.status
            app_w8(c, bc if tag == 0x31 else eb, v)
        elif tag == 0x32 or tag == 0x3A:  # packed
            if vlen(c, &p, end, &s, &n):
                return c.status
            if n % 8:
                return v_fail(c, s, "packed fixed64 length is not a multiple of 8")
            for k in range(0, n, 8):  # bounds: k + 8 <= n since n % 8 == 0
                memcpy(&v, s + k, 8)
                app_w8(c, bc if tag == 0x32 else eb, v)
        elif tag == 0x42:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1,
                                                           &c.O[X_EXEMPLARS].children[0]):
                return c.status
        elif tag == 0x50:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_HDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, X_VDOUBLE, X_COUNT)
    app_w8(c, &c.O[X_COUNT], count)
    for i in range(3):
        app_opt_w8(c, &c.O[X_SUM + i], has[i], opt[i])
    app_list(c, &c.O[X_BUCKETS])
    app_list(c, &c.O[X_BOUNDS])
    app_nulls(c, X_SCALE, X_EXEMPLARS)
    app_list(c, &c.O[X_EXEMPLARS])
    c.rows += 1
    return c.status


cdef int dec_buckets(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* counts,
                     int32_t* offset) noexcept nogil:
    """ExponentialHistogramDataPoint.Buckets payload (merged into *offset / counts)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint32_t u
    cdef const uint8_t* s
    cdef const uint8_t* se
    cdef int64_t n
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x08:  # offset: sint32 = zigzag of the low 32 bits
            if vvar(c, &p, end, &v):
                return c.status
            u = <uint32_t>v
            offset[0] = <int32_t>((u >> 1) ^ (0 - (u & 1)))
        elif tag == 0x10:
            if vvar(c, &p, end, &v):
                return c.status
            app_w8(c, counts, v)
        elif tag == 0x12:  # packed uint64 varints
            if vlen(c, &p, end, &s, &n):
                return c.status
            se = s + n
            while s < se:  # bounds: each varint must end inside the payload
                if rd_varint(&s, se, &v):
                    return v_fail(c, s, "malformed packed varint")
                app_w8(c, counts, v)
        elif vfield(c, MT[M_BUCKETS], t0, &p, end, tag, depth):
            return c.status
    return c.status


cdef int dec_exponential_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint32_t u
    cdef const uint8_t* s
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t zero_count = 0
    cdef uint64_t zero_threshold = 0
    cdef int32_t scale = 0
    cdef uint64_t opt[3]      # sum, min, max
    cdef bint has[3]
    cdef bint has_side[2]     # positive, negative
    cdef int32_t side_offset[2]
    cdef int r, i
    memset(&pc, 0, sizeof(PointCommon))
    for i in range(3):
        opt[i] = 0
        has[i] = False
    for i in range(2):
        has_side[i] = False
        side_offset[i] = 0
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x0A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21 or tag == 0x39 or tag == 0x71:
            if vf64(c, &p, end, &v):
                return c.status
            if tag == 0x21:
                count = v
            elif tag == 0x39:
                zero_count = v
            else:
                zero_threshold = v
        elif tag == 0x29 or tag == 0x61 or tag == 0x69:
            i = 0 if tag == 0x29 else (1 if tag == 0x61 else 2)
            if vf64(c, &p, end, &opt[i]):
                return c.status
            has[i] = True
        elif tag == 0x30:
            if vvar(c, &p, end, &v):
                return c.status
            u = <uint32_t>v
            scale = <int32_t>((u >> 1) ^ (0 - (u & 1)))
        elif tag == 0x42 or tag == 0x4A:
            if vlen(c, &p, end, &s, &n):
                return c.status
            i = 0 if tag == 0x42 else 1
            has_side[i] = True
            if dec_buckets(c, s, s + n, depth + 1, &c.O[X_SIDE + 1 + 2 * i].children[0],
                           &side_offset[i]):
                return c.status
        elif tag == 0x50:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif tag == 0x5A:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1,
                                                           &c.O[X_EXEMPLARS].children[0]):
                return c.status
        elif vfield(c, MT[M_EHDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, X_VDOUBLE, X_COUNT)
    app_w8(c, &c.O[X_COUNT], count)
    for i in range(3):
        app_opt_w8(c, &c.O[X_SUM + i], has[i], opt[i])
    app_nulls(c, X_BUCKETS, X_SCALE)
    app_w4(c, &c.O[X_SCALE], <uint32_t>scale)
    app_w8(c, &c.O[X_SCALE + 1], zero_count)
    app_w8(c, &c.O[X_SCALE + 2], zero_threshold)
    for i in range(2):
        if has_side[i]:
            app_w4(c, &c.O[X_SIDE + 2 * i], <uint32_t>side_offset[i])
            app_list(c, &c.O[X_SIDE + 1 + 2 * i])
        else:
            app_null(c, &c.O[X_SIDE + 2 * i])
            app_null(c, &c.O[X_SIDE + 1 + 2 * i])
    app_null(c, &c.O[X_QUANTILES])
    app_list(c, &c.O[X_EXEMPLARS])
    c.rows += 1
    return c.status


cdef int dec_summary_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef const uint8_t* qe
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t total = 0
    cdef uint64_t qv[2]
    cdef int r
    cdef Col* vq = &c.O[X_QUANTILES].children[0]
    memset(&pc, 0, sizeof(PointCommon))
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x3A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21:
            if vf64(c, &p, end, &count):
                return c.status
        elif tag == 0x29:
            if vf64(c, &p, end, &total):
                return c.status
        elif tag == 0x32:  # ValueAtQuantile {1: quantile, 2: value}
            if vlen(c, &p, end, &s, &n):
                return c.status
            qv[0] = 0
            qv[1] = 0
            q = s
            qe = s + n
            while q < qe:
                t0 = q
                if vtag(c, &q, qe, &tag):
                    return c.status
                if tag == 0x09 or tag == 0x11:
                    if vf64(c, &q, qe, &qv[(tag >> 3) - 1]):
                        return c.status
                elif vfield(c, MT[M_VAQ], t0, &q, qe, tag, depth + 1):
                    return c.status
            app_w8(c, &vq.children[0], qv[0])
            app_w8(c, &vq.children[1], qv[1])
            app_struct(c, vq)
        elif tag == 0x40:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_SDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, X_VDOUBLE, X_COUNT)
    app_w8(c, &c.O[X_COUNT], count)
    app_w8(c, &c.O[X_SUM], total)
    app_nulls(c, X_SUM + 1, X_QUANTILES)
    app_list(c, &c.O[X_QUANTILES])
    app_null(c, &c.O[X_EXEMPLARS])
    c.rows += 1
    return c.status


cdef inline bint is_data_member(uint32_t fn) noexcept nogil:
    return fn == 5 or fn == 7 or fn == 9 or fn == 10 or fn == 11


cdef int data_msg_type(uint32_t member) noexcept nogil:
    if member == 5:
        return MT[M_GAUGE]
    if member == 7:
        return MT[M_SUM]
    if member == 9:
        return MT[M_HISTOGRAM]
    if member == 10:
        return MT[M_EXPHIST]
    return MT[M_SUMMARY]


cdef const char* metric_type_name(uint32_t member) noexcept nogil:
    if member == 5:
        return "gauge"
    if member == 7:
        return "sum"
    if member == 9:
        return "histogram"
    if member == 10:
        return "exponential_histogram"
    return "summary"


cdef int dec_metric(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One Metric -> one row per data point (head columns 14..22 replicated)."""
    cdef const uint8_t* t0
    cdef uint32_t tag, fn
    cdef uint64_t v
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef const uint8_t* qe
    cdef const uint8_t* pt
    cdef int64_t n
    cdef const uint8_t* f[4]      # name, description, unit by field number 1..3
    cdef int64_t fl[4]
    cdef uint32_t member = 0      # Metric.data oneof: field number of the last member
    cdef const uint8_t* data_start = NULL
    cdef int32_t temporality = 0
    cdef bint monotonic = False
    cdef int64_t rows0
    cdef const char* tname
    cdef int i, r, dmt
    for i in range(X_METRIC, X_POINT):
        col_reset(&c.T[i])
    for i in range(4):
        f[i] = NULL
        fl[i] = 0
    # Scan 1: the metric's own fields (validated), and where the final oneof
    # member starts (another member clears the previous one; the same merges).
    q = p
    while q < end:
        t0 = q
        if vtag(c, &q, end, &tag):
            return c.status
        fn = tag >> 3
        if tag == 0x0A or tag == 0x12 or tag == 0x1A:
            if vstr(c, &q, end, &f[fn], &fl[fn]):
                return c.status
        elif tag == 0x62:
            if dec_attr(c, &q, end, depth, &c.T[X_METADATA]):
                return c.status
        elif (tag & 7) == 2 and is_data_member(fn):
            if member != fn:
                member = fn
                data_start = t0
            if vlen(c, &q, end, &s, &n):  # payload validated below
                return c.status
        elif vfield(c, MT[M_METRIC], t0, &q, end, tag, depth):
            return c.status
    if member == 0:
        return c.status  # no data: no row
    # Scan 2: validate the members that were replaced (they precede data_start).
    q = p
    while q < data_start:
        t0 = q
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        fn = tag >> 3
        if (tag & 7) == 2 and is_data_member(fn):
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if validate(c, data_msg_type(fn), s, s + n, depth + 1):
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    # Scan 3: the final member's segments, merged: points in order, last scalars win.
    rows0 = c.rows
    dmt = data_msg_type(member)
    q = data_start
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag != ((member << 3) | 2):
            if skip_field(&q, end, tag, 0):  # validated in scan 1
                return d_fail(c, q)
            continue
        if rd_len(&q, end, &s, &n):
            return d_fail(c, q)
        qe = s + n
        while s < qe:
            t0 = s
            if vtag(c, &s, qe, &tag):
                return c.status
            if tag == 0x0A:
                if vlen(c, &s, qe, &pt, &n):
                    return c.status
                if member == 5 or member == 7:
                    r = dec_number_point(c, pt, pt + n, depth + 2)
                elif member == 9:
                    r = dec_histogram_point(c, pt, pt + n, depth + 2)
                elif member == 10:
                    r = dec_exponential_point(c, pt, pt + n, depth + 2)
                else:
                    r = dec_summary_point(c, pt, pt + n, depth + 2)
                if r:
                    return c.status
            elif tag == 0x10 and (member == 7 or member == 9 or member == 10):
                if vvar(c, &s, qe, &v):
                    return c.status
                temporality = <int32_t>v
            elif tag == 0x18 and member == 7:
                if vvar(c, &s, qe, &v):
                    return c.status
                monotonic = v != 0
            elif vfield(c, dmt, t0, &s, qe, tag, depth + 1):
                return c.status
    for i in range(3):
        app_bin(c, &c.T[X_METRIC + i], f[i + 1], fl[i + 1])
    app_attrs_row(c, &c.T[X_METADATA])
    tname = metric_type_name(member)
    app_bin(c, &c.T[X_MTYPE], <const uint8_t*>tname, <int64_t>strlen(tname))
    if member == 7 or member == 9 or member == 10:
        app_w4(c, &c.T[X_MTYPE + 1], <uint32_t>temporality)
        if c.rows > rows0:  # what the temporality conversion needs to know (Chunk.temporalities)
            c.temporalities |= (1u << temporality) if 0 < temporality < 3 else 1u
    else:
        app_null(c, &c.T[X_MTYPE + 1])
    if member == 7:
        app_bool(c, &c.T[X_MTYPE + 2], monotonic)
    else:
        app_null(c, &c.T[X_MTYPE + 2])
    replicate(c, X_METRIC, X_POINT, c.rows - rows0)
    return c.status
