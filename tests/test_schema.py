"""Tests of otlpd.schema: lossless round trips, readability by Polars and DuckDB, decode errors."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import export_requests, records_multiset

from otlpd import attributes as lean
from otlpd import proto as pb
from otlpd import query, schema, sources
from otlpd.schema import DECODERS, SIGNALS, DecodeError, schema_for, to_request

DOC = Path(__file__).resolve().parent.parent / "docs" / "SCHEMA.md"
UTC = dt.timezone.utc
T0 = 1_714_564_800_000_000_000  # 2024-05-01 12:00:00 UTC in ns
MINUTE = 60 * 10**9


def ipc_bytes(batch: pa.RecordBatch) -> bytes:
    """`batch` as an IPC file (zstd), the way otlpd writes it."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def write_arrow(path: Path, batch: pa.RecordBatch) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ipc_bytes(batch))


def kv(key, **value) -> pb.KeyValue:
    return pb.KeyValue(key=key, value=pb.AnyValue(**value))


# --------------------------------------------------------------------------- round trips


def check_round_trip(signal: str, request) -> None:
    batch = DECODERS[signal](request.SerializeToString())
    assert batch.schema == schema_for(signal)
    expected = records_multiset(signal, request)
    assert batch.num_rows == sum(expected.values())
    assert records_multiset(signal, to_request(signal, batch)) == expected
    # The same after an IPC file round trip.
    table = pa.ipc.open_file(pa.BufferReader(ipc_bytes(batch))).read_all()
    assert table.schema == schema_for(signal)
    assert records_multiset(signal, to_request(signal, table)) == expected


ROUND_TRIP = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@ROUND_TRIP
@given(export_requests("traces"))
def test_traces_round_trip(request_):
    check_round_trip("traces", request_)


@ROUND_TRIP
@given(export_requests("metrics"))
def test_metrics_round_trip(request_):
    check_round_trip("metrics", request_)


@ROUND_TRIP
@given(export_requests("logs"))
def test_logs_round_trip(request_):
    check_round_trip("logs", request_)


# --------------------------------------------------------------------------- known data


def realistic_traces() -> pb.ExportTraceServiceRequest:
    """Spans of two services; the SCHEMA.md query must return exactly the `cart-*` spans."""

    def span(span_id, name, start, route="/cart", **kw):
        attrs = [kv("http.method", string_value="GET"), kv("http.status_code", int_value=200)]
        if route is not None:
            attrs.insert(0, kv("http.route", string_value=route))
        return pb.Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=bytes.fromhex(span_id),
            name=name,
            kind=2,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 1_500_000,  # 1.5 ms
            attributes=attrs,
            **kw,
        )

    checkout = pb.ResourceSpans(
        resource=pb.Resource(
            attributes=[kv("service.name", string_value="checkout"), kv("host.name", string_value="h1")]
        ),
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        scope_spans=[
            pb.ScopeSpans(
                scope=pb.InstrumentationScope(name="flask", version="3.0"),
                spans=[
                    span("00000000000000a1", "GET /cart", T0 + 5 * MINUTE + 123,  # matches
                         status=pb.Status(code=1),
                         events=[pb.Span.Event(time_unix_nano=T0 + 5 * MINUTE + 500, name="cache miss",
                                            attributes=[kv("key", string_value="cart:42")])],
                         links=[pb.Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, flags=1)]),
                    span("00000000000000a2", "GET /cart", T0 - 1),  # just before the range
                    span("00000000000000a3", "GET /cart", T0),  # range start is inclusive: matches
                    span("00000000000000a4", "GET /cart", T0 + 60 * MINUTE),  # end is exclusive
                    span("00000000000000a5", "GET /cart", T0 + 59 * MINUTE, route="/pay"),
                    span("00000000000000a6", "GET /cart", T0 + 10 * MINUTE, route=None),
                    span("00000000000000a7", "POST /pay", T0 + 10 * MINUTE),
                    span("00000000000000a8", "GET /cart", T0 + 30 * MINUTE,  # matches
                         status=pb.Status(code=2, message="boom")),
                ],
            )
        ],
    )
    frontend = pb.ResourceSpans(
        resource=pb.Resource(attributes=[kv("service.name", string_value="frontend")]),
        scope_spans=[
            pb.ScopeSpans(
                scope=pb.InstrumentationScope(name="fetch"),
                spans=[span("00000000000000b1", "GET /cart", T0 + 5 * MINUTE)],
            )
        ],
    )
    no_service = pb.ResourceSpans(  # absent resource and scope: service_name is null
        scope_spans=[pb.ScopeSpans(spans=[span("00000000000000c1", "GET /cart", 2**64 - 1 - 1_500_000)])]
    )
    return pb.ExportTraceServiceRequest(resource_spans=[checkout, frontend, no_service])


