# What every signal writes: AnyValues, KeyValues from the three attribute columns
# (otlpd.attributes.join, natively), EntityRefs, Resource and InstrumentationScope.
# Relies on wire.pxi and columns.pxi; used by the record writers and groups.pxi.

# the children of ANYVALUE (otlpd.attributes.ANYVALUE), of an attributes_other item, of a map entry
cdef enum:
    AV_TYPE = 0
    AV_STR = 1
    AV_BOOL = 2
    AV_INT = 3
    AV_DOUBLE = 4
    AV_BYTES = 5
cdef enum:
    OTHER_INDEX = 0
    OTHER_KEY = 1
    OTHER_VALUE = 2
    OTHER_KEY_STRINDEX = 3

# the sources columns (otlpd.sources.SOURCE_COLUMNS), in that order
cdef enum:
    S_RES_ATTRS = 0
    S_RES_DROPPED = 3
    S_RES_REFS = 4
    S_RES_URL = 5
    S_SCOPE_NAME = 6
    S_SCOPE_VERSION = 7
    S_SCOPE_ATTRS = 8
    S_SCOPE_DROPPED = 11
    S_SCOPE_URL = 12
    N_SOURCE_COLUMNS = 13


ctypedef struct Scratch:
    int64_t* slots    # attribute order: which side entry goes where (w_attributes)
    int64_t cap


cdef int fail(const char* what) except -1 nogil:
    with gil:
        raise ValueError(what.decode())


cdef int parse_int(const uint8_t* p, int64_t n, int64_t* out) except -1 nogil:
    """The decimal text of an int attribute (what the decoder writes: -?[0-9]+) as an int64."""
    cdef int64_t k = 0
    cdef uint64_t v = 0
    cdef uint64_t limit = 0x7FFFFFFFFFFFFFFFULL
    cdef int negative = n > 0 and p[0] == 45  # '-'
    if negative:
        k = 1
        limit += 1
    if k >= n or n - k > 19:  # bounds: at least one digit, at most 19
        fail(b"an int attribute's text is not a 64-bit decimal integer")
    while k < n:
        if p[k] < 48 or p[k] > 57:
            fail(b"an int attribute's text is not a 64-bit decimal integer")
        if v > (limit - (p[k] - 48)) // 10:
            fail(b"an int attribute's text is out of the 64-bit range")
        v = v * 10 + (p[k] - 48)
        k += 1
    out[0] = <int64_t>(0 - v) if negative else <int64_t>v
    return 0


cdef int parse_double(const uint8_t* p, int64_t n, double* out) except -1 nogil:
    """The text of a double attribute (otlpd.attributes.double_text: decimals, %.17g, inf)."""
    cdef char text[64]
    cdef char* stop
    if n <= 0 or n >= 64:  # bounds: the copy below fits `text` with its NUL
        fail(b"a double attribute's text is not a number")
    memcpy(text, p, n)
    text[n] = 0
    out[0] = strtod(text, &stop)
    if stop != text + n:
        fail(b"a double attribute's text is not a number")
    return 0


# nested messages of the bytes of an array or kvlist AnyValue (check_nested)
cdef enum Nested:
    N_ANYVALUE = 0
    N_ARRAY = 1      # ArrayValue: 1 repeated AnyValue
    N_KVLIST = 2     # KeyValueList: 1 repeated KeyValue
    N_KEYVALUE = 3   # KeyValue: 2 AnyValue
cdef enum:
    MAX_NESTING = 100  # upb's default depth limit


cdef int rd_varint(const uint8_t** pp, const uint8_t* end, uint64_t* out) except -1 nogil:
    cdef const uint8_t* p = pp[0]
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef uint8_t byte
    while True:
        if p >= end or shift > 63:  # bounds: never read at or past the end of the message
            fail(b"an array or kvlist AnyValue whose bytes are not a valid message")
        byte = p[0]
        v |= (<uint64_t>(byte & 0x7F)) << shift
        shift += 7
        p += 1
        if byte < 0x80:
            break
    out[0] = v
    pp[0] = p
    return 0


