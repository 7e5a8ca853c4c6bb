"""Arrow schema of otlpd's files and the conversion between OTLP Export requests and Arrow.

One row per span, log record or metric data point; the resource and scope are repeated on
every row so each file is a flat, self-contained table. docs/SCHEMA.md describes every column.
This pure-Python path is the reference implementation: faster decoders must produce the same
batches.
"""

from __future__ import annotations

import pyarrow as pa

from otlpd import attributes as lean
from otlpd import proto as pb
from otlpd.attributes import ANYVALUE

# Note: protobuf constructors treat `field=None` as "not set"; to_request relies on that to
# restore the presence of optional fields and submessages from nullable columns.

SIGNALS = ("traces", "metrics", "logs")


class DecodeError(ValueError):
    """Bytes that are not a valid Export request; message is readable, one line."""


# --------------------------------------------------------------------------- types

TIME = pa.timestamp("ns", tz="UTC")
ID = pa.binary()  # the wire does not guarantee 16/8-byte ids, so no fixed_size_binary

# Rows are built in today's ("v1") form first, with every attribute list as ATTRS (a list,
# so duplicate keys and their order survive); the stored layout is derived from it by
# otlpd.attributes (each list -> map + types + side list; a log's string body -> a string).
ATTRS = pa.list_(
    pa.struct([("key", pa.string()), ("value", ANYVALUE), ("key_strindex", pa.int32())])
)
ENTITY_REFS = pa.list_(
    pa.struct(
        [
            ("schema_url", pa.string()),
            ("type", pa.string()),
            ("id_keys", pa.list_(pa.string())),
            ("description_keys", pa.list_(pa.string())),
        ]
    )
)
EXEMPLARS = pa.list_(
    pa.struct(
        [
            ("filtered_attributes", ATTRS),
            ("time", TIME),
            ("value_double", pa.float64()),
            ("value_int", pa.int64()),
            ("span_id", ID),
            ("trace_id", ID),
        ]
    )
)

COMMON_FIELDS = [
    pa.field("resource_attributes", ATTRS),
    pa.field("resource_dropped_attributes_count", pa.uint32()),
    pa.field("resource_entity_refs", ENTITY_REFS),
    pa.field("resource_schema_url", pa.string()),
    pa.field("service_name", pa.string()),
    pa.field("scope_name", pa.string()),
    pa.field("scope_version", pa.string()),
    pa.field("scope_attributes", ATTRS),
    pa.field("scope_dropped_attributes_count", pa.uint32()),
    pa.field("scope_schema_url", pa.string()),
]
_N_COMMON = len(COMMON_FIELDS)

_V1_TRACES = pa.schema(
    COMMON_FIELDS
    + [
        pa.field("trace_id", ID),
        pa.field("span_id", ID),
        pa.field("trace_state", pa.string()),
        pa.field("parent_span_id", ID),
        pa.field("flags", pa.uint32()),
        pa.field("name", pa.string()),
        pa.field("kind", pa.int32()),
        pa.field("start_time", TIME),
        pa.field("end_time", TIME),
        pa.field("attributes", ATTRS),
        pa.field("dropped_attributes_count", pa.uint32()),
        pa.field(
            "events",
            pa.list_(
                pa.struct(
                    [
                        ("time", TIME),
                        ("name", pa.string()),
                        ("attributes", ATTRS),
                        ("dropped_attributes_count", pa.uint32()),
                    ]
                )
            ),
        ),
        pa.field("dropped_events_count", pa.uint32()),
        pa.field(
            "links",
            pa.list_(
                pa.struct(
                    [
                        ("trace_id", ID),
                        ("span_id", ID),
                        ("trace_state", pa.string()),
                        ("attributes", ATTRS),
                        ("dropped_attributes_count", pa.uint32()),
                        ("flags", pa.uint32()),
                    ]
                )
            ),
        ),
        pa.field("dropped_links_count", pa.uint32()),
        pa.field("status_code", pa.int32()),
        pa.field("status_message", pa.string()),
    ]
)