CART_SPAN_IDS = ["00000000000000a3", "00000000000000a1", "00000000000000a8"]


def realistic_metrics() -> pb.ExportMetricsServiceRequest:
    """One metric of every type, including optional fields set and unset."""
    attrs = [kv("http.route", string_value="/cart")]
    ex = [
        pb.Exemplar(time_unix_nano=T0, as_double=0.25, span_id=b"\x02" * 8, trace_id=b"\x01" * 16,
                 filtered_attributes=[kv("user", string_value="u1")]),
        pb.Exemplar(time_unix_nano=T0, as_int=7),
    ]
    times = {"start_time_unix_nano": T0 - MINUTE, "time_unix_nano": T0}
    metrics = [
        pb.Metric(name="queue.depth", unit="{item}", gauge=pb.Gauge(data_points=[
            pb.NumberDataPoint(attributes=attrs, as_int=-3, **times),
            pb.NumberDataPoint(as_double=1.5, exemplars=ex, **times),
        ])),
        pb.Metric(name="requests", description="served requests", unit="1",
               metadata=[kv("origin", string_value="sdk")],
               sum=pb.Sum(aggregation_temporality=2, is_monotonic=True, data_points=[
                   pb.NumberDataPoint(attributes=attrs, as_int=2**63 - 1, flags=1, **times)])),
        pb.Metric(name="latency", unit="ms", histogram=pb.Histogram(aggregation_temporality=1, data_points=[
            pb.HistogramDataPoint(count=3, sum=12.5, min=0.5, max=10.0, bucket_counts=[1, 1, 1],
                               explicit_bounds=[1.0, 5.0], exemplars=ex[:1], **times),
            pb.HistogramDataPoint(count=0, bucket_counts=[0], **times),  # no sum/min/max
        ])),
        pb.Metric(name="size", exponential_histogram=pb.ExponentialHistogram(
            aggregation_temporality=2, data_points=[
                pb.ExponentialHistogramDataPoint(
                    count=5, sum=9.0, scale=3, zero_count=1, zero_threshold=1e-9,
                    positive=pb.ExponentialHistogramDataPoint.Buckets(offset=-2, bucket_counts=[1, 2]),
                    negative=pb.ExponentialHistogramDataPoint.Buckets(offset=4, bucket_counts=[1]),
                    min=-3.0, max=4.0, **times),
                pb.ExponentialHistogramDataPoint(count=0, scale=0, **times),  # no buckets
            ])),
        pb.Metric(name="rpc.duration", summary=pb.Summary(data_points=[
            pb.SummaryDataPoint(count=4, sum=8.0, quantile_values=[
                pb.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=1.5),
                pb.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=4.0)], **times)])),
    ]
    return pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource=pb.Resource(attributes=[kv("service.name", string_value="checkout")]),
        scope_metrics=[pb.ScopeMetrics(scope=pb.InstrumentationScope(name="meter"), metrics=metrics)],
    )])


def realistic_logs() -> pb.ExportLogsServiceRequest:
    body_kvlist = pb.KeyValueList(values=[kv("user", string_value="u1"), kv("n", int_value=3)])
    return pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
        resource=pb.Resource(attributes=[kv("service.name", string_value="checkout")]),
        scope_logs=[pb.ScopeLogs(scope=pb.InstrumentationScope(name="logger"), log_records=[
            pb.LogRecord(time_unix_nano=T0, observed_time_unix_nano=T0 + 1, severity_number=9,
                      severity_text="INFO", body=pb.AnyValue(string_value="cart loaded"),
                      attributes=[kv("cart.items", int_value=3)], trace_id=b"\x01" * 16,
                      span_id=b"\x02" * 8, flags=1),
            pb.LogRecord(observed_time_unix_nano=T0 + 2, severity_number=17,
                      body=pb.AnyValue(kvlist_value=body_kvlist), event_name="checkout.failed"),
            pb.LogRecord(observed_time_unix_nano=T0 + 3),  # no body
        ])],
    )])


