"""The encoder seam (otlpd.encode): rows of either layout -> Export request bytes.

Every implementation (the pure-Python reference, the Cython encoder once built) must give
bytes that parse to ``to_request(rows)`` and decode back to the rows, for every request the
round-trip strategies generate, both layouts, sliced batches and chunked tables; and
``requests()`` must cut by its rule (docs/ENCODER.md).
"""
from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
from fuzz_decoder import realistic_requests
from hypothesis import HealthCheck, given, settings
from strategies import export_requests, records_multiset

from gil import main_thread_ran_during
from otlpd import decode, encode, schema, sources
from otlpd import proto as pb
from otlpd.schema import SIGNALS

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REQUEST_TYPES = {"traces": pb.ExportTraceServiceRequest, "metrics": pb.ExportMetricsServiceRequest,
                 "logs": pb.ExportLogsServiceRequest}
ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ["python", "cython"]
NATIVE = list(SIGNALS)  # the signals the Cython encoder writes itself (otlpd._encoder.NATIVE)


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request) -> encode.Implementation:
    """Each encoder in turn."""
    found = encode.implementations()
    if request.param not in found:
        pytest.fail(f"the {request.param} encoder is not importable; build it with "
                    "`python setup.py build_ext --inplace`", pytrace=False)
    return found[request.param]


def decoded(signal: str, request) -> pa.RecordBatch:
    """The full-layout rows of a request, as the reference decoder gives them."""
    return schema.DECODERS[signal](request.SerializeToString())


