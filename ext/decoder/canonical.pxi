# Canonical nested bytes: whether ArrayValue/KeyValueList bytes are exactly what upb
# would re-serialize (if not, the request goes to the reference path). Relies on
# wire.pxi; used by dec_any() in common.pxi.

# ============================================================== canonical nested bytes

cdef enum:
    CN_ANY = 0
    CN_ARRAY = 1
    CN_KVLIST = 2
    CN_KV = 3


cdef inline bint varint_minimal(const uint8_t* s, int64_t n) noexcept nogil:
    """The encoding protobuf's serializer would write for the decoded value."""
    if n == 1:
        return True
    if n == 10:
        return s[9] == 1
    return s[n - 1] != 0


cdef bint canonical(int which, const uint8_t* p, const uint8_t* end) noexcept nogil:
    """True if these (validated) bytes of an AnyValue/ArrayValue/KeyValueList/KeyValue
    are exactly what upb's SerializeToString() gives after parsing them.

    upb writes known fields once each, in field-number order, with minimal
    varints, skipping proto3 defaults of implicit-presence fields, then the
    unknown fields verbatim in arrival order. The reference stores that
    re-serialization for array_value/kvlist_value; when the wire bytes differ
    the request goes to the reference path (fallback).
    """
    cdef const uint8_t* t0
    cdef const uint8_t* v0
    cdef const uint8_t* l0
    cdef const uint8_t* s
    cdef uint32_t tag, fn, wt
    cdef uint64_t v
    cdef int64_t n
    cdef uint32_t last = 0
    cdef bint seen_unknown = False
    cdef int count = 0
    cdef int sub
    cdef bint known
    while p < end:
        t0 = p
        if rd_tag(&p, end, &tag):
            return False
        fn = tag >> 3
        wt = tag & 7
        if which == CN_ANY:
            known = ((fn == 1 or fn == 5 or fn == 6 or fn == 7) and wt == 2) or \
                    ((fn == 2 or fn == 3 or fn == 8) and wt == 0) or (fn == 4 and wt == 1)
        elif which == CN_KV:
            known = ((fn == 1 or fn == 2) and wt == 2) or (fn == 3 and wt == 0)
        else:
            known = fn == 1 and wt == 2
        if not known:
            seen_unknown = True
            if skip_field(&p, end, tag, 0):
                return False
            continue
        if seen_unknown or not varint_minimal(t0, p - t0):
            return False
        if which == CN_ANY:
            if count:  # a oneof: only the last member survives
                return False
        elif which == CN_KV:
            if fn <= last:  # out of order or repeated singular field
                return False
        last = fn
        count += 1
        if wt == 0:
            v0 = p
            if rd_varint(&p, end, &v) or not varint_minimal(v0, p - v0):
                return False
            if which == CN_ANY and fn == 2:
                if v > 1:  # bool: re-serialized as 0/1
                    return False
            elif fn == 8 or which == CN_KV:  # int32: sign-extended to 64 bits
                if v != <uint64_t><int64_t><int32_t>v:
                    return False
                if which == CN_KV and <int32_t>v == 0:  # implicit presence default
                    return False
        elif wt == 1:
            if rd_f64(&p, end, &v):
                return False
        else:
            l0 = p
            if rd_len(&p, end, &s, &n) or not varint_minimal(l0, s - l0):
                return False
            sub = -1
            if which == CN_ANY:
                if fn == 5:
                    sub = CN_ARRAY
                elif fn == 6:
                    sub = CN_KVLIST
            elif which == CN_ARRAY:
                sub = CN_ANY
            elif which == CN_KVLIST:
                sub = CN_KV
            elif fn == 2:
                sub = CN_ANY
            elif n == 0:  # KeyValue.key "" is not serialized
                return False
            if sub >= 0 and not canonical(sub, s, s + n):
                return False
    return True