REALISTIC = {"traces": realistic_traces, "metrics": realistic_metrics, "logs": realistic_logs}


@pytest.mark.parametrize("signal", SIGNALS)
def test_realistic_round_trip(signal):
    check_round_trip(signal, REALISTIC[signal]())


def test_decoded_values_traces():
    rows = decode_rows("traces", realistic_traces())
    first = rows[0]
    assert first["service_name"] == "checkout"
    assert first["resource_schema_url"] == "https://opentelemetry.io/schemas/1.24.0"
    assert (first["scope_name"], first["scope_version"]) == ("flask", "3.0")
    assert first["span_id"] == bytes.fromhex("00000000000000a1")
    assert first["start_time"] == T0 + 5 * MINUTE + 123
    assert first["attributes"][0] == ("http.route", "/cart")  # a string attribute: in the map
    assert first["attributes_types"][0] == 1
    assert attributes_of(first, "attributes")[0] == {"key": "http.route", "value": {"type": 1, "str": "/cart"},
                                             "key_strindex": 0}
    assert first["events"][0]["name"] == "cache miss"
    assert first["links"][0]["flags"] == 1
    assert (first["status_code"], first["status_message"]) == (1, "")
    assert (rows[1]["status_code"], rows[1]["status_message"]) == (None, None)  # absent status
    assert (rows[7]["status_code"], rows[7]["status_message"]) == (2, "boom")
    last = rows[-1]
    assert last["service_name"] is None
    assert last["end_time"] == -1  # 2**64 - 1 keeps its bits
    assert last["start_time"] == -1 - 1_500_000
    assert last["resource_attributes"] == [] and last["resource_attributes_other"] == []
    assert last["scope_name"] == ""


def test_decoded_values_metrics():
    rows = decode_rows("metrics", realistic_metrics())
    by_type = {}
    for row in rows:
        by_type.setdefault(row["metric_type"], []).append(row)
    counts = {t: len(rows) for t, rows in by_type.items()}
    assert counts == {"gauge": 2, "sum": 1, "histogram": 2, "exponential_histogram": 2, "summary": 1}
    g_int, g_double = by_type["gauge"]
    assert (g_int["value_int"], g_int["value_double"]) == (-3, None)
    assert (g_double["value_int"], g_double["value_double"]) == (None, 1.5)
    assert g_int["aggregation_temporality"] is None and g_int["is_monotonic"] is None
    assert g_int["count"] is None and g_int["bucket_counts"] is None
    assert [(x["value_double"], x["value_int"]) for x in g_double["exemplars"]] == [(0.25, None), (None, 7)]
    (s,) = by_type["sum"]
    assert (s["aggregation_temporality"], s["is_monotonic"], s["value_int"]) == (2, True, 2**63 - 1)
    assert attributes_of(s, "metric_metadata")[0]["key"] == "origin"
    h, h_empty = by_type["histogram"]
    assert (h["count"], h["sum"], h["min"], h["max"]) == (3, 12.5, 0.5, 10.0)
    assert (h["bucket_counts"], h["explicit_bounds"]) == ([1, 1, 1], [1.0, 5.0])
    assert (h_empty["sum"], h_empty["min"], h_empty["max"]) == (None, None, None)
    assert h["value_double"] is None and h["quantile_values"] is None
    e, e_empty = by_type["exponential_histogram"]
    assert (e["positive_offset"], e["positive_bucket_counts"]) == (-2, [1, 2])
    assert (e["negative_offset"], e["negative_bucket_counts"]) == (4, [1])
    assert (e["scale"], e["zero_count"], e["zero_threshold"]) == (3, 1, 1e-9)
    assert e_empty["positive_offset"] is None and e_empty["negative_bucket_counts"] is None
    assert e_empty["sum"] is None
    (q,) = by_type["summary"]
    assert (q["count"], q["sum"], q["exemplars"]) == (4, 8.0, None)
    assert q["quantile_values"] == [{"quantile": 0.5, "value": 1.5}, {"quantile": 0.99, "value": 4.0}]


