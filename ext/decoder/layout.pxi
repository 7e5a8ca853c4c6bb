# Import-time column layout: SPECS, ROW_SPECS, SRC_SPEC and ROW_MAP (driver.pxi) from the
# schemas of otlpd.schema and otlpd.sources (_SCHEMAS/_ROW_SCHEMAS in api.pxi), after
# checking that their columns are in the order the decoders write them (_LAYOUT). _fill_specs() runs at the end of
# ext/_decoder.pyx.

def _spec_nodes(t, out):
    if t == _schema.ANYVALUE:
        out.append((C_STRUCT, 0, t.num_fields, F_ANYVALUE))
        for i in range(t.num_fields):
            _spec_nodes(t.field(i).type, out)
    elif pa.types.is_struct(t):
        out.append((C_STRUCT, 0, t.num_fields, 0))
        for i in range(t.num_fields):
            _spec_nodes(t.field(i).type, out)
    elif pa.types.is_map(t):
        # map<K, V> is laid out as list<struct<key: K, value: V>> (pa.types.is_list is
        # False for it): two buffers, one child of two fields
        out.append((C_LIST, 0, 1, 0))
        out.append((C_STRUCT, 0, 2, 0))
        _spec_nodes(t.key_type, out)
        _spec_nodes(t.item_type, out)
    elif pa.types.is_list(t):
        out.append((C_LIST, 0, 1, 0))
        _spec_nodes(t.value_type, out)
    elif pa.types.is_string(t) or pa.types.is_binary(t):
        out.append((C_BIN, 0, 0, 0))
    elif pa.types.is_boolean(t):
        out.append((C_BOOL, 0, 0, 0))
    elif pa.types.is_primitive(t) and t.bit_width in (8, 32, 64):
        out.append((C_PRIM, t.bit_width // 8, 0, 0))
    else:
        raise ImportError(f"unsupported Arrow type {t}")


def _type_depth(t):
    """Nesting levels of an Arrow type (a primitive is 1)."""
    if pa.types.is_struct(t):
        return 1 + max((_type_depth(t.field(i).type) for i in range(t.num_fields)), default=0)
    if pa.types.is_map(t):
        return 2 + max(_type_depth(t.key_type), _type_depth(t.item_type))
    if pa.types.is_list(t):
        return 1 + _type_depth(t.value_type)
    return 1


def _site(name):
    """An attribute site: the map, its types and its side list, side by side."""
    return [name, name + "_types", name + "_other"]


_COMMON = (_site("resource_attributes") + ["resource_dropped_attributes_count",
           "resource_entity_refs", "resource_schema_url", "service_name", "scope_name",
           "scope_version"] + _site("scope_attributes") + ["scope_dropped_attributes_count",
           "scope_schema_url"])
_LAYOUT = (
    _COMMON + ["trace_id", "span_id", "trace_state", "parent_span_id", "flags", "name", "kind",
               "start_time", "end_time"] + _site("attributes") + ["dropped_attributes_count",
               "events", "dropped_events_count", "links", "dropped_links_count", "status_code",
               "status_message"],
    _COMMON + ["metric_name", "metric_description", "metric_unit"] + _site("metric_metadata")
    + ["metric_type", "aggregation_temporality", "is_monotonic"] + _site("attributes")
    + ["start_time", "time", "flags", "value_double", "value_int", "count", "sum", "min",
       "max", "bucket_counts", "explicit_bounds", "scale", "zero_count",
       "zero_threshold", "positive_offset", "positive_bucket_counts", "negative_offset",
       "negative_bucket_counts", "quantile_values", "exemplars"],
    _COMMON + ["time", "observed_time", "severity_number", "severity_text", "body", "body_other"]
    + _site("attributes") + ["dropped_attributes_count", "flags", "trace_id", "span_id",
                             "event_name"],
)
# Inside the structs the decoders write by position too: events, links, exemplars.
_NESTED = (
    ("traces", "events", ["time", "name"] + _site("attributes") + ["dropped_attributes_count"]),
    ("traces", "links", ["trace_id", "span_id", "trace_state"] + _site("attributes")
     + ["dropped_attributes_count", "flags"]),
    ("metrics", "exemplars", _site("filtered_attributes") + ["time", "value_double", "value_int",
                                                            "span_id", "trace_id"]),
)
_ATTRS_OTHER = ["index", "key", "value", "key_strindex"]


def _check_nested():
    """The struct fields (and the attribute sites' types) the decoders write by position."""
    for signal, column, names in _NESTED:
        t = _schema.schema_for(signal).field(column).type.value_type
        if [t.field(i).name for i in range(t.num_fields)] != names:
            raise ImportError(f"otlpd._decoder was written for another {signal} {column} struct")
    for sig in range(3):
        for field in _SCHEMAS[sig]:
            if field.name.endswith("_other") and field.name != "body_other":
                t = field.type.value_type
                if ([t.field(i).name for i in range(t.num_fields)] != _ATTRS_OTHER
                        or t.field(2).type != _schema.ANYVALUE):
                    raise ImportError(f"otlpd._decoder was written for another {field.name}")
                base = field.name[:-len("_other")]
                if not pa.types.is_map(_SCHEMAS[sig].field(base).type):
                    raise ImportError(f"otlpd._decoder was written for another {base}")


cdef int _fill_spec(Spec* out, object t, str what) except -1:
    nodes = []
    _spec_nodes(t, nodes)
    if _type_depth(t) >= MERGE_MAX_DEPTH:
        raise ImportError(f"{what} too deep for merge()")
    if len(nodes) > MAX_SPEC:
        raise ImportError(f"{what} too large for the decoder")
    for i, (kind, width, n, flags) in enumerate(nodes):
        out[i].kind = kind
        out[i].width = width
        out[i].n_children = n
        out[i].flags = flags
    return len(nodes)


def _fill_specs():
    global SRC_SPEC_LEN
    _check_nested()
    full_common = _SCHEMAS[0].names[:len(_COMMON)]
    if ([full_common[SRC_MAP[j]] for j in range(N_SRC_COLS)] != _sources.SOURCES_SCHEMA.names[1:]
            or full_common[COL_SERVICE] != "service_name"
            or _sources.SOURCES_SCHEMA.field(0) != _sources.SOURCE_ID):
        raise ImportError("otlpd._decoder was written for another sources schema")
    SRC_SPEC_LEN = _fill_spec(SRC_SPEC, pa.struct(list(_sources.SOURCES_SCHEMA)), "sources schema")
    for sig in range(3):
        schema = _SCHEMAS[sig]
        if schema.names != _LAYOUT[sig]:
            raise ImportError(f"otlpd._decoder was written for another {_SIGNALS[sig]} schema")
        # decoding trees: the full layout, then source_id
        SPEC_LEN[sig] = _fill_spec(SPECS[sig], pa.struct(list(schema) + [_sources.SOURCE_ID]),
                                   f"{_SIGNALS[sig]} schema")
        SRC_COL[sig] = len(schema)
        rows = _ROW_SCHEMAS[sig]
        ROW_SPEC_LEN[sig] = _fill_spec(ROW_SPECS[sig], pa.struct(list(rows)), f"{_SIGNALS[sig]} rows")
        names = schema.names + ["source_id"]
        if len(rows) > 128:
            raise ImportError("too many columns for the decoder")
        for j, field in enumerate(rows):
            ROW_MAP[sig][j] = names.index(field.name)
        ROW_N[sig] = len(rows)