_V1_LOGS = pa.schema(
    COMMON_FIELDS
    + [
        pa.field("time", TIME),
        pa.field("observed_time", TIME),
        pa.field("severity_number", pa.int32()),
        pa.field("severity_text", pa.string()),
        pa.field("body", ANYVALUE),
        pa.field("attributes", ATTRS),
        pa.field("dropped_attributes_count", pa.uint32()),
        pa.field("flags", pa.uint32()),
        pa.field("trace_id", ID),
        pa.field("span_id", ID),
        pa.field("event_name", pa.string()),
    ]
)

_METRIC_FIELDS = [
    pa.field("metric_name", pa.string()),
    pa.field("metric_description", pa.string()),
    pa.field("metric_unit", pa.string()),
    pa.field("metric_metadata", ATTRS),
    pa.field("metric_type", pa.string()),
    pa.field("aggregation_temporality", pa.int32()),
    pa.field("is_monotonic", pa.bool_()),
]
_POINT_FIELDS = [
    pa.field("attributes", ATTRS),
    pa.field("start_time", TIME),
    pa.field("time", TIME),
    pa.field("flags", pa.uint32()),
    pa.field("value_double", pa.float64()),
    pa.field("value_int", pa.int64()),
    pa.field("count", pa.uint64()),
    pa.field("sum", pa.float64()),
    pa.field("min", pa.float64()),
    pa.field("max", pa.float64()),
    pa.field("bucket_counts", pa.list_(pa.uint64())),
    pa.field("explicit_bounds", pa.list_(pa.float64())),
    pa.field("scale", pa.int32()),
    pa.field("zero_count", pa.uint64()),
    pa.field("zero_threshold", pa.float64()),
    pa.field("positive_offset", pa.int32()),
    pa.field("positive_bucket_counts", pa.list_(pa.uint64())),
    pa.field("negative_offset", pa.int32()),
    pa.field("negative_bucket_counts", pa.list_(pa.uint64())),
    pa.field("quantile_values", pa.list_(pa.struct([("quantile", pa.float64()), ("value", pa.float64())]))),
    pa.field("exemplars", EXEMPLARS),
]
_POINT_NAMES = [f.name for f in _POINT_FIELDS]
_V1_METRICS = pa.schema(COMMON_FIELDS + _METRIC_FIELDS + _POINT_FIELDS)

# In each file's schema metadata: readers and to_request can tell layouts apart.
# Version 3: version 2's attribute maps, with resource and scope once per file (otlpd.sources).
SCHEMA_VERSION = "3"


def _stored(v1: pa.Schema) -> pa.Schema:
    return pa.schema(lean.lean_fields(v1, ATTRS, ANYVALUE), metadata={"otlpd.schema_version": SCHEMA_VERSION})


# The full layout: what decode_* return and to_request takes. A file stores it as rows
# without the resource and scope columns plus a sources table (otlpd.sources).
TRACES_SCHEMA = _stored(_V1_TRACES)
METRICS_SCHEMA = _stored(_V1_METRICS)
LOGS_SCHEMA = _stored(_V1_LOGS)

COMMON_STORED_FIELDS = lean.lean_fields(COMMON_FIELDS, ATTRS, ANYVALUE)  # every signal's first columns

_SCHEMAS = {"traces": TRACES_SCHEMA, "metrics": METRICS_SCHEMA, "logs": LOGS_SCHEMA}
_V1_SCHEMAS = {"traces": _V1_TRACES, "metrics": _V1_METRICS, "logs": _V1_LOGS}


def schema_for(signal: str) -> pa.Schema:
    """The Arrow schema of the files of `signal` ("traces", "metrics" or "logs")."""
    try:
        return _SCHEMAS[signal]
    except KeyError:
        raise ValueError(f"unknown signal {signal!r}, expected one of {SIGNALS}") from None


# --------------------------------------------------------------------------- protobuf -> rows

# AnyValue oneof field -> (type number, ANYVALUE member holding it).
_ANY_MEMBERS = {
    "string_value": (1, "str"),
    "bool_value": (2, "bool"),
    "int_value": (3, "int"),
    "double_value": (4, "double"),
    "array_value": (5, "bytes"),
    "kvlist_value": (6, "bytes"),
    "bytes_value": (7, "bytes"),
    "string_value_strindex": (8, "int"),
}
_I64 = 1 << 63
_U64 = 1 << 64


def _time(u: int) -> int:
    """A fixed64 nanosecond time as the int64 with the same bits (values >= 2**63 wrap)."""
    return u - _U64 if u >= _I64 else u


