# Decoding shared by every signal: message type ids (M_*, MT), AnyValue, KeyValue,
# EntityRef, Resource and InstrumentationScope (template columns 0..9); relies on
# validate.pxi, canonical.pxi and columns.pxi. Every dec_* function is one loop over one
# message's fields (read a tag, switch on it, vfield() the rest): alike because that is
# the shape of a protobuf parser, apart because each reads other fields into other columns.

# ============================================================== decoding
# One walk over the request that validates (see "validation") and appends to
# the columns. Every decoder gets its message's nesting depth (request = 0)
# for vfield()/validate(); unknown fields go through vfield().
#
# Column numbers are checked against the schemas at import (_LAYOUT).
# Common: 0 resource_attributes .. 9 scope_schema_url.
# ATTRS = list<struct<key, value: ANYVALUE, key_strindex>>;
# ANYVALUE = struct<type, str, bool, int, double, bytes>.

cdef enum:
    # Indices into MT (message type ids of the field tables), filled at import.
    M_REQ = 0          # + sig
    M_RGROUP = 3       # + sig: ResourceSpans / ResourceMetrics / ResourceLogs
    M_SGROUP = 6       # + sig: ScopeSpans / ScopeMetrics / ScopeLogs
    M_RESOURCE = 9
    M_SCOPE = 10
    M_KV = 11
    M_ANY = 12
    M_ARRAY = 13
    M_KVLIST = 14
    M_ENTITY = 15
    M_SPAN = 16
    M_EVENT = 17
    M_LINK = 18
    M_STATUS = 19
    M_LOG = 20
    M_METRIC = 21
    M_GAUGE = 22
    M_SUM = 23
    M_HISTOGRAM = 24
    M_EXPHIST = 25
    M_SUMMARY = 26
    M_NDP = 27
    M_HDP = 28
    M_EHDP = 29
    M_BUCKETS = 30
    M_SDP = 31
    M_VAQ = 32
    M_EXEMPLAR = 33
    M_COUNT = 34

cdef int MT[M_COUNT]

cdef struct AnyV:
    int type
    const uint8_t* s
    int64_t n
    uint64_t i        # int64 bits (int_value / string_value_strindex)
    uint64_t d        # double bits
    bint b

cdef struct KV:
    const uint8_t* key
    int64_t klen
    bint has_value
    AnyV v
    int32_t strindex


