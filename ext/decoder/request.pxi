# Request structure, the same for every signal: request, resource groups, scope groups.
# Both groups are {1: head, 2: children, 3: schema_url}: one first scan, dec_group_head();
# each keeps its short second scan (apart, the C compiler inlines the record decoders;
# one recursive group function cost up to 0.7 % more instructions a row).
# Relies on common.pxi, traces/logs/metrics.pxi and sources.pxi (replicate_group).

# ---------------------------------------------------------------- request structure

cdef enum:
    # The two levels of groups, both {1: head, 2: children, 3: schema_url}:
    G_RESOURCE = 0   # ResourceSpans/Metrics/Logs: {1: resource, 2: scope groups, 3: schema_url}
    G_SCOPE = 1      # ScopeSpans/Metrics/Logs: {1: scope, 2: records, 3: schema_url}


cdef int dec_group_head(Ctx* c, int sig, int level, const uint8_t* p, const uint8_t* end,
                        int depth) noexcept nogil:
    """Scan 1 of a resource or scope group (`level`) of signal `sig`: the head
    (Resource / InstrumentationScope: every occurrence merges into the same template
    row), schema_url, and validation of everything except the children (validated
    when decoded in scan 2); then the head's template row is closed.

    Not 0 if scan 1 failed. After it the caller goes on to scan 2 even if an append
    failed (c.status says so; nothing more is written)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef int64_t n
    cdef ResState rs
    cdef ScopeState ss
    cdef const uint8_t* url = NULL
    cdef int64_t url_n = 0
    cdef int lo = 0 if level == G_RESOURCE else 7   # the head's template columns lo..lo+6
    cdef int mt = MT[(M_RGROUP if level == G_RESOURCE else M_SGROUP) + sig]
    cdef int i, r
    memset(&rs, 0, sizeof(ResState))
    memset(&ss, 0, sizeof(ScopeState))
    for i in range(lo, lo + 7):
        col_reset(&c.T[i])
    q = p
    while q < end:
        t0 = q
        if vtag(c, &q, end, &tag):
            return c.status
        if tag == 0x0A:
            if vlen(c, &q, end, &s, &n):
                return c.status
            if level == G_RESOURCE:
                r = dec_resource(c, s, s + n, depth + 1, &rs)
            else:
                r = dec_scope(c, s, s + n, depth + 1, &ss)
            if r:
                return c.status
        elif tag == 0x1A:
            if vstr(c, &q, end, &url, &url_n):
                return c.status
        elif tag == 0x12:
            if vlen(c, &q, end, &s, &n):
                return c.status
        elif vfield(c, mt, t0, &q, end, tag, depth):
            return c.status
    if level == G_RESOURCE:
        app_resource_row(c, &rs, url, url_n)
    else:
        app_scope_row(c, &ss, url, url_n)
    return ST_OK


cdef int dec_scope_group(Ctx* c, int sig, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """ScopeSpans/ScopeMetrics/ScopeLogs: {1: scope, 2: records, 3: schema_url}."""
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef int64_t n
    cdef int64_t rows0
    cdef int r
    if dec_group_head(c, sig, G_SCOPE, p, end, depth):
        return c.status
    # Scan 2: the records.
    rows0 = c.rows
    q = p
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag == 0x12:
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if sig == 0:
                r = dec_span(c, s, s + n, depth + 1)
            elif sig == 1:
                r = dec_metric(c, s, s + n, depth + 1)
            else:
                r = dec_log(c, s, s + n, depth + 1)
            if r:
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    replicate_group(c, c.rows - rows0)
    return c.status


cdef int dec_resource_group(Ctx* c, int sig, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """ResourceSpans/ResourceMetrics/ResourceLogs: {1: resource, 2: scopes, 3: schema_url}."""
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef int64_t n
    if dec_group_head(c, sig, G_RESOURCE, p, end, depth):
        return c.status
    # Scan 2: the scope groups.
    q = p
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag == 0x12:
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if dec_scope_group(c, sig, s, s + n, depth + 1):
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    return c.status


cdef int dec_request(Ctx* c, int sig, const uint8_t* p, const uint8_t* end) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef int64_t n
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:
            if vlen(c, &p, end, &s, &n) or dec_resource_group(c, sig, s, s + n, 1):
                return c.status
        elif vfield(c, MT[M_REQ + sig], t0, &p, end, tag, 0):
            return c.status
    return c.status
