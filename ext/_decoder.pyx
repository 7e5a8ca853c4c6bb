# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
#
# Directives:
# - boundscheck/wraparound=False: this module never indexes Python sequences or
#   memoryviews in the hot code; every index is on a C pointer or C array, and
#   each one is preceded by an explicit check against the end of its buffer
#   (`p < end`, `end - p >= 8`, `need <= cap`, ...), commented where it happens.
#   Cython does not check C-pointer indexing anyway; the directives only make
#   sure no Python-level check sneaks in if the code changes.
# - cdivision=True: the only divisions/modulos are by the positive constants
#   4, 8 and 7 on non-negative int64 values, where C and Python agree.
"""Cython decoder: OTLP Export request bytes -> pyarrow.RecordBatch, without the GIL.

Produces exactly the batches of the reference path (``otlpd.schema.decode_*``)
for the same bytes; docs/DECODER.md describes the design. In short:

1. The ``dec_*`` functions walk the request's wire format once and append every
   value to C growable column buffers (``Col``), following protobuf semantics
   (last scalar wins, oneof last member wins, repeated singular messages merge).
   Resource/scope/metric columns are decoded once into a one-row "template" and
   replicated onto every row of their group.
2. While walking they validate: the fields they decode inline (``v*`` helpers),
   every other field through ``vfield()``/``validate()``, driven by per-message
   field tables built from the ``*_pb2`` descriptors. Together they accept
   exactly what upb (the protobuf runtime behind the reference) accepts:
   varint/length limits, wire types, groups, UTF-8 of ``string`` fields, packed
   lengths, upb's nesting limit of 100. Anything else is a DecodeError.
3. ``export_tree()`` copies the columns into one block of ``struct ArrowArray``
   nodes and their buffers, and pyarrow imports the whole batch with one
   ``RecordBatch._import_from_c``. The column trees are pooled and reused.

Steps 1-3 run in one ``with nogil:`` block. A few valid but pathological
encodings that the columns cannot reproduce cheaply (see FALLBACK below and
docs/DECODER.md) are handed to the reference path instead, so that results
always match it.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset, strlen

import sys

import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlpd import schema as _schema
from otlpd.schema import DecodeError

__all__ = ["decode_traces", "decode_metrics", "decode_logs", "decode", "decode_chunk", "merge",
           "Chunk", "DECODERS", "DecodeError", "stats"]

if sys.byteorder != "little":  # fixed32/fixed64/double are read with memcpy
    raise ImportError("otlpd._decoder supports little-endian hosts only")


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


# ============================================================== column builders
# Every append starts with `if c.status: return`: after the first failure
# nothing is written any more (the batch is discarded), so a failed reserve can
# never be followed by an out-of-bounds write.

cdef int buf_grow(Buf* b, int64_t need) noexcept nogil:
    cdef int64_t cap = b.cap * 2 if b.cap > 0 else 64
    cdef uint8_t* q
    if need > (<int64_t>1 << 40):  # no column gets near this; keeps `cap` from overflowing
        return ST_NOMEM
    while cap < need:
        cap *= 2
    q = <uint8_t*>realloc(b.p, <size_t>cap)
    if q == NULL:
        return ST_NOMEM
    b.p = q
    b.cap = cap
    return ST_OK


cdef inline bint buf_reserve(Ctx* c, Buf* b, int64_t extra) noexcept nogil:
    """Make room for `extra` more bytes (geometric growth); False on failure."""
    if b.len + extra <= b.cap:
        return True
    if buf_grow(b, b.len + extra):
        st_set(c, ST_NOMEM)
        return False
    return True


cdef inline void bits_push(Ctx* c, Buf* b, int64_t i, bint bit) noexcept nogil:
    """Set bit i of a bitmap holding bits [0, i) in ceil(i/8) bytes."""
    if c.status:
        return
    if (i & 7) == 0:
        if not buf_reserve(c, b, 1):
            return
        b.p[b.len] = 0  # bounds: reserved above
        b.len += 1
    if (i >> 3) >= b.len:  # bounds: never true while the invariant holds; defensive
        st_set(c, ST_ERR)
        c.err = "internal error: bitmap out of sync"
        return
    if bit:
        b.p[i >> 3] |= <uint8_t>(1 << (i & 7))
    else:
        b.p[i >> 3] &= <uint8_t>~(1 << (i & 7))


cdef void valid_first_null(Ctx* c, Col* col, int64_t i) noexcept nogil:
    """Slot i is the column's first null: materialize the bitmap, slots [0, i) valid."""
    cdef int64_t nbytes = (i >> 3) + 1
    col.valid.len = 0
    if not buf_reserve(c, &col.valid, nbytes):
        return
    memset(col.valid.p, 0xFF, <size_t>nbytes)  # bounds: nbytes reserved above
    col.valid.len = nbytes
    col.valid.p[i >> 3] &= <uint8_t>~(1 << (i & 7))
    col.null_count = 1


cdef inline void valid_push(Ctx* c, Col* col, int64_t i, bint ok) noexcept nogil:
    """Record validity of slot i (== number of slots recorded so far)."""
    if col.null_count == 0:
        if not ok:
            valid_first_null(c, col, i)
        return
    bits_push(c, &col.valid, i, ok)
    if not ok:
        col.null_count += 1


cdef inline void app_w8(Ctx* c, Col* col, uint64_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 8):
        return
    memcpy(col.vals.p + col.vals.len, &v, 8)  # bounds: reserved above
    col.vals.len += 8
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_w4(Ctx* c, Col* col, uint32_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 4):
        return
    memcpy(col.vals.p + col.vals.len, &v, 4)  # bounds: reserved above
    col.vals.len += 4
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_u8(Ctx* c, Col* col, uint8_t v) noexcept nogil:
    if c.status or not buf_reserve(c, &col.vals, 1):
        return
    col.vals.p[col.vals.len] = v  # bounds: reserved above
    col.vals.len += 1
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_bool(Ctx* c, Col* col, bint v) noexcept nogil:
    if c.status:
        return
    bits_push(c, &col.vals, col.length, v)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


# Offsets (C_BIN/C_LIST vals) are allocated lazily: vals.len == 0 stands for
# the single leading offset 0; the first push writes that 0 first.

cdef inline bint offsets_start(Ctx* c, Col* col) noexcept nogil:
    if col.vals.len == 0:
        if not buf_reserve(c, &col.vals, 8):
            return False
        memset(col.vals.p, 0, 4)
        col.vals.len = 4
    return True


cdef inline int32_t last_offset(Col* col) noexcept nogil:
    cdef int32_t last = 0
    if col.vals.len >= 4:  # bounds: at least one offset stored
        memcpy(&last, col.vals.p + col.vals.len - 4, 4)
    return last


cdef inline void push_offset(Ctx* c, Col* col, int64_t off) noexcept nogil:
    cdef int32_t o32
    if off > INT32_MAX_:
        st_set(c, ST_TOO_LARGE)
        return
    if not offsets_start(c, col) or not buf_reserve(c, &col.vals, 4):
        return
    o32 = <int32_t>off
    memcpy(col.vals.p + col.vals.len, &o32, 4)  # bounds: reserved above
    col.vals.len += 4


cdef inline void app_bin(Ctx* c, Col* col, const uint8_t* s, int64_t n) noexcept nogil:
    if c.status:
        return
    if col.data.len + n > INT32_MAX_:
        st_set(c, ST_TOO_LARGE)
        return
    if n > 0:
        if not buf_reserve(c, &col.data, n):
            return
        memcpy(col.data.p + col.data.len, s, <size_t>n)  # bounds: reserved above
        col.data.len += n
    push_offset(c, col, col.data.len)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_list(Ctx* c, Col* col) noexcept nogil:
    """Close the current list slot: its elements are the child's new entries."""
    if c.status:
        return
    push_offset(c, col, col.children[0].length)
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef inline void app_struct(Ctx* c, Col* col) noexcept nogil:
    """Close the current struct slot (its children were appended already)."""
    if c.status:
        return
    if col.null_count:
        valid_push(c, col, col.length, True)
    col.length += 1


cdef void app_null(Ctx* c, Col* col) noexcept nogil:
    cdef int i
    cdef int32_t last
    cdef uint64_t zero = 0
    if c.status:
        return
    if col.kind == C_PRIM:
        if not buf_reserve(c, &col.vals, 8):
            return
        memcpy(col.vals.p + col.vals.len, &zero, 8)  # bounds: 8 >= width reserved above
        col.vals.len += col.width
    elif col.kind == C_BOOL:
        bits_push(c, &col.vals, col.length, False)
    elif col.kind == C_BIN or col.kind == C_LIST:
        push_offset(c, col, last_offset(col))  # an empty slot
    elif col.flags & F_ANYVALUE:
        app_u8(c, &col.children[0], 0)  # members: padded with empty values later
    else:
        for i in range(col.n_children):
            app_null(c, &col.children[i])
    valid_push(c, col, col.length, False)
    col.length += 1


cdef inline void col_pad(Ctx* c, Col* col, int64_t k) noexcept nogil:
    """Append empty non-null values (0, false, "") until the column has k slots.

    Only for ANYVALUE members, whose validity is derived at export.
    """
    if col.length < k:
        col_pad_slow(c, col, k)


cdef void col_pad_slow(Ctx* c, Col* col, int64_t k) noexcept nogil:
    cdef int64_t add = k - col.length
    cdef int64_t i, nbytes
    cdef int32_t last
    cdef int32_t* offsets
    if add <= 0 or c.status:
        return
    if col.kind == C_PRIM:
        if not buf_reserve(c, &col.vals, add * col.width):
            return
        memset(col.vals.p + col.vals.len, 0, <size_t>(add * col.width))  # bounds: reserved
        col.vals.len += add * col.width
    elif col.kind == C_BOOL:
        # bits [length, k) false, in bits_push's layout: bits [0, k) in ceil(k/8) bytes
        nbytes = (k + 7) >> 3
        if col.vals.len != (col.length + 7) >> 3:  # bounds: the bitmap invariant; defensive
            st_set(c, ST_ERR)
            c.err = "internal error: bitmap out of sync"
            return
        if not buf_reserve(c, &col.vals, nbytes - col.vals.len):
            return
        if col.length & 7:
            col.vals.p[col.length >> 3] &= <uint8_t>((1 << (col.length & 7)) - 1)
        memset(col.vals.p + col.vals.len, 0, <size_t>(nbytes - col.vals.len))  # bounds: reserved
        col.vals.len = nbytes
    else:  # C_BIN
        last = last_offset(col)
        if not offsets_start(c, col) or not buf_reserve(c, &col.vals, 4 * add):
            return
        # int32 stores into a buffer from realloc (aligned for any type); vals.len is
        # a multiple of 4 (offsets only)
        offsets = <int32_t*>(col.vals.p + col.vals.len)
        for i in range(add):
            offsets[i] = last  # bounds: 4 * add bytes reserved
        col.vals.len += 4 * add
    col.length = k


cdef inline void anyvalue_pad(Ctx* c, Col* col) noexcept nogil:
    cdef int m
    for m in range(1, 6):
        col_pad(c, &col.children[m], col.length)