cdef int dec_any(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, AnyV* a) noexcept nogil:
    """Parse AnyValue bytes INTO `a` (so a repeated KeyValue.value merges)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef int t
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:  # string_value
            if vstr(c, &p, end, &s, &n):
                return c.status
            a.type = 1
            a.s = s
            a.n = n
        elif tag == 0x3A:  # bytes_value
            if vlen(c, &p, end, &s, &n):
                return c.status
            a.type = 7
            a.s = s
            a.n = n
        elif tag == 0x10 or tag == 0x18 or tag == 0x40:  # bool / int / strindex
            if vvar(c, &p, end, &v):
                return c.status
            if tag == 0x10:
                a.type = 2
                a.b = v != 0
            elif tag == 0x18:
                a.type = 3
                a.i = v
            else:
                a.type = 8
                a.i = <uint64_t><int64_t><int32_t>v
        elif tag == 0x21:  # double_value
            if vf64(c, &p, end, &v):
                return c.status
            a.type = 4
            a.d = v
        elif tag == 0x2A or tag == 0x32:  # array_value / kvlist_value
            if vlen(c, &p, end, &s, &n):
                return c.status
            t = 5 if tag == 0x2A else 6
            if depth >= MAX_DEPTH:
                return v_fail(c, t0, "messages nested more than 100 deep")
            if validate(c, MT[M_ARRAY] if t == 5 else MT[M_KVLIST], s, s + n, depth + 1):
                return c.status
            if a.type == t:
                # FALLBACK: protobuf merges the two messages; the reference
                # stores the re-serialization of the merge.
                c.fallback = "AnyValue array/kvlist value set twice (merged)"
                st_set(c, ST_FALLBACK)
                return ST_FALLBACK
            if not canonical(CN_ARRAY if t == 5 else CN_KVLIST, s, s + n):
                # FALLBACK: the reference stores upb's re-serialization, which
                # differs from these (valid but non-canonical) bytes.
                c.fallback = "non-canonical ArrayValue/KeyValueList bytes"
                st_set(c, ST_FALLBACK)
                return ST_FALLBACK
            a.type = t
            a.s = s
            a.n = n
        elif vfield(c, MT[M_ANY], t0, &p, end, tag, depth):
            return c.status
    return ST_OK


cdef void app_any(Ctx* c, Col* col, AnyV* a) noexcept nogil:
    """Append one ANYVALUE struct slot: `type`, and the member it selects (sparse)."""
    cdef Col* ch = col.children
    cdef int t = a.type
    cdef int64_t k = col.length
    app_u8(c, &ch[0], <uint8_t>t)
    if t == 1:
        col_pad(c, &ch[1], k)
        app_bin(c, &ch[1], a.s, a.n)
    elif t == 2:
        col_pad(c, &ch[2], k)
        app_bool(c, &ch[2], a.b)
    elif t == 3 or t == 8:
        col_pad(c, &ch[3], k)
        app_w8(c, &ch[3], a.i)
    elif t == 4:
        col_pad(c, &ch[4], k)
        app_w8(c, &ch[4], a.d)
    elif t == 5 or t == 6 or t == 7:
        col_pad(c, &ch[5], k)
        app_bin(c, &ch[5], a.s, a.n)
    app_struct(c, col)


cdef int dec_kv(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* attrs,
                KV* kv) noexcept nogil:
    """Decode one KeyValue and append it as a new element of list column `attrs`."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef Col* st = &attrs.children[0]
    memset(kv, 0, sizeof(KV))
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:
            if vstr(c, &p, end, &kv.key, &kv.klen):
                return c.status
        elif tag == 0x12:
            if vlen(c, &p, end, &s, &n):
                return c.status
            kv.has_value = True
            if dec_any(c, s, s + n, depth + 1, &kv.v):
                return c.status
        elif tag == 0x18:
            if vvar(c, &p, end, &v):
                return c.status
            kv.strindex = <int32_t>v
        elif vfield(c, MT[M_KV], t0, &p, end, tag, depth):
            return c.status
    app_bin(c, &st.children[0], kv.key, kv.klen)
    if kv.has_value:
        app_any(c, &st.children[1], &kv.v)
    else:
        app_null(c, &st.children[1])
    app_w4(c, &st.children[2], <uint32_t>kv.strindex)
    app_struct(c, st)
    return c.status


cdef inline int dec_attr(Ctx* c, const uint8_t** pp, const uint8_t* end, int depth,
                         Col* attrs) noexcept nogil:
    """A KeyValue field of a message at `depth` (tag read): append it to `attrs`."""
    cdef const uint8_t* s
    cdef int64_t n
    cdef KV kv
    if vlen(c, pp, end, &s, &n):
        return c.status
    return dec_kv(c, s, s + n, depth + 1, attrs, &kv)


cdef int dec_entity_ref(Ctx* c, const uint8_t* p, const uint8_t* end, int depth,
                        Col* col) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef int64_t n
    cdef const uint8_t* url = NULL
    cdef int64_t url_n = 0
    cdef const uint8_t* typ = NULL
    cdef int64_t typ_n = 0
    cdef Col* st = &col.children[0]
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A or tag == 0x12 or tag == 0x1A or tag == 0x22:
            if vstr(c, &p, end, &s, &n):
                return c.status
            if tag == 0x0A:
                url = s
                url_n = n
            elif tag == 0x12:
                typ = s
                typ_n = n
            elif tag == 0x1A:
                app_bin(c, &st.children[2].children[0], s, n)
            else:
                app_bin(c, &st.children[3].children[0], s, n)
        elif vfield(c, MT[M_ENTITY], t0, &p, end, tag, depth):
            return c.status
    app_bin(c, &st.children[0], url, url_n)
    app_bin(c, &st.children[1], typ, typ_n)
    app_list(c, &st.children[2])
    app_list(c, &st.children[3])
    app_struct(c, st)
    return c.status


