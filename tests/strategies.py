"""Hypothesis strategies building random valid OTLP Export requests, and a helper to compare them.

Import as `from strategies import export_requests, records_multiset` (tests/ is on sys.path).
Floats never include NaN: NaN != NaN, so a request holding one would not equal itself.
Every strategy for a single message (`spans()`, `log_records()`, `metrics()`, ...) draws one
message; `export_requests(signal)` draws a whole request.
"""

from __future__ import annotations

import functools
from collections import Counter

from hypothesis import strategies as st

from otlpd import proto as pb

__all__ = [
    "any_value",
    "attributes",
    "resource",
    "scope",
    "spans",
    "log_records",
    "metrics",
    "export_requests",
    "records_multiset",
]

# ---------------------------------------------------------------- scalars with edge values


@st.composite
def _draw_one_of(draw, options):
    return draw(options[draw(st.integers(0, len(options) - 1))])


def _one_of(*options):
    """Like st.one_of, but much cheaper per draw (st.one_of builds new strategies on every draw,
    which dominated generation time); shrinks towards the first option."""
    if len(options) == 1 and isinstance(options[0], (list, tuple)):
        options = tuple(options[0])
    return _draw_one_of(tuple(options))


texts = _one_of(
    st.sampled_from(["", "a", "ü", "日本語", "🎉 emoji", "nul\x00byte", "service.name"]),
    st.text(max_size=10),
)
int64s = _one_of(st.sampled_from([0, -1, -(2**63), 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
# Single-draw strategies where values only need to cover the type's range (generation speed).
int32s = st.integers(-(2**31), 2**31 - 1)
uint32s = st.integers(0, 2**32 - 1)
_U64_EDGES = st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1])
uint64s = _one_of(_U64_EDGES, st.integers(0, 2**64 - 1))
times = _one_of(
    st.integers(1_600_000_000 * 10**9, 1_900_000_000 * 10**9),  # realistic
    _U64_EDGES,  # >= 2**63 is stored wrapped in int64 and must come back exactly
    st.integers(0, 2**64 - 1),
)
floats = st.floats(allow_nan=False)  # includes +-inf, -0.0 and subnormals
ids = st.binary(max_size=20)  # any length: the wire does not enforce 16/8 bytes
enums = int32s  # proto3 enums are open: unknown values are valid
# A small key pool makes duplicate attribute keys likely.
keys = _one_of(st.sampled_from(["service.name", "k", "k", "http.route", ""]), texts)


def _optional(strategy):
    """`strategy` or None; None means "leave the field unset" in a protobuf constructor."""
    return _one_of(st.none(), strategy)


# ---------------------------------------------------------------- common messages


@functools.lru_cache(maxsize=None)
def any_value(max_depth: int = 2):
    """An AnyValue of any kind (including none set), nesting arrays/kvlists up to max_depth."""
    options = [
        st.just(pb.AnyValue()),
        texts.map(lambda v: pb.AnyValue(string_value=v)),
        st.booleans().map(lambda v: pb.AnyValue(bool_value=v)),
        int64s.map(lambda v: pb.AnyValue(int_value=v)),
        floats.map(lambda v: pb.AnyValue(double_value=v)),
        st.binary(max_size=10).map(lambda v: pb.AnyValue(bytes_value=v)),
        int32s.map(lambda v: pb.AnyValue(string_value_strindex=v)),
    ]
    if max_depth > 0:
        inner = any_value(max_depth - 1)
        options.append(
            st.lists(inner, max_size=3).map(lambda vs: pb.AnyValue(array_value=pb.ArrayValue(values=vs)))
        )
        options.append(
            st.lists(_key_values(inner), max_size=3).map(
                lambda kvs: pb.AnyValue(kvlist_value=pb.KeyValueList(values=kvs))
            )
        )
    return _one_of(options)


def _key_values(values):
    return st.builds(
        pb.KeyValue,
        key=keys,
        value=_optional(values),  # an absent value is distinct from an empty AnyValue
        key_strindex=_one_of(st.just(0), st.just(0), int32s),  # mostly 0, so most go to the map
    )


def attributes(max_size: int = 3, max_depth: int = 1):
    """A list of KeyValue, possibly with duplicate keys and absent values.

    Values nest one level by default to keep generation fast; log bodies use depth 2.
    """
    return st.lists(_key_values(any_value(max_depth)), max_size=max_size)


def resource():
    """A Resource, sometimes empty, sometimes with a (string or not) service.name attribute."""
    service_name = st.builds(
        pb.KeyValue,
        key=st.just("service.name"),
        value=_one_of(texts.map(lambda v: pb.AnyValue(string_value=v)), any_value(0)),
    )
    entity_refs = st.lists(
        st.builds(
            pb.EntityRef,
            schema_url=texts,
            type=texts,
            id_keys=st.lists(texts, max_size=2),
            description_keys=st.lists(texts, max_size=2),
        ),
        max_size=2,
    )
    return _one_of(
        st.just(pb.Resource()),
        st.builds(
            lambda service, attrs, dropped, refs: pb.Resource(
                attributes=service + attrs, dropped_attributes_count=dropped, entity_refs=refs
            ),
            st.lists(service_name, max_size=1),
            attributes(3),
            uint32s,
            entity_refs,
        ),
    )


def scope():
    """An InstrumentationScope, sometimes empty."""
    return _one_of(
        st.just(pb.InstrumentationScope()),
        st.builds(
            pb.InstrumentationScope,
            name=texts,
            version=texts,
            attributes=attributes(2),
            dropped_attributes_count=uint32s,
        ),
    )


# ---------------------------------------------------------------- traces and logs


def spans():
    """A Span with events, links and a status that may be absent, empty or set."""
    events = st.lists(
        st.builds(
            pb.Span.Event,
            time_unix_nano=times,
            name=texts,
            attributes=attributes(2),
            dropped_attributes_count=uint32s,
        ),
        max_size=2,
    )
    links = st.lists(
        st.builds(
            pb.Span.Link,
            trace_id=ids,
            span_id=ids,
            trace_state=texts,
            attributes=attributes(2),
            dropped_attributes_count=uint32s,
            flags=uint32s,
        ),
        max_size=2,
    )
    status = _optional(
        _one_of(st.just(pb.Status()), st.builds(pb.Status, code=enums, message=texts))
    )
    return st.builds(
        pb.Span,
        trace_id=ids,
        span_id=ids,
        trace_state=texts,
        parent_span_id=ids,
        flags=uint32s,
        name=texts,
        kind=enums,
        start_time_unix_nano=times,
        end_time_unix_nano=times,
        attributes=attributes(),
        dropped_attributes_count=uint32s,
        events=events,
        dropped_events_count=uint32s,
        links=links,
        dropped_links_count=uint32s,
        status=status,
    )


def log_records():
    """A LogRecord whose body may be absent."""
    return st.builds(
        pb.LogRecord,
        time_unix_nano=times,
        observed_time_unix_nano=times,
        severity_number=enums,
        severity_text=texts,
        body=_optional(any_value()),
        attributes=attributes(),
        dropped_attributes_count=uint32s,
        flags=uint32s,
        trace_id=ids,
        span_id=ids,
        event_name=texts,
    )


# ---------------------------------------------------------------- metrics


def _exemplars():
    return st.lists(
        st.builds(
            lambda value, **kw: pb.Exemplar(**kw, **value),
            _one_of(
                st.just({}),
                floats.map(lambda v: {"as_double": v}),
                int64s.map(lambda v: {"as_int": v}),
            ),
            filtered_attributes=attributes(1),
            time_unix_nano=times,
            span_id=ids,
            trace_id=ids,
        ),
        max_size=2,
    )


def _point_fields():
    return {
        "attributes": attributes(2),
        "start_time_unix_nano": times,
        "time_unix_nano": times,
        "flags": uint32s,
    }


def _number_points():
    return st.builds(
        lambda value, **kw: pb.NumberDataPoint(**kw, **value),
        _one_of(  # int, double, or (invalid but parseable) neither
            floats.map(lambda v: {"as_double": v}),
            int64s.map(lambda v: {"as_int": v}),
            st.just({}),
        ),
        exemplars=_exemplars(),
        **_point_fields(),
    )


def _histogram_points():
    return st.builds(
        pb.HistogramDataPoint,
        count=uint64s,
        sum=_optional(floats),
        min=_optional(floats),
        max=_optional(floats),
        bucket_counts=st.lists(uint64s, max_size=4),
        explicit_bounds=st.lists(floats, max_size=3),
        exemplars=_exemplars(),
        **_point_fields(),
    )


def _buckets():
    return _optional(
        st.builds(
            pb.ExponentialHistogramDataPoint.Buckets,
            offset=int32s,
            bucket_counts=st.lists(uint64s, max_size=4),
        )
    )


def _exponential_points():
    return st.builds(
        pb.ExponentialHistogramDataPoint,
        count=uint64s,
        sum=_optional(floats),
        min=_optional(floats),
        max=_optional(floats),
        scale=_one_of(st.integers(-10, 20), int32s),
        zero_count=uint64s,
        zero_threshold=floats,
        positive=_buckets(),
        negative=_buckets(),
        exemplars=_exemplars(),
        **_point_fields(),
    )


def _summary_points():
    return st.builds(
        pb.SummaryDataPoint,
        count=uint64s,
        sum=floats,
        quantile_values=st.lists(
            st.builds(pb.SummaryDataPoint.ValueAtQuantile, quantile=floats, value=floats), max_size=3
        ),
        **_point_fields(),
    )


def metrics():
    """A Metric of any type with 0-3 data points (gauge, sum, histogram, exp. histogram, summary)."""

    def points(strategy):
        return st.lists(strategy, max_size=3)

    data = _one_of(
        st.builds(lambda p: {"gauge": pb.Gauge(data_points=p)}, points(_number_points())),
        st.builds(
            lambda p, t, m: {"sum": pb.Sum(data_points=p, aggregation_temporality=t, is_monotonic=m)},
            points(_number_points()),
            enums,
            st.booleans(),
        ),
        st.builds(
            lambda p, t: {"histogram": pb.Histogram(data_points=p, aggregation_temporality=t)},
            points(_histogram_points()),
            enums,
        ),
        st.builds(
            lambda p, t: {
                "exponential_histogram": pb.ExponentialHistogram(
                    data_points=p, aggregation_temporality=t
                )
            },
            points(_exponential_points()),
            enums,
        ),
        st.builds(lambda p: {"summary": pb.Summary(data_points=p)}, points(_summary_points())),
    )
    return st.builds(
        lambda data, **kw: pb.Metric(**kw, **data),
        data,
        name=texts,
        description=texts,
        unit=texts,
        metadata=attributes(2),
    )


# ---------------------------------------------------------------- requests

# signal -> (request, resource list, resource group, scope list, scope group, records, strategy)
_LAYOUT = {
    "traces": (
        pb.ExportTraceServiceRequest, "resource_spans", pb.ResourceSpans, "scope_spans", pb.ScopeSpans,
        "spans", spans,
    ),
    "metrics": (
        pb.ExportMetricsServiceRequest, "resource_metrics", pb.ResourceMetrics, "scope_metrics",
        pb.ScopeMetrics, "metrics", metrics,
    ),
    "logs": (
        pb.ExportLogsServiceRequest, "resource_logs", pb.ResourceLogs, "scope_logs", pb.ScopeLogs,
        "log_records", log_records,
    ),
}  # fmt: skip


def export_requests(signal: str):
    """A built Export request of `signal`: 1-3 resources x 1-3 scopes x 0-5 records, all set."""
    request_type, resources, resource_type, scopes, scope_type, records, record = _LAYOUT[signal]
    scope_groups = st.builds(
        lambda s, url, recs: scope_type(scope=s, schema_url=url, **{records: recs}),
        scope(),
        texts,
        st.lists(record(), max_size=5),
    )
    resource_groups = st.builds(
        lambda r, url, groups: resource_type(resource=r, schema_url=url, **{scopes: groups}),
        resource(),
        texts,
        st.lists(scope_groups, min_size=1, max_size=3),
    )
    return st.lists(resource_groups, min_size=1, max_size=3).map(
        lambda groups: request_type(**{resources: groups})
    )


def _single_point_metrics(metric: pb.Metric):
    """Copies of `metric` with exactly one data point each."""
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    for point in getattr(metric, kind).data_points:
        copy = pb.Metric()
        copy.CopyFrom(metric)
        points = getattr(copy, kind).data_points
        del points[:]
        points.add().CopyFrom(point)
        yield copy


def records_multiset(signal: str, request) -> Counter:
    """Counter of serialized (resource, resource schema_url, scope, scope schema_url, record).

    A record is a span, a log record, or a Metric copied with exactly one data point. An absent
    resource/scope serializes like an empty one, matching otlpd's rule that they are the same.
    """
    _, resources, _, scopes, _, records, _ = _LAYOUT[signal]

    def ser(message) -> bytes:
        return message.SerializeToString(deterministic=True)

    counter = Counter()
    for rg in getattr(request, resources):
        for sg in getattr(rg, scopes):
            for rec in getattr(sg, records):
                singles = _single_point_metrics(rec) if signal == "metrics" else [rec]
                for single in singles:
                    counter[
                        (ser(rg.resource), rg.schema_url, ser(sg.scope), sg.schema_url, ser(single))
                    ] += 1
    return counter