def stored(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The rows as a file stores them, and their sources."""
    lean = sources.lean(batch)
    return lean.rows, lean.sources


def assert_encodes(implementation, signal: str, rows, sources_=None) -> bytes:
    """The implementation's bytes parse to to_request's message and decode back to the rows."""
    data = implementation.encode(signal, rows, sources_)
    assert isinstance(data, bytes)
    assert data == encode.reference(signal, rows, sources_)  # the very bytes upb writes
    expected = schema.to_request(signal, rows, sources_)
    parsed = REQUEST_TYPES[signal].FromString(data)
    # serialized forms: NaN doubles compare unequal in messages, their bits compare equal
    assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    full = rows if sources_ is None else sources.join(rows, sources_)
    back = schema.DECODERS[signal](data)
    assert pa.Table.from_batches([back]).equals(reference_regrouped(signal, full))
    return data


def reference_regrouped(signal: str, full) -> pa.Table:
    """What decoding to_request's bytes gives: the rows regrouped by resource, scope, metric."""
    batch = schema.DECODERS[signal](schema.to_request(signal, full).SerializeToString())
    return pa.Table.from_batches([batch])


@pytest.mark.parametrize("signal", SIGNALS)
def test_generated_requests_both_layouts(implementation, signal):
    @SETTINGS
    @given(export_requests(signal))
    def run(request):
        batch = decoded(signal, request)
        assert_encodes(implementation, signal, batch)
        rows, sources_ = stored(batch)
        assert_encodes(implementation, signal, rows, sources_)
        # a batch that to_request does not regroup decodes back to itself
        data = implementation.encode(signal, batch)
        again = schema.DECODERS[signal](data)
        assert schema.DECODERS[signal](implementation.encode(signal, again)).equals(again)

    run()


@pytest.mark.parametrize("signal", SIGNALS)
def test_realistic_requests_decode_back(implementation, signal):
    for data in realistic_requests(scale=1)[signal]:
        batch = decode.DECODERS[signal](data)
        assert batch.num_rows > 0
        got = assert_encodes(implementation, signal, batch)
        assert schema.DECODERS[signal](got).equals(batch)  # realistic requests group their rows
        rows, sources_ = stored(batch)
        assert implementation.encode(signal, rows, sources_) == got


@pytest.mark.parametrize("signal", SIGNALS)
def test_empty_batches(implementation, signal):
    empty = schema.schema_for(signal).empty_table()
    assert implementation.encode(signal, empty) == b""
    assert implementation.encode(signal, sources.rows_schema(signal).empty_table(),
                                 sources.SOURCES_SCHEMA.empty_table()) == b""
    assert list(implementation.requests(signal, empty, None, 10, 1000)) == []


@pytest.mark.parametrize("signal", SIGNALS)
def test_sliced_batches_and_chunked_tables(implementation, signal):
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0])
    rows, sources_ = stored(batch)
    n = batch.num_rows
    for start, length in ((1, n - 2), (n // 3, n // 3), (n - 1, 1), (n, 0)):
        assert_encodes(implementation, signal, batch.slice(start, length))
        assert_encodes(implementation, signal, rows.slice(start, length), sources_)
        assert_encodes(implementation, signal, rows.slice(start, length), sources_.slice(0))
    chunked = pa.Table.from_batches([batch.slice(0, n // 2), batch.slice(n // 2)])
    assert implementation.encode(signal, chunked) == implementation.encode(signal, batch)
    chunked_rows = pa.Table.from_batches([rows.slice(0, 3), rows.slice(3)])
    chunked_sources = pa.Table.from_batches([sources_.slice(0, 1), sources_.slice(1)])
    assert implementation.encode(signal, chunked_rows, chunked_sources) == implementation.encode(signal, batch)


def assert_cut(implementation, signal: str, rows, sources_, max_items: int, max_bytes: int) -> list:
    """requests() covers every row once, in order, within its limits, each request the
    longest run of rows that fits."""
    pieces = list(implementation.requests(signal, rows, sources_, max_items, max_bytes))
    start = 0
    for data, count in pieces:
        assert 1 <= count <= max_items
        assert data == implementation.encode(signal, rows.slice(start, count), sources_)
        assert len(data) <= max_bytes or count == 1
        end = start + count
        if end < rows.num_rows and count < max_items:  # one more row would not have fitted
            assert len(implementation.encode(signal, rows.slice(start, count + 1), sources_)) > max_bytes
        start = end
    assert start == rows.num_rows
    return pieces


@pytest.mark.parametrize("signal", SIGNALS)
def test_requests_cut_by_items_and_bytes(implementation, signal):
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0])
    rows, sources_ = stored(batch)
    whole = implementation.encode(signal, batch)
    assert list(implementation.requests(signal, batch, None, 10**6, 10**9)) == [(whole, batch.num_rows)]
    for max_items, max_bytes in ((7, 10**9), (10**6, len(whole) // 3), (5, len(whole) // 10), (3, 1)):
        pieces = assert_cut(implementation, signal, batch, None, max_items, max_bytes)
        assert len(pieces) > 1
        assert pieces == list(implementation.requests(signal, rows, sources_, max_items, max_bytes))


def test_requests_limits_and_signal_are_checked_at_the_call():
    batch = schema.schema_for("logs").empty_table()
    with pytest.raises(ValueError):
        encode.requests("logs", batch, max_items=0)
    with pytest.raises(ValueError):
        encode.requests("logs", batch, max_bytes=0)
    with pytest.raises(ValueError):
        encode.requests("events", batch)
    with pytest.raises(ValueError):
        encode.encode("events", batch)


def test_stored_rows_need_their_sources(implementation):
    rows = sources.rows_schema("traces").empty_table()
    with pytest.raises(ValueError):
        implementation.encode("traces", rows, None)


def test_the_seam_uses_the_chosen_implementation():
    assert encode.IMPLEMENTATION in encode.implementations()
    batch = decode.DECODERS["logs"](realistic_requests(scale=1)["logs"][0])
    assert encode.encode("logs", batch) == encode.reference("logs", batch)
    assert list(encode.requests("logs", batch)) == [(encode.reference("logs", batch), batch.num_rows)]


# ---------------------------------------------------------------- garbled input (Cython only)

def cython_encoder():
    found = encode.implementations()
    if "cython" not in found:
        pytest.fail("otlpd._encoder is not importable; build it with `python setup.py build_ext --inplace`",
                    pytrace=False)
    return found["cython"]


def with_nulls(value, rng: random.Random, rate: float):
    """A Python value of a column with random parts replaced by None, at every depth."""
    if isinstance(value, tuple):  # a map entry: pyarrow aborts on a null one
        return value
    if rng.random() < rate:
        return None
    if isinstance(value, list):
        return [with_nulls(item, rng, rate) for item in value]
    if isinstance(value, dict):
        return {key: with_nulls(item, rng, rate) for key, item in value.items()}
    return value


def garble(array: pa.Array, rng: random.Random, no_nulls: bool = False) -> pa.Array:
    """`array` rebuilt from its buffers with some of them broken: random validity bitmaps,
    offsets that jump, decrease or point far beyond the data, buffers cut short, children
    shorter than their offsets say, a non-zero offset. pyarrow refuses some (buffers shorter
than the length needs): then `array` as it is."""
    t = array.type
    own = 1 if pa.types.is_struct(t) else 2 if (pa.types.is_list(t) or pa.types.is_map(t)
                                                or not (pa.types.is_string(t) or pa.types.is_binary(t))) else 3
    buffers = list(array.buffers()[:own])
    n = len(array) + array.offset
    choice = rng.randrange(6)
    if choice == 0 and no_nulls:  # a map's entries and keys: pyarrow aborts on nulls there
        choice = 1
    if choice == 0:  # a random validity bitmap (pyarrow aborts on one too short for the length)
        buffers[0] = pa.py_buffer(bytes(rng.getrandbits(8) for _ in range(n // 8 + 1)))
    elif choice == 1 and own >= 2 and buffers[1] is not None and (pa.types.is_list(t) or pa.types.is_map(t)
                                                                   or own == 3):
        values = [rng.choice([0, 1, 5, -1, -(2**31), 2**31 - 1, rng.randrange(1 << 20)]) for _ in range(n + 1)]
        buffers[1] = pa.py_buffer(struct.pack(f"<{len(values)}i", *values))
    elif choice == 2 and own >= 2:  # the last buffer cut short
        last = buffers[-1]
        if last is not None:
            buffers[-1] = last.slice(0, rng.randrange(0, last.size + 1))
    children = None
    if pa.types.is_struct(t):
        children = [garble(array.field(k), rng, no_nulls and k == 0) if rng.random() < 0.5 else array.field(k)
                    for k in range(t.num_fields)]
        if choice == 3:
            children = [child.slice(0, rng.randrange(0, len(child) + 1)) for child in children]
    elif pa.types.is_list(t) or pa.types.is_map(t):
        child = array.values
        child = garble(child, rng, pa.types.is_map(t)) if rng.random() < 0.5 else child
        if choice == 3:
            child = child.slice(0, rng.randrange(0, len(child) + 1))
        children = [child]
    offset = array.offset
    length = len(array)
    if choice == 4:
        offset = rng.randrange(0, 64)
    if choice == 5:
        length = length + rng.randrange(0, 64)
    try:
        return pa.Array.from_buffers(t, length, buffers, null_count=-1, offset=offset, children=children)
    except pa.ArrowInvalid:  # pyarrow's own checks of buffer sizes caught this one
        GARBLES["refused"] += 1
        return array


GARBLES = {"refused": 0}


def encodes_or_rejects(signal: str, rows, sources_=None) -> bytes | None:
    """The Cython encoder returns bytes or raises ValueError: nothing else, never a crash."""
    try:
        data = cython_encoder().encode(signal, rows, sources_)
        for _ in cython_encoder().requests(signal, rows, sources_, 3, 200):
            pass
    except ValueError:
        return None
    assert isinstance(data, bytes)
    return data


@pytest.mark.parametrize("signal", NATIVE)
def test_garbled_buffers_never_crash(signal):
    rng = random.Random(2026)
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0]).slice(3, 20)
    rows, sources_ = stored(batch)
    rejected = 0
    for _ in range(300):
        k = rng.randrange(rows.num_columns)
        columns = list(rows.columns)
        for _ in range(rng.randrange(1, 4)):
            k = rng.randrange(rows.num_columns)
            columns[k] = garble(columns[k], rng).slice(0, rows.num_rows) if rng.random() < 0.5 else garble(
                columns[k], rng)
        columns = [c if len(c) == rows.num_rows else rows.column(k) for k, c in enumerate(columns)]
        garbled = pa.RecordBatch.from_arrays(columns, schema=rows.schema)
        source_columns = [garble(c, rng) if rng.random() < 0.2 else c for c in sources_.columns]
        if len({len(c) for c in source_columns}) == 1:
            garbled_sources = pa.RecordBatch.from_arrays(source_columns, schema=sources_.schema)
        else:
            garbled_sources = sources_
        rejected += encodes_or_rejects(signal, garbled, garbled_sources) is None
        full = list(batch.columns)
        k = rng.randrange(len(full))
        candidate = garble(full[k], rng)
        if len(candidate) == batch.num_rows:
            full[k] = candidate
        rejected += encodes_or_rejects(signal, pa.RecordBatch.from_arrays(full, schema=batch.schema)) is None
    assert rejected > 0  # the garbling reaches the checks


def nulled_column(column: pa.Array, rng: random.Random, rate: float) -> pa.Array:
    try:
        physical = schema._physical(column.type)  # timestamps as int64: exact nanoseconds
        values = with_nulls(column.cast(physical).to_pylist(), rng, rate)
        return pa.array(values, physical).cast(column.type)
    except (TypeError, pa.ArrowInvalid):  # a null where pyarrow cannot take one
        return column


def own_buffers(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return 1
    return 3 if pa.types.is_string(t) or pa.types.is_binary(t) else 2


def mutable_copy(array: pa.Array, store: list) -> pa.Array:
    """`array` (offset 0 at every depth) rebuilt on bytearrays, appended to `store`, that can
    be garbled after pyarrow has validated the array."""
    buffers = []
    for buffer in array.buffers()[:own_buffers(array.type)]:
        if buffer is None:
            buffers.append(None)
        else:
            store.append(bytearray(buffer.to_pybytes()))
            buffers.append(pa.py_buffer(store[-1]))
    t = array.type
    children = None
    if pa.types.is_struct(t):
        children = [mutable_copy(array.field(k), store) for k in range(t.num_fields)]
    elif pa.types.is_list(t) or pa.types.is_map(t):
        children = [mutable_copy(array.values, store)]
    return pa.Array.from_buffers(t, len(array), buffers, null_count=array.null_count, children=children)


NASTY_INT32 = [-1, -(2**31), 2**31 - 1, 2**30, 1 << 20, 255, 7]


@pytest.mark.parametrize("signal", NATIVE)
def test_buffers_garbled_after_validation_never_crash(signal):
    """Offsets, validity bitmaps and data overwritten in place after pyarrow validated the
    arrays (what a bad IPC file or a buggy producer can hand over): bytes or ValueError."""
    rng = random.Random(99)
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0]).slice(0, 16)
    batch = batch.take(pa.array(range(batch.num_rows)))  # offset 0 at every depth
    rows, sources_ = stored(batch)
    outcomes = {"bytes": 0, "rejected": 0}
    for _ in range(400):
        store: list = []
        full = rng.random() < 0.5
        target = batch if full else rows
        columns = [mutable_copy(column, store) for column in target.columns]
        source_columns = [mutable_copy(column, store) for column in sources_.columns]
        garbled_rows = pa.RecordBatch.from_arrays(columns, schema=target.schema)  # validated here
        garbled_sources = None if full else pa.RecordBatch.from_arrays(source_columns, schema=sources_.schema)
        for _ in range(rng.randrange(1, 6)):  # ... and garbled after
            garbled = rng.choice(store)
            if len(garbled) >= 4 and rng.random() < 0.7:
                at = rng.randrange(0, len(garbled) - 3) & ~3
                garbled[at:at + 4] = struct.pack("<i", rng.choice(NASTY_INT32))
            elif garbled:
                garbled[rng.randrange(len(garbled))] = rng.getrandbits(8)
        start = rng.randrange(0, 4)
        for candidate in (garbled_rows, garbled_rows.slice(start, rng.randrange(0, 14))):
            outcomes["rejected" if encodes_or_rejects(signal, candidate, garbled_sources) is None else "bytes"] += 1
    assert outcomes["rejected"] > 50 and outcomes["bytes"] > 50, outcomes


@pytest.mark.parametrize("signal", NATIVE)
def test_nulls_everywhere_encode_or_reject(signal):
    """Valid Arrow arrays with nulls at every depth: bytes or ValueError; where the reference
    gives bytes too, the same records with the same resources and scopes (grouping may
    differ: a null nested in a resource, such as an entity ref's type, groups with an empty
    one here, apart in to_request, docs/ENCODER.md)."""
    rng = random.Random(7)
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0]).slice(0, 12)
    agreed = 0
    for _ in range(120):
        rate = rng.choice([0.02, 0.1, 0.3])
        # half the time the attribute columns keep their values: most nulls there are errors
        plain = rng.random() < 0.5
        columns = [column if plain and ("attributes" in name or "metadata" in name) else
                   nulled_column(column, rng, rate) for name, column in zip(batch.schema.names, batch.columns)]
        nulled = pa.RecordBatch.from_arrays(columns, schema=batch.schema)
        data = encodes_or_rejects(signal, nulled)
        try:
            expected = encode.reference(signal, nulled)
        except Exception:  # the reference raises TypeError and the like for such rows
            continue
        if data is not None:
            agreed += 1
            assert records_multiset(signal, REQUEST_TYPES[signal].FromString(data)) == records_multiset(
                signal, REQUEST_TYPES[signal].FromString(expected))
    assert agreed > 0


@pytest.mark.parametrize("signal", NATIVE)
def test_mismatched_attribute_lists_are_value_errors(signal):
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0]).slice(0, 5)
    index = batch.schema.get_field_index("attributes_types")
    types = batch.column(index).to_pylist()
    shorter = pa.array([t[:-1] if t else b"\x01" for t in types], pa.binary())
    broken = batch.set_column(index, batch.schema.field(index), shorter)
    with pytest.raises(ValueError, match="attribute types"):
        cython_encoder().encode(signal, broken)
    bad_kinds = pa.array([b"\x09" * len(t) if t else t for t in types], pa.binary())
    with pytest.raises(ValueError):
        cython_encoder().encode(signal, batch.set_column(index, batch.schema.field(index), bad_kinds))
    other = batch.schema.get_field_index("attributes_other")
    values = batch.column(other).to_pylist()
    placed = [[{"index": 10**6, "key": "k", "value": None, "key_strindex": 0}] for _ in values]
    with pytest.raises(ValueError, match="index"):
        cython_encoder().encode(signal, batch.set_column(other, batch.schema.field(other),
                                                         pa.array(placed, batch.schema.field(other).type)))


def test_native_signals():
    from otlpd import _encoder

    assert _encoder.NATIVE == frozenset(NATIVE)


def test_unknown_source_ids_and_metric_types_are_value_errors():
    batch = decode.DECODERS["metrics"](realistic_requests(scale=1)["metrics"][0])
    rows, sources_ = stored(batch)
    with pytest.raises(ValueError, match="not in the sources table"):
        cython_encoder().encode("metrics", rows, sources_.slice(1, 0))
    index = batch.schema.get_field_index("metric_type")
    renamed = batch.set_column(index, batch.schema.field(index), pa.array(["gauges"] * batch.num_rows))
    with pytest.raises(ValueError, match="metric_type"):
        cython_encoder().encode("metrics", renamed)


# ---------------------------------------------------------------- awkward values, threads, memory

def nan(payload: int = 0) -> float:
    return struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000 | payload))[0]