cdef struct ResState:
    uint32_t dropped
    bint svc_found
    bint has_svc
    const uint8_t* svc
    int64_t svc_n


cdef int dec_resource(Ctx* c, const uint8_t* p, const uint8_t* end, int depth,
                      ResState* rs) noexcept nogil:
    """One Resource payload into templates T[0] (attributes) and T[2] (entity refs)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef KV kv
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:
            if vlen(c, &p, end, &s, &n) or dec_kv(c, s, s + n, depth + 1, &c.T[0], &kv):
                return c.status
            # service_name: the first service.name attribute, if a string.
            if not rs.svc_found and kv.klen == 12 and memcmp(kv.key, b"service.name", 12) == 0:
                rs.svc_found = True
                if kv.has_value and kv.v.type == 1:
                    rs.has_svc = True
                    rs.svc = kv.v.s
                    rs.svc_n = kv.v.n
        elif tag == 0x10:
            if vvar(c, &p, end, &v):
                return c.status
            rs.dropped = <uint32_t>v
        elif tag == 0x1A:
            if vlen(c, &p, end, &s, &n) or dec_entity_ref(c, s, s + n, depth + 1, &c.T[2]):
                return c.status
        elif vfield(c, MT[M_RESOURCE], t0, &p, end, tag, depth):
            return c.status
    return c.status


cdef inline void app_resource_row(Ctx* c, ResState* rs, const uint8_t* url,
                                  int64_t url_n) noexcept nogil:
    """Close the resource template row T[0..4] (`url`: the resource group's schema_url)."""
    app_list(c, &c.T[0])
    app_w4(c, &c.T[1], rs.dropped)
    app_list(c, &c.T[2])
    app_bin(c, &c.T[3], url, url_n)
    if rs.has_svc:
        app_bin(c, &c.T[4], rs.svc, rs.svc_n)
    else:
        app_null(c, &c.T[4])


cdef struct ScopeState:
    const uint8_t* name
    int64_t name_n
    const uint8_t* version
    int64_t version_n
    uint32_t dropped


cdef int dec_scope(Ctx* c, const uint8_t* p, const uint8_t* end, int depth,
                   ScopeState* ss) noexcept nogil:
    """One InstrumentationScope payload into templates T[5..8]."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:
            if vstr(c, &p, end, &ss.name, &ss.name_n):
                return c.status
        elif tag == 0x12:
            if vstr(c, &p, end, &ss.version, &ss.version_n):
                return c.status
        elif tag == 0x1A:
            if dec_attr(c, &p, end, depth, &c.T[7]):
                return c.status
        elif tag == 0x20:
            if vvar(c, &p, end, &v):
                return c.status
            ss.dropped = <uint32_t>v
        elif vfield(c, MT[M_SCOPE], t0, &p, end, tag, depth):
            return c.status
    return c.status


cdef inline void app_scope_row(Ctx* c, ScopeState* ss, const uint8_t* url,
                               int64_t url_n) noexcept nogil:
    """Close the scope template row T[5..9] (`url`: the scope group's schema_url)."""
    app_bin(c, &c.T[5], ss.name, ss.name_n)
    app_bin(c, &c.T[6], ss.version, ss.version_n)
    app_list(c, &c.T[7])
    app_w4(c, &c.T[8], ss.dropped)
    app_bin(c, &c.T[9], url, url_n)
