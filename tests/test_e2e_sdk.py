"""End to end: the OpenTelemetry Python SDK sends to a daemon subprocess; after SIGTERM
the files hold exactly what was sent, read back through Polars, pyarrow and DuckDB."""
import math

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from daemon_process import DaemonProcess
from otlpd import attributes as lean
from otlpd import query

pytestmark = pytest.mark.slow

RESOURCE = Resource.create({"service.name": "e2e-shop", "deployment.environment": "test"})
SPAN_COUNT = 300


def attribute(row, key, name="attributes"):
    """The value (reference form: type and its member) of one attribute of a row or struct,
    from its map, types and side list (docs/SCHEMA.md, "Attributes")."""
    entries = row[name] or []
    pairs = list(entries.items()) if isinstance(entries, dict) else [tuple(e) for e in entries]  # Polars: a dict
    for item in lean.join(pairs, row[name + "_types"], row[name + "_other"]):
        if item["key"] == key:
            return item["value"]
    raise KeyError(key)


def send_traces(endpoint):
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True),
                                                   max_export_batch_size=128))
    tracer = provider.get_tracer("e2e.tracer", "1.2.3")
    sent = {}
    for i in range(SPAN_COUNT // 3):
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={
                "http.route": "/cart", "http.status_code": 200 + i % 3, "ratio": i / 4,
                "cached": i % 2 == 0, "tags": ["a", "b"], "order": i}) as parent:
            parent.add_event("cache miss", {"key": f"k{i}"})
            with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "postgresql")
            with tracer.start_as_current_span("render") as failing:
                failing.set_status(Status(StatusCode.ERROR, "template missing"))
            sent[i] = (parent.get_span_context(), child.get_span_context())
    assert provider.force_flush(30_000)
    provider.shutdown()
    return sent


def send_metrics(endpoint):
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("e2e.meter", "0.1")
    orders = meter.create_counter("orders", unit="1", description="orders placed")
    orders.add(5, {"region": "eu"})
    orders.add(3, {"region": "us"})
    orders.add(2, {"region": "eu"})
    latency = meter.create_histogram("latency", unit="ms")
    for value in (5.0, 15.0, 250.0, 7.5):
        latency.record(value, {"route": "/cart"})
    temperature = meter.create_gauge("temperature", unit="Cel")
    temperature.set(21.5)
    provider.shutdown()  # collects and exports once more; a force_flush before it would export twice