def test_decoded_values_logs():
    rows = decode_rows("logs", realistic_logs())
    assert rows[0]["body"] == "cart loaded" and rows[0]["body_other"] is None  # a string body: a string
    assert (rows[0]["severity_number"], rows[0]["severity_text"], rows[0]["flags"]) == (9, "INFO", 1)
    body = rows[1]["body_other"]
    assert body["type"] == 6 and rows[1]["body"] is None
    assert pb.KeyValueList.FromString(body["bytes"]).values[0].value.string_value == "u1"
    assert rows[1]["event_name"] == "checkout.failed" and rows[1]["time"] == 0
    assert rows[2]["body"] is None and rows[2]["body_other"] is None  # no body


def attributes_of(row: dict, name: str) -> list[dict]:
    """A row's attribute list in the reference's form (map, types and side list joined)."""
    return lean.join(row[name], row[name + "_types"], row[name + "_other"])


def decode_rows(signal, request) -> list[dict]:
    """Decoded rows as dicts, with times as int64 nanoseconds."""
    batch = DECODERS[signal](request.SerializeToString())
    physical = pa.schema([f.with_type(schema._physical(f.type)) for f in batch.schema])
    return pa.Table.from_batches([batch]).cast(physical).to_pylist()


def test_any_value_encoding():
    values = [
        pb.AnyValue(),
        pb.AnyValue(string_value=""),
        pb.AnyValue(bool_value=False),
        pb.AnyValue(int_value=-(2**63)),
        pb.AnyValue(double_value=-0.0),
        pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(int_value=1)])),
        pb.AnyValue(kvlist_value=pb.KeyValueList()),
        pb.AnyValue(bytes_value=b"\x00\xff"),
        pb.AnyValue(string_value_strindex=5),
    ]
    attrs = [pb.KeyValue(key="k", value=v) for v in values] + [pb.KeyValue(key="k")]  # last: no value
    request = pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
        scope_logs=[pb.ScopeLogs(log_records=[pb.LogRecord(attributes=attrs)])])])
    (row,) = decode_rows("logs", request)
    # every key is "k": the first KeyValue is an empty AnyValue, so none goes to the map
    assert row["attributes"] == [] and row["attributes_types"] == b""
    assert [side["index"] for side in row["attributes_other"]] == list(range(10))
    encoded = [(a["value"] or {}).get("type") for a in attributes_of(row, "attributes")]
    assert encoded == [0, 1, 2, 3, 4, 5, 6, 7, 8, None]
    got = [a["value"] for a in attributes_of(row, "attributes")]
    assert got[1]["str"] == "" and got[2]["bool"] is False and got[3]["int"] == -(2**63)
    assert got[5]["bytes"] == pb.ArrayValue(values=[pb.AnyValue(int_value=1)]).SerializeToString()
    assert got[6]["bytes"] == b"" and got[7]["bytes"] == b"\x00\xff" and got[8]["int"] == 5
    assert got[0] == {"type": 0}
    rebuilt = to_request("logs", DECODERS["logs"](request.SerializeToString()))
    assert rebuilt == request_with_empty_parents(request)


def request_with_empty_parents(request):
    """`request` with its absent resources/scopes set to empty ones, as to_request rebuilds them."""
    copy = type(request).FromString(request.SerializeToString())
    (resources,) = copy.DESCRIPTOR.fields  # resource_spans / resource_metrics / resource_logs
    for rg in getattr(copy, resources.name):
        rg.resource.SetInParent()
        for sg in getattr(rg, rg.DESCRIPTOR.fields_by_number[2].name):  # scope_spans etc.
            sg.scope.SetInParent()
    return copy


def test_absent_resource_and_scope_are_rebuilt_empty():
    request = pb.ExportTraceServiceRequest(
        resource_spans=[pb.ResourceSpans(scope_spans=[pb.ScopeSpans(spans=[pb.Span(name="x")])])]
    )
    rebuilt = to_request("traces", DECODERS["traces"](request.SerializeToString()))
    assert rebuilt.resource_spans[0].HasField("resource")
    assert rebuilt.resource_spans[0].scope_spans[0].HasField("scope")
    assert rebuilt == request_with_empty_parents(request)
    assert rebuilt.SerializeToString() != request.SerializeToString()


