"""The data of docs/SCHEMA.md's queries, sent by the OpenTelemetry SDK over OTLP/gRPC to a real
daemon: the same spans, log records and metric points the documented answers describe (the
hand-built requests of test_schema.py hold more: what the SDK cannot send, such as summaries)."""
from __future__ import annotations

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

T0 = 1_714_564_800_000_000_000  # 2024-05-01 12:00:00 UTC in ns
MINUTE = 60 * 10**9
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


class _Ids(IdGenerator):
    def __init__(self, span_ids):
        self._span_ids = iter(span_ids)

    def generate_span_id(self) -> int:
        return next(self._span_ids)

    def generate_trace_id(self) -> int:
        return TRACE_ID


def _spans(endpoint: str, resource: Resource, scope: tuple, spans: list) -> None:
    provider = TracerProvider(resource=resource, id_generator=_Ids([int(s[0], 16) for s in spans]))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer(*scope)
    for span_id, name, start, route, extra in spans:
        attributes = {"http.method": "GET", "http.status_code": 200}
        if route is not None:
            attributes = {"http.route": route, **attributes}
        links = ([Link(SpanContext(int("01" * 16, 16), int("02" * 8, 16), is_remote=True,
                                   trace_flags=TraceFlags(1)))] if extra.get("link") else [])
        span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=start, attributes=attributes, links=links)
        for event in extra.get("events", ()):
            span.add_event(*event)
        if "status" in extra:
            span.set_status(Status(*extra["status"]))
        span.end(end_time=start + 1_500_000)
    provider.shutdown()


def send(endpoint: str) -> None:
    """Everything the documented queries read, through the SDK's OTLP/gRPC exporters."""
    url = f"http://{endpoint}"
    checkout = Resource({"service.name": "checkout", "host.name": "h1"},
                        schema_url="https://opentelemetry.io/schemas/1.24.0")
    _spans(url, checkout, ("flask", "3.0"), [
        ("00000000000000a1", "GET /cart", T0 + 5 * MINUTE + 123, "/cart", {
            "status": (StatusCode.OK,), "link": True,
            "events": [("cache miss", {"key": "cart:42"}, T0 + 5 * MINUTE + 500)]}),
        ("00000000000000a2", "GET /cart", T0 - 1, "/cart", {}),
        ("00000000000000a3", "GET /cart", T0, "/cart", {}),
        ("00000000000000a4", "GET /cart", T0 + 60 * MINUTE, "/cart", {}),
        ("00000000000000a5", "GET /cart", T0 + 59 * MINUTE, "/pay", {}),
        ("00000000000000a6", "GET /cart", T0 + 10 * MINUTE, None, {}),
        ("00000000000000a7", "POST /pay", T0 + 10 * MINUTE, "/cart", {}),
        ("00000000000000a8", "GET /cart", T0 + 30 * MINUTE, "/cart", {"status": (StatusCode.ERROR, "boom")}),
    ])
    _spans(url, Resource({"service.name": "frontend"}), ("fetch",),
           [("00000000000000b1", "GET /cart", T0 + 5 * MINUTE, "/cart", {})])
    _spans(url, Resource({}), ("",), [("00000000000000c1", "GET /cart", 2**64 - 1 - 1_500_000, "/cart", {})])

    logs = LoggerProvider(resource=Resource({"service.name": "checkout"}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url, insecure=True)))
    logger = logs.get_logger("logger")
    logger.emit(LogRecord(timestamp=T0, observed_timestamp=T0 + 1, severity_number=SeverityNumber.INFO,
                          severity_text="INFO", body="cart loaded", attributes={"cart.items": 3},
                          trace_id=int("01" * 16, 16), span_id=int("02" * 8, 16), trace_flags=TraceFlags(1)))
    logger.emit(LogRecord(observed_timestamp=T0 + 2, severity_number=SeverityNumber.ERROR,
                          body={"user": "u1", "n": 3}, event_name="checkout.failed"))
    logger.emit(LogRecord(observed_timestamp=T0 + 3))
    logs.shutdown()

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url, insecure=True),
                                           export_interval_millis=3_600_000)
    meters = MeterProvider(resource=Resource({"service.name": "checkout"}), metric_readers=[reader])
    meters.get_meter("meter").create_counter("requests", unit="1").add(2**63 - 1, {"http.route": "/cart"})
    meters.shutdown()  # one export: the counter's one point