def awkward_requests() -> dict:
    """Requests with what the strategies leave out (NaN doubles with payloads) beside the
    edges they also draw: every AnyValue kind, int64 and uint64 extremes, empty strings,
    NoRecordedValue flags, exponential histograms with negative buckets only."""
    values = [pb.AnyValue(string_value=""), pb.AnyValue(bool_value=False), pb.AnyValue(int_value=-(2**63)),
              pb.AnyValue(int_value=2**63 - 1), pb.AnyValue(double_value=nan(5)), pb.AnyValue(double_value=-0.0),
              pb.AnyValue(double_value=float("inf")), pb.AnyValue(bytes_value=b""),
              pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(int_value=1), pb.AnyValue()])),
              pb.AnyValue(kvlist_value=pb.KeyValueList(values=[pb.KeyValue(key="k")])),
              pb.AnyValue(string_value_strindex=-3), pb.AnyValue()]
    attrs = [pb.KeyValue(key=f"k{i % 5}", value=v) for i, v in enumerate(values)] + [
        pb.KeyValue(key="absent"), pb.KeyValue(key="", value=pb.AnyValue(string_value="x"), key_strindex=4)]
    resource = pb.Resource(attributes=attrs[:4], dropped_attributes_count=2**32 - 1)
    scope = pb.InstrumentationScope(name="", version="v", attributes=attrs[4:6])
    span = pb.Span(trace_id=b"\x01" * 16, span_id=b"", name="", kind=-5, start_time_unix_nano=2**64 - 1,
                   end_time_unix_nano=2**63, attributes=attrs, flags=2**32 - 1,
                   events=[pb.Span.Event(attributes=attrs[::-1])], links=[pb.Span.Link(flags=1)],
                   status=pb.Status())
    logs = [pb.LogRecord(body=value, attributes=attrs[:3]) for value in values] + [pb.LogRecord()]
    no_value = 1  # DataPointFlags.NO_RECORDED_VALUE
    exemplar = pb.Exemplar(as_double=nan(9), filtered_attributes=attrs[:2], span_id=b"\x02")
    metrics = [
        pb.Metric(name="g", gauge=pb.Gauge(data_points=[
            pb.NumberDataPoint(as_double=nan(1), exemplars=[exemplar]), pb.NumberDataPoint(flags=no_value),
            pb.NumberDataPoint(as_int=-(2**63), attributes=attrs)])),
        pb.Metric(name="s", metadata=attrs[:2], sum=pb.Sum(aggregation_temporality=2, is_monotonic=True,
                                                           data_points=[pb.NumberDataPoint(as_int=0)])),
        pb.Metric(name="h", histogram=pb.Histogram(data_points=[
            pb.HistogramDataPoint(count=2**64 - 1, sum=nan(2), bucket_counts=[0, 2**64 - 1],
                                  explicit_bounds=[nan(3)], min=-0.0, flags=no_value,
                                  exemplars=[pb.Exemplar(as_int=5)])])),
        pb.Metric(name="e", exponential_histogram=pb.ExponentialHistogram(aggregation_temporality=1, data_points=[
            pb.ExponentialHistogramDataPoint(scale=-4, zero_threshold=nan(4), negative=pb.ExponentialHistogramDataPoint.Buckets(
                offset=-7, bucket_counts=[2**64 - 1, 0, 3])),
            pb.ExponentialHistogramDataPoint(positive=pb.ExponentialHistogramDataPoint.Buckets())])),
        pb.Metric(name="q", summary=pb.Summary(data_points=[pb.SummaryDataPoint(
            sum=-0.0, quantile_values=[pb.SummaryDataPoint.ValueAtQuantile(quantile=nan(6), value=-0.0)])])),
    ]
    return {
        "traces": pb.ExportTraceServiceRequest(resource_spans=[pb.ResourceSpans(
            resource=resource, schema_url="u", scope_spans=[pb.ScopeSpans(scope=scope, spans=[span, pb.Span()])])]),
        "logs": pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
            resource=resource, scope_logs=[pb.ScopeLogs(scope=scope, log_records=logs)])]),
        "metrics": pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
            resource=resource, scope_metrics=[pb.ScopeMetrics(scope=scope, metrics=metrics)])]),
    }