def test_to_request_regroups_in_first_appearance_order():
    res_a = pb.Resource(attributes=[kv("service.name", string_value="a")])
    res_b = pb.Resource(attributes=[kv("service.name", string_value="b")])
    scope = pb.InstrumentationScope(name="s")

    def rm(res, *metrics):
        return pb.ResourceMetrics(resource=res, scope_metrics=[pb.ScopeMetrics(scope=scope, metrics=list(metrics))])

    def gauge(name, value):
        return pb.Metric(name=name, gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_int=value)]))

    request = pb.ExportMetricsServiceRequest(resource_metrics=[
        rm(res_a, gauge("m1", 1), gauge("m2", 2)),
        rm(res_b, gauge("m1", 3)),
        rm(res_a, gauge("m1", 4), pb.Metric(name="no data")),
    ])
    rebuilt = to_request("metrics", DECODERS["metrics"](request.SerializeToString()))
    expected = pb.ExportMetricsServiceRequest(resource_metrics=[
        rm(res_a,
           pb.Metric(name="m1", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_int=1),
                                                      pb.NumberDataPoint(as_int=4)])),
           gauge("m2", 2)),
        rm(res_b, gauge("m1", 3)),
    ])
    assert rebuilt == expected


def test_to_request_keeps_resources_that_differ_only_in_zero_sign():
    def rl(value):
        resource = pb.Resource(attributes=[kv("x", double_value=value)])
        return pb.ResourceLogs(resource=resource, scope_logs=[pb.ScopeLogs(log_records=[pb.LogRecord()])])

    request = pb.ExportLogsServiceRequest(resource_logs=[rl(0.0), rl(-0.0), rl(0.0)])
    rebuilt = to_request("logs", DECODERS["logs"](request.SerializeToString()))
    assert len(rebuilt.resource_logs) == 2
    assert records_multiset("logs", rebuilt) == records_multiset("logs", request)


def test_files_carry_the_schema_version_and_to_request_checks_it():
    batch = DECODERS["traces"](realistic_traces().SerializeToString())
    item = sources.lean(batch)
    rows = pa.ipc.open_file(pa.BufferReader(ipc_bytes(item.rows))).read_all()
    table_of_sources = pa.ipc.open_file(pa.BufferReader(ipc_bytes(item.sources))).read_all()
    for stored in (rows, table_of_sources, pa.Table.from_batches([batch])):
        assert stored.schema.metadata[b"otlpd.schema_version"] == schema.SCHEMA_VERSION.encode() == b"3"
    expected = records_multiset("traces", realistic_traces())
    assert records_multiset("traces", to_request("traces", rows, table_of_sources)) == expected
    with pytest.raises(ValueError, match="need their sources table"):
        to_request("traces", rows)
    older = pa.Table.from_batches([batch]).replace_schema_metadata({"otlpd.schema_version": "2"})
    with pytest.raises(ValueError, match="schema version 2, this otlpd reads version 3"):
        to_request("traces", older)


def test_to_request_ignores_service_name_and_extra_columns():
    batch = DECODERS["traces"](realistic_traces().SerializeToString())
    table = pa.Table.from_batches([batch])
    index = table.schema.get_field_index("service_name")
    table = table.set_column(index, "service_name", pa.array(["x"] * table.num_rows))
    table = table.append_column("extra", pa.array(range(table.num_rows)))
    expected = records_multiset("traces", realistic_traces())
    assert records_multiset("traces", to_request("traces", table)) == expected


