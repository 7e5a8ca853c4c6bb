# Traces: Span (with Status), Span.Event and Span.Link -> columns 14..32 of the traces
# schema. Relies on common.pxi (dec_attr, app_attrs_row) and columns.pxi.
# Every dec_* function here is one loop over one message's fields (read a tag, switch
# on it, vfield() the rest): the loops look alike because that is the shape of a
# protobuf parser, but each reads other fields into other columns, so they stay apart.

# ---------------------------------------------------------------- traces

cdef int dec_event(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* ev) noexcept nogil:
    """Span.Event -> struct<time, name, attributes(_types, _other), dropped_attributes_count>."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint64_t time = 0
    cdef const uint8_t* name = NULL
    cdef int64_t name_n = 0
    cdef uint32_t dropped = 0
    cdef Col* ch = ev.children
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x09:
            if vf64(c, &p, end, &time):
                return c.status
        elif tag == 0x12:
            if vstr(c, &p, end, &name, &name_n):
                return c.status
        elif tag == 0x1A:
            if dec_attr(c, &p, end, depth, &ch[2]):
                return c.status
        elif tag == 0x20:
            if vvar(c, &p, end, &v):
                return c.status
            dropped = <uint32_t>v
        elif vfield(c, MT[M_EVENT], t0, &p, end, tag, depth):
            return c.status
    app_w8(c, &ch[0], time)
    app_bin(c, &ch[1], name, name_n)
    app_attrs_row(c, &ch[2])
    app_w4(c, &ch[5], dropped)
    app_struct(c, ev)
    return c.status


cdef int dec_link(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* lk) noexcept nogil:
    """Span.Link -> struct<trace_id, span_id, trace_state, attributes(_types, _other),
    dropped, flags>."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint32_t flags = 0
    cdef uint32_t dropped = 0
    cdef const uint8_t* f[3]
    cdef int64_t fn[3]
    cdef int i
    cdef Col* ch = lk.children
    for i in range(3):
        f[i] = NULL
        fn[i] = 0
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A or tag == 0x12:  # trace_id, span_id (bytes)
            i = (tag >> 3) - 1
            if vlen(c, &p, end, &f[i], &fn[i]):
                return c.status
        elif tag == 0x1A:  # trace_state (string)
            if vstr(c, &p, end, &f[2], &fn[2]):
                return c.status
        elif tag == 0x22:
            if dec_attr(c, &p, end, depth, &ch[3]):
                return c.status
        elif tag == 0x28:
            if vvar(c, &p, end, &v):
                return c.status
            dropped = <uint32_t>v
        elif tag == 0x35:
            if vf32(c, &p, end, &flags):
                return c.status
        elif vfield(c, MT[M_LINK], t0, &p, end, tag, depth):
            return c.status
    for i in range(3):
        app_bin(c, &ch[i], f[i], fn[i])
    app_attrs_row(c, &ch[3])
    app_w4(c, &ch[6], dropped)
    app_w4(c, &ch[7], flags)
    app_struct(c, lk)
    return c.status


cdef int dec_span(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One Span -> one row of columns 14..32."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef Col* O = c.O
    # Byte fields by field number 1..5: trace_id, span_id, trace_state, parent_span_id, name.
    cdef const uint8_t* f[6]
    cdef int64_t fl[6]
    cdef uint32_t flags = 0
    cdef int32_t kind = 0
    cdef uint64_t start = 0
    cdef uint64_t stop = 0
    cdef uint32_t dropped_attrs = 0
    cdef uint32_t dropped_events = 0
    cdef uint32_t dropped_links = 0
    cdef bint has_status = False
    cdef int32_t status_code = 0
    cdef const uint8_t* status_msg = NULL
    cdef int64_t status_msg_n = 0
    cdef const uint8_t* q
    cdef const uint8_t* qe
    cdef int i
    for i in range(6):
        f[i] = NULL
        fl[i] = 0
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A or tag == 0x12 or tag == 0x22:  # ids (bytes)
            i = tag >> 3
            if vlen(c, &p, end, &f[i], &fl[i]):
                return c.status
        elif tag == 0x1A or tag == 0x2A:  # trace_state, name (strings)
            i = tag >> 3
            if vstr(c, &p, end, &f[i], &fl[i]):
                return c.status
        elif tag == 0x30 or tag == 0x50 or tag == 0x60 or tag == 0x70:
            if vvar(c, &p, end, &v):
                return c.status
            if tag == 0x30:
                kind = <int32_t>v
            elif tag == 0x50:
                dropped_attrs = <uint32_t>v
            elif tag == 0x60:
                dropped_events = <uint32_t>v
            else:
                dropped_links = <uint32_t>v
        elif tag == 0x39:
            if vf64(c, &p, end, &start):
                return c.status
        elif tag == 0x41:
            if vf64(c, &p, end, &stop):
                return c.status
        elif tag == 0x4A:
            if dec_attr(c, &p, end, depth, &O[23]):
                return c.status
        elif tag == 0x5A:
            if vlen(c, &p, end, &s, &n) or dec_event(c, s, s + n, depth + 1, &O[27].children[0]):
                return c.status
        elif tag == 0x6A:
            if vlen(c, &p, end, &s, &n) or dec_link(c, s, s + n, depth + 1, &O[29].children[0]):
                return c.status
        elif tag == 0x7A:  # status: parsed into the same state (messages merge)
            if vlen(c, &p, end, &s, &n):
                return c.status
            has_status = True
            q = s
            qe = s + n
            while q < qe:
                t0 = q
                if vtag(c, &q, qe, &tag):
                    return c.status
                if tag == 0x12:
                    if vstr(c, &q, qe, &status_msg, &status_msg_n):
                        return c.status
                elif tag == 0x18:
                    if vvar(c, &q, qe, &v):
                        return c.status
                    status_code = <int32_t>v
                elif vfield(c, MT[M_STATUS], t0, &q, qe, tag, depth + 1):
                    return c.status
        elif tag == 0x85:  # flags: field 16, fixed32
            if vf32(c, &p, end, &flags):
                return c.status
        elif vfield(c, MT[M_SPAN], t0, &p, end, tag, depth):
            return c.status
    app_bin(c, &O[14], f[1], fl[1])
    app_bin(c, &O[15], f[2], fl[2])
    app_bin(c, &O[16], f[3], fl[3])
    app_bin(c, &O[17], f[4], fl[4])
    app_w4(c, &O[18], flags)
    app_bin(c, &O[19], f[5], fl[5])
    app_w4(c, &O[20], <uint32_t>kind)
    app_w8(c, &O[21], start)
    app_w8(c, &O[22], stop)
    app_attrs_row(c, &O[23])
    app_w4(c, &O[26], dropped_attrs)
    app_list(c, &O[27])
    app_w4(c, &O[28], dropped_events)
    app_list(c, &O[29])
    app_w4(c, &O[30], dropped_links)
    if has_status:
        app_w4(c, &O[31], <uint32_t>status_code)
        app_bin(c, &O[32], status_msg, status_msg_n)
    else:
        app_null(c, &O[31])
        app_null(c, &O[32])
    c.rows += 1
    return c.status