def _any_value(v: pb.AnyValue) -> dict:
    which = v.WhichOneof("value")
    if which is None:
        return {"type": 0}
    type_, member = _ANY_MEMBERS[which]
    value = getattr(v, which)
    if type_ == 5 or type_ == 6:
        value = value.SerializeToString()
    return {"type": type_, member: value}


def _attrs(kvs) -> list:
    return [
        {
            "key": kv.key,
            "value": _any_value(kv.value) if kv.HasField("value") else None,
            "key_strindex": kv.key_strindex,
        }
        for kv in kvs
    ]


def _service_name(kvs) -> str | None:
    """The first `service.name` attribute if it is a string, else None."""
    for kv in kvs:
        if kv.key == "service.name":
            return kv.value.string_value if kv.value.WhichOneof("value") == "string_value" else None
    return None


def _resource_values(resource: pb.Resource, schema_url: str) -> tuple:
    entity_refs = [
        {
            "schema_url": e.schema_url,
            "type": e.type,
            "id_keys": list(e.id_keys),
            "description_keys": list(e.description_keys),
        }
        for e in resource.entity_refs
    ]
    return (
        _attrs(resource.attributes),
        resource.dropped_attributes_count,
        entity_refs,
        schema_url,
        _service_name(resource.attributes),
    )


def _scope_values(scope: pb.InstrumentationScope, schema_url: str) -> tuple:
    return (
        scope.name,
        scope.version,
        _attrs(scope.attributes),
        scope.dropped_attributes_count,
        schema_url,
    )


def _span_rows(spans):
    for s in spans:
        has_status = s.HasField("status")
        yield (
            s.trace_id,
            s.span_id,
            s.trace_state,
            s.parent_span_id,
            s.flags,
            s.name,
            s.kind,
            _time(s.start_time_unix_nano),
            _time(s.end_time_unix_nano),
            _attrs(s.attributes),
            s.dropped_attributes_count,
            [
                {
                    "time": _time(e.time_unix_nano),
                    "name": e.name,
                    "attributes": _attrs(e.attributes),
                    "dropped_attributes_count": e.dropped_attributes_count,
                }
                for e in s.events
            ],
            s.dropped_events_count,
            [
                {
                    "trace_id": link.trace_id,
                    "span_id": link.span_id,
                    "trace_state": link.trace_state,
                    "attributes": _attrs(link.attributes),
                    "dropped_attributes_count": link.dropped_attributes_count,
                    "flags": link.flags,
                }
                for link in s.links
            ],
            s.dropped_links_count,
            s.status.code if has_status else None,
            s.status.message if has_status else None,
        )


def _log_rows(records):
    for r in records:
        yield (
            _time(r.time_unix_nano),
            _time(r.observed_time_unix_nano),
            r.severity_number,
            r.severity_text,
            _any_value(r.body) if r.HasField("body") else None,
            _attrs(r.attributes),
            r.dropped_attributes_count,
            r.flags,
            r.trace_id,
            r.span_id,
            r.event_name,
        )


def _exemplars(exemplars) -> list:
    return [
        {
            "filtered_attributes": _attrs(x.filtered_attributes),
            "time": _time(x.time_unix_nano),
            "value_double": x.as_double if x.HasField("as_double") else None,
            "value_int": x.as_int if x.HasField("as_int") else None,
            "span_id": x.span_id,
            "trace_id": x.trace_id,
        }
        for x in exemplars
    ]


