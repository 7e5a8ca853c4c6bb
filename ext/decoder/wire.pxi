# Wire readers: bounds-checked reads of varints, tags, lengths and fixed32/fixed64,
# and the skipping of unknown fields and groups with upb's limits. Relies on core.pxi
# (MAX_DEPTH); used by validate.pxi, canonical.pxi and every decoder.

# ============================================================== wire readers
# Every reader takes the end of the enclosing message and never reads at or
# beyond it.

cdef inline int rd_varint(const uint8_t** pp, const uint8_t* end, uint64_t* out) noexcept nogil:
    """0, or -1 if the message ends inside the varint, -2 if longer than 10 bytes.

    Like upb, bits beyond 64 of a 10-byte varint are dropped.
    """
    cdef const uint8_t* p = pp[0]
    cdef uint64_t v = 0
    cdef uint8_t b
    cdef int shift = 0
    cdef int i
    if p < end and p[0] < 0x80:  # bounds: p < end checked first
        out[0] = p[0]
        pp[0] = p + 1
        return 0
    for i in range(10):
        if p >= end:  # bounds: stop at the end of the enclosing message
            return -1
        b = p[0]
        p += 1
        v |= (<uint64_t>(b & 0x7F)) << shift  # shift <= 63
        if b < 0x80:
            out[0] = v
            pp[0] = p
            return 0
        shift += 7
    return -2


cdef inline int rd_tag(const uint8_t** pp, const uint8_t* end, uint32_t* out) noexcept nogil:
    """0, -1 truncated, -2 invalid (more than 5 bytes or above 2**32-1, as upb)."""
    cdef const uint8_t* p = pp[0]
    cdef uint64_t v = 0
    cdef uint8_t b
    cdef int i
    if p < end and p[0] < 0x80:  # bounds: p < end checked first
        out[0] = p[0]
        pp[0] = p + 1
        return 0
    for i in range(5):
        if p >= end:  # bounds
            return -1
        b = p[0]
        p += 1
        v |= (<uint64_t>(b & 0x7F)) << (7 * i)
        if b < 0x80:
            if v > 0xFFFFFFFFULL:
                return -2
            out[0] = <uint32_t>v
            pp[0] = p
            return 0
    return -2


cdef inline int rd_len(const uint8_t** pp, const uint8_t* end, const uint8_t** s,
                       int64_t* n) noexcept nogil:
    """Length-delimited payload: s/n set and pp moved past it.

    0, -1 truncated length, -2 length varint longer than 5 bytes (upb rejects
    it), -3 payload runs past the end of the enclosing message.
    """
    cdef const uint8_t* p = pp[0]
    cdef uint64_t v = 0
    cdef uint8_t b
    cdef int i
    if p < end and p[0] < 0x80:  # bounds: p < end checked first
        v = p[0]
        p += 1
    else:
        for i in range(6):
            if i == 5:
                return -2
            if p >= end:  # bounds
                return -1
            b = p[0]
            p += 1
            v |= (<uint64_t>(b & 0x7F)) << (7 * i)
            if b < 0x80:
                break
    if v > <uint64_t>(end - p):  # bounds: the payload must fit in the enclosing message
        return -3
    s[0] = p
    n[0] = <int64_t>v
    pp[0] = p + v
    return 0


cdef inline int rd_f64(const uint8_t** pp, const uint8_t* end, uint64_t* out) noexcept nogil:
    if end - pp[0] < 8:  # bounds: 8 bytes must remain
        return -1
    memcpy(out, pp[0], 8)
    pp[0] += 8
    return 0


cdef inline int rd_f32(const uint8_t** pp, const uint8_t* end, uint32_t* out) noexcept nogil:
    if end - pp[0] < 4:  # bounds: 4 bytes must remain
        return -1
    memcpy(out, pp[0], 4)
    pp[0] += 4
    return 0


cdef int skip_group(const uint8_t** pp, const uint8_t* end, uint32_t fn, int depth) noexcept nogil:
    """Skip an unknown group (start tag read; `depth` is the group's own level) up to
    its end-group tag, with upb's rules: wire types 6/7, a foreign end-group tag,
    the end of the enclosing message or more than 100 levels fail (-1)."""
    cdef uint32_t tag
    while True:
        if pp[0] >= end:  # bounds: unterminated group
            return -1
        # upb accepts field number 0 inside an unknown group (measured), so no
        # check here; a message's own fields are checked in validate().
        if rd_tag(pp, end, &tag):
            return -1
        if (tag & 7) == 4:
            return 0 if (tag >> 3) == fn else -1
        if (tag & 7) == 3:
            if depth >= MAX_DEPTH or skip_group(pp, end, tag >> 3, depth + 1):  # depth bound
                return -1
        elif skip_field(pp, end, tag, depth):
            return -1


cdef int skip_field(const uint8_t** pp, const uint8_t* end, uint32_t tag, int depth) noexcept nogil:
    """Skip one field whose tag was just read (memory-safe; no content checks)."""
    cdef uint64_t v
    cdef uint32_t v32
    cdef const uint8_t* s
    cdef int64_t n
    cdef uint32_t wt = tag & 7
    if wt == 0:
        return rd_varint(pp, end, &v)
    if wt == 1:
        return rd_f64(pp, end, &v)
    if wt == 5:
        return rd_f32(pp, end, &v32)
    if wt == 2:
        return rd_len(pp, end, &s, &n)
    if wt == 3:
        if depth >= MAX_DEPTH:  # depth bound on recursion
            return -1
        return skip_group(pp, end, tag >> 3, depth + 1)
    return -1
