"""Realistic, pre-serialized OTLP Export requests for benchmarks.

Every builder is deterministic for a given ``seed`` and varies ids, names and values
with it, so a pool built from several seeds never resends identical bytes.
"""
from __future__ import annotations

import random
import re
import struct
import time

import numpy as np
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

POOL_SIZE = 16
BASE_TIME = 1_700_000_000_000_000_000  # ns
SPANS_PER_TRACE = 10
POINTS_PER_METRIC = 10

_SERVICES = ("checkout", "cart", "payment", "shipping", "frontend", "inventory")
_ROUTES = ("/api/cart", "/api/checkout", "/api/orders/{id}", "/api/products", "/health")
_METHODS = ("GET", "POST", "PUT", "DELETE")
_SCOPE = InstrumentationScope(name="otlpd.benchmarks", version="1.0.0")


def _kv(key: str, value) -> KeyValue:
    """A KeyValue whose AnyValue member follows the Python type (bool before int)."""
    if isinstance(value, bool):
        any_value = AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = AnyValue(double_value=value)
    else:
        any_value = AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _resource(rng: random.Random) -> Resource:
    service = rng.choice(_SERVICES)
    return Resource(attributes=[
        _kv("service.name", service),
        _kv("service.version", f"1.{rng.randrange(20)}.{rng.randrange(10)}"),
        _kv("host.name", f"node-{rng.randrange(64):02d}.cluster.local"),
        _kv("k8s.pod.name", f"{service}-{rng.getrandbits(32):08x}-{rng.getrandbits(20):05x}"),
        _kv("deployment.environment", rng.choice(("production", "staging"))),
    ])


def _span(rng: random.Random, trace_id: bytes, parent_id: bytes, start: int) -> trace_pb2.Span:
    route = rng.choice(_ROUTES)
    failed = rng.random() < 0.05
    duration = rng.randrange(50_000, 50_000_000)
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=rng.randbytes(8),
        parent_span_id=parent_id,
        name=f"{rng.choice(_METHODS)} {route}",
        kind=rng.choice((trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT,
                         trace_pb2.Span.SPAN_KIND_INTERNAL)),
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=[
            _kv("http.request.method", rng.choice(_METHODS)),
            _kv("url.path", route.replace("{id}", str(rng.randrange(100_000)))),
            _kv("http.response.status_code", 500 if failed else 200),
            _kv("server.address", f"{rng.choice(_SERVICES)}.svc.cluster.local"),
            _kv("server.port", 8080),
            _kv("http.response.body.size", rng.randrange(100, 100_000)),
            _kv("sampling.ratio", rng.choice((0.1, 0.25, 1.0))),
            _kv("cache.hit", rng.random() < 0.5),
        ],
        events=[trace_pb2.Span.Event(
            time_unix_nano=start + duration // 2,
            name="exception" if failed else "cache.lookup",
            attributes=[_kv("message", f"lookup took {rng.randrange(1000)} us")],
        )],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="internal error")
        if failed else trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
    )


def trace_request_bytes(spans_per_request: int, seed: int = 0) -> bytes:
    """An ExportTraceServiceRequest of ``spans_per_request`` spans in traces of 10 spans."""
    rng = random.Random(seed)
    spans = []
    trace_id = parent_id = b""
    for i in range(spans_per_request):
        if i % SPANS_PER_TRACE == 0:
            trace_id, parent_id = rng.randbytes(16), rng.randbytes(8)
        spans.append(_span(rng, trace_id, parent_id, BASE_TIME + seed * 10**9 + i * 1000))
    request = ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=_resource(rng),
        scope_spans=[trace_pb2.ScopeSpans(scope=_SCOPE, spans=spans)])])
    return request.SerializeToString()


def _point_attributes(rng: random.Random, index: int) -> list[KeyValue]:
    return [_kv("http.route", _ROUTES[index % len(_ROUTES)]),
            _kv("http.response.status_code", rng.choice((200, 404, 500)))]


def _number_points(rng, count, time, as_int):
    return [metrics_pb2.NumberDataPoint(
        attributes=_point_attributes(rng, i), start_time_unix_nano=BASE_TIME, time_unix_nano=time,
        **({"as_int": rng.randrange(10**6)} if as_int else {"as_double": rng.random() * 100}))
        for i in range(count)]


def _histogram_points(rng, count, time):
    bounds = [5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 1000.0, 2500.0]
    points = []
    for i in range(count):
        buckets = [rng.randrange(100) for _ in range(len(bounds) + 1)]
        points.append(metrics_pb2.HistogramDataPoint(
            attributes=_point_attributes(rng, i), start_time_unix_nano=BASE_TIME,
            time_unix_nano=time, count=sum(buckets), sum=rng.random() * 10**5,
            min=rng.random(), max=1000 + rng.random() * 1000,
            bucket_counts=buckets, explicit_bounds=bounds))
    return points


