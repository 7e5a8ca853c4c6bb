# Wire writers: the growable output buffer (`Buf`) and protobuf fields written into it.
# Relies on nothing; used by every other part.
#
# Nested messages are written forwards with one byte reserved for their length
# (`begin()`); `end()` writes the length there, and when it needs more than one byte
# moves the message up by the difference (memmove). Most nested messages (KeyValues,
# AnyValues, events) are under 128 bytes, so only spans, groups and long values move,
# each once per level. Lengths are always minimal varints, like upb's.

ctypedef struct Buf:
    uint8_t* data
    size_t len
    size_t cap


cdef int buf_grow(Buf* b, size_t extra) except -1 nogil:
    """Room for `extra` more bytes, or MemoryError."""
    cdef size_t need = b.len + extra
    cdef size_t cap
    cdef uint8_t* data
    if need < b.len:  # size_t overflow
        with gil:
            raise MemoryError("encoder buffer overflow")
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap >= 256 else 256
    if cap < need:
        cap = need
    data = <uint8_t*>realloc(b.data, cap)
    if data == NULL:
        with gil:
            raise MemoryError(f"cannot grow the encoder buffer to {cap} bytes")
    b.data = data
    b.cap = cap
    return 0


cdef inline void buf_free(Buf* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline int varint_size(uint64_t v) noexcept nogil:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline int64_t field_size(int64_t content) noexcept nogil:
    """A length-delimited field of a one-byte tag holding `content` bytes."""
    return 1 + varint_size(<uint64_t>content) + content


cdef inline int w_varint(Buf* b, uint64_t v) except -1 nogil:
    cdef uint8_t* p
    if b.cap - b.len < 10:  # bounds: a varint is at most 10 bytes
        buf_grow(b, 10)
    p = b.data + b.len
    while v >= 0x80:
        p[0] = <uint8_t>((v & 0x7F) | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    b.len = <size_t>(p + 1 - b.data)
    return 0


cdef inline int w_tag(Buf* b, uint32_t field, uint32_t wire_type) except -1 nogil:
    return w_varint(b, (field << 3) | wire_type)


cdef inline int w_raw(Buf* b, const void* src, size_t n) except -1 nogil:
    if b.cap - b.len < n:
        buf_grow(b, n)
    if n:
        memcpy(b.data + b.len, src, n)
        b.len += n
    return 0


cdef inline int w_fixed64_raw(Buf* b, uint64_t v) except -1 nogil:
    if b.cap - b.len < 8:
        buf_grow(b, 8)
    memcpy(b.data + b.len, &v, 8)  # little-endian host: checked at import
    b.len += 8
    return 0


cdef inline int w_ld(Buf* b, uint32_t field, const uint8_t* p, int64_t n) except -1 nogil:
    """A length-delimited field, written even when empty (oneof members)."""
    w_tag(b, field, 2)
    w_varint(b, <uint64_t>n)
    return w_raw(b, p, <size_t>n)


cdef inline int w_bytes(Buf* b, uint32_t field, const uint8_t* p, int64_t n) except -1 nogil:
    """A proto3 string/bytes field: omitted when empty."""
    if n > 0:
        w_ld(b, field, p, n)
    return 0


cdef inline int w_uint(Buf* b, uint32_t field, uint64_t v) except -1 nogil:
    """A proto3 uint32/uint64 varint field: omitted when 0."""
    if v:
        w_tag(b, field, 0)
        w_varint(b, v)
    return 0


cdef inline int w_int32(Buf* b, uint32_t field, int32_t v) except -1 nogil:
    """A proto3 int32 or enum field, sign-extended to 64 bits as protobuf does: omitted when 0."""
    if v:
        w_tag(b, field, 0)
        w_varint(b, <uint64_t><int64_t>v)
    return 0


cdef inline int w_sint32(Buf* b, uint32_t field, int32_t v) except -1 nogil:
    """A proto3 sint32 field (zigzag): omitted when 0."""
    if v:
        w_tag(b, field, 0)
        w_varint(b, <uint64_t>((<uint32_t>v << 1) ^ <uint32_t>(v >> 31)))
    return 0


cdef inline int w_fixed64(Buf* b, uint32_t field, uint64_t v) except -1 nogil:
    """A proto3 fixed64/sfixed64 field: omitted when 0."""
    if v:
        w_tag(b, field, 1)
        w_fixed64_raw(b, v)
    return 0


cdef inline int w_fixed32(Buf* b, uint32_t field, uint32_t v) except -1 nogil:
    """A proto3 fixed32 field: omitted when 0."""
    if v:
        w_tag(b, field, 5)
        if b.cap - b.len < 4:
            buf_grow(b, 4)
        memcpy(b.data + b.len, &v, 4)
        b.len += 4
    return 0


cdef inline int w_double(Buf* b, uint32_t field, double v) except -1 nogil:
    """A double field with presence (oneof, optional): always written."""
    cdef uint64_t bits
    memcpy(&bits, &v, 8)
    w_tag(b, field, 1)
    return w_fixed64_raw(b, bits)


cdef inline int w_double3(Buf* b, uint32_t field, double v) except -1 nogil:
    """A proto3 double field: omitted when its bits are 0 (upb writes -0.0)."""
    cdef uint64_t bits
    memcpy(&bits, &v, 8)
    if bits:
        w_tag(b, field, 1)
        w_fixed64_raw(b, bits)
    return 0


cdef inline size_t begin(Buf* b, uint32_t field) except 0 nogil:
    """Start a nested message: its tag and one reserved length byte; the mark for end()."""
    w_tag(b, field, 2)
    if b.cap - b.len < 1:
        buf_grow(b, 1)
    b.len += 1
    return b.len


cdef inline int end(Buf* b, size_t mark) except -1 nogil:
    """Finish the message begun at `mark`: write its length, moving it up if needed."""
    cdef size_t n = b.len - mark
    cdef int size = varint_size(n)
    cdef uint8_t* p
    if size == 1:
        b.data[mark - 1] = <uint8_t>n
        return 0
    if b.cap - b.len < <size_t>(size - 1):
        buf_grow(b, size - 1)
    memmove(b.data + mark - 1 + size, b.data + mark, n)
    p = b.data + mark - 1
    while n >= 0x80:
        p[0] = <uint8_t>((n & 0x7F) | 0x80)
        n >>= 7
        p += 1
    p[0] = <uint8_t>n
    b.len += size - 1
    return 0