# --------------------------------------------------------------------------- Polars and DuckDB


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The output dir of a real daemon that received each realistic request over gRPC, split
    over two files per signal (rows and sources, as the writer stores them)."""
    import grpc
    from daemon_process import start_daemon
    from otlp_client import export

    tmp_path = tmp_path_factory.mktemp("schema")
    root = tmp_path / "otlpd-data"
    # passthrough: the stored points are the requests' own (one of them is a delta histogram)
    daemon = start_daemon(tmp_path, output_dir=str(root), **{"metrics.temporality": "passthrough"})
    batches = {}
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            for signal in SIGNALS:
                batch = DECODERS[signal](REALISTIC[signal]().SerializeToString())
                half = batch.num_rows // 2
                for part in (batch.slice(0, half), batch.slice(half)):
                    assert export(channel, signal, to_request(signal, part).SerializeToString()) == b""
                    assert daemon.rotate(signal)[signal] is not None
                batches[signal] = batch
    finally:
        daemon.stop()
    return root, batches


@pytest.mark.parametrize("signal", SIGNALS)
def test_polars_reads_every_column(data_dir, signal):
    root, batches = data_dir
    expected = pa.Table.from_batches([batches[signal]])
    stored = pl.scan_ipc(str(root / signal / "*.arrow")).collect()
    assert stored.columns == sources.rows_schema(signal).names
    assert len(list((root / signal).glob("*.arrow"))) == 2
    df = query.scan(root, signal).collect()  # the full layout, joined with the sources files
    assert df.columns == schema_for(signal).names
    assert df.height == expected.num_rows
    # Every column's values survive Polars (its string/list variants cast back to ours).
    assert df.to_arrow().cast(schema_for(signal)).equals(expected)
    assert records_multiset(signal, to_request(signal, df.to_arrow())) == records_multiset(
        signal, REALISTIC[signal]()
    )
    assert df["service_name"][0] == "checkout"
    assert df.schema["resource_attributes"] == pl.Map(pl.String, pl.String)
    assert df.schema["resource_attributes_types"] == pl.Binary
    assert df.schema["resource_attributes_other"] == pl.List(
        pl.Struct({"index": pl.Int32, "key": pl.String, "value": pl.Struct({
            "type": pl.UInt8, "str": pl.String, "bool": pl.Boolean, "int": pl.Int64,
            "double": pl.Float64, "bytes": pl.Binary}), "key_strindex": pl.Int32})
    )


def test_polars_values(data_dir):
    root, _ = data_dir
    metrics = pl.scan_ipc(str(root / "metrics" / "*.arrow"))
    got = (
        metrics.group_by("metric_type").agg(pl.len(), pl.col("count").sum(), pl.col("sum").max())
        .sort("metric_type").collect()
    )
    assert got.rows() == [  # Polars sums an all-null group to 0
        ("exponential_histogram", 2, 5, 9.0),
        ("gauge", 2, 0, None),
        ("histogram", 2, 3, 12.5),
        ("sum", 1, 0, None),
        ("summary", 1, 4, 8.0),
    ]
    hist = metrics.filter(pl.col("metric_type") == "exponential_histogram").collect()
    assert hist["positive_bucket_counts"].to_list() == [[1, 2], None]
    assert hist["time"].to_list() == [dt.datetime(2024, 5, 1, 12, tzinfo=UTC)] * 2
    logs = pl.scan_ipc(str(root / "logs" / "*.arrow")).collect()
    assert logs["body"].to_list() == ["cart loaded", None, None]
    assert logs["body_other"].struct.field("type").to_list() == [None, 6, None]
    assert logs["severity_number"].to_list() == [9, 17, 0]
    assert logs.select(pl.col("attributes").map.get("cart.items").cast(pl.Int64)).to_series().to_list() == \
        [3, None, None]
    # The attribute lookup shown in SCHEMA.md.
    traces = pl.scan_ipc(str(root / "traces" / "*.arrow"))
    method = pl.col("attributes").map.get("http.method")
    assert set(traces.select(method).collect().to_series().to_list()) == {"GET"}


@pytest.mark.parametrize("signal", SIGNALS)
def test_duckdb_reads_every_column(data_dir, signal):
    root, batches = data_dir
    expected = pa.Table.from_batches([batches[signal]])
    dataset = ds.dataset(str(root / signal), format="ipc")
    stored = duckdb.sql("SELECT * FROM dataset").to_arrow_table()
    assert stored.column_names == sources.rows_schema(signal).names
    con = duckdb.connect()
    query.register_duckdb(con, root)  # the full layout, joined with the sources files
    got = con.sql(f"SELECT * FROM {signal}").to_arrow_table()
    assert got.column_names == schema_for(signal).names
    # Compare in file order: DuckDB may scan files in parallel.
    got = got.cast(schema_for(signal))
    assert sorted(map(repr, rows_ns(got))) == sorted(map(repr, rows_ns(expected)))


def rows_ns(table: pa.Table) -> list[dict]:
    physical = pa.schema([f.with_type(schema._physical(f.type)) for f in table.schema])
    return table.cast(physical).to_pylist()


def test_duckdb_values(data_dir):
    root, _ = data_dir
    metrics = ds.dataset(str(root / "metrics"), format="ipc")
    got = duckdb.sql(
        "SELECT metric_type, count(*), sum(count), max(sum) FROM metrics GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert got == [
        ("exponential_histogram", 2, 5, 9.0),
        ("gauge", 2, None, None),
        ("histogram", 2, 3, 12.5),
        ("sum", 1, None, None),
        ("summary", 1, 4, 8.0),
    ]
    con = duckdb.connect()
    query.register_duckdb(con, root)
    got = con.sql(
        """SELECT epoch_ns(time), value_int, value_double, exemplars[1].value_double,
                  attributes['http.route'], resource_attributes['service.name']
           FROM metrics WHERE metric_type = 'gauge' ORDER BY value_int"""
    ).fetchall()
    assert got == [(T0, -3, None, None, "/cart", "checkout"), (T0, None, 1.5, 0.25, None, "checkout")]
    logs = ds.dataset(str(root / "logs"), format="ipc")
    got = duckdb.sql(
        """SELECT body, body_other.type, severity_text, event_name, hex(trace_id),
                  attributes['cart.items']::BIGINT
           FROM logs ORDER BY epoch_ns(observed_time)"""
    ).fetchall()
    assert got == [
        ("cart loaded", None, "INFO", "", "01" * 16, 3),
        (None, 6, "", "checkout.failed", "", None),
        (None, None, "", "", "", None),
    ]
    traces = ds.dataset(str(root / "traces"), format="ipc")
    got = duckdb.sql(
        """SELECT DISTINCT attributes['http.method'] FROM traces"""
    ).fetchall()
    assert got == [("GET",)]


def test_a_file_of_awkward_attributes_scans_completely_in_every_reader(tmp_path):
    """Duplicate keys, invalid UTF-8 in bytes, nested arrays and kvlists, NaN, every metric type:
    every file still scans in Polars, pyarrow and DuckDB, attributes queries included."""
    nested = pb.AnyValue(array_value=pb.ArrayValue(values=[
        pb.AnyValue(kvlist_value=pb.KeyValueList(values=[kv("deep", bytes_value=b"\xff\xfe")])),
        pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(double_value=float("nan"))]))]))
    awkward = [kv("k", string_value="first"), kv("k", string_value="again"), kv("k", int_value=3),
               kv("raw", bytes_value=b"\xff\xfe\x00"), pb.KeyValue(key="nested", value=nested),
               kv("nan", double_value=float("nan")), pb.KeyValue(key="none")]
    traces = realistic_traces()
    traces.resource_spans[0].resource.attributes.extend(awkward)
    traces.resource_spans[0].scope_spans[0].spans[0].attributes.extend(awkward)
    logs = realistic_logs()
    logs.resource_logs[0].scope_logs[0].log_records[0].attributes.extend(awkward)
    metrics = realistic_metrics()
    metrics.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].attributes.extend(awkward)
    for signal, request in (("traces", traces), ("logs", logs), ("metrics", metrics)):
        batch = DECODERS[signal](request.SerializeToString())
        item = sources.lean(batch)  # as the writer stores it: rows, and the sources beside them
        path = tmp_path / signal / f"{signal}-20240501T120000Z-000001.arrow"
        write_arrow(path, item.rows)
        write_arrow(sources.sources_path(path), item.sources)
        for directory, rows in ((tmp_path / signal, batch.num_rows),
                                (sources.sources_path(path).parent, item.sources.num_rows)):
            assert pl.scan_ipc(str(directory / "*.arrow")).collect().height == rows
            assert ds.dataset(str(directory), format="ipc").to_table().num_rows == rows
            dataset = ds.dataset(str(directory), format="ipc")  # noqa: F841 (read by DuckDB)
            assert len(duckdb.sql("SELECT * FROM dataset").fetchall()) == rows
        dataset = ds.dataset(str(tmp_path / signal), format="ipc")  # noqa: F841 (read by DuckDB)
        found = duckdb.sql("SELECT count(*) FROM dataset WHERE attributes['k'] = 'first'").fetchall()[0][0]
        assert found == 1
        frame = query.scan(tmp_path, signal).collect()
        assert frame.filter(pl.col("attributes").map.get("k") == "first").height == 1
        con = duckdb.connect()
        query.register_duckdb(con, tmp_path)
        assert len(con.sql(f"SELECT * FROM {signal}").fetchall()) == batch.num_rows
        if signal == "traces":  # the awkward resource attributes, through the helpers
            awkward_spans = sum(len(group.spans) for group in traces.resource_spans[0].scope_spans)
            assert frame.filter(pl.col("resource_attributes").map.get("k") == "first").height == awkward_spans
            assert con.sql("SELECT count(*) FROM traces WHERE resource_attributes['k'] = 'first'"
                           ).fetchall() == [(awkward_spans,)]
        assert records_multiset(signal, to_request(signal, frame.to_arrow())) == records_multiset(signal, request)


# --------------------------------------------------------------------------- SCHEMA.md queries


@pytest.fixture(scope="module")
def sdk_data_dir(tmp_path_factory):
    """The documented queries' data, sent by the OpenTelemetry SDK to a real daemon."""
    import sdk_schema_data
    from daemon_process import start_daemon

    tmp_path = tmp_path_factory.mktemp("schema-sdk")
    root = tmp_path / "otlpd-data"
    daemon = start_daemon(tmp_path, output_dir=str(root))
    try:
        sdk_schema_data.send(daemon.endpoint)
        daemon.rotate()
    finally:
        daemon.stop()
    return root


