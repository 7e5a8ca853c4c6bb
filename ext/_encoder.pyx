# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
#
# Directives:
# - boundscheck/wraparound=False: the hot code indexes only C pointers, never Python
#   sequences; every read of an Arrow buffer goes through the readers of columns.pxi,
#   which check the index, offsets and sizes first (a `# bounds:` comment at each check),
#   and every write through wire.pxi, which grows the buffer first.
# - cdivision=True: the only divisions are by 10 and 8 of non-negative values.
"""Cython encoder: rows of a stored batch -> OTLP Export request bytes, without the GIL.

The mirror of the Cython decoder (docs/ENCODER.md): it writes the protobuf wire format
straight from the Arrow buffers of the rows (either layout) into one growable C buffer,
and gives the bytes of ``otlpd.schema.to_request(signal, rows, sources).SerializeToString()``:

1. ``Encoder(signal, rows, sources)`` takes the addresses and sizes of the columns'
   buffers (columns.pxi) and, without the GIL, groups the rows by resource, scope and
   (metrics) metric as to_request does (groups.pxi).
2. ``encode_range(start, stop)`` writes the request of a range of rows; ``cut()`` finds
   where requests() cuts, from the exact sizes of records and groups.

``encode`` and ``requests`` are what ``otlpd.encode`` calls.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc, strtod
from libc.string cimport memcmp, memcpy, memmove, memset
from cpython.bytes cimport PyBytes_FromStringAndSize

import sys

import pyarrow as pa

from otlpd import schema as _schema
from otlpd import sources as _sources

__all__ = ["Encoder", "encode", "requests", "DATA_COLUMNS", "NATIVE"]

include "encoder/wire.pxi"
include "encoder/columns.pxi"
include "encoder/common.pxi"
include "encoder/traces.pxi"
include "encoder/logs.pxi"
include "encoder/metrics.pxi"
include "encoder/groups.pxi"

if sys.byteorder != "little":  # fixed64/double fields are copied as the host's bytes
    raise ImportError("otlpd._encoder needs a little-endian host")

_SIGNAL_NUMBERS = {"traces": TRACES, "metrics": METRICS, "logs": LOGS}
NATIVE = frozenset(_SIGNAL_NUMBERS)  # the signals written here: all of them
# each signal's own columns, in the order of its part's enum (checked below)
DATA_COLUMNS = {signal: [name for name in _sources.rows_schema(signal).names
                         if name not in ("service_name", "source_id")]
                for signal in _schema.SIGNALS}
_TYPES = {signal: {field.name: field.type for field in _schema.schema_for(signal)}
          for signal in _schema.SIGNALS}
_SOURCE_ID = _sources.SOURCE_ID.type


def _check_layout():
    """The column positions the parts use are those of the schemas."""
    traces = DATA_COLUMNS["traces"]
    assert [traces[k] for k in (T_TRACE_ID, T_NAME, T_ATTRIBUTES, T_EVENTS, T_STATUS_MESSAGE)] == [
        "trace_id", "name", "attributes", "events", "status_message"], traces
    assert len(traces) == T_STATUS_MESSAGE + 1
    event = _TYPES["traces"]["events"].value_type
    assert [event.field(k).name for k in (EVENT_TIME, EVENT_NAME, EVENT_ATTRIBUTES, EVENT_DROPPED)] == [
        "time", "name", "attributes", "dropped_attributes_count"]
    link = _TYPES["traces"]["links"].value_type
    assert [link.field(k).name for k in (LINK_TRACE_ID, LINK_ATTRIBUTES, LINK_DROPPED, LINK_FLAGS)] == [
        "trace_id", "attributes", "dropped_attributes_count", "flags"]
    logs = DATA_COLUMNS["logs"]
    assert [logs[k] for k in (L_TIME, L_BODY, L_BODY_OTHER, L_ATTRIBUTES, L_DROPPED_ATTRIBUTES,
                              L_EVENT_NAME)] == [
        "time", "body", "body_other", "attributes", "dropped_attributes_count", "event_name"], logs
    assert len(logs) == L_EVENT_NAME + 1
    metrics = DATA_COLUMNS["metrics"]
    assert [metrics[k] for k in (M_METADATA, M_TYPE, M_ATTRIBUTES, M_START_TIME, M_COUNT, M_SCALE,
                                 M_POSITIVE_OFFSET, M_NEGATIVE_COUNTS, M_EXEMPLARS)] == [
        "metric_metadata", "metric_type", "attributes", "start_time", "count", "scale",
        "positive_offset", "negative_bucket_counts", "exemplars"], metrics
    assert len(metrics) == M_EXEMPLARS + 1
    exemplar = _TYPES["metrics"]["exemplars"].value_type
    assert [exemplar.field(k).name for k in (X_ATTRIBUTES, X_TIME, X_VALUE_INT, X_TRACE_ID)] == [
        "filtered_attributes", "time", "value_int", "trace_id"]
    source = list(_sources.SOURCE_COLUMNS)
    assert [source[k] for k in (S_RES_ATTRS, S_RES_DROPPED, S_RES_REFS, S_RES_URL, S_SCOPE_NAME,
                                S_SCOPE_ATTRS, S_SCOPE_DROPPED, S_SCOPE_URL)] == [
        "resource_attributes", "resource_dropped_attributes_count", "resource_entity_refs",
        "resource_schema_url", "scope_name", "scope_attributes", "scope_dropped_attributes_count",
        "scope_schema_url"]
    assert len(source) == N_SOURCE_COLUMNS


_check_layout()


def _column(table, name: str, type_, what: str):
    """Column `name` of a RecordBatch or Table as one Array of `type_` (cast if it differs,
    as to_request casts)."""
    if name not in table.schema.names:
        raise ValueError(f"{what} have no column {name!r}")
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.type != type_:
        column = column.cast(type_)
    return column


cdef class Encoder:
    """The rows of one batch, grouped, ready to be written as requests of any range of rows."""
    cdef Enc e
    cdef Columns data
    cdef Columns source
    cdef Columns ids
    cdef readonly int64_t num_rows
    cdef readonly str signal
    cdef bint busy  # set and cleared with the GIL held: one call at a time writes with `e`

    def __cinit__(self):
        memset(&self.e, 0, sizeof(Enc))

    def __dealloc__(self):
        enc_free(&self.e)

    def __init__(self, str signal, rows, sources=None):
        cdef Enc* e = &self.e
        cdef int64_t k
        cdef bint stored
        if signal not in _SIGNAL_NUMBERS:
            _schema.schema_for(signal)  # the ValueError naming the signals
        if not isinstance(rows, (pa.RecordBatch, pa.Table)):
            raise ValueError(f"rows must be a pyarrow RecordBatch or Table, not {type(rows).__name__}")
        version = (rows.schema.metadata or {}).get(b"otlpd.schema_version")
        if version is not None and version.decode() != _schema.SCHEMA_VERSION:
            raise ValueError(f"{signal} rows of otlpd schema version {version.decode()}, "
                             f"this otlpd reads version {_schema.SCHEMA_VERSION}")
        types = _TYPES[signal]
        stored = "source_id" in rows.schema.names
        if stored and sources is None:
            raise ValueError(f"{signal} rows as a file stores them need their sources table")
        if stored and not isinstance(sources, (pa.RecordBatch, pa.Table)):
            raise ValueError("sources must be a pyarrow RecordBatch or Table")
        self.signal = signal
        self.num_rows = rows.num_rows
        self.data = Columns()
        self.data.build([_column(rows, name, types[name], f"{signal} rows") for name in DATA_COLUMNS[signal]],
                        DATA_COLUMNS[signal])
        self.source = Columns()
        self.source.build([_column(sources if stored else rows, name, types[name],
                                   "sources" if stored else f"{signal} rows")
                           for name in _sources.SOURCE_COLUMNS], list(_sources.SOURCE_COLUMNS))
        self.ids = Columns()
        if stored:
            self.ids.build([_column(rows, "source_id", _SOURCE_ID, f"{signal} rows"),
                            _column(sources, "source_id", _SOURCE_ID, "sources")],
                           ["source_id", "source_id"])
        for k in range(len(DATA_COLUMNS[signal])):
            if self.data.nodes[k].length != self.num_rows:
                raise ValueError(f"column {DATA_COLUMNS[signal][k]!r} is not as long as the batch")
        e.signal = _SIGNAL_NUMBERS[signal]
        e.rows = self.num_rows
        e.cols = self.data.nodes
        e.src = self.source.nodes
        for k in range(1, N_SOURCE_COLUMNS):
            if self.source.nodes[k].length != self.source.nodes[0].length:
                raise ValueError(f"column {_sources.SOURCE_COLUMNS[k]!r} is not as long as the sources")
        with nogil:
            e.src_row = alloc_ids(e.rows)
            e.resource = alloc_ids(e.rows)
            e.scope = alloc_ids(e.rows)
            e.metric = alloc_ids(e.rows)
            if stored:
                map_sources(e, &self.ids.nodes[0], &self.ids.nodes[1])
            else:
                for k in range(e.rows):
                    e.src_row[k] = k
            group_rows(e)
            alloc_orders(e)

    cdef int _enter(self) except -1:
        if self.busy:
            raise RuntimeError("an Encoder serves one call at a time")
        self.busy = True
        return 0

    def encode_range(self, int64_t start, int64_t stop) -> bytes:
        """The Export request of rows [start, stop): to_request's bytes for rows.slice(start, stop - start)."""
        cdef Buf out
        if not 0 <= start <= stop <= self.num_rows:
            raise ValueError(f"rows [{start}, {stop}) are not within the {self.num_rows} rows")
        memset(&out, 0, sizeof(Buf))
        self._enter()
        try:
            with nogil:
                write_range(&self.e, &out, start, stop)
            return PyBytes_FromStringAndSize(<char*>out.data, out.len) if out.len else b""
        finally:
            self.busy = False
            buf_free(&out)

    def cut(self, int64_t max_items, int64_t max_bytes) -> list:
        """Where requests() cuts: the (first row, number of rows) of each request."""
        cdef int64_t* starts
        cdef int64_t n, k
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"max_items ({max_items}) and max_bytes ({max_bytes}) must be at least 1")
        starts = NULL
        self._enter()
        try:
            starts = alloc_ids(self.num_rows + 1)
            with nogil:
                n = cut(&self.e, max_items, max_bytes, starts)
            starts[n] = self.num_rows
            return [(starts[k], starts[k + 1] - starts[k]) for k in range(n)]
        finally:
            self.busy = False
            free(starts)


def encode(str signal, rows, sources=None) -> bytes:
    """The serialized Export request of `rows` (stored layout with `sources`, or full layout)."""
    encoder = Encoder(signal, rows, sources)
    return encoder.encode_range(0, encoder.num_rows)


def requests(str signal, rows, sources=None, int64_t max_items=8192, int64_t max_bytes=4_000_000):
    """`rows` cut into Export requests: an iterator of (request bytes, number of records)."""
    encoder = Encoder(signal, rows, sources)
    return _requests(encoder, encoder.cut(max_items, max_bytes))


def _requests(Encoder encoder, list pieces):
    for start, count in pieces:
        yield encoder.encode_range(start, start + count), count
