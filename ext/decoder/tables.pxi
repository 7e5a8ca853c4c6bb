# Import-time field tables: FKIND/FSUB (validate.pxi) and MT (common.pxi) from the
# protobuf descriptors; _MT_NAMES lists the message types in the order of the M_*
# constants. _fill_field_tables() runs at the end of ext/_decoder.pyx.

# ---------------------------------------------------------------- import-time setup

def _fill_field_tables():
    """FKIND/FSUB from the protobuf descriptors (field numbers, types, labels)."""
    ids = {}
    F = FieldDescriptor
    varint = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_INT32, F.TYPE_UINT32, F.TYPE_BOOL,
              F.TYPE_ENUM, F.TYPE_SINT32, F.TYPE_SINT64}
    f64 = {F.TYPE_DOUBLE, F.TYPE_FIXED64, F.TYPE_SFIXED64}
    f32 = {F.TYPE_FLOAT, F.TYPE_FIXED32, F.TYPE_SFIXED32}

    def register(desc):
        if desc.full_name in ids:
            return ids[desc.full_name]
        mid = len(ids)
        if mid >= MAX_MSGS:
            raise ImportError("too many message types for the decoder tables")
        ids[desc.full_name] = mid
        for f in desc.fields:
            if f.number >= MAXF:
                raise ImportError(f"field number {f.number} of {desc.full_name} too large")
            repeated = f.is_repeated
            if f.type in varint:
                kind = K_REP_VARINT if repeated else K_VARINT
            elif f.type in f64:
                kind = K_REP_F64 if repeated else K_F64
            elif f.type in f32:
                kind = K_REP_F32 if repeated else K_F32
            elif f.type == F.TYPE_STRING:
                kind = K_STRING
            elif f.type == F.TYPE_BYTES:
                kind = K_BYTES
            elif f.type == F.TYPE_MESSAGE:
                kind = K_MSG
            else:
                raise ImportError(f"unsupported field type {f.type} in {desc.full_name}")
            FKIND[mid * MAXF + f.number] = kind
            if kind == K_MSG:
                FSUB[mid * MAXF + f.number] = register(f.message_type)
        return mid

    memset(FKIND, 0, sizeof(FKIND))
    memset(FSUB, 0, sizeof(FSUB))
    for request in (ExportTraceServiceRequest, ExportMetricsServiceRequest,
                    ExportLogsServiceRequest):
        register(request.DESCRIPTOR)
    for i, name in enumerate(_MT_NAMES):
        MT[i] = ids["opentelemetry.proto." + name]


# The message types the decoders handle, in the order of the M_* constants.
_MT_NAMES = [
    "collector.trace.v1.ExportTraceServiceRequest",
    "collector.metrics.v1.ExportMetricsServiceRequest",
    "collector.logs.v1.ExportLogsServiceRequest",
    "trace.v1.ResourceSpans", "metrics.v1.ResourceMetrics", "logs.v1.ResourceLogs",
    "trace.v1.ScopeSpans", "metrics.v1.ScopeMetrics", "logs.v1.ScopeLogs",
    "resource.v1.Resource", "common.v1.InstrumentationScope", "common.v1.KeyValue",
    "common.v1.AnyValue", "common.v1.ArrayValue", "common.v1.KeyValueList",
    "common.v1.EntityRef", "trace.v1.Span", "trace.v1.Span.Event", "trace.v1.Span.Link",
    "trace.v1.Status", "logs.v1.LogRecord", "metrics.v1.Metric", "metrics.v1.Gauge",
    "metrics.v1.Sum", "metrics.v1.Histogram", "metrics.v1.ExponentialHistogram",
    "metrics.v1.Summary", "metrics.v1.NumberDataPoint", "metrics.v1.HistogramDataPoint",
    "metrics.v1.ExponentialHistogramDataPoint",
    "metrics.v1.ExponentialHistogramDataPoint.Buckets", "metrics.v1.SummaryDataPoint",
    "metrics.v1.SummaryDataPoint.ValueAtQuantile", "metrics.v1.Exemplar",
]
assert len(_MT_NAMES) == M_COUNT
