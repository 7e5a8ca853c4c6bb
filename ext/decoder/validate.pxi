# Validation: strict UTF-8, the v* helpers with which decoders read the fields they
# decode, and vfield()/validate() for every other field, driven by the field tables
# FKIND/FSUB (filled at import by tables.pxi). Relies on core.pxi and wire.pxi.

# ============================================================== UTF-8

cdef inline bint utf8_ok(const uint8_t* s, int64_t n) noexcept nogil:
    """Strict UTF-8 (no overlongs, surrogates or code points > U+10FFFF), like upb.

    Telemetry strings are short and almost always ASCII: one branch-free pass ORs
    the bytes together, and only a string with a byte >= 0x80 is checked in full."""
    cdef int64_t i = 0
    cdef uint64_t w
    cdef uint64_t acc = 0
    cdef uint8_t tail = 0
    while i + 8 <= n:  # bounds: 8 bytes available
        memcpy(&w, s + i, 8)
        acc |= w
        i += 8
    while i < n:  # bounds: i < n
        tail |= s[i]
        i += 1
    if ((acc & 0x8080808080808080ULL) | (tail & 0x80)) == 0:
        return True
    return utf8_check(s, n)


cdef bint utf8_check(const uint8_t* s, int64_t n) noexcept nogil:
    """utf8_ok's full check, for strings that are not all ASCII."""
    cdef int64_t i = 0
    cdef uint64_t w
    cdef uint8_t b, b1
    while i < n:
        while i + 8 <= n:  # bounds: 8 bytes available
            memcpy(&w, s + i, 8)
            if w & 0x8080808080808080ULL:
                break
            i += 8
        if i >= n:
            break
        b = s[i]
        if b < 0x80:
            i += 1
        elif b < 0xC2:
            return False
        elif b < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:  # bounds: i+1 < n
                return False
            i += 2
        elif b < 0xF0:
            if i + 2 >= n:  # bounds: i+2 < n
                return False
            b1 = s[i + 1]
            if b == 0xE0:
                if b1 < 0xA0 or b1 > 0xBF:
                    return False
            elif b == 0xED:
                if b1 < 0x80 or b1 > 0x9F:
                    return False
            elif (b1 & 0xC0) != 0x80:
                return False
            if (s[i + 2] & 0xC0) != 0x80:
                return False
            i += 3
        elif b < 0xF5:
            if i + 3 >= n:  # bounds: i+3 < n
                return False
            b1 = s[i + 1]
            if b == 0xF0:
                if b1 < 0x90 or b1 > 0xBF:
                    return False
            elif b == 0xF4:
                if b1 < 0x80 or b1 > 0x8F:
                    return False
            elif (b1 & 0xC0) != 0x80:
                return False
            if (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            i += 4
        else:
            return False
    return True


# ============================================================== validation
# The decoders validate as they go: fields they decode are checked inline with
# the v* helpers below; every other field goes through vfield(), which checks
# one field against the field tables built from the descriptors. Together they
# accept exactly what upb accepts (measured behaviour, see docs/DECODER.md).

cdef enum:
    K_UNKNOWN = 0
    K_VARINT = 1
    K_F64 = 2
    K_F32 = 3
    K_STRING = 4
    K_BYTES = 5
    K_MSG = 6
    K_REP_VARINT = 7   # repeated varint scalar: unpacked (wt 0) or packed (wt 2)
    K_REP_F64 = 8      # repeated fixed64/double: wt 1 or packed
    K_REP_F32 = 9

# FKIND[msg * MAXF + field] / FSUB[...]: filled at import from the descriptors.
cdef uint8_t FKIND[MAX_MSGS * MAXF]
cdef uint8_t FSUB[MAX_MSGS * MAXF]


cdef inline int vtag(Ctx* c, const uint8_t** pp, const uint8_t* end, uint32_t* tag) noexcept nogil:
    """Read the tag of a message's field: upb rejects field number 0 there."""
    cdef const uint8_t* t0 = pp[0]
    cdef int r = rd_tag(pp, end, tag)
    if r:
        return v_fail(c, t0, "truncated tag" if r == -1 else "invalid tag")
    if tag[0] < 8:
        return v_fail(c, t0, "field number 0")
    return ST_OK


cdef inline int vlen(Ctx* c, const uint8_t** pp, const uint8_t* end, const uint8_t** s,
                     int64_t* n) noexcept nogil:
    cdef int r = rd_len(pp, end, s, n)
    if r:
        return v_fail(c, pp[0], "truncated length" if r == -1 else
                      ("invalid length" if r == -2 else
                       "length-delimited field runs past the end of its message"))
    return ST_OK


cdef inline int vstr(Ctx* c, const uint8_t** pp, const uint8_t* end, const uint8_t** s,
                     int64_t* n) noexcept nogil:
    """A proto3 `string` field: length-delimited, valid UTF-8."""
    if vlen(c, pp, end, s, n):
        return ST_ERR
    if not utf8_ok(s[0], n[0]):
        return v_fail(c, s[0], "invalid UTF-8 in a string field")
    return ST_OK


cdef inline int vvar(Ctx* c, const uint8_t** pp, const uint8_t* end, uint64_t* v) noexcept nogil:
    cdef int r = rd_varint(pp, end, v)
    if r:
        return v_fail(c, pp[0], "truncated varint" if r == -1 else "varint longer than 10 bytes")
    return ST_OK


cdef inline int vf64(Ctx* c, const uint8_t** pp, const uint8_t* end, uint64_t* v) noexcept nogil:
    if rd_f64(pp, end, v):
        return v_fail(c, pp[0], "truncated fixed64")
    return ST_OK


cdef inline int vf32(Ctx* c, const uint8_t** pp, const uint8_t* end, uint32_t* v) noexcept nogil:
    if rd_f32(pp, end, v):
        return v_fail(c, pp[0], "truncated fixed32")
    return ST_OK


cdef int vfield(Ctx* c, int mt, const uint8_t* t0, const uint8_t** pp, const uint8_t* end,
                uint32_t tag, int depth) noexcept nogil:
    """Validate and skip one field (tag read from t0) of message type `mt` at
    nesting `depth`, by its declared kind; a known number with another wire
    type is an unknown field, as in upb."""
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef uint32_t fn = tag >> 3
    cdef uint32_t wt = tag & 7
    cdef uint32_t v32
    cdef uint64_t v
    cdef int64_t n
    cdef int kind = FKIND[mt * MAXF + fn] if fn < MAXF else K_UNKNOWN
    if wt == 0:
        return vvar(c, pp, end, &v)
    if wt == 1:
        return vf64(c, pp, end, &v)
    if wt == 5:
        return vf32(c, pp, end, &v32)
    if wt == 2:
        if vlen(c, pp, end, &s, &n):
            return ST_ERR
        if kind == K_STRING:
            if not utf8_ok(s, n):
                return v_fail(c, s, "invalid UTF-8 in a string field")
        elif kind == K_MSG:
            if depth >= MAX_DEPTH:  # upb: more than 100 nested messages/groups
                return v_fail(c, t0, "messages nested more than 100 deep")
            return validate(c, FSUB[mt * MAXF + fn], s, s + n, depth + 1)
        elif kind == K_REP_VARINT:
            q = s
            while q < s + n:  # bounds: each varint must end inside the payload
                if rd_varint(&q, s + n, &v):
                    return v_fail(c, q, "malformed packed varint")
        elif kind == K_REP_F64:
            if n % 8:
                return v_fail(c, s, "packed fixed64 length is not a multiple of 8")
        elif kind == K_REP_F32:
            if n % 4:
                return v_fail(c, s, "packed fixed32 length is not a multiple of 4")
        return ST_OK
    if wt == 3:
        if depth >= MAX_DEPTH:
            return v_fail(c, t0, "messages nested more than 100 deep")
        if skip_group(pp, end, fn, depth + 1):
            return v_fail(c, t0, "malformed group")
        return ST_OK
    if wt == 4:
        return v_fail(c, t0, "unexpected end-group tag")
    return v_fail(c, t0, "invalid wire type")


cdef int validate(Ctx* c, int mt, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """Accept exactly what upb accepts for a message of type `mt` at nesting `depth`
    (the request is depth 0)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag) or vfield(c, mt, t0, &p, end, tag, depth):
            return c.status
    return ST_OK