def _optional(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def _point_common(p) -> dict:
    return {
        "attributes": _attrs(p.attributes),
        "start_time": _time(p.start_time_unix_nano),
        "time": _time(p.time_unix_nano),
        "flags": p.flags,
    }


def _number_point(p: pb.NumberDataPoint) -> dict:
    d = _point_common(p)
    d["value_double"] = _optional(p, "as_double")
    d["value_int"] = _optional(p, "as_int")
    d["exemplars"] = _exemplars(p.exemplars)
    return d


def _histogram_point(p: pb.HistogramDataPoint) -> dict:
    d = _point_common(p)
    d["count"] = p.count
    d["sum"] = _optional(p, "sum")
    d["min"] = _optional(p, "min")
    d["max"] = _optional(p, "max")
    d["bucket_counts"] = list(p.bucket_counts)
    d["explicit_bounds"] = list(p.explicit_bounds)
    d["exemplars"] = _exemplars(p.exemplars)
    return d


def _exponential_point(p: pb.ExponentialHistogramDataPoint) -> dict:
    d = _point_common(p)
    d["count"] = p.count
    d["sum"] = _optional(p, "sum")
    d["min"] = _optional(p, "min")
    d["max"] = _optional(p, "max")
    d["scale"] = p.scale
    d["zero_count"] = p.zero_count
    d["zero_threshold"] = p.zero_threshold
    for side in ("positive", "negative"):
        if p.HasField(side):
            buckets = getattr(p, side)
            d[side + "_offset"] = buckets.offset
            d[side + "_bucket_counts"] = list(buckets.bucket_counts)
    d["exemplars"] = _exemplars(p.exemplars)
    return d


def _summary_point(p: pb.SummaryDataPoint) -> dict:
    d = _point_common(p)
    d["count"] = p.count
    d["sum"] = p.sum
    d["quantile_values"] = [{"quantile": q.quantile, "value": q.value} for q in p.quantile_values]
    return d


_HAS_TEMPORALITY = ("sum", "histogram", "exponential_histogram")

_POINT_DECODERS = {
    "gauge": _number_point,
    "sum": _number_point,
    "histogram": _histogram_point,
    "exponential_histogram": _exponential_point,
    "summary": _summary_point,
}


def _metric_rows(metrics):
    for m in metrics:
        type_ = m.WhichOneof("data")
        if type_ is None:
            continue  # a metric without data has no data point, hence no row
        data = getattr(m, type_)
        head = (
            m.name,
            m.description,
            m.unit,
            _attrs(m.metadata),
            type_,
            data.aggregation_temporality if type_ in _HAS_TEMPORALITY else None,
            data.is_monotonic if type_ == "sum" else None,
        )
        decode_point = _POINT_DECODERS[type_]
        for p in data.data_points:
            d = decode_point(p)
            yield head + tuple(d.get(name) for name in _POINT_NAMES)


# signal -> (request type, resource list, scope list, record list, rows generator)
_LAYOUT = {
    "traces": (pb.ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans", _span_rows),
    "metrics": (pb.ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics", _metric_rows),
    "logs": (pb.ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records", _log_rows),
}


def _parse(request_type, data: bytes):
    try:
        return request_type.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, but also TypeError etc. for odd input
        reason = " ".join(str(exc).split()) or type(exc).__name__
        # upb says "Error parsing message with type '<full name>': <why>"; keep the why.
        if reason.startswith("Error parsing message with type") and "': " in reason:
            reason = reason.split("': ", 1)[1]
        raise DecodeError(f"invalid {request_type.DESCRIPTOR.name}: {reason}") from exc


def _v1_rows(signal: str, request) -> list[tuple]:
    """One tuple per record in the v1 column order: its resource, its scope, then its own values."""
    _, resources_field, scopes_field, records_field, record_rows = _LAYOUT[signal]
    rows = []
    for rg in getattr(request, resources_field):
        resource = _resource_values(rg.resource, rg.schema_url)
        for sg in getattr(rg, scopes_field):
            common = resource + _scope_values(sg.scope, sg.schema_url)
            rows.extend(common + values for values in record_rows(getattr(sg, records_field)))
    return rows


def _decode(signal: str, data: bytes) -> pa.RecordBatch:
    request = _parse(_LAYOUT[signal][0], data)
    v1 = _V1_SCHEMAS[signal]
    return _batch(_SCHEMAS[signal], [lean.to_lean(v1, row, ATTRS, ANYVALUE) for row in _v1_rows(signal, request)])


def decode_v1(signal: str, data: bytes) -> pa.RecordBatch:
    """The request in the layout before schema version 2 (attributes as lists of structs, a log
    body as an AnyValue struct): kept for the benchmarks, which measure both layouts."""
    return _batch(_V1_SCHEMAS[signal], _v1_rows(signal, _parse(_LAYOUT[signal][0], data)))


def _batch(schema: pa.Schema, rows: list) -> pa.RecordBatch:
    columns = zip(*rows) if rows else [()] * len(schema)
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def decode_traces(data: bytes) -> pa.RecordBatch:
    """ExportTraceServiceRequest bytes -> one row per span; raises DecodeError on bad bytes."""
    return _decode("traces", data)


def decode_metrics(data: bytes) -> pa.RecordBatch:
    """ExportMetricsServiceRequest bytes -> one row per data point; raises DecodeError on bad bytes."""
    return _decode("metrics", data)


def decode_logs(data: bytes) -> pa.RecordBatch:
    """ExportLogsServiceRequest bytes -> one row per log record; raises DecodeError on bad bytes."""
    return _decode("logs", data)


DECODERS = {"traces": decode_traces, "metrics": decode_metrics, "logs": decode_logs}


# --------------------------------------------------------------------------- rows -> protobuf


def _u64(t: int) -> int:
    """Inverse of _time: the int64 bit pattern back to the unsigned fixed64."""
    return t & (_U64 - 1)


def _to_any_value(d: dict) -> pb.AnyValue:
    t = d["type"]
    if t == 0:
        return pb.AnyValue()
    if t == 1:
        return pb.AnyValue(string_value=d["str"])
    if t == 2:
        return pb.AnyValue(bool_value=d["bool"])
    if t == 3:
        return pb.AnyValue(int_value=d["int"])
    if t == 4:
        return pb.AnyValue(double_value=d["double"])
    if t == 5:
        return pb.AnyValue(array_value=pb.ArrayValue.FromString(d["bytes"]))
    if t == 6:
        return pb.AnyValue(kvlist_value=pb.KeyValueList.FromString(d["bytes"]))
    if t == 7:
        return pb.AnyValue(bytes_value=d["bytes"])
    if t == 8:
        return pb.AnyValue(string_value_strindex=d["int"])
    raise ValueError(f"unknown AnyValue type {t}")


def _to_attrs(attrs) -> list:
    return [
        pb.KeyValue(
            key=a["key"],
            value=None if a["value"] is None else _to_any_value(a["value"]),
            key_strindex=a["key_strindex"],
        )
        for a in attrs or ()
    ]


def _to_resource(row) -> pb.Resource:
    attrs, dropped, entity_refs = row[0], row[1], row[2]
    return pb.Resource(
        attributes=_to_attrs(attrs),
        dropped_attributes_count=dropped,
        entity_refs=entity_refs or [],  # dicts with EntityRef's field names
    )


def _to_scope(row) -> pb.InstrumentationScope:
    name, version, attrs, dropped = row[5], row[6], row[7], row[8]
    return pb.InstrumentationScope(
        name=name, version=version, attributes=_to_attrs(attrs), dropped_attributes_count=dropped
    )


def _to_spans(rows) -> list:
    spans = []
    for (
        trace_id, span_id, trace_state, parent_span_id, flags, name, kind, start_time, end_time,
        attributes, dropped_attributes_count, events, dropped_events_count, links,
        dropped_links_count, status_code, status_message,
    ) in rows:  # fmt: skip
        has_status = status_code is not None or status_message is not None
        spans.append(
            pb.Span(
                trace_id=trace_id,
                span_id=span_id,
                trace_state=trace_state,
                parent_span_id=parent_span_id,
                flags=flags,
                name=name,
                kind=kind,
                start_time_unix_nano=_u64(start_time),
                end_time_unix_nano=_u64(end_time),
                attributes=_to_attrs(attributes),
                dropped_attributes_count=dropped_attributes_count,
                events=[
                    pb.Span.Event(
                        time_unix_nano=_u64(e["time"]),
                        name=e["name"],
                        attributes=_to_attrs(e["attributes"]),
                        dropped_attributes_count=e["dropped_attributes_count"],
                    )
                    for e in events or ()
                ],
                dropped_events_count=dropped_events_count,
                links=[
                    pb.Span.Link(
                        trace_id=link["trace_id"],
                        span_id=link["span_id"],
                        trace_state=link["trace_state"],
                        attributes=_to_attrs(link["attributes"]),
                        dropped_attributes_count=link["dropped_attributes_count"],
                        flags=link["flags"],
                    )
                    for link in links or ()
                ],
                dropped_links_count=dropped_links_count,
                status=pb.Status(code=status_code, message=status_message) if has_status else None,
            )
        )
    return spans


def _to_log_records(rows) -> list:
    return [
        pb.LogRecord(
            time_unix_nano=_u64(time),
            observed_time_unix_nano=_u64(observed_time),
            severity_number=severity_number,
            severity_text=severity_text,
            body=None if body is None else _to_any_value(body),
            attributes=_to_attrs(attributes),
            dropped_attributes_count=dropped_attributes_count,
            flags=flags,
            trace_id=trace_id,
            span_id=span_id,
            event_name=event_name,
        )
        for (
            time, observed_time, severity_number, severity_text, body, attributes,
            dropped_attributes_count, flags, trace_id, span_id, event_name,
        ) in rows  # fmt: skip
    ]


def _to_exemplars(exemplars) -> list:
    return [
        pb.Exemplar(
            filtered_attributes=_to_attrs(x["filtered_attributes"]),
            time_unix_nano=_u64(x["time"]),
            as_double=x["value_double"],
            as_int=x["value_int"],
            span_id=x["span_id"],
            trace_id=x["trace_id"],
        )
        for x in exemplars or ()
    ]


def _point_kwargs(p: dict) -> dict:
    return {
        "attributes": _to_attrs(p["attributes"]),
        "start_time_unix_nano": _u64(p["start_time"]),
        "time_unix_nano": _u64(p["time"]),
        "flags": p["flags"],
    }


def _to_number_point(p: dict) -> pb.NumberDataPoint:
    return pb.NumberDataPoint(
        **_point_kwargs(p),
        as_double=p["value_double"],
        as_int=p["value_int"],
        exemplars=_to_exemplars(p["exemplars"]),
    )


def _to_histogram_point(p: dict) -> pb.HistogramDataPoint:
    return pb.HistogramDataPoint(
        **_point_kwargs(p),
        count=p["count"],
        sum=p["sum"],
        min=p["min"],
        max=p["max"],
        bucket_counts=p["bucket_counts"] or [],
        explicit_bounds=p["explicit_bounds"] or [],
        exemplars=_to_exemplars(p["exemplars"]),
    )


def _to_buckets(offset, counts):
    if offset is None:
        return None
    return pb.ExponentialHistogramDataPoint.Buckets(offset=offset, bucket_counts=counts or [])


def _to_exponential_point(p: dict) -> pb.ExponentialHistogramDataPoint:
    return pb.ExponentialHistogramDataPoint(
        **_point_kwargs(p),
        count=p["count"],
        sum=p["sum"],
        min=p["min"],
        max=p["max"],
        scale=p["scale"],
        zero_count=p["zero_count"],
        zero_threshold=p["zero_threshold"],
        positive=_to_buckets(p["positive_offset"], p["positive_bucket_counts"]),
        negative=_to_buckets(p["negative_offset"], p["negative_bucket_counts"]),
        exemplars=_to_exemplars(p["exemplars"]),
    )


def _to_summary_point(p: dict) -> pb.SummaryDataPoint:
    return pb.SummaryDataPoint(
        **_point_kwargs(p),
        count=p["count"],
        sum=p["sum"],
        quantile_values=[
            pb.SummaryDataPoint.ValueAtQuantile(quantile=q["quantile"], value=q["value"])
            for q in p["quantile_values"] or ()
        ],
    )


# metric_type -> (data message, point builder)
_METRIC_TYPES = {
    "gauge": (pb.Gauge, _to_number_point),
    "sum": (pb.Sum, _to_number_point),
    "histogram": (pb.Histogram, _to_histogram_point),
    "exponential_histogram": (pb.ExponentialHistogram, _to_exponential_point),
    "summary": (pb.Summary, _to_summary_point),
}


def _to_metrics(rows) -> list:
    # Rows of the same metric (all metric_* columns equal) become one Metric, first-appearance order.
    by_metric = {}
    for row in rows:
        head = row[: len(_METRIC_FIELDS)]
        by_metric.setdefault(repr(head), (head, []))[1].append(row[len(_METRIC_FIELDS) :])
    metrics = []
    for head, points in by_metric.values():
        name, description, unit, metadata, type_, temporality, monotonic = head
        if type_ not in _METRIC_TYPES:
            raise ValueError(f"unknown metric_type {type_!r}")
        data_type, to_point = _METRIC_TYPES[type_]
        data = {"data_points": [to_point(dict(zip(_POINT_NAMES, p))) for p in points]}
        if type_ in _HAS_TEMPORALITY:
            data["aggregation_temporality"] = temporality
        if type_ == "sum":
            data["is_monotonic"] = monotonic
        metrics.append(
            pb.Metric(
                name=name,
                description=description,
                unit=unit,
                metadata=_to_attrs(metadata),
                **{type_: data_type(**data)},
            )
        )
    return metrics


# signal -> (request, its resource list, resource group, its scope list, scope group,
#            its record list, records builder)
_REBUILD = {
    "traces": (
        pb.ExportTraceServiceRequest, "resource_spans", pb.ResourceSpans, "scope_spans", pb.ScopeSpans,
        "spans", _to_spans,
    ),
    "metrics": (
        pb.ExportMetricsServiceRequest, "resource_metrics", pb.ResourceMetrics, "scope_metrics",
        pb.ScopeMetrics, "metrics", _to_metrics,
    ),
    "logs": (
        pb.ExportLogsServiceRequest, "resource_logs", pb.ResourceLogs, "scope_logs", pb.ScopeLogs,
        "log_records", _to_log_records,
    ),
}  # fmt: skip


def _physical(t: pa.DataType) -> pa.DataType:
    """`t` with every timestamp replaced by int64, so to_pylist yields exact nanosecond ints."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_list(t):
        return pa.list_(_physical(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_physical(t.field(i).type)) for i in range(t.num_fields)])
    return t


def to_request(signal: str, table: pa.Table | pa.RecordBatch, sources: pa.Table | pa.RecordBatch | None = None):
    """Rebuild one Export request from rows of `signal`'s schema (the inverse of decode_*).

    `table` holds rows of the full layout, or rows as a file stores them with `sources`, the
    file's sources table (otlpd.files.read_table joins them for you).

    Rows are grouped by (resource, resource_schema_url), then (scope, scope_schema_url), and for
    metrics by metric identity, all in first-appearance order; service_name is ignored.
    """
    schema = schema_for(signal)
    version = (table.schema.metadata or {}).get(b"otlpd.schema_version")
    if version is not None and version.decode() != SCHEMA_VERSION:
        raise ValueError(f"{signal} rows of otlpd schema version {version.decode()}, "
                         f"this otlpd reads version {SCHEMA_VERSION}")
    if "source_id" in table.schema.names:
        if sources is None:
            raise ValueError(f"{signal} rows as a file stores them need their sources table "
                             "(to_request(signal, rows, sources), or otlpd.files.read_table(path))")
        from otlpd import sources as _sources
        table = _sources.join(table, sources, schema)
    (request_type, resources_field, resource_type, scopes_field, scope_type, records_field,
     to_records) = _REBUILD[signal]  # fmt: skip
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    table = table.select(schema.names).cast(pa.schema([f.with_type(_physical(f.type)) for f in schema]))
    columns = [column.to_pylist() for column in table.columns]
    v1 = _V1_SCHEMAS[signal]
    columns = zip(*(lean.from_lean(v1, dict(zip(schema.names, values)), ATTRS, ANYVALUE)
                    for values in zip(*columns))) if table.num_rows else [()] * len(v1)

    # repr() of the column values is an exact, hashable group key (floats repr round-trip).
    groups = {}  # resource key -> (Resource, schema_url, {scope key -> (Scope, schema_url, rows)})
    for row in zip(*columns):
        rkey = repr(row[0:4])
        group = groups.get(rkey)
        if group is None:
            group = groups[rkey] = (_to_resource(row), row[3], {})
        skey = repr(row[5:_N_COMMON])
        scope = group[2].get(skey)
        if scope is None:
            scope = group[2][skey] = (_to_scope(row), row[9], [])
        scope[2].append(row[_N_COMMON:])

    return request_type(
        **{
            resources_field: [
                resource_type(
                    resource=resource,
                    schema_url=resource_url or "",
                    **{
                        scopes_field: [
                            scope_type(
                                scope=scope,
                                schema_url=scope_url or "",
                                **{records_field: to_records(rows)},
                            )
                            for scope, scope_url, rows in scopes.values()
                        ]
                    },
                )
                for resource, resource_url, scopes in groups.values()
            ]
        }
    )
