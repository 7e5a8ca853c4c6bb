# Decoding shared by every signal: message type ids (M_*, MT), AnyValue, KeyValue and
# the attribute sites (map + types + side list), EntityRef, Resource and
# InstrumentationScope (template columns 0..13); relies on
# validate.pxi, canonical.pxi and columns.pxi. Every dec_* function is one loop over one
# message's fields (read a tag, switch on it, vfield() the rest): alike because that is
# the shape of a protobuf parser, apart because each reads other fields into other columns.

# ============================================================== decoding
# One walk over the request that validates (see "validation") and appends to
# the columns. Every decoder gets its message's nesting depth (request = 0)
# for vfield()/validate(); unknown fields go through vfield().
#
# Column numbers are checked against the schemas at import (_LAYOUT).
# Common: 0-2 resource_attributes(_types, _other), 3 resource_dropped_attributes_count,
# 4 resource_entity_refs, 5 resource_schema_url, 6 service_name, 7 scope_name,
# 8 scope_version, 9-11 scope_attributes(_types, _other), 12 scope_dropped_attributes_count,
# 13 scope_schema_url.
# An attribute site (schema version 2, otlpd.attributes) is three sibling columns:
#   X:        map<string, string> = list<struct<key, value>>
#   X_types:  binary, one byte (AnyValue type 1..4) per map entry
#   X_other:  list<struct<index: int32, key, value: ANYVALUE, key_strindex: int32>>
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


# ---------------------------------------------------------------- attribute sites
# otlpd.attributes.split(): the KeyValue at position i of a list (every KeyValue counts)
# goes to the map iff i < MAP_LIMIT, its value is set with type 1..4 (a double not NaN),
# its key_strindex is 0 and its key did not occur earlier in the list (map or side);
# every other KeyValue goes to the side list with index i. The current list is the
# entries after the site's last list offsets, so i and the earlier keys come from the
# columns themselves: no state per list.

cdef enum:
    MAP_LIMIT = 128    # otlpd.attributes.MAP_LIMIT: bounds the key comparisons a KeyValue

cdef extern from *:
    """
    /* 10**k, k = 0..15: exact in binary64 (as Python's 10.0 ** k) */
    static const double otlpd_pow10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                                           1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    """
    const double* POW10 "otlpd_pow10"


cdef inline int u64_text(uint64_t m, char* out) noexcept nogil:
    """Decimal digits of m into out (at most 20); their count."""
    cdef char tmp[24]
    cdef int n = 0
    cdef int i
    while True:
        tmp[n] = <char>(48 + m % 10)  # bounds: at most 20 digits
        n += 1
        m //= 10
        if m == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline int i64_text(int64_t v, char* out) noexcept nogil:
    """str(v) of an int64 into out (at most 20 bytes); its length."""
    if v < 0:
        out[0] = 45  # '-'
        return 1 + u64_text(<uint64_t>0 - <uint64_t>v, out + 1)
    return u64_text(<uint64_t>v, out)