def send_logs(endpoint):
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    logger = provider.get_logger("e2e.logger")
    for i in range(50):
        logger.emit(LogRecord(body=f"order {i} placed", severity_number=SeverityNumber.WARN,
                              severity_text="WARN", attributes={"order": i, "user": "ada"}))
    logger.emit(LogRecord(body={"structured": True, "items": [1, 2]}, severity_number=SeverityNumber.INFO))
    assert provider.force_flush(30_000)
    provider.shutdown()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Send every signal through the SDK, stop the daemon with SIGTERM, return the data dir."""
    output = tmp_path_factory.mktemp("e2e") / "data"
    with DaemonProcess(output) as daemon:
        endpoint = f"http://{daemon.endpoint}"
        sent = send_traces(endpoint)
        send_metrics(endpoint)
        send_logs(endpoint)
        assert daemon.stop() == 0
    assert not list(output.rglob("*.part"))
    return output, sent


def test_traces_in_polars(stored):
    output, sent = stored
    spans = pl.scan_ipc(str(output / "traces" / "*.arrow")).collect()
    assert spans.height == SPAN_COUNT
    assert spans["service_name"].unique().to_list() == ["e2e-shop"]
    # resource and scope are stored once per file; the helper joins them back
    assert "scope_name" not in spans.columns and spans["source_id"].n_unique() == 1
    table_of_sources = pl.scan_ipc(str(output / "sources" / "traces" / "*.arrow")).collect()
    assert table_of_sources.height == spans["source_id"].n_unique() * len(list((output / "traces").glob("*.arrow")))
    joined = query.scan(output, "traces").collect()
    assert joined.height == SPAN_COUNT
    assert joined["scope_name"].unique().to_list() == ["e2e.tracer"]
    assert joined["scope_version"].unique().to_list() == ["1.2.3"]
    assert joined.filter(pl.col("resource_attributes").map.get("service.name") == "e2e-shop").height == SPAN_COUNT
    assert sorted(spans["name"].unique().to_list()) == ["GET /cart", "SELECT cart", "render"]
    assert spans["start_time"].dtype == pl.Datetime("ns", "UTC")
    parents = spans.filter(pl.col("name") == "GET /cart")
    assert parents.height == SPAN_COUNT // 3
    for row in parents.iter_rows(named=True):
        order = attribute(row, "order")["int"]
        parent_context, _ = sent[order]
        assert row["trace_id"] == parent_context.trace_id.to_bytes(16, "big")
        assert row["span_id"] == parent_context.span_id.to_bytes(8, "big")
        assert attribute(row, "http.route")["str"] == "/cart"
        assert attribute(row, "http.status_code")["int"] == 200 + order % 3
        assert math.isclose(attribute(row, "ratio")["double"], order / 4)
        assert attribute(row, "cached")["bool"] == (order % 2 == 0)
        assert attribute(row, "tags")["type"] == 5  # array
        assert row["kind"] == 2  # SPAN_KIND_SERVER
        assert [event["name"] for event in row["events"]] == ["cache miss"]
        assert attribute(row["events"][0], "key")["str"] == f"k{order}"
        assert row["end_time"] >= row["start_time"]
    children = spans.filter(pl.col("name") == "SELECT cart")
    by_span = {row["span_id"]: row for row in children.iter_rows(named=True)}
    for parent_context, child_context in sent.values():
        child = by_span[child_context.span_id.to_bytes(8, "big")]
        assert child["parent_span_id"] == parent_context.span_id.to_bytes(8, "big")
        assert child["kind"] == 3  # SPAN_KIND_CLIENT
    failed = spans.filter(pl.col("name") == "render")
    assert failed["status_code"].unique().to_list() == [2]
    assert failed["status_message"].unique().to_list() == ["template missing"]


def test_traces_in_pyarrow_and_duckdb(stored):
    output, _ = stored
    dataset = ds.dataset(str(output / "traces"), format="ipc")
    assert dataset.count_rows() == SPAN_COUNT
    traces = dataset  # noqa: F841 - DuckDB finds the Python variable by name
    result = duckdb.sql("""
        SELECT name, count(*) AS spans, count(DISTINCT trace_id) AS traces
        FROM traces WHERE service_name = 'e2e-shop' GROUP BY name ORDER BY name""").fetchall()
    assert result == [("GET /cart", 100, 100), ("SELECT cart", 100, 100), ("render", 100, 100)]
    routes = duckdb.sql("""
        SELECT count(*) FROM traces
        WHERE attributes['http.route'] = '/cart'""").fetchall()
    assert routes == [(100,)]
    statuses = duckdb.sql("""
        SELECT attributes['http.status_code']::BIGINT AS status, count(*) FROM traces
        WHERE name = 'GET /cart' GROUP BY ALL ORDER BY 1""").fetchall()
    assert statuses == [(200, 34), (201, 33), (202, 33)]
    con = duckdb.connect()
    query.register_duckdb(con, output)
    assert con.sql("""SELECT scope_name, count(*) FROM traces
                      WHERE resource_attributes['service.name'] = 'e2e-shop' GROUP BY ALL""").fetchall() == [
        ("e2e.tracer", SPAN_COUNT)]


def test_metrics(stored):
    output, _ = stored
    points = pl.scan_ipc(str(output / "metrics" / "*.arrow")).collect()
    orders = points.filter(pl.col("metric_name") == "orders")
    assert orders["metric_type"].unique().to_list() == ["sum"]
    assert orders["is_monotonic"].unique().to_list() == [True]
    assert orders["aggregation_temporality"].unique().to_list() == [2]  # cumulative
    by_region = {attribute(row, "region")["str"]: row["value_int"]
                 for row in orders.iter_rows(named=True)}
    assert by_region == {"eu": 7, "us": 3}
    latency = points.filter(pl.col("metric_name") == "latency").row(0, named=True)
    assert latency["metric_type"] == "histogram"
    assert latency["count"] == 4
    assert latency["sum"] == pytest.approx(277.5)
    assert latency["min"] == 5.0 and latency["max"] == 250.0
    assert sum(latency["bucket_counts"]) == 4
    assert len(latency["bucket_counts"]) == len(latency["explicit_bounds"]) + 1
    gauge = points.filter(pl.col("metric_name") == "temperature").row(0, named=True)
    assert gauge["metric_type"] == "gauge" and gauge["value_double"] == 21.5
    dataset = ds.dataset(str(output / "metrics"), format="ipc")
    assert dataset.count_rows() == points.height == 4
    metrics = dataset  # noqa: F841
    assert duckdb.sql("SELECT sum(value_int) FROM metrics WHERE metric_name = 'orders'").fetchall() == [(10,)]


def test_logs(stored):
    output, _ = stored
    logs = pl.scan_ipc(str(output / "logs" / "*.arrow")).collect()
    assert logs.height == 51
    warnings = logs.filter(pl.col("severity_number") == 13)
    assert sorted(warnings["body"].to_list()) == sorted(
        f"order {i} placed" for i in range(50))
    assert warnings["severity_text"].unique().to_list() == ["WARN"]
    structured = logs.filter(pl.col("severity_number") == 9).row(0, named=True)
    assert structured["body"] is None and structured["body_other"]["type"] == 6  # kvlist
    dataset = ds.dataset(str(output / "logs"), format="ipc")
    logs_dataset = dataset  # noqa: F841
    assert duckdb.sql("SELECT count(*) FROM logs_dataset WHERE body LIKE 'order %'").fetchall() == [(50,)]