def _exponential_points(rng, count, time):
    points = []
    for i in range(count):
        positive = [rng.randrange(50) for _ in range(20)]
        points.append(metrics_pb2.ExponentialHistogramDataPoint(
            attributes=_point_attributes(rng, i), start_time_unix_nano=BASE_TIME,
            time_unix_nano=time, count=sum(positive) + 3, sum=rng.random() * 10**4, scale=3,
            zero_count=3, min=0.0, max=rng.random() * 500,
            positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
                offset=rng.randrange(-5, 5), bucket_counts=positive)))
    return points


def _summary_points(rng, count, time):
    return [metrics_pb2.SummaryDataPoint(
        attributes=_point_attributes(rng, i), start_time_unix_nano=BASE_TIME, time_unix_nano=time,
        count=rng.randrange(1, 10**4), sum=rng.random() * 10**5,
        quantile_values=[metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=q, value=rng.random() * q * 1000)
                         for q in (0.5, 0.9, 0.99)])
        for i in range(count)]


def _metric(kind: str, name: str, points: list) -> metrics_pb2.Metric:
    cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    data = {
        "gauge": lambda: {"gauge": metrics_pb2.Gauge(data_points=points)},
        "sum": lambda: {"sum": metrics_pb2.Sum(data_points=points, is_monotonic=True,
                                                aggregation_temporality=cumulative)},
        "histogram": lambda: {"histogram": metrics_pb2.Histogram(
            data_points=points, aggregation_temporality=cumulative)},
        "exponential_histogram": lambda: {"exponential_histogram": metrics_pb2.ExponentialHistogram(
            data_points=points, aggregation_temporality=cumulative)},
        "summary": lambda: {"summary": metrics_pb2.Summary(data_points=points)},
    }[kind]()
    return metrics_pb2.Metric(name=name, description=f"benchmark {kind}", unit="ms", **data)


_POINT_BUILDERS = {
    "gauge": lambda rng, n, t: _number_points(rng, n, t, as_int=False),
    "sum": lambda rng, n, t: _number_points(rng, n, t, as_int=True),
    "histogram": _histogram_points,
    "exponential_histogram": _exponential_points,
    "summary": _summary_points,
}


def metrics_request_bytes(points: int, seed: int = 0) -> bytes:
    """An ExportMetricsServiceRequest of ``points`` data points spread over all five metric types."""
    rng = random.Random(seed)
    time = BASE_TIME + seed * 10**9
    kinds = list(_POINT_BUILDERS)
    metrics = []
    for k, kind in enumerate(kinds):
        remaining = points // len(kinds) + (1 if k < points % len(kinds) else 0)
        number = 0
        while remaining > 0:
            count = min(POINTS_PER_METRIC, remaining)
            metrics.append(_metric(kind, f"app.{kind}.{number}", _POINT_BUILDERS[kind](rng, count, time)))
            remaining -= count
            number += 1
    request = ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        resource=_resource(rng),
        scope_metrics=[metrics_pb2.ScopeMetrics(scope=_SCOPE, metrics=metrics)])])
    return request.SerializeToString()


_SEVERITIES = ((logs_pb2.SEVERITY_NUMBER_INFO, "INFO"), (logs_pb2.SEVERITY_NUMBER_WARN, "WARN"),
               (logs_pb2.SEVERITY_NUMBER_ERROR, "ERROR"), (logs_pb2.SEVERITY_NUMBER_DEBUG, "DEBUG"))


def logs_request_bytes(records: int, seed: int = 0) -> bytes:
    """An ExportLogsServiceRequest of ``records`` log records with string bodies."""
    rng = random.Random(seed)
    log_records = []
    for i in range(records):
        number, text = rng.choice(_SEVERITIES)
        route = rng.choice(_ROUTES)
        time = BASE_TIME + seed * 10**9 + i * 1000
        log_records.append(logs_pb2.LogRecord(
            time_unix_nano=time, observed_time_unix_nano=time + 500,
            severity_number=number, severity_text=text,
            body=AnyValue(string_value=f"{rng.choice(_METHODS)} {route} completed in "
                                       f"{rng.randrange(1, 2000)} ms for user {rng.getrandbits(32):08x}"),
            attributes=[_kv("logger.name", f"{rng.choice(_SERVICES)}.handler"),
                        _kv("thread.id", rng.randrange(1, 64)),
                        _kv("code.lineno", rng.randrange(1, 2000)),
                        _kv("http.route", route)],
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8)))
    request = ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=_resource(rng),
        scope_logs=[logs_pb2.ScopeLogs(scope=_SCOPE, log_records=log_records)])])
    return request.SerializeToString()


BUILDERS = {"traces": trace_request_bytes, "metrics": metrics_request_bytes, "logs": logs_request_bytes}


def request_pool(signal: str, items: int, size: int = POOL_SIZE, seed: int = 0) -> list[bytes]:
    """``size`` distinct requests of ``items`` items each; pools of different ``seed`` differ too."""
    build = BUILDERS[signal]
    return [build(items, seed * size + i) for i in range(size)]


# Moving streams: requests whose points move forward in time on every send (see StreamRequest).
STREAM_KINDS = ("gauge", "sum", "updown_sum", "histogram", "exponential_histogram", "summary")
TIME_SENTINEL = 0x5A5A << 48  # + point index: time_unix_nano as built, replaced before every send
VALUE_SENTINEL = 0x3C3C << 48  # + point index: as_int of a monotonic sum's point, likewise
_TIME_TAG, _AS_INT_TAG = 0x19, 0x31  # fixed64 field 3 (every data point), sfixed64 field 6 (as_int)