cdef int double_text(uint64_t bits, char* out) noexcept nogil:
    """otlpd.attributes.double_text() of the double with these bits into out (room for
    40 bytes); its length, or 0 for a NaN (not carried by the map). Plain IEEE double
    arithmetic (SSE2, no contraction: only * and / with a comparison between), so the
    fast path decides exactly as Python does; "%.*g" matches Python's for finite values."""
    cdef double value
    cdef double scaled, whole
    cdef uint64_t m
    cdef int k, n, i, digits, pad, prec
    cdef char tmp[24]
    memcpy(&value, &bits, 8)
    if (bits & 0x7FF0000000000000ULL) == 0x7FF0000000000000ULL:
        if bits & 0x000FFFFFFFFFFFFFULL:
            return 0  # NaN
        if bits >> 63:
            memcpy(out, b"-inf", 4)
            return 4
        memcpy(out, b"inf", 3)
        return 3
    if (bits << 1) == 0:  # +-0.0
        if bits >> 63:
            memcpy(out, b"-0", 2)
            return 2
        out[0] = 48
        return 1
    for k in range(16):
        scaled = value * POW10[k]
        if fabs(scaled) >= 9007199254740992.0:  # 2**53
            break
        whole = floor(scaled)
        if scaled == whole and scaled / POW10[k] == value:
            # _decimal(int(scaled), k): sign, digits left-padded to k + 1, a point
            n = 0
            if scaled < 0:
                out[0] = 45
                n = 1
                m = <uint64_t>(-scaled)
            else:
                m = <uint64_t>scaled
            digits = u64_text(m, tmp)
            if k == 0:
                memcpy(out + n, tmp, <size_t>digits)
                return n + digits
            # rjust(k + 1, "0"), then a point before the last k: at most 17 characters
            pad = k + 1 - digits if digits < k + 1 else 0
            for i in range(pad + digits):
                if i == pad + digits - k:
                    out[n] = 46  # '.'
                    n += 1
                out[n] = 48 if i < pad else tmp[i - pad]
                n += 1
            return n
    for prec in range(15, 18):
        n = snprintf(out, 40, "%.*g", prec, value)
        if n <= 0 or n >= 40:  # never for a finite double; defensive
            break
        if prec == 17 or strtod(out, NULL) == value:
            return n
    return snprintf(out, 40, "%.17g", value)


cdef inline int attr_text(AnyV* a, char* buf, const uint8_t** s, int64_t* n) noexcept nogil:
    """The type (1..4) of an AnyValue the map carries and its text in *s/*n (the string
    itself, else written to buf), or 0 when it goes to the side list."""
    cdef int t = a.type
    if t == 1:
        s[0] = a.s
        n[0] = a.n
    elif t == 2:
        if a.b:
            s[0] = <const uint8_t*>b"true"
            n[0] = 4
        else:
            s[0] = <const uint8_t*>b"false"
            n[0] = 5
    elif t == 3:
        s[0] = <const uint8_t*>buf
        n[0] = i64_text(<int64_t>a.i, buf)
    elif t == 4:
        s[0] = <const uint8_t*>buf
        n[0] = double_text(a.d, buf)
        if n[0] == 0:
            return 0
    else:
        return 0
    return t


cdef inline bint key_in(Col* keys, int64_t first, const uint8_t* key, int64_t klen) noexcept nogil:
    """Is `key` among the strings [first, length) of C_BIN column `keys`?"""
    cdef const int32_t* off
    cdef int64_t j
    if keys.length <= first:
        return False
    # bounds: length > first >= 0 slots, so vals holds length + 1 int32 offsets
    # (a buffer from realloc, aligned) and data holds off[length] bytes
    off = <const int32_t*>keys.vals.p
    for j in range(first, keys.length):
        if off[j + 1] - off[j] == klen and (
                klen == 0 or memcmp(keys.data.p + off[j], key, <size_t>klen) == 0):
            return True
    return False