@pytest.mark.parametrize("signal", SIGNALS)
def test_awkward_values_and_nan_payloads(implementation, signal):
    """NaN compares unequal in messages: the bytes are compared (their bits survive)."""
    request = awkward_requests()[signal]
    batch = decoded(signal, request)
    data = implementation.encode(signal, batch)
    assert data == encode.reference(signal, batch)
    assert data == request.SerializeToString()  # one group each: the request itself comes back
    rows, sources_ = stored(batch)
    assert implementation.encode(signal, rows, sources_) == data
    assert schema.DECODERS[signal](data).num_rows == batch.num_rows


@pytest.mark.parametrize("signal", SIGNALS)
def test_other_string_and_list_types_are_cast(implementation, signal):
    """Large strings and lists (Polars' types) are cast, as to_request casts them."""
    batch = decode.DECODERS[signal](realistic_requests(scale=1)[signal][0])
    large = pa.Table.from_batches([batch]).cast(pa.schema([
        field.with_type(pa.large_string()) if field.type == pa.string() else field for field in batch.schema]))
    assert implementation.encode(signal, large) == implementation.encode(signal, batch)


def test_encoding_releases_the_gil():
    """While a long encode runs in a thread, this thread keeps running Python code."""
    batch = decode.DECODERS["traces"](realistic_requests(scale=1)["traces"][0])
    table = pa.Table.from_batches([batch] * 200).combine_chunks()  # 10,000 spans
    rows, sources_ = stored(table.to_batches()[0])
    encoder = cython_encoder()
    encoder.encode("traces", rows, sources_)  # warm up
    assert main_thread_ran_during(lambda: encoder.encode("traces", rows, sources_)), \
        "the main thread never ran while the encoder worked"


