# Core declarations, included first: the Arrow C Data Interface struct, status codes
# and limits, the column structs (Buf, Col, Spec) and the per-call context Ctx with
# its error setters. Relies on libc only; every other part uses them.

# ============================================================== Arrow C Data Interface

cdef struct ArrowArray:
    # Layout fixed by the Arrow C Data Interface specification.
    int64_t length
    int64_t null_count
    int64_t offset
    int64_t n_buffers
    int64_t n_children
    const void** buffers
    ArrowArray** children
    ArrowArray* dictionary
    void (*release)(ArrowArray*) noexcept nogil
    void* private_data


# ============================================================== status and context

cdef enum:
    ST_OK = 0
    ST_ERR = -1        # malformed input: DecodeError(c.err at byte c.err_off)
    ST_NOMEM = -2      # malloc/realloc failed: MemoryError
    ST_FALLBACK = -3   # valid, but decode with the reference path (c.fallback says why)
    ST_TOO_LARGE = -4  # a column exceeds int32 offsets / the replication budget

cdef enum:
    MAX_DEPTH = 100    # upb's default nesting limit (submessages + groups), measured
    MAXF = 32          # field tables cover field numbers 0..31 (max used: 16)
    MAX_MSGS = 64

# Bytes of resource/scope/metric columns copied onto rows, per request. Only
# hostile requests (huge resources x many tiny records) come near it.
cdef int64_t MAX_REPLICATED = 1 << 30
cdef int64_t INT32_MAX_ = 2147483647

cdef struct Buf:
    uint8_t* p
    int64_t len      # bytes used
    int64_t cap      # bytes allocated

cdef enum:
    C_PRIM = 0       # fixed width values (width bytes each)
    C_BOOL = 1       # bit-packed values
    C_BIN = 2        # int32 offsets (vals) + bytes (data): string and binary
    C_LIST = 3       # int32 offsets (vals) + one child
    C_STRUCT = 4     # children only

cdef enum:
    # ANYVALUE = struct<type, str, bool, int, double, bytes>: only the member for
    # `type` is set, so the members' validity is derived from `type` at export
    # (valid iff the type selects them, or the struct slot is null: pyarrow puts
    # non-null empty values under null struct slots). Members are "sparse":
    # written only when set, padded with empty values up to the slot first.
    F_ANYVALUE = 1

cdef struct Col:
    int kind
    int width
    int flags
    int64_t length
    int64_t null_count   # the validity bitmap exists iff null_count > 0
    Buf valid
    Buf vals
    Buf data
    int n_children
    Col* children

cdef struct Spec:
    int kind
    int width
    int flags
    int n_children

cdef struct Ctx:
    const uint8_t* base
    int status
    const char* err
    int64_t err_off
    const char* fallback
    int64_t rows
    int64_t replicated
    int64_t exported  # bytes of the exported batch's block
    Col* out      # the batch being built: a struct whose children are the columns
    Col* tmpl     # same shape: one-row templates of resource/scope/metric columns
    Col* O        # out.children
    Col* T        # tmpl.children
    # resource and scope once per file (sources.pxi)
    Col* src      # the request's sources: a struct whose children are SOURCES_SCHEMA's columns
    Col* S        # src.children
    int src_col   # index of the source_id column in O
    uint64_t cur_source  # source_id of the scope group being decoded
    Buf src_keys  # canonical keys of the request's sources, one after the other
    Buf src_meta  # SrcMeta per source, in order
    Buf src_slots # open addressing table: int32 source index + 1, 0 = empty
    int64_t n_src
    int64_t src_cap
    uint32_t temporalities  # bit t: a sum or histogram point of aggregation_temporality t (1, 2); bit 0 others


cdef inline void st_set(Ctx* c, int st) noexcept nogil:
    if c.status == ST_OK:
        c.status = st


cdef int v_fail(Ctx* c, const uint8_t* p, const char* why) noexcept nogil:
    c.err = why
    c.err_off = p - c.base
    c.status = ST_ERR
    return ST_ERR


cdef int d_fail(Ctx* c, const uint8_t* p) noexcept nogil:
    # Only reachable if validate() and the decoders disagree (a bug): still a
    # clean DecodeError, never an out-of-bounds access.
    if c.status == ST_OK:
        c.err = "malformed input"
        c.err_off = p - c.base
        c.status = ST_ERR
    return c.status