def _sentinel_offsets(data: bytes, tag: int, marker: int, count: int) -> np.ndarray:
    """Byte offsets of the fixed64 values ``marker + i`` (i < count), each once, after ``tag``."""
    high = struct.pack("<H", marker >> 48)
    found = {}
    for match in re.finditer(re.escape(bytes([tag])) + b"(.{6})" + re.escape(high), data, re.S):
        index = struct.unpack_from("<Q", data, match.start(1))[0] - marker
        if 0 <= index < count:
            if index in found:
                raise ValueError(f"sentinel {index} found twice")
            found[index] = match.start(1)
    if len(found) != count:
        raise ValueError(f"found {len(found)} of {count} sentinels")
    return np.array([found[i] for i in range(count)], dtype=np.int64)


def _byte_index(offsets: np.ndarray) -> np.ndarray:
    """The indices of the 8 bytes at each offset, for one vectorised scatter."""
    return (offsets[:, None] + np.arange(8)).ravel()


class StreamRequest:
    """One metrics request of distinct cumulative series, built and serialized once, whose
    ``time_unix_nano`` (every point) and monotonic sums' ``as_int`` are patched in place before
    every send: each send is the next report of every series in it, strictly later than the last
    (wall clock), with each counter grown by its own step. ``start_time_unix_nano`` stays fixed
    per series (``BASE_TIME``, before any otlpd started). Histograms keep their values: a
    cumulative histogram that did not change is a valid next point (its delta is zero)."""

    def __init__(self, data: bytes, points: int, sums: int, rng: random.Random):
        self.points, self.sums = points, sums
        self.buffer = bytearray(data)
        self._bytes = np.frombuffer(self.buffer, dtype=np.uint8)  # a view: writes go to the buffer
        self._times = _byte_index(_sentinel_offsets(data, _TIME_TAG, TIME_SENTINEL, points))
        self._values = _byte_index(_sentinel_offsets(data, _AS_INT_TAG, VALUE_SENTINEL, sums))
        self._base = np.array([rng.randrange(10**6) for _ in range(sums)], dtype="<i8")
        self._step = np.array([rng.randrange(1, 100) for _ in range(sums)], dtype="<i8")
        self.sends = 0
        self.last_time = 0

    def next(self) -> bytes:
        """The next report: every point at a time after the last send's, counters grown."""
        self.last_time = max(time.time_ns(), self.last_time + 1)
        self.sends += 1
        stamp = np.frombuffer(struct.pack("<Q", self.last_time), dtype=np.uint8)
        self._bytes[self._times] = np.tile(stamp, self.points)
        self._bytes[self._values] = (self._base + self.sends * self._step).view(np.uint8)
        return bytes(self.buffer)


def stream_request(points: int, name: str, seed: int = 0) -> StreamRequest:
    """A :class:`StreamRequest` of ``points`` series spread over the six kinds (gauge, monotonic
    sum, up-down sum, histogram, exponential histogram, summary), ``POINTS_PER_METRIC`` a metric,
    every series distinct (attribute ``series.id``) and the request's series its own (resource
    attribute ``bench.streams`` = ``name``); sums and histograms cumulative."""
    rng = random.Random(seed)
    metrics, point_index, sum_index = [], 0, 0
    builders = {**_POINT_BUILDERS, "updown_sum": _POINT_BUILDERS["sum"]}
    for k, kind in enumerate(STREAM_KINDS):
        remaining = points // len(STREAM_KINDS) + (1 if k < points % len(STREAM_KINDS) else 0)
        number = 0
        while remaining > 0:
            count = min(POINTS_PER_METRIC, remaining)
            built = builders[kind](rng, count, BASE_TIME)
            for i, point in enumerate(built):
                point.attributes.append(_kv("series.id", i))
                point.time_unix_nano = TIME_SENTINEL + point_index
                point_index += 1
                if kind == "sum":
                    point.as_int = VALUE_SENTINEL + sum_index
                    sum_index += 1
            metric = _metric("sum" if kind == "updown_sum" else kind, f"app.{kind}.{number}", built)
            if kind == "updown_sum":
                metric.sum.is_monotonic = False
            metrics.append(metric)
            remaining -= count
            number += 1
    resource = _resource(rng)
    resource.attributes.append(_kv("bench.streams", name))
    request = ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(scope=_SCOPE, metrics=metrics)])])
    return StreamRequest(request.SerializeToString(), point_index, sum_index, rng)


class StreamPool:
    """A call slot's own requests (its own series), sent in turn: one slot sends a series, one
    call at a time, so its points reach otlpd in order."""

    def __init__(self, points: int, requests: int, name: str, seed: int = 0):
        self.requests = [stream_request(points, f"{name}/{i}", seed * requests + i) for i in range(requests)]
        self._turn = 0

    def next(self) -> bytes:
        request = self.requests[self._turn % len(self.requests)]
        self._turn += 1
        return request.next()
