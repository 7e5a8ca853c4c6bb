# Python API: Chunk, decode_traces/metrics/logs, decode, decode_chunk, merge, stats and
# the tests' _set_max_replicated. Holds the GIL around run() and merge_arrays(), pools
# the trees, and turns status codes into results, fallbacks or exceptions. Relies on
# driver.pxi, merge.pxi and block.pxi.

# ============================================================== Python API

_SIGNALS = ("traces", "metrics", "logs")
_REQUEST_NAMES = ("ExportTraceServiceRequest", "ExportMetricsServiceRequest",
                  "ExportLogsServiceRequest")
_SCHEMAS = tuple(_schema.schema_for(s) for s in _SIGNALS)          # the full layout
_ROW_SCHEMAS = tuple(_sources.rows_schema(s) for s in _SIGNALS)    # the rows as stored
_REFERENCE = tuple(_schema.DECODERS[s] for s in _SIGNALS)
_import_batch = pa.RecordBatch._import_from_c

cdef int64_t _fallbacks = 0
cdef int64_t _decoded = 0
cdef int64_t _merges = 0
_fallback_reasons = {}


cdef class Chunk:
    """One request's rows as this module exported them (the stored layout,
    otlpd.sources.rows_schema), with the sources they refer to, not yet imported into
    pyarrow.

    The receiver puts chunks in the buffer and the writer concatenates them with
    :func:`merge` (or turns one into a batch with :meth:`to_batch`): a request
    costs no pyarrow import of its ~200 arrays, and concatenation no pyarrow
    work per array. ``num_rows`` and ``nbytes`` (the bytes of its memory blocks)
    answer like a RecordBatch's; ``get_total_buffer_size()`` is ``nbytes``.
    ``source_ids`` and ``source_keys`` (canonical keys) list the request's sources, in
    the order of the rows of :meth:`sources_batch`, which is imported on first use.
    ``temporalities`` (metrics): bit t is set if a sum or histogram point has
    ``aggregation_temporality`` t (1 delta, 2 cumulative), bit 0 for any other value; the
    temporality conversion skips a chunk with nothing to convert without importing it.
    """
    cdef ArrowArray* arr   # owned; released (arr.release == NULL) once imported
    cdef ArrowArray* sarr  # the sources, owned until imported
    cdef object _sources
    cdef int sig
    cdef int merging       # merges reading this chunk with the GIL released
    cdef readonly int64_t num_rows
    cdef readonly int64_t nbytes
    cdef readonly tuple source_ids
    cdef readonly tuple source_keys
    cdef readonly int temporalities

    def __cinit__(self):
        self.arr = NULL
        self.sarr = NULL

    def __dealloc__(self):
        _release(self.arr)
        _release(self.sarr)

    @property
    def signal(self):
        return _SIGNALS[self.sig]

    @property
    def schema(self):
        return _ROW_SCHEMAS[self.sig]

    def get_total_buffer_size(self):
        return self.nbytes

    def to_batch(self):
        """The rows as a pyarrow.RecordBatch, which takes over the memory: a chunk
        converts once (ValueError the second time)."""
        if self.arr == NULL or self.arr.release == NULL:
            raise ValueError("this chunk was already converted to a RecordBatch")
        if self.merging:
            raise ValueError("this chunk is being merged in another thread")
        return _import_batch(<uintptr_t>self.arr, _ROW_SCHEMAS[self.sig])

    def sources_batch(self):
        """The sources (otlpd.sources.SOURCES_SCHEMA) as a pyarrow.RecordBatch."""
        if self._sources is None:
            self._sources = _import_batch(<uintptr_t>self.sarr, _sources.SOURCES_SCHEMA)
        return self._sources

    def __repr__(self):
        return (f"<otlpd._decoder.Chunk {self.signal}: {self.num_rows} rows, "
                f"{len(self.source_ids)} sources, {self.nbytes} bytes>")


cdef void _release(ArrowArray* a) noexcept:
    if a != NULL:
        if a.release != NULL:
            a.release(a)
        free(a)


cdef object _import_owned(ArrowArray* a, object schema):
    """Import an exported batch and free its node (released here if the import failed)."""
    try:
        return _import_batch(<uintptr_t>a, schema)
    finally:
        _release(a)


