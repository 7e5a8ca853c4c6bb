"""Raw OTLP/gRPC Export calls and small request builders for tests."""
from __future__ import annotations

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


def export(channel: grpc.Channel, signal: str, data: bytes, timeout: float = 30.0,
           compression: grpc.Compression | None = None) -> bytes:
    """One Export call with ``data`` sent as is; returns the raw response bytes."""
    call = channel.unary_unary(METHODS[signal], request_serializer=None, response_deserializer=None)
    return call(data, timeout=timeout, compression=compression)


def _attributes(**values) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=key.replace("_", "."), value=common_pb2.AnyValue(string_value=value))
            for key, value in values.items()]


def _resource(service: str) -> resource_pb2.Resource:
    return resource_pb2.Resource(attributes=_attributes(service_name=service))


def trace_request(count: int, service: str = "checkout", first: int = 0) -> trace_service_pb2.ExportTraceServiceRequest:
    spans = [trace_pb2.Span(
        trace_id=(first + i).to_bytes(16, "big"), span_id=(first + i).to_bytes(8, "big"),
        name=f"span-{first + i}", kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000 + i, end_time_unix_nano=1_700_000_000_000_001_000 + i,
        attributes=_attributes(http_route="/cart")) for i in range(count)]
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=_resource(service),
        scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="tests"), spans=spans)])])


def metrics_request(count: int, service: str = "checkout") -> metrics_service_pb2.ExportMetricsServiceRequest:
    points = [metrics_pb2.NumberDataPoint(time_unix_nano=1_700_000_000_000_000_000 + i, as_int=i)
              for i in range(count)]
    metric = metrics_pb2.Metric(name="requests", unit="1", sum=metrics_pb2.Sum(
        data_points=points, is_monotonic=True,
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE))
    return metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        resource=_resource(service),
        scope_metrics=[metrics_pb2.ScopeMetrics(scope=common_pb2.InstrumentationScope(name="tests"),
                                                metrics=[metric])])])


def logs_request(count: int, service: str = "checkout") -> logs_service_pb2.ExportLogsServiceRequest:
    records = [logs_pb2.LogRecord(time_unix_nano=1_700_000_000_000_000_000 + i,
                                  severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
                                  body=common_pb2.AnyValue(string_value=f"line {i}")) for i in range(count)]
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=_resource(service),
        scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name="tests"),
                                       log_records=records)])])


REQUEST_BUILDERS = {"traces": trace_request, "metrics": metrics_request, "logs": logs_request}
