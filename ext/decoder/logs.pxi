# Logs: LogRecord -> columns 14..27 of the logs schema (the body through dec_any(): a
# string body to `body`, any other to `body_other`).
# Relies on common.pxi and columns.pxi. dec_log() has the shape of every dec_* loop
# (read a tag, switch on it, vfield() the rest) with its own fields and columns.

# ---------------------------------------------------------------- logs

cdef int dec_log(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One LogRecord -> one row of columns 14..27."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef Col* O = c.O
    cdef uint64_t time = 0
    cdef uint64_t observed = 0
    cdef int32_t severity = 0
    cdef uint32_t dropped = 0
    cdef uint32_t flags = 0
    cdef bint has_body = False
    cdef AnyV body
    # Byte fields: [0] severity_text, [1] trace_id, [2] span_id, [3] event_name.
    cdef const uint8_t* f[4]
    cdef int64_t fl[4]
    cdef int i
    memset(&body, 0, sizeof(AnyV))
    for i in range(4):
        f[i] = NULL
        fl[i] = 0
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x09:
            if vf64(c, &p, end, &time):
                return c.status
        elif tag == 0x59:
            if vf64(c, &p, end, &observed):
                return c.status
        elif tag == 0x10 or tag == 0x38:
            if vvar(c, &p, end, &v):
                return c.status
            if tag == 0x10:
                severity = <int32_t>v
            else:
                dropped = <uint32_t>v
        elif tag == 0x1A or tag == 0x62:  # severity_text, event_name (strings)
            i = 0 if tag == 0x1A else 3
            if vstr(c, &p, end, &f[i], &fl[i]):
                return c.status
        elif tag == 0x4A or tag == 0x52:  # trace_id, span_id (bytes)
            i = 1 if tag == 0x4A else 2
            if vlen(c, &p, end, &f[i], &fl[i]):
                return c.status
        elif tag == 0x2A:
            if vlen(c, &p, end, &s, &n):
                return c.status
            has_body = True
            if dec_any(c, s, s + n, depth + 1, &body):
                return c.status
        elif tag == 0x32:
            if dec_attr(c, &p, end, depth, &O[20]):
                return c.status
        elif tag == 0x45:
            if vf32(c, &p, end, &flags):
                return c.status
        elif vfield(c, MT[M_LOG], t0, &p, end, tag, depth):
            return c.status
    app_w8(c, &O[14], time)
    app_w8(c, &O[15], observed)
    app_w4(c, &O[16], <uint32_t>severity)
    app_bin(c, &O[17], f[0], fl[0])
    # body: string (a string body) and body_other: ANYVALUE (any other, even empty)
    if has_body and body.type == 1:
        app_bin(c, &O[18], body.s, body.n)
        app_null(c, &O[19])
    elif has_body:
        app_null(c, &O[18])
        app_any(c, &O[19], &body)
    else:
        app_null(c, &O[18])
        app_null(c, &O[19])
    app_attrs_row(c, &O[20])
    app_w4(c, &O[23], dropped)
    app_w4(c, &O[24], flags)
    app_bin(c, &O[25], f[1], fl[1])
    app_bin(c, &O[26], f[2], fl[2])
    app_bin(c, &O[27], f[3], fl[3])
    c.rows += 1
    return c.status
