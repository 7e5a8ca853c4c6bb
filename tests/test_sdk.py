"""Embedded mode: otlpd.Daemon as a context manager and the SDK exporters of otlpd.sdk, writing
through the daemon's own decoder, buffer, conversion and writer (no gRPC)."""
import polars as pl
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from otlpd import Daemon, query
from otlpd.sdk import ArrowLogExporter, ArrowMetricExporter, ArrowSpanExporter, temporality_preference

RESOURCE = Resource.create({"service.name": "embedded-shop"})


def stored(daemon, signal):
    daemon.rotate(signal)
    return query.scan(daemon.output_dir, signal).collect()


def test_daemon_is_a_context_manager_without_a_port(tmp_path):
    with Daemon.embedded(tmp_path / "data") as daemon:
        assert daemon.endpoint is None and daemon.server is None
        assert all(writer.status()["running"] for writer in daemon.writers.values())
    assert not any(writer.status()["running"] for writer in daemon.writers.values())


def test_span_and_log_exporters_write_files(tmp_path):
    with Daemon.embedded(tmp_path / "data") as daemon:
        tracer_provider = TracerProvider(resource=RESOURCE)
        tracer_provider.add_span_processor(SimpleSpanProcessor(ArrowSpanExporter(daemon)))
        tracer = tracer_provider.get_tracer("embedded.tracer")
        for i in range(3):
            with tracer.start_as_current_span("checkout", attributes={"order": i}):
                pass
        logger_provider = LoggerProvider(resource=RESOURCE)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(ArrowLogExporter(daemon)))
        logger_provider.get_logger("embedded.logger").emit(LogRecord(body="order placed"))
        spans, logs = stored(daemon, "traces"), stored(daemon, "logs")
    assert spans["name"].to_list() == ["checkout"] * 3
    assert spans["service_name"].unique().to_list() == ["embedded-shop"]
    assert spans["scope_name"].unique().to_list() == ["embedded.tracer"]
    assert sorted(spans.select(pl.col("attributes").map.get("order").cast(pl.Int64)).to_series().to_list()) == [0, 1, 2]
    assert logs["body"].to_list() == ["order placed"]
    assert daemon.receiver_counters["traces"].snapshot()["requests"] == 3


def metrics_with(daemon, exporter):
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("embedded.meter")
    orders, queue = meter.create_counter("orders"), meter.create_up_down_counter("queue")
    orders.add(5)
    queue.add(2)
    assert provider.force_flush(10_000)
    orders.add(3)
    queue.add(-1)
    assert provider.force_flush(10_000)
    provider.shutdown()
    points = stored(daemon, "metrics")
    return {name: [(row["value_int"], row["aggregation_temporality"])
                   for row in points.filter(pl.col("metric_name") == name).iter_rows(named=True)]
            for name in ("orders", "queue")}


def test_metric_exporter_is_cumulative_by_default(tmp_path):
    with Daemon.embedded(tmp_path / "data", **{"metrics.temporality": "passthrough"}) as daemon:
        got = metrics_with(daemon, ArrowMetricExporter(daemon))
    assert got == {"orders": [(5, 2), (8, 2), (8, 2)], "queue": [(2, 2), (1, 2), (1, 2)]}


def test_metric_exporter_with_a_delta_preference(tmp_path):
    with Daemon.embedded(tmp_path / "data", **{"metrics.temporality": "passthrough"}) as daemon:
        got = metrics_with(daemon, ArrowMetricExporter(daemon, preferred_temporality="delta"))
    # as the SDK's DELTA preference: counters delta, up-down counters cumulative
    assert got["orders"][:2] == [(5, 1), (3, 1)]
    assert got["queue"] == [(2, 2), (1, 2), (1, 2)]


def test_the_daemon_converts_what_the_exporter_sends(tmp_path):
    with Daemon.embedded(tmp_path / "data", **{"metrics.temporality": "delta"}) as daemon:
        got = metrics_with(daemon, ArrowMetricExporter(daemon))
    assert got["orders"] == [(5, 1), (3, 1), (0, 1)]


def test_a_refused_export_is_a_failure(tmp_path):
    with Daemon.embedded(tmp_path / "data", **{"buffer.max_items": "2"}) as daemon:
        provider = TracerProvider(resource=RESOURCE)
        exporter = ArrowSpanExporter(daemon)
        spans = []
        for i in range(3):
            with provider.get_tracer("t").start_as_current_span(f"s{i}") as span:
                spans.append(span)
        assert exporter.export(spans) == SpanExportResult.FAILURE  # 3 spans never fit 2 items
        assert exporter.export(spans[:1]) == SpanExportResult.SUCCESS
        counters = daemon.receiver_counters["traces"].snapshot()
    assert counters["rejected_too_large_requests"] == 1


def test_temporality_preference_shorthands():
    from opentelemetry.sdk.metrics import Counter, Histogram, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality as T

    assert set(temporality_preference(None).values()) == {T.CUMULATIVE}
    delta = temporality_preference("delta")
    assert (delta[Counter], delta[Histogram], delta[UpDownCounter]) == (T.DELTA, T.DELTA, T.CUMULATIVE)
    with pytest.raises(ValueError, match="preferred_temporality"):
        temporality_preference("sometimes")
