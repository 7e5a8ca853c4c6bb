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
encodings that the columns cannot reproduce cheaply (see the FALLBACK comments
in the parts and docs/DECODER.md) are handed to the reference path instead, so
that results always match it.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.math cimport fabs, floor
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free, malloc, realloc, strtod
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
from otlpd import sources as _sources
from otlpd.schema import DecodeError

__all__ = ["decode_traces", "decode_metrics", "decode_logs", "decode", "decode_chunk", "merge",
           "Chunk", "DECODERS", "DecodeError", "stats"]

if sys.byteorder != "little":  # fixed32/fixed64/double are read with memcpy
    raise ImportError("otlpd._decoder supports little-endian hosts only")


# The module is one compilation unit made of the parts below, included in this order
# (each part's header says what it holds and what it relies on; docs/DECODER.md,
# "Source layout").
include "decoder/core.pxi"       # Arrow C Data Interface, status codes, Col/Spec/Ctx
include "decoder/wire.pxi"       # bounds-checked wire readers, skipping unknown fields
include "decoder/validate.pxi"   # UTF-8, v* helpers, vfield()/validate() and their field tables
include "decoder/canonical.pxi"  # canonical ArrayValue/KeyValueList bytes (else fallback)
include "decoder/columns.pxi"    # column builders, column trees, template replication
include "decoder/block.pxi"      # memory of exported batches: mappings, cache, Block, release
include "decoder/export.pxi"     # Col tree -> one block of ArrowArrays
include "decoder/merge.pxi"      # exported batches of one signal -> one block
include "decoder/common.pxi"     # AnyValue, KeyValue, EntityRef, Resource, InstrumentationScope
include "decoder/traces.pxi"     # Span, Event, Link
include "decoder/logs.pxi"       # LogRecord
include "decoder/metrics.pxi"    # Metric, data points, exemplars
include "decoder/sources.pxi"    # canonical keys, source_id, the request's sources tree
include "decoder/request.pxi"    # request, resource groups, scope groups
include "decoder/driver.pxi"     # SPECS, tree pools, run(): one request without the GIL
include "decoder/api.pxi"        # Chunk, decode*, merge, stats
include "decoder/tables.pxi"     # import time: field tables from the descriptors
include "decoder/layout.pxi"     # import time: column specs from the schemas


# ---------------------------------------------------------------- import-time setup

_fill_field_tables()
_fill_specs()