cdef void app_attr(Ctx* c, Col* site, KV* kv) noexcept nogil:
    """Append a parsed KeyValue to the current list of attribute site `site` (site[0]
    the map, site[1] the types, site[2] the side list): the map if it qualifies
    (otlpd.attributes.split), else the side list with its index."""
    cdef Col* entries = &site[0].children[0]     # struct<key, value>
    cdef Col* side = &site[2].children[0]        # struct<index, key, value, key_strindex>
    cdef Col* types = &site[1]
    cdef int64_t m0, s0, i
    cdef char buf[40]
    cdef const uint8_t* s = NULL
    cdef int64_t n = 0
    cdef int t = 0
    if c.status:
        return
    m0 = last_offset(&site[0])
    s0 = last_offset(&site[2])
    i = (entries.length - m0) + (side.length - s0)
    if i < MAP_LIMIT and kv.strindex == 0 and kv.has_value:
        t = attr_text(&kv.v, buf, &s, &n)
        if t and (key_in(&entries.children[0], m0, kv.key, kv.klen)
                  or key_in(&side.children[1], s0, kv.key, kv.klen)):
            t = 0
    if t:
        app_bin(c, &entries.children[0], kv.key, kv.klen)
        app_bin(c, &entries.children[1], s, n)
        app_struct(c, entries)
        if c.status or not buf_reserve(c, &types.data, 1):
            return
        types.data.p[types.data.len] = <uint8_t>t  # bounds: reserved above
        types.data.len += 1
    else:
        app_w4(c, &side.children[0], <uint32_t>i)
        app_bin(c, &side.children[1], kv.key, kv.klen)
        if kv.has_value:
            app_any(c, &side.children[2], &kv.v)
        else:
            app_null(c, &side.children[2])
        app_w4(c, &side.children[3], <uint32_t>kv.strindex)
        app_struct(c, side)


cdef inline void app_attrs_row(Ctx* c, Col* site) noexcept nogil:
    """Close the current list of attribute site `site` in its three columns (the
    types' bytes were appended to its data by app_attr)."""
    app_list(c, &site[0])
    app_bin(c, &site[1], NULL, 0)
    app_list(c, &site[2])


cdef int dec_kv(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* site,
                KV* kv) noexcept nogil:
    """Decode one KeyValue (its fields may repeat and merge) into `kv`, then append it
    to the current list of attribute site `site` (app_attr)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
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
    app_attr(c, site, kv)
    return c.status


cdef inline int dec_attr(Ctx* c, const uint8_t** pp, const uint8_t* end, int depth,
                         Col* site) noexcept nogil:
    """A KeyValue field of a message at `depth` (tag read): append it to attribute
    site `site` (its row is closed by app_attrs_row)."""
    cdef const uint8_t* s
    cdef int64_t n
    cdef KV kv
    if vlen(c, pp, end, &s, &n):
        return c.status
    return dec_kv(c, s, s + n, depth + 1, site, &kv)


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
    """One Resource payload into templates T[0..2] (attributes) and T[4] (entity refs)."""
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
            if vlen(c, &p, end, &s, &n) or dec_entity_ref(c, s, s + n, depth + 1, &c.T[4]):
                return c.status
        elif vfield(c, MT[M_RESOURCE], t0, &p, end, tag, depth):
            return c.status
    return c.status


cdef inline void app_resource_row(Ctx* c, ResState* rs, const uint8_t* url,
                                  int64_t url_n) noexcept nogil:
    """Close the resource template row T[0..6] (`url`: the resource group's schema_url)."""
    app_attrs_row(c, &c.T[0])
    app_w4(c, &c.T[3], rs.dropped)
    app_list(c, &c.T[4])
    app_bin(c, &c.T[5], url, url_n)
    if rs.has_svc:
        app_bin(c, &c.T[6], rs.svc, rs.svc_n)
    else:
        app_null(c, &c.T[6])


cdef struct ScopeState:
    const uint8_t* name
    int64_t name_n
    const uint8_t* version
    int64_t version_n
    uint32_t dropped


cdef int dec_scope(Ctx* c, const uint8_t* p, const uint8_t* end, int depth,
                   ScopeState* ss) noexcept nogil:
    """One InstrumentationScope payload into templates T[7..12]."""
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
            if dec_attr(c, &p, end, depth, &c.T[9]):
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
    """Close the scope template row T[7..13] (`url`: the scope group's schema_url)."""
    app_bin(c, &c.T[7], ss.name, ss.name_n)
    app_bin(c, &c.T[8], ss.version, ss.version_n)
    app_attrs_row(c, &c.T[9])
    app_w4(c, &c.T[12], ss.dropped)
    app_bin(c, &c.T[13], url, url_n)
