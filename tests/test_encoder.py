"""The encoder seam (otlpd.encode): rows of either layout -> Export request bytes.

Every implementation (the pure-Python reference, the Cython encoder once built) must give
bytes that parse to ``to_request(rows)`` and decode back to the rows, for every request the
round-trip strategies generate, both layouts, sliced batches and chunked tables; and
``requests()`` must cut by its rule (docs/ENCODER.md).
"""
from __future__ import annotations

import pyarrow as pa
import pytest
from fuzz_decoder import realistic_requests
from hypothesis import HealthCheck, given, settings
from strategies import export_requests

from otlpd import decode, encode, schema, sources
from otlpd import proto as pb
from otlpd.schema import SIGNALS

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REQUEST_TYPES = {"traces": pb.ExportTraceServiceRequest, "metrics": pb.ExportMetricsServiceRequest,
                 "logs": pb.ExportLogsServiceRequest}
IMPLEMENTATIONS = ["python"]


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