def test_concurrent_encoding_is_consistent():
    batches = [decode.DECODERS[signal](realistic_requests(scale=1)[signal][0]) for signal in SIGNALS]
    expected = [encode.reference(signal, batch) for signal, batch in zip(SIGNALS, batches)]
    errors = []

    def work(k):
        try:
            for i in range(30):
                j = (i + k) % 3
                assert cython_encoder().encode(SIGNALS[j], batches[j]) == expected[j]
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_repeated_calls_do_not_leak():
    batch = decode.DECODERS["traces"](realistic_requests(scale=2)["traces"][0])
    rows, sources_ = stored(batch)
    broken = batch.set_column(batch.schema.get_field_index("attributes_types"), "attributes_types",
                              pa.array([b""] * batch.num_rows, pa.binary()))

    def run(n):
        for _ in range(n):
            cython_encoder().encode("traces", rows, sources_)
            list(cython_encoder().requests("traces", batch, None, 7, 5000))
            with pytest.raises(ValueError):
                cython_encoder().encode("traces", broken)

    run(20)
    before = psutil.Process().memory_info().rss
    run(300)
    growth = psutil.Process().memory_info().rss - before
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_one_encoder_serves_one_call_at_a_time():
    from otlpd import _encoder

    batch = decode.DECODERS["logs"](realistic_requests(scale=1)["logs"][0])
    encoder = _encoder.Encoder("logs", batch)
    pieces = encoder.cut(5, 10**6)
    assert [count for _, count in pieces] == [5] * (batch.num_rows // 5) + ([batch.num_rows % 5] if batch.num_rows % 5 else [])
    assert encoder.encode_range(0, batch.num_rows) == encode.reference("logs", batch)
    with pytest.raises(ValueError):
        encoder.encode_range(3, batch.num_rows + 1)


@pytest.mark.parametrize("pure, expected", [("1", "python"), ("", "cython")])
def test_the_seam_follows_otlpd_pure_python(pure, expected):
    env = {**os.environ, "OTLPD_PURE_PYTHON": pure, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "from otlpd import encode; print(encode.IMPLEMENTATION)"],
                            env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("garbage", [b"\x0a\x05\x0a", b"\x0a\x02\x2a\x10", b"\x0b", b"\x80", b"\x0a\x01\x2a\xff"])
def test_array_and_kvlist_bytes_must_be_messages(garbage):
    """The serialized ArrayValue/KeyValueList of a body goes into the request as it is, so it
    must be a well-formed message (the reference's parse raises on these too)."""
    batch = decoded("logs", pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(scope_logs=[pb.ScopeLogs(
        log_records=[pb.LogRecord(body=pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(int_value=1)])))])])]))
    other = batch.column("body_other").to_pylist()
    other[0]["bytes"] = garbage
    broken = batch.set_column(batch.schema.get_field_index("body_other"), "body_other",
                              pa.array(other, batch.schema.field("body_other").type))
    with pytest.raises(Exception):
        encode.reference("logs", broken)
    with pytest.raises(ValueError, match="array or kvlist"):
        cython_encoder().encode("logs", broken)