cdef uint8_t ANY_MEMBERS[256]   # type -> bit m set if member m (1..5) holds that type
memset(ANY_MEMBERS, 0, sizeof(ANY_MEMBERS))
ANY_MEMBERS[1] = 1 << 1
ANY_MEMBERS[2] = 1 << 2
ANY_MEMBERS[3] = 1 << 3
ANY_MEMBERS[8] = 1 << 3
ANY_MEMBERS[4] = 1 << 4
ANY_MEMBERS[5] = 1 << 5
ANY_MEMBERS[6] = 1 << 5
ANY_MEMBERS[7] = 1 << 5


cdef extern from *:
    """
    static inline int otlpd_popcount8(unsigned char b) { return __builtin_popcount(b); }
    """
    int popcount8 "otlpd_popcount8"(uint8_t b) noexcept nogil


cdef void anyvalue_finish(Ctx* c, Col* col) noexcept nogil:
    """Before export: pad the members and derive their validity bitmaps from `type`
    (one pass, a byte of each bitmap at a time)."""
    cdef const uint8_t* types
    cdef uint8_t* bm[6]
    cdef uint8_t acc[6]
    cdef int64_t nulls[6]
    cdef int64_t n = col.length
    cdef int64_t nbytes = (n + 7) >> 3
    cdef int64_t i, j
    cdef uint8_t ok
    cdef uint64_t word
    cdef int m
    anyvalue_pad(c, col)
    if c.status:
        return
    types = col.children[0].vals.p
    for m in range(1, 6):
        col.children[m].valid.len = 0
        if not buf_reserve(c, &col.children[m].valid, nbytes + 1):
            return
        bm[m] = col.children[m].valid.p
        nulls[m] = 0
    # Eight slots at a time: their member masks as the bytes of one word, then
    # bit m of every byte gathered into bitmap byte m (multiply trick: byte j's
    # bit 0 moves to bit 56 + j, no two partial products overlap).
    for i in range(0, n, 8):
        word = 0
        for j in range(min(8, n - i)):
            ok = ANY_MEMBERS[types[i + j]]  # bounds: i + j < n
            if col.null_count > 0 and not ((col.valid.p[(i + j) >> 3] >> ((i + j) & 7)) & 1):
                ok = 0x3E  # null struct slot: pyarrow stores non-null empty members
            word |= (<uint64_t>ok) << (8 * j)
        for m in range(1, 6):
            acc[m] = <uint8_t>((((word >> m) & 0x0101010101010101ULL)
                                * 0x0102040810204080ULL) >> 56)
            bm[m][i >> 3] = acc[m]  # bounds: i >> 3 < nbytes, reserved
            nulls[m] += min(8, n - i) - popcount8(acc[m])
    for m in range(1, 6):
        col.children[m].null_count = nulls[m]
        col.children[m].valid.len = nbytes


cdef inline void app_opt_w8(Ctx* c, Col* col, bint present, uint64_t v) noexcept nogil:
    if present:
        app_w8(c, col, v)
    else:
        app_null(c, col)


cdef void tree_fill(Col* cols, int* nxt, const Spec* spec, int* si, Col* node) noexcept nogil:
    """Fill `node` from spec[si] (preorder); its children get contiguous slots."""
    cdef Spec sp = spec[si[0]]
    cdef int j
    si[0] += 1
    node.kind = sp.kind
    node.width = sp.width
    node.flags = sp.flags
    node.n_children = sp.n_children
    if sp.n_children:
        node.children = &cols[nxt[0]]
        nxt[0] += sp.n_children
        for j in range(sp.n_children):
            tree_fill(cols, nxt, spec, si, &node.children[j])


cdef Col* tree_new(const Spec* spec, int n) noexcept nogil:
    """All n columns of a batch in one zeroed block; cols[0] is the root struct."""
    cdef Col* cols = <Col*>calloc(n, sizeof(Col))
    cdef int nxt = 1
    cdef int si = 0
    if cols != NULL:
        tree_fill(cols, &nxt, spec, &si, &cols[0])
    return cols


cdef void tree_free(Col* cols, int n) noexcept nogil:
    cdef int i
    if cols == NULL:
        return
    for i in range(n):
        free(cols[i].valid.p)
        free(cols[i].vals.p)
        free(cols[i].data.p)
    free(cols)


cdef void col_reset(Col* col) noexcept nogil:
    """Empty the column, keeping its memory."""
    cdef int i
    col.length = 0
    col.null_count = 0
    col.valid.len = 0
    col.data.len = 0
    col.vals.len = 0
    for i in range(col.n_children):
        col_reset(&col.children[i])


cdef int64_t col_nbytes(Col* col) noexcept nogil:
    cdef int64_t n = col.valid.len + col.vals.len + col.data.len
    cdef int i
    for i in range(col.n_children):
        n += col_nbytes(&col.children[i])
    return n


cdef void repeat_bytes(uint8_t* dst, const uint8_t* src, int64_t nb, int64_t times) noexcept nogil:
    """dst[0 : nb*times] = src[0 : nb] repeated (room reserved by the caller):
    one copy, then doubling copies of what is already there."""
    cdef int64_t done, chunk
    if nb == 0 or times == 0:
        return
    memcpy(dst, src, <size_t>nb)
    done = nb
    while done < nb * times:
        chunk = done if done <= nb * times - done else nb * times - done
        memcpy(dst + done, dst, <size_t>chunk)
        done += chunk


cdef void repeat_offsets(uint8_t* dst, const uint8_t* src, int64_t n, int64_t times,
                         int64_t base, int64_t step) noexcept nogil:
    """Offsets src[1..n] (int32, src[0] == 0) shifted by base + t*step, t < times
    (room reserved and int32 range checked by the caller)."""
    cdef int32_t* out = <int32_t*>dst     # dst/src are malloc'd and 4-byte aligned here
    cdef const int32_t* so = <const int32_t*>src
    cdef int64_t t, i
    cdef int64_t k = 0
    for t in range(times):
        for i in range(1, n + 1):
            out[k] = <int32_t>(base + so[i])
            k += 1
        base += step


cdef void col_repeat(Ctx* c, Col* d, Col* s, int64_t times) noexcept nogil:
    """Append all rows of template column `s` to `d`, `times` times.

    Templates are reset before use, so their offsets start at 0 and their
    children hold exactly the elements of their rows.
    """
    cdef int64_t n = s.length
    cdef int64_t t, i, k, base, nb, cl
    cdef int32_t o
    cdef bint ok
    if c.status or n == 0 or times == 0:
        return
    if s.null_count > 0 or d.null_count > 0:
        k = d.length
        for t in range(times):
            for i in range(n):
                ok = s.null_count == 0 or ((s.valid.p[i >> 3] >> (i & 7)) & 1)
                valid_push(c, d, k, ok)
                k += 1
    if s.kind == C_PRIM:
        nb = n * s.width
        if not buf_reserve(c, &d.vals, nb * times):
            return
        repeat_bytes(d.vals.p + d.vals.len, s.vals.p, nb, times)
        d.vals.len += nb * times
    elif s.kind == C_BOOL:
        k = d.length
        for t in range(times):
            for i in range(n):
                bits_push(c, &d.vals, k, (s.vals.p[i >> 3] >> (i & 7)) & 1)
                k += 1
    elif s.kind == C_BIN:
        nb = s.data.len
        if d.data.len + nb * times > INT32_MAX_:
            st_set(c, ST_TOO_LARGE)
            return
        if (not offsets_start(c, d) or not buf_reserve(c, &d.data, nb * times)
                or not buf_reserve(c, &d.vals, 4 * n * times)):
            return
        repeat_bytes(d.data.p + d.data.len, s.data.p, nb, times)
        base = d.data.len
        d.data.len += nb * times
        repeat_offsets(d.vals.p + d.vals.len, s.vals.p, n, times, base, nb)
        d.vals.len += 4 * n * times
    elif s.kind == C_LIST:
        cl = s.children[0].length
        base = d.children[0].length
        if base + cl * times > INT32_MAX_:
            st_set(c, ST_TOO_LARGE)
            return
        if not offsets_start(c, d) or not buf_reserve(c, &d.vals, 4 * n * times):
            return
        repeat_offsets(d.vals.p + d.vals.len, s.vals.p, n, times, base, cl)
        d.vals.len += 4 * n * times
        col_repeat(c, &d.children[0], &s.children[0], times)
    else:
        if s.flags & F_ANYVALUE:
            anyvalue_pad(c, s)
            anyvalue_pad(c, d)
        for i in range(s.n_children):
            col_repeat(c, &d.children[i], &s.children[i], times)
    if c.status == ST_OK:
        d.length += n * times


cdef void replicate(Ctx* c, int lo, int hi, int64_t times) noexcept nogil:
    """Copy the one-row templates T[lo:hi] onto `times` new rows of O[lo:hi]."""
    cdef int64_t nb = 0
    cdef int i
    if times <= 0 or c.status:
        return
    for i in range(lo, hi):
        nb += col_nbytes(&c.T[i])
    if nb > (MAX_REPLICATED - c.replicated) // times:
        st_set(c, ST_TOO_LARGE)
        return
    c.replicated += nb * times
    for i in range(lo, hi):
        col_repeat(c, &c.O[i], &c.T[i], times)


# ============================================================== export

# Shared by every empty (zero-byte) buffer; never freed.
cdef uint64_t ZERO_BUF[2]
memset(ZERO_BUF, 0, sizeof(ZERO_BUF))