cdef int check_nested(const uint8_t* p, const uint8_t* end, int kind, int depth) except -1 nogil:
    """The bytes of an array or kvlist AnyValue (copied as they are into the request) are a
    well-formed ArrayValue/KeyValueList: every tag, varint and length within its message,
    nested AnyValues, KeyValues, arrays and kvlists checked the same way, at most
    MAX_NESTING deep. What upb would parse but is not checked here: UTF-8 of strings; what
    it would accept and is refused here: groups (wire types 3 and 4)."""
    cdef uint64_t tag, length
    cdef uint32_t field, wire
    cdef int inner
    if depth > MAX_NESTING:
        fail(b"an array or kvlist AnyValue nested too deep")
    while p < end:
        rd_varint(&p, end, &tag)
        field = <uint32_t>(tag >> 3)
        wire = <uint32_t>(tag & 7)
        if field == 0 or tag > 0xFFFFFFFFULL:
            fail(b"an array or kvlist AnyValue whose bytes are not a valid message")
        if wire == 0:
            rd_varint(&p, end, &length)
        elif wire == 1 or wire == 5:
            if end - p < (8 if wire == 1 else 4):  # bounds: the fixed-size value within the message
                fail(b"an array or kvlist AnyValue whose bytes are not a valid message")
            p += 8 if wire == 1 else 4
        elif wire == 2:
            rd_varint(&p, end, &length)
            if length > <uint64_t>(end - p):  # bounds: the field within the message
                fail(b"an array or kvlist AnyValue whose bytes are not a valid message")
            inner = -1
            if kind == N_ARRAY and field == 1 or kind == N_KEYVALUE and field == 2:
                inner = N_ANYVALUE
            elif kind == N_KVLIST and field == 1:
                inner = N_KEYVALUE
            elif kind == N_ANYVALUE and field == 5:
                inner = N_ARRAY
            elif kind == N_ANYVALUE and field == 6:
                inner = N_KVLIST
            if inner != -1:
                check_nested(p, p + length, inner, depth + 1)
            p += length
        else:
            fail(b"an array or kvlist AnyValue whose bytes are not a valid message")
    return 0


cdef int w_anyvalue(Buf* b, uint32_t field, const Col* v, int64_t k) except -1 nogil:
    """ANYVALUE item `k` as the AnyValue field `field`; nothing if it is null (no value).

    As otlpd.schema._to_any_value: a member that its type selects but is null gives an
    empty AnyValue, except arrays and kvlists, which must have their bytes."""
    cdef uint8_t kind
    cdef int flag
    cdef int64_t integer
    cdef double number
    cdef const uint8_t* p
    cdef int64_t n
    cdef size_t mark
    if col_null(v, k):
        return 0
    if not col_fixed(&v.child[AV_TYPE], k, &kind):
        fail(b"an AnyValue without its type")
    mark = begin(b, field)
    if kind == 1 or kind == 7:
        if col_bytes(&v.child[AV_BYTES if kind == 7 else AV_STR], k, &p, &n):
            w_ld(b, kind, p, n)
    elif kind == 2:
        if col_bool(&v.child[AV_BOOL], k, &flag):
            w_tag(b, 2, 0)
            w_varint(b, <uint64_t>flag)
    elif kind == 3 or kind == 8:
        if col_fixed(&v.child[AV_INT], k, &integer):
            if kind == 8 and (integer < -2147483648 or integer > 2147483647):
                fail(b"a string_value_strindex out of the int32 range")
            w_tag(b, kind, 0)
            w_varint(b, <uint64_t>integer)
    elif kind == 4:
        if col_fixed(&v.child[AV_DOUBLE], k, &number):
            w_double(b, 4, number)
    elif kind == 5 or kind == 6:
        if not col_bytes(&v.child[AV_BYTES], k, &p, &n):
            fail(b"an array or kvlist AnyValue without its bytes")
        # the serialized ArrayValue/KeyValueList as it is (the decoder copied it from the wire)
        check_nested(p, p + n, N_ARRAY if kind == 5 else N_KVLIST, 1)
        w_ld(b, kind, p, n)
    elif kind != 0:
        fail(b"unknown AnyValue type")
    return end(b, mark)


cdef int w_text_kv(Buf* b, uint32_t field, const Col* entries, int64_t e, uint8_t kind) except -1 nogil:
    """Map entry `e` (the text of a string, bool, int or double) as a KeyValue."""
    cdef const uint8_t* key
    cdef const uint8_t* text
    cdef int64_t key_size, text_size
    cdef int64_t integer
    cdef double number
    cdef int has_text
    cdef size_t mark = begin(b, field)
    cdef size_t value
    col_bytes(&entries.child[0], e, &key, &key_size)
    has_text = col_bytes(&entries.child[1], e, &text, &text_size)
    w_bytes(b, 1, key, key_size)
    value = begin(b, 2)
    if kind == 1:
        if has_text:
            w_ld(b, 1, text, text_size)
    elif kind == 2:
        w_tag(b, 2, 0)
        w_varint(b, 1 if text_size == 4 and memcmp(text, b"true", 4) == 0 else 0)
    elif kind == 3:
        parse_int(text, text_size, &integer)
        w_tag(b, 3, 0)
        w_varint(b, <uint64_t>integer)
    elif kind == 4:
        parse_double(text, text_size, &number)
        w_double(b, 4, number)
    else:
        fail(b"an attribute type without a text form (attributes_types)")
    end(b, value)
    return end(b, mark)


cdef int w_other_kv(Buf* b, uint32_t field, const Col* side, int64_t j) except -1 nogil:
    """attributes_other item `j` as a KeyValue."""
    cdef const uint8_t* key
    cdef int64_t key_size
    cdef size_t mark = begin(b, field)
    col_bytes(&side.child[OTHER_KEY], j, &key, &key_size)
    w_bytes(b, 1, key, key_size)
    w_anyvalue(b, 2, &side.child[OTHER_VALUE], j)
    w_int32(b, 3, col_i32(&side.child[OTHER_KEY_STRINDEX], j))
    return end(b, mark)


