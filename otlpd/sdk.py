"""OpenTelemetry SDK exporters that write through an in-process otlpd: no gRPC, the same decoder,
buffer, temporality conversion and writer as the daemon's (the SDK's own OTLP encoders give the
request bytes)::

    from otlpd import Daemon
    from otlpd.sdk import ArrowMetricExporter, ArrowSpanExporter

    with Daemon.embedded("otlpd-data") as daemon:
        tracer_provider.add_span_processor(BatchSpanProcessor(ArrowSpanExporter(daemon)))
        reader = PeriodicExportingMetricReader(ArrowMetricExporter(daemon, preferred_temporality="delta"))
        ...

An export the daemon refuses (its buffer is full, the request is invalid or too large) returns
FAILURE, as an OTLP exporter does after its retries; the daemon counts it like a gRPC request.
"""
from __future__ import annotations

from typing import Sequence

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import (Counter, Histogram, ObservableCounter, ObservableGauge,
                                       ObservableUpDownCounter, UpDownCounter)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otlpd.receiver import IngestError

__all__ = ["ArrowLogExporter", "ArrowMetricExporter", "ArrowSpanExporter", "temporality_preference"]

_INSTRUMENTS = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
# "delta" as the SDK's OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=DELTA means it: up-down
# counters and gauges stay cumulative
_DELTA = {Counter, Histogram, ObservableCounter}


def temporality_preference(preference) -> dict[type, AggregationTemporality]:
    """The SDK's instrument -> temporality mapping for ``"cumulative"`` (every instrument),
    ``"delta"`` (as the SDK's DELTA preference), or a mapping (passed on as it is)."""
    if isinstance(preference, dict):
        return preference
    if preference in (None, "cumulative"):
        return {kind: AggregationTemporality.CUMULATIVE for kind in _INSTRUMENTS}
    if preference == "delta":
        return {kind: AggregationTemporality.DELTA if kind in _DELTA else AggregationTemporality.CUMULATIVE
                for kind in _INSTRUMENTS}
    raise ValueError(f"preferred_temporality: 'cumulative', 'delta' or a mapping, not {preference!r}")


def _ingest(daemon, signal: str, data: bytes) -> bool:
    try:
        daemon.ingest(signal, data)
    except IngestError:
        return False
    return True


class ArrowSpanExporter(SpanExporter):
    def __init__(self, daemon):
        self._daemon = daemon

    def export(self, spans: Sequence) -> SpanExportResult:
        ok = _ingest(self._daemon, "traces", encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ArrowMetricExporter(MetricExporter):
    """``preferred_temporality``: ``"cumulative"`` (the default, every instrument), ``"delta"``,
    or the SDK's usual mapping of instrument classes. What is stored also follows the daemon's
    ``metrics.temporality`` (docs/TEMPORALITY.md): use ``passthrough`` to store what the SDK
    exports."""

    def __init__(self, daemon, preferred_temporality=None, preferred_aggregation=None):
        super().__init__(preferred_temporality=temporality_preference(preferred_temporality),
                         preferred_aggregation=preferred_aggregation)
        self._daemon = daemon

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        ok = _ingest(self._daemon, "metrics", encode_metrics(metrics_data).SerializeToString())
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


class ArrowLogExporter(LogRecordExporter):
    def __init__(self, daemon):
        self._daemon = daemon

    def export(self, batch: Sequence):
        ok = _ingest(self._daemon, "logs", encode_logs(batch).SerializeToString())
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