cdef extern from *:
    """
    static inline long otlpd_refs_release(long *refs) {
        return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL);
    }
    """
    long refs_release "otlpd_refs_release"(long* refs) noexcept nogil

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MAP_ANONYMOUS
    #define MAP_ANONYMOUS MAP_ANON
    #endif
    #ifndef MAP_POPULATE
    #define MAP_POPULATE 0
    #endif
    #include <sched.h>
    static char otlpd_map_cache_busy = 0;
    static inline void otlpd_map_cache_lock(void) {
        while (__atomic_test_and_set(&otlpd_map_cache_busy, __ATOMIC_ACQUIRE)) sched_yield();
    }
    static inline void otlpd_map_cache_unlock(void) {
        __atomic_clear(&otlpd_map_cache_busy, __ATOMIC_RELEASE);
    }
    """
    void map_cache_lock "otlpd_map_cache_lock"() noexcept nogil
    void map_cache_unlock "otlpd_map_cache_unlock"() noexcept nogil
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset) nogil
    int munmap(void* addr, size_t length) nogil
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE

# Blocks of at least this size get a mapping of their own (glibc's default mmap
# threshold), prefaulted with MAP_POPULATE, and are unmapped when released.
# Measured under full load (docs/DECODER.md, "Memory"): from malloc, freed
# batches left 100-200 MiB of free but resident chunks in glibc's arenas;
# mapped, the daemon's RSS follows the batches it holds. Fresh pages cost
# decode time, so up to MAP_CACHE_BYTES of released mappings are kept for
# reuse: a fixed bound on what is resident but unused.
cdef int64_t MAP_MIN_BYTES = 128 * 1024
cdef int64_t MAP_GRAIN = 4096            # mapping sizes are multiples of this (a page)
cdef int64_t MAP_CACHE_BYTES = 16 * 1024 * 1024
cdef enum:
    MAP_CACHE_SLOTS = 32

cdef struct Mapping:
    void* p
    int64_t size

# Touched only under map_cache_lock() (any thread: blocks are released wherever
# the last reference to a batch goes).
cdef Mapping MAP_CACHE[MAP_CACHE_SLOTS]
cdef int MAP_CACHE_N = 0
cdef int64_t MAP_CACHED = 0
cdef int64_t MAP_TOTAL = 0     # bytes of all mappings: batches alive + cached


cdef void* map_new(int64_t* size, int64_t need) noexcept nogil:
    """A new prefaulted mapping of `need` bytes (a multiple of MAP_GRAIN), counted
    in MAP_TOTAL; *size is set to `need`. NULL if the kernel refuses."""
    global MAP_TOTAL
    cdef void* p = mmap(NULL, <size_t>need, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
    if p == MAP_FAILED:
        return NULL
    map_cache_lock()
    MAP_TOTAL += need
    map_cache_unlock()
    size[0] = need
    return p


cdef void* map_get(int64_t* size) noexcept nogil:
    """A mapping of at least *size bytes (updated to its real size) or NULL: the
    smallest cached one at most 1/8 larger (a reused mapping is resident in full,
    so a much larger one would hold memory the buffer bounds do not count), else
    a new one."""
    global MAP_CACHE_N, MAP_CACHED, MAP_TOTAL
    cdef int64_t need = (size[0] + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN
    cdef int i
    cdef int best = -1
    cdef void* p = NULL
    map_cache_lock()
    for i in range(MAP_CACHE_N):
        if (MAP_CACHE[i].size >= need and MAP_CACHE[i].size <= need + need // 8
                and (best < 0 or MAP_CACHE[i].size < MAP_CACHE[best].size)):
            best = i
    if best >= 0:
        p = MAP_CACHE[best].p
        need = MAP_CACHE[best].size
        MAP_CACHED -= need
        MAP_CACHE_N -= 1
        MAP_CACHE[best] = MAP_CACHE[MAP_CACHE_N]
    map_cache_unlock()
    if p == NULL:
        return map_new(size, need)
    size[0] = need
    return p


cdef void map_put(void* p, int64_t size) noexcept nogil:
    """Keep a released mapping for reuse if the cache has room, else unmap it."""
    global MAP_CACHE_N, MAP_CACHED, MAP_TOTAL
    cdef bint kept = False
    map_cache_lock()
    if MAP_CACHE_N < MAP_CACHE_SLOTS and MAP_CACHED + size <= MAP_CACHE_BYTES:
        MAP_CACHE[MAP_CACHE_N].p = p
        MAP_CACHE[MAP_CACHE_N].size = size
        MAP_CACHE_N += 1
        MAP_CACHED += size
        kept = True
    else:
        MAP_TOTAL -= size
    map_cache_unlock()
    if not kept:
        munmap(p, <size_t>size)


# The writer merges one batch at a time per signal and frees it once written, so
# the mapping of each signal's last merged batch is kept for the next merge: a
# merge writes ~32 MiB, and fresh pages (zeroing, page faults) had cost about as
# much as the copy itself. Bounded by the writer's concatenated copy, which
# buffer.max_bytes counts (otlpd.writer.split_memory_bound); a merge that needs
# more replaces it with a mapping 1/8 larger than it needs.
cdef void* MERGE_SLOT[3]
cdef int64_t MERGE_SLOT_SIZE[3]
memset(MERGE_SLOT, 0, sizeof(MERGE_SLOT))
memset(MERGE_SLOT_SIZE, 0, sizeof(MERGE_SLOT_SIZE))


cdef void* merge_map_get(int sig, int64_t* size) noexcept nogil:
    """A mapping of at least *size bytes for a merged batch (updated to its real
    size), or NULL: the signal's kept one if large enough, else a new one."""
    global MAP_TOTAL
    cdef int64_t need = (size[0] + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN
    cdef void* p
    cdef int64_t have
    map_cache_lock()
    p = MERGE_SLOT[sig]
    have = MERGE_SLOT_SIZE[sig]
    MERGE_SLOT[sig] = NULL
    MERGE_SLOT_SIZE[sig] = 0
    if p != NULL and have < need:
        MAP_TOTAL -= have
    map_cache_unlock()
    if p != NULL and have >= need:
        size[0] = have
        return p
    if p != NULL:
        munmap(p, <size_t>have)
    return map_new(size, (need + need // 8 + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN)


cdef void merge_slot_put(int sig, void* p, int64_t size) noexcept nogil:
    """Keep a released merged batch's mapping for the signal's next merge, unless
    one is kept already (then unmap the smaller)."""
    global MAP_TOTAL
    cdef void* drop = p
    cdef int64_t drop_size = size
    map_cache_lock()
    if MERGE_SLOT[sig] == NULL or MERGE_SLOT_SIZE[sig] < size:
        drop = MERGE_SLOT[sig]
        drop_size = MERGE_SLOT_SIZE[sig]
        MERGE_SLOT[sig] = p
        MERGE_SLOT_SIZE[sig] = size
    if drop != NULL:
        MAP_TOTAL -= drop_size
    map_cache_unlock()
    if drop != NULL:
        munmap(drop, <size_t>drop_size)


cdef enum:
    ALIGN = 64   # every buffer starts on a 64-byte boundary, as Arrow allocates them


cdef inline int64_t aligned(int64_t n) noexcept nogil:
    return (n + (ALIGN - 1)) & ~(<int64_t>(ALIGN - 1))


# An exported batch lives in ONE block: a header holding the count of nodes not
# yet released, then, node by node, its buffer-pointer array, its children's
# pointer array and structs, and its buffers, each 64-byte aligned. One
# allocation (and one free) per batch instead of one per buffer: the decoder's
# growable column buffers stay in the pooled trees and are reused, and a batch's
# memory goes back to the kernel when it is released (MAP_MIN_BYTES;
# docs/DECODER.md, "Memory").
cdef struct Block:
    long refs
    int64_t mapped   # > 0: the block is its own mapping of this many bytes
    int merged       # > 0: a merged batch of signal merged - 1 (its mapping goes back to MERGE_SLOT)


cdef void release_node(ArrowArray* a) noexcept nogil:
    """Release callback of every node: releases its children still owned, then
    drops the node's reference on the batch's block (freed with the last one).

    A consumer may move a child out (copy the struct, mark ours released) and
    release it later: the block lives until every node is released.
    """
    cdef int64_t i
    cdef ArrowArray* ch
    cdef Block* block = <Block*>a.private_data
    for i in range(a.n_children):
        ch = a.children[i]
        if ch.release != NULL:
            ch.release(ch)
    a.buffers = NULL
    a.children = NULL
    a.n_children = 0
    a.release = NULL
    a.private_data = NULL
    if block != NULL and refs_release(&block.refs) == 0:
        if block.merged:
            merge_slot_put(block.merged - 1, block, block.mapped)
        elif block.mapped:
            map_put(block, block.mapped)
        else:
            free(block)


cdef inline int n_buffers(int kind) noexcept nogil:
    """Buffers of an Arrow node of this kind: validity, then values/offsets, then data."""
    return 1 if kind == C_STRUCT else (3 if kind == C_BIN else 2)


cdef inline int64_t kind_meta(int kind, int n_children) noexcept nogil:
    """Bytes of a node's buffer-pointer array plus its children's pointers and structs."""
    return aligned(n_buffers(kind) * sizeof(void*)
                   + n_children * (sizeof(ArrowArray*) + sizeof(ArrowArray)))


cdef inline int64_t node_meta(Col* col) noexcept nogil:
    return kind_meta(col.kind, col.n_children)


cdef uint8_t* node_start(ArrowArray* a, int kind, int n_children, int64_t length,
                         int64_t null_count, uint8_t** cur, Block* block) noexcept nogil:
    """Set up node `a` with its metadata placed in the block at *cur (zeroed: no
    buffers yet, children pointing at their structs); returns the metadata."""
    cdef int nb = n_buffers(kind)
    cdef int i
    cdef uint8_t* meta = cur[0]
    cdef ArrowArray* kids
    memset(meta, 0, <size_t>kind_meta(kind, n_children))
    cur[0] = meta + kind_meta(kind, n_children)
    a.length = length
    a.null_count = null_count
    a.offset = 0
    a.n_buffers = nb
    a.buffers = <const void**>meta
    a.dictionary = NULL
    a.release = release_node
    a.private_data = block
    a.n_children = n_children
    a.children = NULL
    if n_children:
        a.children = <ArrowArray**>(meta + nb * sizeof(void*))
        kids = <ArrowArray*>(meta + nb * sizeof(void*) + n_children * sizeof(ArrowArray*))
        for i in range(n_children):
            a.children[i] = &kids[i]
    return meta


cdef Block* block_new(int64_t* nbytes, int64_t nodes, int merged) noexcept nogil:
    """A block of at least *nbytes (updated to its real size) whose `nodes` nodes
    each hold a reference, or NULL: a mapping of its own from MAP_MIN_BYTES on.
    merged > 0: a merged batch of signal merged - 1 (merge_map_get)."""
    cdef void* mem = NULL
    if merged > 0 and nbytes[0] >= MAP_MIN_BYTES:
        mem = merge_map_get(merged - 1, nbytes)
    elif nbytes[0] >= MAP_MIN_BYTES:
        mem = map_get(nbytes)
        merged = 0
    else:
        if posix_memalign(&mem, ALIGN, <size_t>nbytes[0]) != 0:
            mem = NULL
        merged = 0
    if mem == NULL:
        return NULL
    (<Block*>mem).mapped = nbytes[0] if nbytes[0] >= MAP_MIN_BYTES else 0
    (<Block*>mem).merged = merged
    (<Block*>mem).refs = <long>nodes
    return <Block*>mem


cdef int export_size(Col* col, int64_t* nodes, int64_t* nbytes) noexcept nogil:
    """First pass: finish AnyValue columns; count nodes and the bytes of the block."""
    cdef Ctx tmp
    cdef int i
    if col.flags & F_ANYVALUE:
        memset(&tmp, 0, sizeof(Ctx))
        anyvalue_finish(&tmp, col)
        if tmp.status:
            return tmp.status
    nodes[0] += 1
    nbytes[0] += node_meta(col)
    if col.null_count > 0:
        nbytes[0] += aligned(col.valid.len)
    if col.kind != C_STRUCT:
        nbytes[0] += aligned(col.vals.len)
    if col.kind == C_BIN:
        nbytes[0] += aligned(col.data.len)
    for i in range(col.n_children):
        if export_size(&col.children[i], nodes, nbytes):
            return ST_NOMEM
    return ST_OK


cdef inline const void* put(Buf* b, uint8_t** cur) noexcept nogil:
    """Copy a buffer to the block at *cur (the shared zero buffer if empty)."""
    cdef uint8_t* q = cur[0]
    if b.len == 0:
        return <const void*>ZERO_BUF
    memcpy(q, b.p, <size_t>b.len)
    cur[0] = q + aligned(b.len)
    return <const void*>q


cdef void export_fill(Col* col, ArrowArray* a, uint8_t** cur, Block* block) noexcept nogil:
    """Second pass: fill node `a` from col, with everything placed in the block at *cur
    (export_size counted exactly these bytes)."""
    cdef int i
    cdef const void** bufs = <const void**>node_start(a, col.kind, col.n_children, col.length,
                                                      col.null_count, cur, block)
    # Validity bitmap only where the column has nulls (null_count 0 -> NULL).
    bufs[0] = put(&col.valid, cur) if col.null_count > 0 else NULL
    if col.kind != C_STRUCT:
        bufs[1] = put(&col.vals, cur)  # values, bits or int32 offsets ([0] if empty)
    if col.kind == C_BIN:
        bufs[2] = put(&col.data, cur)
    for i in range(col.n_children):
        export_fill(&col.children[i], a.children[i], cur, block)


cdef int export_tree(Col* root, ArrowArray* a, int64_t* size) noexcept nogil:
    """Copy the batch in `root` into one block owned by the zeroed node `a`; *size
    is set to the block's bytes. The tree keeps its buffers (for reuse); on failure
    `a` is left untouched."""
    cdef int64_t nodes = 0
    cdef int64_t nbytes = aligned(sizeof(Block))
    cdef Block* block
    cdef uint8_t* cur
    if export_size(root, &nodes, &nbytes):
        return ST_NOMEM
    block = block_new(&nbytes, nodes, 0)
    if block == NULL:
        return ST_NOMEM
    size[0] = nbytes
    cur = <uint8_t*>block + aligned(sizeof(Block))
    export_fill(root, a, &cur, block)
    return ST_OK


# ============================================================== merging exported batches
# The writer concatenates the batches of many requests before writing them
# (otlpd.writer._coalesce). Batches still in this module's export form (Chunk:
# exported, never imported into pyarrow) are concatenated here, into one block
# that pyarrow imports once: no import per request (~50 us each) and none of
# pyarrow's per-array concatenation work (docs/DECODER.md, "Merging").
#
# The sources are trees this module exported, so their shape is the schema's
# Spec. Everything the merge relies on is checked first (merge_size): buffer and
# child counts, offset 0, null counts, offsets starting at 0, child lengths,
# totals within int32 offsets. Anything else is ST_FALLBACK (pyarrow concatenates
# instead) or ST_TOO_LARGE.

cdef enum:
    MERGE_MAX_DEPTH = 32   # deeper than any schema (checked at import)


cdef void bits_append(uint8_t* dst, int64_t pos, const uint8_t* src, int64_t n) noexcept nogil:
    """Write bits [pos, pos + n) of dst from bits [0, n) of src.

    dst's bits from pos on are zero in byte pos >> 3, and the bits after pos + n
    are left zero in their byte: appends must follow each other. Writes up to
    byte (pos + n) >> 3 + 1 (the bitmaps have one byte of slack)."""
    cdef int64_t nb = (n + 7) >> 3
    cdef int s = <int>(pos & 7)
    cdef uint8_t* d = dst + (pos >> 3)
    cdef uint8_t last = 0xFF if (n & 7) == 0 else <uint8_t>((1 << (n & 7)) - 1)
    cdef uint8_t b
    cdef int64_t i
    if n <= 0:
        return
    if s == 0:
        memcpy(d, src, <size_t>nb)
        d[nb - 1] &= last
        return
    for i in range(nb):
        b = src[i]
        if i == nb - 1:
            b &= last
        d[i] |= <uint8_t>(b << s)
        d[i + 1] = <uint8_t>(b >> (8 - s))  # bounds: one byte of slack


cdef void bits_ones(uint8_t* dst, int64_t pos, int64_t n) noexcept nogil:
    """Set bits [pos, pos + n) of dst, with bits_append's contract."""
    cdef int64_t full
    while n > 0 and (pos & 7):
        dst[pos >> 3] |= <uint8_t>(1 << (pos & 7))
        pos += 1
        n -= 1
    full = n >> 3
    if full:
        memset(dst + (pos >> 3), 0xFF, <size_t>full)
        pos += full * 8
        n -= full * 8
    if n:
        dst[pos >> 3] = <uint8_t>((1 << n) - 1)


cdef inline int64_t bitmap_bytes(int64_t n) noexcept nogil:
    return ((n + 7) >> 3) + 1   # one byte of slack for bits_append


cdef int merge_size(const Spec* spec, int* si, ArrowArray** srcs, int k, ArrowArray** rows,
                    int depth, int64_t* nodes, int64_t* nbytes) noexcept nogil:
    """First pass over node spec[*si] of k sources (srcs, row `depth` of `rows`):
    check them, count the merged node and its bytes, recurse into the children."""
    cdef Spec sp = spec[si[0]]
    cdef int nb = n_buffers(sp.kind)
    cdef int64_t total = 0
    cdef int64_t nulls = 0
    cdef int64_t inner = 0   # BIN: data bytes; LIST: child rows
    cdef int i, j, rc
    cdef ArrowArray* a
    cdef const int32_t* off
    cdef ArrowArray** kids
    si[0] += 1
    if depth + 1 >= MERGE_MAX_DEPTH:
        return ST_FALLBACK
    for i in range(k):
        a = srcs[i]
        if (a.release == NULL or a.offset != 0 or a.n_buffers != nb or a.length < 0
                or a.n_children != sp.n_children or a.null_count < 0
                or (a.null_count > 0 and a.buffers[0] == NULL)):
            return ST_FALLBACK
        if sp.kind != C_STRUCT and a.buffers[1] == NULL:
            return ST_FALLBACK
        if sp.kind == C_BIN or sp.kind == C_LIST:
            off = <const int32_t*>a.buffers[1]
            if off[0] != 0 or off[a.length] < 0:
                return ST_FALLBACK
            if sp.kind == C_BIN and a.buffers[2] == NULL:
                return ST_FALLBACK
            if sp.kind == C_LIST and a.children[0].length != off[a.length]:
                return ST_FALLBACK
            inner += off[a.length]
        if sp.kind == C_STRUCT:
            for j in range(sp.n_children):
                if a.children[j].length != a.length:
                    return ST_FALLBACK
        total += a.length
        nulls += a.null_count
    if total > INT32_MAX_ or inner > INT32_MAX_:
        return ST_TOO_LARGE
    nodes[0] += 1
    nbytes[0] += kind_meta(sp.kind, sp.n_children)
    if nulls > 0:
        nbytes[0] += aligned(bitmap_bytes(total))
    if sp.kind == C_PRIM:
        nbytes[0] += aligned(total * sp.width)
    elif sp.kind == C_BOOL:
        nbytes[0] += aligned(bitmap_bytes(total))
    elif sp.kind == C_BIN or sp.kind == C_LIST:
        nbytes[0] += aligned(4 * (total + 1))
        if sp.kind == C_BIN:
            nbytes[0] += aligned(inner)
    kids = rows + (depth + 1) * k
    for j in range(sp.n_children):
        for i in range(k):
            kids[i] = srcs[i].children[j]
        rc = merge_size(spec, si, kids, k, rows, depth + 1, nodes, nbytes)
        if rc:
            return rc
    return ST_OK


cdef void merge_offsets(int32_t* dst, ArrowArray** srcs, int k) noexcept nogil:
    """Concatenate the sources' offsets, each rebased to where its values land."""
    cdef int64_t pos = 0
    cdef int32_t base = 0
    cdef int64_t r, n
    cdef const int32_t* off
    cdef int i
    dst[0] = 0
    for i in range(k):
        off = <const int32_t*>srcs[i].buffers[1]
        n = srcs[i].length
        for r in range(1, n + 1):
            dst[pos + r] = off[r] + base
        pos += n
        base += off[n]


cdef void merge_fill(const Spec* spec, int* si, ArrowArray** srcs, int k, ArrowArray** rows,
                     int depth, ArrowArray* a, uint8_t** cur, Block* block) noexcept nogil:
    """Second pass: fill the merged node `a` in the block at *cur (merge_size
    checked the sources and counted exactly these bytes)."""
    cdef Spec sp = spec[si[0]]
    cdef int64_t total = 0
    cdef int64_t nulls = 0
    cdef int64_t pos, n, size
    cdef int i, j
    cdef uint8_t* q
    cdef const int32_t* off
    cdef ArrowArray** kids
    cdef const void** bufs
    si[0] += 1
    for i in range(k):
        total += srcs[i].length
        nulls += srcs[i].null_count
    bufs = <const void**>node_start(a, sp.kind, sp.n_children, total, nulls, cur, block)
    if nulls > 0:
        q = cur[0]
        cur[0] = q + aligned(bitmap_bytes(total))
        q[0] = 0
        pos = 0
        for i in range(k):
            if srcs[i].null_count > 0:
                bits_append(q, pos, <const uint8_t*>srcs[i].buffers[0], srcs[i].length)
            else:
                bits_ones(q, pos, srcs[i].length)
            pos += srcs[i].length
        bufs[0] = q
    if sp.kind == C_PRIM or sp.kind == C_BOOL:
        size = total * sp.width if sp.kind == C_PRIM else bitmap_bytes(total)
        if total == 0:
            bufs[1] = <const void*>ZERO_BUF
        else:
            q = cur[0]
            cur[0] = q + aligned(size)
            q[0] = 0
            pos = 0
            for i in range(k):
                n = srcs[i].length
                if sp.kind == C_PRIM:
                    memcpy(q + pos * sp.width, srcs[i].buffers[1], <size_t>(n * sp.width))
                else:
                    bits_append(q, pos, <const uint8_t*>srcs[i].buffers[1], n)
                pos += n
            bufs[1] = q
    elif sp.kind == C_BIN or sp.kind == C_LIST:
        q = cur[0]
        cur[0] = q + aligned(4 * (total + 1))
        merge_offsets(<int32_t*>q, srcs, k)
        bufs[1] = q
        if sp.kind == C_BIN:
            size = (<const int32_t*>q)[total]
            if size == 0:
                bufs[2] = <const void*>ZERO_BUF
            else:
                q = cur[0]
                cur[0] = q + aligned(size)
                pos = 0
                for i in range(k):
                    off = <const int32_t*>srcs[i].buffers[1]
                    n = off[srcs[i].length]
                    memcpy(q + pos, srcs[i].buffers[2], <size_t>n)
                    pos += n
                bufs[2] = q
    kids = rows + (depth + 1) * k
    for j in range(sp.n_children):
        for i in range(k):
            kids[i] = srcs[i].children[j]
        merge_fill(spec, si, kids, k, rows, depth + 1, a.children[j], cur, block)


cdef int merge_arrays(int sig, const Spec* spec, ArrowArray** srcs, int k, ArrowArray* out,
                      int64_t* size) noexcept nogil:
    """Concatenate k exported batches of one signal (its `spec`) into one block owned by the
    zeroed node `out`; the sources are only read. ST_OK, ST_FALLBACK, ST_TOO_LARGE
    or ST_NOMEM (then `out` is untouched)."""
    cdef ArrowArray** rows = <ArrowArray**>malloc(MERGE_MAX_DEPTH * k * sizeof(ArrowArray*))
    cdef int64_t nodes = 0
    cdef int64_t nbytes = aligned(sizeof(Block))
    cdef int si = 0
    cdef int rc
    cdef Block* block
    cdef uint8_t* cur
    if rows == NULL:
        return ST_NOMEM
    memcpy(rows, srcs, k * sizeof(ArrowArray*))
    rc = merge_size(spec, &si, rows, k, rows, 0, &nodes, &nbytes)
    if rc == ST_OK:
        block = block_new(&nbytes, nodes, sig + 1)
        if block == NULL:
            rc = ST_NOMEM
        else:
            size[0] = nbytes
            cur = <uint8_t*>block + aligned(sizeof(Block))
            si = 0
            merge_fill(spec, &si, rows, k, rows, 0, out, &cur, block)
    free(rows)
    return rc


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


# ---------------------------------------------------------------- traces

cdef int dec_event(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* ev) noexcept nogil:
    """Span.Event -> struct<time, name, attributes, dropped_attributes_count>."""
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
    app_list(c, &ch[2])
    app_w4(c, &ch[3], dropped)
    app_struct(c, ev)
    return c.status


cdef int dec_link(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* lk) noexcept nogil:
    """Span.Link -> struct<trace_id, span_id, trace_state, attributes, dropped, flags>."""
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
    app_list(c, &ch[3])
    app_w4(c, &ch[4], dropped)
    app_w4(c, &ch[5], flags)
    app_struct(c, lk)
    return c.status


cdef int dec_span(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One Span -> one row of columns 10..26."""
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
            if dec_attr(c, &p, end, depth, &O[19]):
                return c.status
        elif tag == 0x5A:
            if vlen(c, &p, end, &s, &n) or dec_event(c, s, s + n, depth + 1, &O[21].children[0]):
                return c.status
        elif tag == 0x6A:
            if vlen(c, &p, end, &s, &n) or dec_link(c, s, s + n, depth + 1, &O[23].children[0]):
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
    app_bin(c, &O[10], f[1], fl[1])
    app_bin(c, &O[11], f[2], fl[2])
    app_bin(c, &O[12], f[3], fl[3])
    app_bin(c, &O[13], f[4], fl[4])
    app_w4(c, &O[14], flags)
    app_bin(c, &O[15], f[5], fl[5])
    app_w4(c, &O[16], <uint32_t>kind)
    app_w8(c, &O[17], start)
    app_w8(c, &O[18], stop)
    app_list(c, &O[19])
    app_w4(c, &O[20], dropped_attrs)
    app_list(c, &O[21])
    app_w4(c, &O[22], dropped_events)
    app_list(c, &O[23])
    app_w4(c, &O[24], dropped_links)
    if has_status:
        app_w4(c, &O[25], <uint32_t>status_code)
        app_bin(c, &O[26], status_msg, status_msg_n)
    else:
        app_null(c, &O[25])
        app_null(c, &O[26])
    c.rows += 1
    return c.status


# ---------------------------------------------------------------- logs

cdef int dec_log(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One LogRecord -> one row of columns 10..20."""
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
            if dec_attr(c, &p, end, depth, &O[15]):
                return c.status
        elif tag == 0x45:
            if vf32(c, &p, end, &flags):
                return c.status
        elif vfield(c, MT[M_LOG], t0, &p, end, tag, depth):
            return c.status
    app_w8(c, &O[10], time)
    app_w8(c, &O[11], observed)
    app_w4(c, &O[12], <uint32_t>severity)
    app_bin(c, &O[13], f[0], fl[0])
    if has_body:
        app_any(c, &O[14], &body)
    else:
        app_null(c, &O[14])
    app_list(c, &O[15])
    app_w4(c, &O[16], dropped)
    app_w4(c, &O[17], flags)
    app_bin(c, &O[18], f[1], fl[1])
    app_bin(c, &O[19], f[2], fl[2])
    app_bin(c, &O[20], f[3], fl[3])
    c.rows += 1
    return c.status


# ---------------------------------------------------------------- metrics
# Point columns: 17 attributes, 18 start_time, 19 time, 20 flags, 21 value_double,
# 22 value_int, 23 count, 24 sum, 25 min, 26 max, 27 bucket_counts,
# 28 explicit_bounds, 29 scale, 30 zero_count, 31 zero_threshold,
# 32 positive_offset, 33 positive_bucket_counts, 34 negative_offset,
# 35 negative_bucket_counts, 36 quantile_values, 37 exemplars.

cdef struct PointCommon:
    uint64_t start
    uint64_t time
    uint32_t flags


cdef inline void app_nulls(Ctx* c, int lo, int hi) noexcept nogil:
    cdef int i
    for i in range(lo, hi):
        app_null(c, &c.O[i])


cdef inline void app_point_common(Ctx* c, PointCommon* pc) noexcept nogil:
    app_list(c, &c.O[17])
    app_w8(c, &c.O[18], pc.start)
    app_w8(c, &c.O[19], pc.time)
    app_w4(c, &c.O[20], pc.flags)


cdef int dec_exemplar(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* ex) noexcept nogil:
    """Exemplar -> struct<filtered_attributes, time, value_double, value_int, span_id, trace_id>."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t time = 0
    cdef uint64_t val = 0
    cdef int vkind = 0
    cdef const uint8_t* span = NULL
    cdef int64_t span_n = 0
    cdef const uint8_t* trace = NULL
    cdef int64_t trace_n = 0
    cdef Col* ch = ex.children
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x3A:
            if dec_attr(c, &p, end, depth, &ch[0]):
                return c.status
        elif tag == 0x11:
            if vf64(c, &p, end, &time):
                return c.status
        elif tag == 0x19 or tag == 0x31:  # as_double / as_int: a oneof, last wins
            if vf64(c, &p, end, &val):
                return c.status
            vkind = 1 if tag == 0x19 else 2
        elif tag == 0x22:
            if vlen(c, &p, end, &span, &span_n):
                return c.status
        elif tag == 0x2A:
            if vlen(c, &p, end, &trace, &trace_n):
                return c.status
        elif vfield(c, MT[M_EXEMPLAR], t0, &p, end, tag, depth):
            return c.status
    app_list(c, &ch[0])
    app_w8(c, &ch[1], time)
    app_opt_w8(c, &ch[2], vkind == 1, val)
    app_opt_w8(c, &ch[3], vkind == 2, val)
    app_bin(c, &ch[4], span, span_n)
    app_bin(c, &ch[5], trace, trace_n)
    app_struct(c, ex)
    return c.status


cdef inline int dec_common_field(Ctx* c, uint32_t tag, const uint8_t** pp, const uint8_t* end,
                                 int depth, PointCommon* pc, uint32_t attrs_tag) noexcept nogil:
    """Fields shared by all points: 1 if `tag` was one of them, 0 if not, <0 on error."""
    if tag == attrs_tag:
        return 1 if dec_attr(c, pp, end, depth, &c.O[17]) == 0 else -1
    if tag == 0x11:
        return 1 if vf64(c, pp, end, &pc.start) == 0 else -1
    if tag == 0x19:
        return 1 if vf64(c, pp, end, &pc.time) == 0 else -1
    return 0


cdef int dec_number_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t val = 0
    cdef int vkind = 0
    cdef int r
    memset(&pc, 0, sizeof(PointCommon))
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x3A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21 or tag == 0x31:
            if vf64(c, &p, end, &val):
                return c.status
            vkind = 1 if tag == 0x21 else 2
        elif tag == 0x2A:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1, &c.O[37].children[0]):
                return c.status
        elif tag == 0x40:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_NDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_opt_w8(c, &c.O[21], vkind == 1, val)
    app_opt_w8(c, &c.O[22], vkind == 2, val)
    app_nulls(c, 23, 37)
    app_list(c, &c.O[37])
    c.rows += 1
    return c.status


cdef int dec_histogram_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef int64_t n, k
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t opt[3]      # sum, min, max
    cdef bint has[3]
    cdef int r, i
    cdef Col* bc = &c.O[27].children[0]
    cdef Col* eb = &c.O[28].children[0]
    memset(&pc, 0, sizeof(PointCommon))
    for i in range(3):
        opt[i] = 0
        has[i] = False
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x4A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21:
            if vf64(c, &p, end, &count):
                return c.status
        elif tag == 0x29 or tag == 0x59 or tag == 0x61:
            i = 0 if tag == 0x29 else (1 if tag == 0x59 else 2)
            if vf64(c, &p, end, &opt[i]):
                return c.status
            has[i] = True
        elif tag == 0x31 or tag == 0x39:  # unpacked bucket_counts / explicit_bounds
            if vf64(c, &p, end, &v):
                return c.status
            app_w8(c, bc if tag == 0x31 else eb, v)
        elif tag == 0x32 or tag == 0x3A:  # packed
            if vlen(c, &p, end, &s, &n):
                return c.status
            if n % 8:
                return v_fail(c, s, "packed fixed64 length is not a multiple of 8")
            for k in range(0, n, 8):  # bounds: k + 8 <= n since n % 8 == 0
                memcpy(&v, s + k, 8)
                app_w8(c, bc if tag == 0x32 else eb, v)
        elif tag == 0x42:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1, &c.O[37].children[0]):
                return c.status
        elif tag == 0x50:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_HDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, 21, 23)
    app_w8(c, &c.O[23], count)
    for i in range(3):
        app_opt_w8(c, &c.O[24 + i], has[i], opt[i])
    app_list(c, &c.O[27])
    app_list(c, &c.O[28])
    app_nulls(c, 29, 37)
    app_list(c, &c.O[37])
    c.rows += 1
    return c.status


cdef int dec_buckets(Ctx* c, const uint8_t* p, const uint8_t* end, int depth, Col* counts,
                     int32_t* offset) noexcept nogil:
    """ExponentialHistogramDataPoint.Buckets payload (merged into *offset / counts)."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint32_t u
    cdef const uint8_t* s
    cdef const uint8_t* se
    cdef int64_t n
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x08:  # offset: sint32 = zigzag of the low 32 bits
            if vvar(c, &p, end, &v):
                return c.status
            u = <uint32_t>v
            offset[0] = <int32_t>((u >> 1) ^ (0 - (u & 1)))
        elif tag == 0x10:
            if vvar(c, &p, end, &v):
                return c.status
            app_w8(c, counts, v)
        elif tag == 0x12:  # packed uint64 varints
            if vlen(c, &p, end, &s, &n):
                return c.status
            se = s + n
            while s < se:  # bounds: each varint must end inside the payload
                if rd_varint(&s, se, &v):
                    return v_fail(c, s, "malformed packed varint")
                app_w8(c, counts, v)
        elif vfield(c, MT[M_BUCKETS], t0, &p, end, tag, depth):
            return c.status
    return c.status


cdef int dec_exponential_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef uint32_t u
    cdef const uint8_t* s
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t zero_count = 0
    cdef uint64_t zero_threshold = 0
    cdef int32_t scale = 0
    cdef uint64_t opt[3]      # sum, min, max
    cdef bint has[3]
    cdef bint has_side[2]     # positive, negative
    cdef int32_t side_offset[2]
    cdef int r, i
    memset(&pc, 0, sizeof(PointCommon))
    for i in range(3):
        opt[i] = 0
        has[i] = False
    for i in range(2):
        has_side[i] = False
        side_offset[i] = 0
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x0A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21 or tag == 0x39 or tag == 0x71:
            if vf64(c, &p, end, &v):
                return c.status
            if tag == 0x21:
                count = v
            elif tag == 0x39:
                zero_count = v
            else:
                zero_threshold = v
        elif tag == 0x29 or tag == 0x61 or tag == 0x69:
            i = 0 if tag == 0x29 else (1 if tag == 0x61 else 2)
            if vf64(c, &p, end, &opt[i]):
                return c.status
            has[i] = True
        elif tag == 0x30:
            if vvar(c, &p, end, &v):
                return c.status
            u = <uint32_t>v
            scale = <int32_t>((u >> 1) ^ (0 - (u & 1)))
        elif tag == 0x42 or tag == 0x4A:
            if vlen(c, &p, end, &s, &n):
                return c.status
            i = 0 if tag == 0x42 else 1
            has_side[i] = True
            if dec_buckets(c, s, s + n, depth + 1, &c.O[33 + 2 * i].children[0], &side_offset[i]):
                return c.status
        elif tag == 0x50:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif tag == 0x5A:
            if vlen(c, &p, end, &s, &n) or dec_exemplar(c, s, s + n, depth + 1, &c.O[37].children[0]):
                return c.status
        elif vfield(c, MT[M_EHDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, 21, 23)
    app_w8(c, &c.O[23], count)
    for i in range(3):
        app_opt_w8(c, &c.O[24 + i], has[i], opt[i])
    app_nulls(c, 27, 29)
    app_w4(c, &c.O[29], <uint32_t>scale)
    app_w8(c, &c.O[30], zero_count)
    app_w8(c, &c.O[31], zero_threshold)
    for i in range(2):
        if has_side[i]:
            app_w4(c, &c.O[32 + 2 * i], <uint32_t>side_offset[i])
            app_list(c, &c.O[33 + 2 * i])
        else:
            app_null(c, &c.O[32 + 2 * i])
            app_null(c, &c.O[33 + 2 * i])
    app_null(c, &c.O[36])
    app_list(c, &c.O[37])
    c.rows += 1
    return c.status


cdef int dec_summary_point(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef uint64_t v
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef const uint8_t* qe
    cdef int64_t n
    cdef PointCommon pc
    cdef uint64_t count = 0
    cdef uint64_t total = 0
    cdef uint64_t qv[2]
    cdef int r
    cdef Col* vq = &c.O[36].children[0]
    memset(&pc, 0, sizeof(PointCommon))
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        r = dec_common_field(c, tag, &p, end, depth, &pc, 0x3A)
        if r < 0:
            return c.status
        if r:
            continue
        if tag == 0x21:
            if vf64(c, &p, end, &count):
                return c.status
        elif tag == 0x29:
            if vf64(c, &p, end, &total):
                return c.status
        elif tag == 0x32:  # ValueAtQuantile {1: quantile, 2: value}
            if vlen(c, &p, end, &s, &n):
                return c.status
            qv[0] = 0
            qv[1] = 0
            q = s
            qe = s + n
            while q < qe:
                t0 = q
                if vtag(c, &q, qe, &tag):
                    return c.status
                if tag == 0x09 or tag == 0x11:
                    if vf64(c, &q, qe, &qv[(tag >> 3) - 1]):
                        return c.status
                elif vfield(c, MT[M_VAQ], t0, &q, qe, tag, depth + 1):
                    return c.status
            app_w8(c, &vq.children[0], qv[0])
            app_w8(c, &vq.children[1], qv[1])
            app_struct(c, vq)
        elif tag == 0x40:
            if vvar(c, &p, end, &v):
                return c.status
            pc.flags = <uint32_t>v
        elif vfield(c, MT[M_SDP], t0, &p, end, tag, depth):
            return c.status
    app_point_common(c, &pc)
    app_nulls(c, 21, 23)
    app_w8(c, &c.O[23], count)
    app_w8(c, &c.O[24], total)
    app_nulls(c, 25, 36)
    app_list(c, &c.O[36])
    app_null(c, &c.O[37])
    c.rows += 1
    return c.status


cdef inline bint is_data_member(uint32_t fn) noexcept nogil:
    return fn == 5 or fn == 7 or fn == 9 or fn == 10 or fn == 11


cdef int data_msg_type(uint32_t member) noexcept nogil:
    if member == 5:
        return MT[M_GAUGE]
    if member == 7:
        return MT[M_SUM]
    if member == 9:
        return MT[M_HISTOGRAM]
    if member == 10:
        return MT[M_EXPHIST]
    return MT[M_SUMMARY]


cdef const char* metric_type_name(uint32_t member) noexcept nogil:
    if member == 5:
        return "gauge"
    if member == 7:
        return "sum"
    if member == 9:
        return "histogram"
    if member == 10:
        return "exponential_histogram"
    return "summary"


cdef int dec_metric(Ctx* c, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """One Metric -> one row per data point (head columns 10..16 replicated)."""
    cdef const uint8_t* t0
    cdef uint32_t tag, fn
    cdef uint64_t v
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef const uint8_t* qe
    cdef const uint8_t* pt
    cdef int64_t n
    cdef const uint8_t* f[4]      # name, description, unit by field number 1..3
    cdef int64_t fl[4]
    cdef uint32_t member = 0      # Metric.data oneof: field number of the last member
    cdef const uint8_t* data_start = NULL
    cdef int32_t temporality = 0
    cdef bint monotonic = False
    cdef int64_t rows0
    cdef const char* tname
    cdef int i, r, dmt
    for i in range(10, 17):
        col_reset(&c.T[i])
    for i in range(4):
        f[i] = NULL
        fl[i] = 0
    # Scan 1: the metric's own fields (validated), and where the final oneof
    # member starts (another member clears the previous one; the same merges).
    q = p
    while q < end:
        t0 = q
        if vtag(c, &q, end, &tag):
            return c.status
        fn = tag >> 3
        if tag == 0x0A or tag == 0x12 or tag == 0x1A:
            if vstr(c, &q, end, &f[fn], &fl[fn]):
                return c.status
        elif tag == 0x62:
            if dec_attr(c, &q, end, depth, &c.T[13]):
                return c.status
        elif (tag & 7) == 2 and is_data_member(fn):
            if member != fn:
                member = fn
                data_start = t0
            if vlen(c, &q, end, &s, &n):  # payload validated below
                return c.status
        elif vfield(c, MT[M_METRIC], t0, &q, end, tag, depth):
            return c.status
    if member == 0:
        return c.status  # no data: no row
    # Scan 2: validate the members that were replaced (they precede data_start).
    q = p
    while q < data_start:
        t0 = q
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        fn = tag >> 3
        if (tag & 7) == 2 and is_data_member(fn):
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if validate(c, data_msg_type(fn), s, s + n, depth + 1):
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    # Scan 3: the final member's segments, merged: points in order, last scalars win.
    rows0 = c.rows
    dmt = data_msg_type(member)
    q = data_start
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag != ((member << 3) | 2):
            if skip_field(&q, end, tag, 0):  # validated in scan 1
                return d_fail(c, q)
            continue
        if rd_len(&q, end, &s, &n):
            return d_fail(c, q)
        qe = s + n
        while s < qe:
            t0 = s
            if vtag(c, &s, qe, &tag):
                return c.status
            if tag == 0x0A:
                if vlen(c, &s, qe, &pt, &n):
                    return c.status
                if member == 5 or member == 7:
                    r = dec_number_point(c, pt, pt + n, depth + 2)
                elif member == 9:
                    r = dec_histogram_point(c, pt, pt + n, depth + 2)
                elif member == 10:
                    r = dec_exponential_point(c, pt, pt + n, depth + 2)
                else:
                    r = dec_summary_point(c, pt, pt + n, depth + 2)
                if r:
                    return c.status
            elif tag == 0x10 and (member == 7 or member == 9 or member == 10):
                if vvar(c, &s, qe, &v):
                    return c.status
                temporality = <int32_t>v
            elif tag == 0x18 and member == 7:
                if vvar(c, &s, qe, &v):
                    return c.status
                monotonic = v != 0
            elif vfield(c, dmt, t0, &s, qe, tag, depth + 1):
                return c.status
    for i in range(3):
        app_bin(c, &c.T[10 + i], f[i + 1], fl[i + 1])
    app_list(c, &c.T[13])
    tname = metric_type_name(member)
    app_bin(c, &c.T[14], <const uint8_t*>tname, <int64_t>strlen(tname))
    if member == 7 or member == 9 or member == 10:
        app_w4(c, &c.T[15], <uint32_t>temporality)
    else:
        app_null(c, &c.T[15])
    if member == 7:
        app_bool(c, &c.T[16], monotonic)
    else:
        app_null(c, &c.T[16])
    replicate(c, 10, 17, c.rows - rows0)
    return c.status


# ---------------------------------------------------------------- request structure

cdef int dec_scope_group(Ctx* c, int sig, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """ScopeSpans/ScopeMetrics/ScopeLogs: {1: scope, 2: records, 3: schema_url}."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef int64_t n
    cdef ScopeState ss
    cdef const uint8_t* url = NULL
    cdef int64_t url_n = 0
    cdef int64_t rows0
    cdef int i, r
    memset(&ss, 0, sizeof(ScopeState))
    for i in range(5, 10):
        col_reset(&c.T[i])
    # Scan 1: scope (every occurrence merges into the template row), schema_url,
    # and validation of everything except the records (validated in scan 2).
    q = p
    while q < end:
        t0 = q
        if vtag(c, &q, end, &tag):
            return c.status
        if tag == 0x0A:
            if vlen(c, &q, end, &s, &n) or dec_scope(c, s, s + n, depth + 1, &ss):
                return c.status
        elif tag == 0x1A:
            if vstr(c, &q, end, &url, &url_n):
                return c.status
        elif tag == 0x12:
            if vlen(c, &q, end, &s, &n):
                return c.status
        elif vfield(c, MT[M_SGROUP + sig], t0, &q, end, tag, depth):
            return c.status
    app_bin(c, &c.T[5], ss.name, ss.name_n)
    app_bin(c, &c.T[6], ss.version, ss.version_n)
    app_list(c, &c.T[7])
    app_w4(c, &c.T[8], ss.dropped)
    app_bin(c, &c.T[9], url, url_n)
    # Scan 2: the records.
    rows0 = c.rows
    q = p
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag == 0x12:
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if sig == 0:
                r = dec_span(c, s, s + n, depth + 1)
            elif sig == 1:
                r = dec_metric(c, s, s + n, depth + 1)
            else:
                r = dec_log(c, s, s + n, depth + 1)
            if r:
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    replicate(c, 0, 10, c.rows - rows0)
    return c.status


cdef int dec_resource_group(Ctx* c, int sig, const uint8_t* p, const uint8_t* end, int depth) noexcept nogil:
    """ResourceSpans/ResourceMetrics/ResourceLogs: {1: resource, 2: scopes, 3: schema_url}."""
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef const uint8_t* q
    cdef int64_t n
    cdef ResState rs
    cdef const uint8_t* url = NULL
    cdef int64_t url_n = 0
    cdef int i
    memset(&rs, 0, sizeof(ResState))
    for i in range(0, 5):
        col_reset(&c.T[i])
    q = p
    while q < end:
        t0 = q
        if vtag(c, &q, end, &tag):
            return c.status
        if tag == 0x0A:  # resource: every occurrence merges into the same template row
            if vlen(c, &q, end, &s, &n) or dec_resource(c, s, s + n, depth + 1, &rs):
                return c.status
        elif tag == 0x1A:
            if vstr(c, &q, end, &url, &url_n):
                return c.status
        elif tag == 0x12:  # scope groups: validated when decoded below
            if vlen(c, &q, end, &s, &n):
                return c.status
        elif vfield(c, MT[M_RGROUP + sig], t0, &q, end, tag, depth):
            return c.status
    app_list(c, &c.T[0])
    app_w4(c, &c.T[1], rs.dropped)
    app_list(c, &c.T[2])
    app_bin(c, &c.T[3], url, url_n)
    if rs.has_svc:
        app_bin(c, &c.T[4], rs.svc, rs.svc_n)
    else:
        app_null(c, &c.T[4])
    q = p
    while q < end:
        if rd_tag(&q, end, &tag):
            return d_fail(c, q)
        if tag == 0x12:
            if rd_len(&q, end, &s, &n):
                return d_fail(c, q)
            if dec_scope_group(c, sig, s, s + n, depth + 1):
                return c.status
        elif skip_field(&q, end, tag, 0):
            return d_fail(c, q)
    return c.status


cdef int dec_request(Ctx* c, int sig, const uint8_t* p, const uint8_t* end) noexcept nogil:
    cdef const uint8_t* t0
    cdef uint32_t tag
    cdef const uint8_t* s
    cdef int64_t n
    while p < end:
        t0 = p
        if vtag(c, &p, end, &tag):
            return c.status
        if tag == 0x0A:
            if vlen(c, &p, end, &s, &n) or dec_resource_group(c, sig, s, s + n, 1):
                return c.status
        elif vfield(c, MT[M_REQ + sig], t0, &p, end, tag, 0):
            return c.status
    return c.status


# ============================================================== driver

cdef enum:
    MAX_SPEC = 512

cdef Spec SPECS[3][MAX_SPEC]


cdef int SPEC_LEN[3]
cdef enum:
    POOL_TMPL = 0
    POOL_OUT = 1
    POOL_SIZE = 8

# Column trees are reused across requests, their buffers keeping their capacity:
# templates (POOL_TMPL) and the trees the batches are built in (POOL_OUT), which
# export copies out of. A tree grown beyond POOL_MAX_BYTES by a large request is
# freed instead, so the pools pin at most 3 signals x 8 x (1 + 4) MiB, and only
# as many trees as requests were decoded at once. The pools are only touched
# with the GIL held (before/after the nogil section).
cdef int64_t POOL_MAX_BYTES[2]
POOL_MAX_BYTES[POOL_TMPL] = 1 << 20
POOL_MAX_BYTES[POOL_OUT] = 4 << 20
cdef Col* TREE_POOL[2][3][POOL_SIZE]
cdef int TREE_POOL_N[2][3]
memset(TREE_POOL_N, 0, sizeof(TREE_POOL_N))


cdef int64_t tree_capacity(Col* cols, int n) noexcept nogil:
    cdef int64_t total = 0
    cdef int i
    for i in range(n):
        total += cols[i].valid.cap + cols[i].vals.cap + cols[i].data.cap
    return total


cdef int run(Ctx* c, int sig, const uint8_t* data, int64_t size, ArrowArray** out) noexcept nogil:
    """Validate, decode and export. c.out and c.tmpl may hold pooled trees (else
    they are allocated here); the caller pools or frees them. The batch in *out
    owns one block (released through its release callback)."""
    cdef int i
    cdef ArrowArray* arr
    if c.out == NULL:
        c.out = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.tmpl == NULL:
        c.tmpl = tree_new(SPECS[sig], SPEC_LEN[sig])
    if c.out == NULL or c.tmpl == NULL:
        st_set(c, ST_NOMEM)
    else:
        c.O = c.out.children
        c.T = c.tmpl.children
    if c.status == ST_OK:
        dec_request(c, sig, data, data + size)  # validates as it decodes
    if c.status == ST_OK:
        for i in range(c.out.n_children):  # sanity: every column has one entry per row
            if c.O[i].length != c.rows:
                c.err = "internal error: column length mismatch"
                c.err_off = 0
                c.status = ST_ERR
        c.out.length = c.rows
    if c.status == ST_OK:
        arr = <ArrowArray*>calloc(1, sizeof(ArrowArray))
        if arr == NULL:
            c.status = ST_NOMEM
        elif export_tree(c.out, arr, &c.exported):
            free(arr)
            c.status = ST_NOMEM
        else:
            out[0] = arr
    return c.status


cdef Col* pool_get(int kind, int sig) noexcept:
    """A pooled tree or NULL (GIL held)."""
    if TREE_POOL_N[kind][sig] > 0:
        TREE_POOL_N[kind][sig] -= 1
        return TREE_POOL[kind][sig][TREE_POOL_N[kind][sig]]
    return NULL


cdef void pool_put(int kind, int sig, Col* tree) noexcept:
    """Return a tree to its pool, emptied, or free it (GIL held)."""
    if tree == NULL:
        return
    if (TREE_POOL_N[kind][sig] < POOL_SIZE
            and tree_capacity(tree, SPEC_LEN[sig]) <= POOL_MAX_BYTES[kind]):
        col_reset(tree)
        TREE_POOL[kind][sig][TREE_POOL_N[kind][sig]] = tree
        TREE_POOL_N[kind][sig] += 1
    else:
        tree_free(tree, SPEC_LEN[sig])


# ============================================================== Python API

_SIGNALS = ("traces", "metrics", "logs")
_REQUEST_NAMES = ("ExportTraceServiceRequest", "ExportMetricsServiceRequest",
                  "ExportLogsServiceRequest")
_SCHEMAS = tuple(_schema.schema_for(s) for s in _SIGNALS)
_REFERENCE = tuple(_schema.DECODERS[s] for s in _SIGNALS)
_import_batch = pa.RecordBatch._import_from_c

cdef int64_t _fallbacks = 0
cdef int64_t _decoded = 0
cdef int64_t _merges = 0
_fallback_reasons = {}


cdef class Chunk:
    """One request's rows as this module exported them, not yet imported into pyarrow.

    The receiver puts chunks in the buffer and the writer concatenates them with
    :func:`merge` (or turns one into a batch with :meth:`to_batch`): a request
    costs no pyarrow import of its ~200 arrays, and concatenation no pyarrow
    work per array. ``num_rows`` and ``nbytes`` (the bytes of its memory block)
    answer like a RecordBatch's; ``get_total_buffer_size()`` is ``nbytes``.
    """
    cdef ArrowArray* arr   # owned; released (arr.release == NULL) once imported
    cdef int sig
    cdef int merging       # merges reading this chunk with the GIL released
    cdef readonly int64_t num_rows
    cdef readonly int64_t nbytes

    def __cinit__(self):
        self.arr = NULL

    def __dealloc__(self):
        if self.arr != NULL:
            if self.arr.release != NULL:
                self.arr.release(self.arr)
            free(self.arr)

    @property
    def signal(self):
        return _SIGNALS[self.sig]

    @property
    def schema(self):
        return _SCHEMAS[self.sig]

    def get_total_buffer_size(self):
        return self.nbytes

    def to_batch(self):
        """The rows as a pyarrow.RecordBatch, which takes over the memory: a chunk
        converts once (ValueError the second time)."""
        if self.arr == NULL or self.arr.release == NULL:
            raise ValueError("this chunk was already converted to a RecordBatch")
        if self.merging:
            raise ValueError("this chunk is being merged in another thread")
        return _import_batch(<uintptr_t>self.arr, _SCHEMAS[self.sig])

    def __repr__(self):
        return f"<otlpd._decoder.Chunk {self.signal}: {self.num_rows} rows, {self.nbytes} bytes>"


cdef object _decode(int sig, object data, bint allow_fallback, bint as_chunk=False):
    global _fallbacks, _decoded
    cdef const uint8_t* ptr
    cdef Py_ssize_t size
    cdef Ctx c
    cdef ArrowArray* arr = NULL
    cdef int rc
    memset(&c, 0, sizeof(Ctx))
    if isinstance(data, bytes):
        ptr = <const uint8_t*><const char*>data
        size = len(<bytes>data)
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
        ptr = <const uint8_t*><const char*>data
        size = len(<bytes>data)
    else:  # the reference raises DecodeError for whatever this is
        return _REFERENCE[sig](data)
    if size > INT32_MAX_:
        # FALLBACK: offsets into the request are kept as int32-compatible
        # sizes; a > 2 GiB request never reaches us through gRPC.
        rc = ST_FALLBACK
        c.fallback = "request larger than 2 GiB"
    else:
        c.base = ptr
        c.tmpl = pool_get(POOL_TMPL, sig)
        c.out = pool_get(POOL_OUT, sig)
        # `data` (a bytes object) is referenced by this frame until we return,
        # so ptr stays valid while the GIL is released.
        with nogil:
            rc = run(&c, sig, ptr, size, &arr)
        pool_put(POOL_TMPL, sig, c.tmpl)
        pool_put(POOL_OUT, sig, c.out)
        c.tmpl = NULL
        c.out = NULL
    if rc == ST_OK:
        _decoded += 1
        if as_chunk:
            chunk = Chunk()
            chunk.arr = arr
            chunk.sig = sig
            chunk.num_rows = arr.length
            chunk.nbytes = c.exported
            return chunk
        try:
            return _import_batch(<uintptr_t>arr, _SCHEMAS[sig])
        finally:
            if arr.release != NULL:  # import failed before taking ownership
                arr.release(arr)
            free(arr)
    if rc == ST_FALLBACK:
        reason = c.fallback.decode('ascii')
        if not allow_fallback:
            return reason
        _fallbacks += 1
        _fallback_reasons[reason] = _fallback_reasons.get(reason, 0) + 1
        return _REFERENCE[sig](data)
    if rc == ST_ERR:
        raise DecodeError(f"invalid {_REQUEST_NAMES[sig]}: {c.err.decode('ascii')} "
                          f"at byte {c.err_off}")
    if rc == ST_TOO_LARGE:
        raise DecodeError(f"invalid {_REQUEST_NAMES[sig]}: request too large "
                          "(a decoded column would exceed 2 GiB)")
    raise MemoryError("otlpd._decoder: out of memory")


def decode_traces(data):
    """ExportTraceServiceRequest bytes -> one row per span; raises DecodeError on bad bytes."""
    return _decode(0, data, True)


def decode_metrics(data):
    """ExportMetricsServiceRequest bytes -> one row per data point; raises DecodeError on bad bytes."""
    return _decode(1, data, True)


def decode_logs(data):
    """ExportLogsServiceRequest bytes -> one row per log record; raises DecodeError on bad bytes."""
    return _decode(2, data, True)


DECODERS = {"traces": decode_traces, "metrics": decode_metrics, "logs": decode_logs}


def decode_chunk(signal, data):
    """Decode `data` as `signal`'s Export request into a :class:`Chunk` (or, where
    the reference path decodes it, a RecordBatch); raises DecodeError on bad bytes."""
    return _decode(_SIGNALS.index(signal), data, True, True)


def merge(chunks):
    """The rows of `chunks` (a list of Chunks of one signal, in order) as one
    RecordBatch, concatenated natively; the chunks stay as they were.

    Returns None where the native merge does not apply (offsets beyond int32, a
    chunk not in the form this module exports): concatenate with pyarrow then.
    """
    cdef Py_ssize_t k = len(chunks)
    cdef Py_ssize_t i
    cdef Chunk chunk
    cdef int sig = -1
    cdef int rc
    cdef int64_t size = 0
    cdef ArrowArray** srcs
    cdef ArrowArray* out
    cdef const Spec* spec
    global _merges
    if k == 0 or k > 1 << 24:
        raise ValueError(f"merge() takes 1 to {1 << 24} chunks, not {k}")
    chunks = tuple(chunks)  # ours: the caller's list may change while the GIL is released
    for item in chunks:
        if not isinstance(item, Chunk):
            raise TypeError(f"merge() takes Chunks, not {type(item).__name__}")
        chunk = <Chunk>item
        if chunk.arr == NULL or chunk.arr.release == NULL:
            raise ValueError("merge() got a chunk already converted to a RecordBatch")
        if sig < 0:
            sig = chunk.sig
        elif chunk.sig != sig:
            raise ValueError("merge() takes chunks of one signal")
    srcs = <ArrowArray**>malloc(k * sizeof(ArrowArray*))
    out = <ArrowArray*>calloc(1, sizeof(ArrowArray))
    if srcs == NULL or out == NULL:
        free(srcs)
        free(out)
        raise MemoryError("otlpd._decoder: out of memory")
    for i in range(k):
        srcs[i] = (<Chunk>chunks[i]).arr
        (<Chunk>chunks[i]).merging += 1  # no to_batch() (which moves the array) meanwhile
    spec = SPECS[sig]
    # The tuple keeps every source alive while the GIL is released.
    with nogil:
        rc = merge_arrays(sig, spec, srcs, <int>k, out, &size)
    for i in range(k):
        (<Chunk>chunks[i]).merging -= 1
    free(srcs)
    if rc == ST_OK:
        _merges += 1
        try:
            return _import_batch(<uintptr_t>out, _SCHEMAS[sig])
        finally:
            if out.release != NULL:
                out.release(out)
            free(out)
    free(out)
    if rc == ST_NOMEM:
        raise MemoryError("otlpd._decoder: out of memory")
    return None


def decode(signal, data, fallback=True):
    """Decode `data` as `signal`'s Export request.

    With fallback=False, a request that needs the reference path is not decoded:
    the reason (a str) is returned instead of a batch (for tests).
    """
    return _decode(_SIGNALS.index(signal), data, bool(fallback))


def stats():
    """Counters since import: requests decoded natively, fallbacks by reason, native
    merges; bytes mapped for batches now (alive or cached), of them the released
    mappings kept for reuse and the bound of those, and the mappings kept for the
    next merge of each signal."""
    cdef int64_t cached, total, merge_kept
    with nogil:
        map_cache_lock()
        cached = MAP_CACHED
        total = MAP_TOTAL
        merge_kept = MERGE_SLOT_SIZE[0] + MERGE_SLOT_SIZE[1] + MERGE_SLOT_SIZE[2]
        map_cache_unlock()
    return {"decoded": _decoded, "fallbacks": _fallbacks,
            "fallback_reasons": dict(_fallback_reasons), "merges": _merges,
            "mapped_bytes": total, "map_cache_bytes": cached, "map_cache_limit": MAP_CACHE_BYTES,
            "merge_cache_bytes": merge_kept}


# ---------------------------------------------------------------- import-time setup

def _fill_field_tables():
    """FKIND/FSUB from the protobuf descriptors (field numbers, types, labels)."""
    ids = {}
    F = FieldDescriptor
    varint = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_INT32, F.TYPE_UINT32, F.TYPE_BOOL,
              F.TYPE_ENUM, F.TYPE_SINT32, F.TYPE_SINT64}
    f64 = {F.TYPE_DOUBLE, F.TYPE_FIXED64, F.TYPE_SFIXED64}
    f32 = {F.TYPE_FLOAT, F.TYPE_FIXED32, F.TYPE_SFIXED32}

    def register(desc):
        if desc.full_name in ids:
            return ids[desc.full_name]
        mid = len(ids)
        if mid >= MAX_MSGS:
            raise ImportError("too many message types for the decoder tables")
        ids[desc.full_name] = mid
        for f in desc.fields:
            if f.number >= MAXF:
                raise ImportError(f"field number {f.number} of {desc.full_name} too large")
            repeated = f.is_repeated
            if f.type in varint:
                kind = K_REP_VARINT if repeated else K_VARINT
            elif f.type in f64:
                kind = K_REP_F64 if repeated else K_F64
            elif f.type in f32:
                kind = K_REP_F32 if repeated else K_F32
            elif f.type == F.TYPE_STRING:
                kind = K_STRING
            elif f.type == F.TYPE_BYTES:
                kind = K_BYTES
            elif f.type == F.TYPE_MESSAGE:
                kind = K_MSG
            else:
                raise ImportError(f"unsupported field type {f.type} in {desc.full_name}")
            FKIND[mid * MAXF + f.number] = kind
            if kind == K_MSG:
                FSUB[mid * MAXF + f.number] = register(f.message_type)
        return mid

    memset(FKIND, 0, sizeof(FKIND))
    memset(FSUB, 0, sizeof(FSUB))
    for request in (ExportTraceServiceRequest, ExportMetricsServiceRequest,
                    ExportLogsServiceRequest):
        register(request.DESCRIPTOR)
    for i, name in enumerate(_MT_NAMES):
        MT[i] = ids["opentelemetry.proto." + name]


# The message types the decoders handle, in the order of the M_* constants.
_MT_NAMES = [
    "collector.trace.v1.ExportTraceServiceRequest",
    "collector.metrics.v1.ExportMetricsServiceRequest",
    "collector.logs.v1.ExportLogsServiceRequest",
    "trace.v1.ResourceSpans", "metrics.v1.ResourceMetrics", "logs.v1.ResourceLogs",
    "trace.v1.ScopeSpans", "metrics.v1.ScopeMetrics", "logs.v1.ScopeLogs",
    "resource.v1.Resource", "common.v1.InstrumentationScope", "common.v1.KeyValue",
    "common.v1.AnyValue", "common.v1.ArrayValue", "common.v1.KeyValueList",
    "common.v1.EntityRef", "trace.v1.Span", "trace.v1.Span.Event", "trace.v1.Span.Link",
    "trace.v1.Status", "logs.v1.LogRecord", "metrics.v1.Metric", "metrics.v1.Gauge",
    "metrics.v1.Sum", "metrics.v1.Histogram", "metrics.v1.ExponentialHistogram",
    "metrics.v1.Summary", "metrics.v1.NumberDataPoint", "metrics.v1.HistogramDataPoint",
    "metrics.v1.ExponentialHistogramDataPoint",
    "metrics.v1.ExponentialHistogramDataPoint.Buckets", "metrics.v1.SummaryDataPoint",
    "metrics.v1.SummaryDataPoint.ValueAtQuantile", "metrics.v1.Exemplar",
]
assert len(_MT_NAMES) == M_COUNT


def _spec_nodes(t, out):
    if t == _schema.ANYVALUE:
        out.append((C_STRUCT, 0, t.num_fields, F_ANYVALUE))
        for i in range(t.num_fields):
            _spec_nodes(t.field(i).type, out)
    elif pa.types.is_struct(t):
        out.append((C_STRUCT, 0, t.num_fields, 0))
        for i in range(t.num_fields):
            _spec_nodes(t.field(i).type, out)
    elif pa.types.is_list(t):
        out.append((C_LIST, 0, 1, 0))
        _spec_nodes(t.value_type, out)
    elif pa.types.is_string(t) or pa.types.is_binary(t):
        out.append((C_BIN, 0, 0, 0))
    elif pa.types.is_boolean(t):
        out.append((C_BOOL, 0, 0, 0))
    elif pa.types.is_primitive(t) and t.bit_width in (8, 32, 64):
        out.append((C_PRIM, t.bit_width // 8, 0, 0))
    else:
        raise ImportError(f"unsupported Arrow type {t}")


def _type_depth(t):
    """Nesting levels of an Arrow type (a primitive is 1)."""
    if pa.types.is_struct(t):
        return 1 + max((_type_depth(t.field(i).type) for i in range(t.num_fields)), default=0)
    if pa.types.is_list(t):
        return 1 + _type_depth(t.value_type)
    return 1


_COMMON = ["resource_attributes", "resource_dropped_attributes_count", "resource_entity_refs",
           "resource_schema_url", "service_name", "scope_name", "scope_version",
           "scope_attributes", "scope_dropped_attributes_count", "scope_schema_url"]
_LAYOUT = (
    _COMMON + ["trace_id", "span_id", "trace_state", "parent_span_id", "flags", "name", "kind",
               "start_time", "end_time", "attributes", "dropped_attributes_count", "events",
               "dropped_events_count", "links", "dropped_links_count", "status_code",
               "status_message"],
    _COMMON + ["metric_name", "metric_description", "metric_unit", "metric_metadata",
               "metric_type", "aggregation_temporality", "is_monotonic", "attributes",
               "start_time", "time", "flags", "value_double", "value_int", "count", "sum", "min",
               "max", "bucket_counts", "explicit_bounds", "scale", "zero_count",
               "zero_threshold", "positive_offset", "positive_bucket_counts", "negative_offset",
               "negative_bucket_counts", "quantile_values", "exemplars"],
    _COMMON + ["time", "observed_time", "severity_number", "severity_text", "body", "attributes",
               "dropped_attributes_count", "flags", "trace_id", "span_id", "event_name"],
)


def _fill_specs():
    for sig in range(3):
        schema = _SCHEMAS[sig]
        if schema.names != _LAYOUT[sig]:
            raise ImportError(f"otlpd._decoder was written for another {_SIGNALS[sig]} schema")
        nodes = []
        _spec_nodes(pa.struct(list(schema)), nodes)
        if _type_depth(pa.struct(list(schema))) >= MERGE_MAX_DEPTH:
            raise ImportError("schema too deep for merge()")
        if len(nodes) > MAX_SPEC:
            raise ImportError("schema too large for the decoder")
        for i, (kind, width, n, flags) in enumerate(nodes):
            SPECS[sig][i].kind = kind
            SPECS[sig][i].width = width
            SPECS[sig][i].n_children = n
            SPECS[sig][i].flags = flags
        SPEC_LEN[sig] = len(nodes)


_fill_field_tables()
_fill_specs()



def _set_max_replicated(limit):
    """Set the per-request budget of replicated bytes (tests); returns the old one."""
    global MAX_REPLICATED
    old = MAX_REPLICATED
    MAX_REPLICATED = limit
    return old