cdef void _ctx_free(Ctx* c) noexcept:
    free(c.src_keys.p)
    free(c.src_meta.p)
    free(c.src_slots.p)
    c.src_keys.p = c.src_meta.p = c.src_slots.p = NULL


cdef object _decode(int sig, object data, bint allow_fallback, bint as_chunk=False):
    global _fallbacks, _decoded
    cdef const uint8_t* ptr
    cdef Py_ssize_t size
    cdef Ctx c
    cdef ArrowArray* arr = NULL
    cdef ArrowArray* sarr = NULL
    cdef SrcMeta* meta
    cdef int64_t k
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
        c.src = pool_get(POOL_SRC, sig)
        # `data` (a bytes object) is referenced by this frame until we return,
        # so ptr stays valid while the GIL is released.
        with nogil:
            rc = run(&c, sig, ptr, size, &arr, &sarr)
        pool_put(POOL_TMPL, sig, c.tmpl)
        pool_put(POOL_OUT, sig, c.out)
        pool_put(POOL_SRC, sig, c.src)
        c.tmpl = NULL
        c.out = NULL
        c.src = NULL
    if rc == ST_OK:
        _decoded += 1
        try:
            meta = <SrcMeta*>c.src_meta.p
            ids = tuple([meta[k].id for k in range(c.n_src)])
            keys = tuple([(<char*>c.src_keys.p)[meta[k].key_off:meta[k].key_off + meta[k].key_len]
                          for k in range(c.n_src)])
        finally:
            _ctx_free(&c)
        if as_chunk:
            chunk = Chunk()
            chunk.arr = arr
            chunk.sarr = sarr
            chunk.sig = sig
            chunk.num_rows = arr.length
            chunk.nbytes = c.exported
            chunk.source_ids = ids
            chunk.source_keys = keys
            chunk.temporalities = c.temporalities
            return chunk
        rows = _import_owned(arr, _ROW_SCHEMAS[sig])
        return _full(sig, rows, _import_owned(sarr, _sources.SOURCES_SCHEMA))
    _ctx_free(&c)
    if rc == ST_FALLBACK:
        reason = c.fallback.decode('ascii')
        if not allow_fallback:
            return reason
        _fallbacks += 1
        _fallback_reasons[reason] = _fallback_reasons.get(reason, 0) + 1
        batch = _REFERENCE[sig](data)
        return _sources.lean(batch) if as_chunk else batch
    if rc == ST_ERR:
        raise DecodeError(f"invalid {_REQUEST_NAMES[sig]}: {c.err.decode('ascii')} "
                          f"at byte {c.err_off}")
    if rc == ST_TOO_LARGE:
        raise DecodeError(f"invalid {_REQUEST_NAMES[sig]}: request too large "
                          "(a decoded column would exceed 2 GiB)")
    raise MemoryError("otlpd._decoder: out of memory")


def _full(sig, rows, sources_batch):
    """The full layout (what decode_* return) from a request's rows and sources."""
    table = _sources.join(rows, sources_batch, _SCHEMAS[sig])
    batches = table.to_batches()
    return batches[0] if len(batches) == 1 else table.combine_chunks().to_batches()[0] if batches \
        else pa.RecordBatch.from_pylist([], schema=_SCHEMAS[sig])


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
    the reference path decodes it, an otlpd.sources.Lean); raises DecodeError on bad bytes."""
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
    spec = ROW_SPECS[sig]
    # The tuple keeps every source alive while the GIL is released.
    with nogil:
        rc = merge_arrays(sig, spec, srcs, <int>k, out, &size)
    for i in range(k):
        (<Chunk>chunks[i]).merging -= 1
    free(srcs)
    if rc == ST_OK:
        _merges += 1
        return _import_owned(out, _ROW_SCHEMAS[sig])
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




def _set_source_id_mask(mask):
    """Narrow source ids to `mask` (tests: collisions on purpose); returns the old mask."""
    global SRC_ID_MASK
    old = SRC_ID_MASK
    SRC_ID_MASK = mask
    return old


def _set_max_replicated(limit):
    """Set the per-request budget of replicated bytes (tests); returns the old one."""
    global MAX_REPLICATED
    old = MAX_REPLICATED
    MAX_REPLICATED = limit
    return old