def doc_query(name: str) -> str:
    match = re.search(rf"<!-- query:{name} -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no {name} query in {DOC}"
    return match.group(1)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_documented_query(sdk_data_dir, monkeypatch, capsys, engine):
    root = sdk_data_dir
    monkeypatch.chdir(root.parent)  # the documented queries use the relative "otlpd-data"
    namespace = {}
    exec(compile(doc_query(engine), f"SCHEMA.md:{engine}", "exec"), namespace)
    result = namespace["cart_spans"]
    table = result.to_arrow() if engine == "polars" else result
    assert table.column_names == ["trace_id", "span_id", "start_time", "duration_ns"]
    assert table.column("span_id").to_pylist() == CART_SPAN_IDS
    assert table.column("trace_id").to_pylist() == ["0af7651916cd43dd8448eb211c80319c"] * 3
    starts = table.column("start_time").cast(pa.int64()).to_pylist()
    assert starts == [T0, T0 + 5 * MINUTE + 123, T0 + 30 * MINUTE]
    assert table.column("duration_ns").to_pylist() == [1_500_000] * 3


@pytest.mark.parametrize("engine", ["polars-more", "duckdb-more"])
def test_documented_queries_of_every_kind(sdk_data_dir, monkeypatch, capsys, engine):
    root = sdk_data_dir
    monkeypatch.chdir(root.parent)
    namespace = {}
    exec(compile(doc_query(engine), f"SCHEMA.md:{engine}", "exec"), namespace)
    answers = namespace["answers"]
    assert answers == {
        "pay": 1,  # span a5
        "ok": 10,  # every span has http.status_code 200
        "on_h1": 8,  # the checkout resource's spans
        "events": ["cache miss"],
        "loaded": 1,
        "kvlist_bodies": 1,
        "items": 3,
        "requests": [(2**63 - 1, "/cart")],
    }


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("signal", SIGNALS)
def test_empty_bytes_give_empty_batch(signal):
    batch = DECODERS[signal](b"")
    assert batch.num_rows == 0
    assert batch.schema == schema_for(signal)
    assert records_multiset(signal, to_request(signal, batch)) == {}


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x0a\x05abc", b"garbage that is not protobuf"])
def test_garbage_raises_decode_error(signal, data):
    name = {"traces": "ExportTraceServiceRequest", "metrics": "ExportMetricsServiceRequest",
            "logs": "ExportLogsServiceRequest"}[signal]
    with pytest.raises(DecodeError) as info:
        DECODERS[signal](data)
    message = str(info.value)
    assert message.startswith(f"invalid {name}: ")
    assert "\n" not in message and len(message) < 200
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("signal", SIGNALS)
def test_truncated_request_raises_decode_error(signal):
    data = REALISTIC[signal]().SerializeToString()
    for cut in (len(data) - 1, len(data) // 2, 3):
        with pytest.raises(DecodeError, match="^invalid Export"):
            DECODERS[signal](data[:cut])


def test_invalid_utf8_raises_decode_error():
    def field(number, payload):  # a length-delimited protobuf field
        return bytes([number << 3 | 2, len(payload)]) + payload

    span = field(5, b"\xff")  # Span.name holding invalid UTF-8
    data = field(1, field(2, field(2, span)))  # request.resource_spans.scope_spans.spans
    with pytest.raises(DecodeError, match="^invalid ExportTraceServiceRequest"):
        DECODERS["traces"](data)


def test_unknown_signal():
    with pytest.raises(ValueError, match="unknown signal"):
        schema_for("profiles")