cdef int w_attributes(Buf* b, Scratch* s, uint32_t field, const Col* cols, int64_t i) except -1 nogil:
    """The KeyValues of row `i` of the three attribute columns cols[0:3] (map, types, side
    list), in their original order: each side entry at its `index`, the map's entries in
    the remaining places in order (otlpd.attributes.join, and its checks)."""
    cdef const Col* entries = cols[0].child
    cdef const Col* side = cols[2].child
    cdef int64_t map_start, map_stop, types_start, types_stop, side_start, side_stop
    cdef int64_t n_map, total, j, k, e, index
    cdef const uint8_t* kinds
    cdef int64_t* slots
    col_range(&cols[0], i, &map_start, &map_stop)
    col_range(&cols[1], i, &types_start, &types_stop)
    col_range(&cols[2], i, &side_start, &side_stop)
    n_map = map_stop - map_start
    if types_stop - types_start != n_map:
        fail(b"attributes: as many map entries as attribute types are needed")
    kinds = cols[1].data + types_start  # bounds: col_range checked types_stop <= data_size
    if side_stop == side_start:
        for e in range(n_map):
            w_text_kv(b, field, entries, map_start + e, kinds[e])
        return 0
    total = n_map + side_stop - side_start
    if total > s.cap:
        slots = <int64_t*>realloc(s.slots, total * sizeof(int64_t))
        if slots == NULL:
            with gil:
                raise MemoryError()
        s.slots = slots
        s.cap = total
    slots = s.slots
    for k in range(total):
        slots[k] = -1
    for j in range(side_start, side_stop):
        if col_null(side, j):
            fail(b"attributes_other: a null entry")
        index = col_i32(&side.child[OTHER_INDEX], j)
        if col_null(&side.child[OTHER_INDEX], j) or index < 0 or index >= total or slots[index] != -1:
            fail(b"attributes_other: an attribute index out of place")
        slots[index] = j
    e = 0
    for k in range(total):  # bounds: e < n_map, as total - n_map slots hold side entries
        if slots[k] == -1:
            w_text_kv(b, field, entries, map_start + e, kinds[e])
            e += 1
        else:
            w_other_kv(b, field, side, slots[k])
    return 0


cdef int w_strings(Buf* b, uint32_t field, const Col* strings, int64_t i) except -1 nogil:
    """Row `i` of a list<string> as a repeated string field."""
    cdef int64_t start, stop, k, n
    cdef const uint8_t* p
    col_range(strings, i, &start, &stop)
    for k in range(start, stop):
        col_bytes(strings.child, k, &p, &n)
        w_ld(b, field, p, n)
    return 0


cdef int w_resource(Buf* b, Scratch* s, const Col* src, int64_t j) except -1 nogil:
    """Field 1 of a Resource* message: the Resource of source row `j`, always present."""
    cdef size_t mark = begin(b, 1)
    cdef size_t ref
    cdef int64_t start, stop, k, n
    cdef const Col* refs = src[S_RES_REFS].child
    cdef const uint8_t* p
    w_attributes(b, s, 1, &src[S_RES_ATTRS], j)
    w_uint(b, 2, col_u32(&src[S_RES_DROPPED], j))
    col_range(&src[S_RES_REFS], j, &start, &stop)
    for k in range(start, stop):
        if col_null(refs, k):
            fail(b"resource_entity_refs: a null entry")
        ref = begin(b, 3)
        col_bytes(&refs.child[0], k, &p, &n)
        w_bytes(b, 1, p, n)
        col_bytes(&refs.child[1], k, &p, &n)
        w_bytes(b, 2, p, n)
        w_strings(b, 3, &refs.child[2], k)
        w_strings(b, 4, &refs.child[3], k)
        end(b, ref)
    return end(b, mark)


cdef int w_scope(Buf* b, Scratch* s, const Col* src, int64_t j) except -1 nogil:
    """Field 1 of a Scope* message: the InstrumentationScope of source row `j`, always present."""
    cdef size_t mark = begin(b, 1)
    cdef const uint8_t* p
    cdef int64_t n
    col_bytes(&src[S_SCOPE_NAME], j, &p, &n)
    w_bytes(b, 1, p, n)
    col_bytes(&src[S_SCOPE_VERSION], j, &p, &n)
    w_bytes(b, 2, p, n)
    w_attributes(b, s, 3, &src[S_SCOPE_ATTRS], j)
    w_uint(b, 4, col_u32(&src[S_SCOPE_DROPPED], j))
    return end(b, mark)


cdef int w_url(Buf* b, const Col* url, int64_t j) except -1 nogil:
    """Field 3 of a Resource*/Scope* message: its schema_url, omitted when empty."""
    cdef const uint8_t* p
    cdef int64_t n
    col_bytes(url, j, &p, &n)
    return w_bytes(b, 3, p, n)


cdef inline int attributes_null(const Col* cols, int64_t i) except -1 nogil:
    """1 if the attribute list of row `i` is None for to_request (map and side list null)."""
    return col_null(&cols[0], i) and col_null(&cols[2], i)
