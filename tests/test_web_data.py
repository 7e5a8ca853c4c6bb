"""otlpd.web.data: bounded read-only queries over completed Arrow IPC files (real files, real decoders)."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from otlpd import files, sources
from otlpd import proto as pb
from otlpd.schema import decode_logs, decode_metrics, decode_traces, schema_for
from otlpd.web import data as data_module
from otlpd.web.data import StoredData, iso_from_ns, render_body

T0 = 1_800_000_000_000_000_000  # 2027-01-15T08:00:00Z in ns
MS = 1_000_000
OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
TID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


# ------------------------------------------------------------------ builders

def write(root: Path, signal: str, batches, seq: int, instance: str = "", mtime: int | None = None,
          table_schema: pa.Schema | None = None) -> Path:
    """A completed file named as the writer names it, with mtime (seconds) ``mtime`` or ``seq``."""
    directory = root / signal
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / files.file_name(signal, 1_800_000_000 + seq, seq, instance)
    if table_schema is None:  # rows of the full layout: stored as the writer stores them
        items = [sources.lean(batch) for batch in batches]
        sources.sources_path(path).parent.mkdir(parents=True, exist_ok=True)
        files.write_ipc_file(sources.sources_path(path), sources.SOURCES_SCHEMA,
                             [item.sources for item in items], OPTIONS)
        batches, table_schema = [item.rows for item in items], sources.rows_schema(signal)
    files.write_ipc_file(path, table_schema, batches, OPTIONS)
    seconds = 1_000_000 + (seq if mtime is None else mtime) * 10
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
    return path


def attrs(**values):
    return [pb.KeyValue(key=k.replace("_", "."), value=pb.AnyValue(int_value=v) if isinstance(v, int)
                        else pb.AnyValue(string_value=v))
            for k, v in values.items()]


def span(name, start_ms, duration_ms=1.0, trace_id=TID, span_id=1, parent=None, status=None, kind=2):
    return pb.Span(trace_id=trace_id, span_id=span_id.to_bytes(8, "big"),
                   parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name, kind=kind,
                   start_time_unix_nano=T0 + int(start_ms * MS),
                   end_time_unix_nano=T0 + int((start_ms + duration_ms) * MS), status=status)


def traces_batch(*groups) -> pa.RecordBatch:
    """groups: (service, [spans]) pairs."""
    request = pb.ExportTraceServiceRequest(resource_spans=[
        pb.ResourceSpans(resource=pb.Resource(attributes=attrs(service_name=service)),
                         scope_spans=[pb.ScopeSpans(scope=pb.InstrumentationScope(name="t"), spans=spans)])
        for service, spans in groups])
    return decode_traces(request.SerializeToString())


def log(time_ms, severity, body=None, observed_ms=None, trace_id=b"", span_id=b"", text=""):
    return pb.LogRecord(time_unix_nano=T0 + time_ms * MS if time_ms is not None else 0,
                        observed_time_unix_nano=T0 + observed_ms * MS if observed_ms is not None else 0,
                        severity_number=severity, severity_text=text, body=body,
                        trace_id=trace_id, span_id=span_id)


def logs_batch(records, service="api") -> pa.RecordBatch:
    request = pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
        resource=pb.Resource(attributes=attrs(service_name=service)),
        scope_logs=[pb.ScopeLogs(scope=pb.InstrumentationScope(name="t"), log_records=records)])])
    return decode_logs(request.SerializeToString())


def metrics_batch(metrics, service="api") -> pa.RecordBatch:
    request = pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource=pb.Resource(attributes=attrs(service_name=service)),
        scope_metrics=[pb.ScopeMetrics(scope=pb.InstrumentationScope(name="t"), metrics=metrics)])])
    return decode_metrics(request.SerializeToString())


def sum_metric(name, points):
    """points: (time_ms, value, {attr: str}); ints become as_int, floats as_double."""
    data_points = []
    for time_ms, value, point_attrs in points:
        kwargs = {"as_int": value} if isinstance(value, int) else {"as_double": value}
        data_points.append(pb.NumberDataPoint(time_unix_nano=T0 + time_ms * MS,
                                              attributes=attrs(**point_attrs), **kwargs))
    return pb.Metric(name=name, unit="1", description="requests served", sum=pb.Sum(
        data_points=data_points, is_monotonic=True, aggregation_temporality=2))


def histogram_metric(name, points):
    """points: (time_ms, count, sum or None)."""
    return pb.Metric(name=name, unit="ms", histogram=pb.Histogram(aggregation_temporality=2, data_points=[
        pb.HistogramDataPoint(time_unix_nano=T0 + t * MS, count=count, sum=total,
                              bucket_counts=[count], explicit_bounds=[])
        for t, count, total in points]))


def spans_named(result):
    return [s["name"] for s in result["spans"]]


# ------------------------------------------------------------------ formatting and arguments

def test_iso_from_ns_keeps_nanoseconds():
    assert iso_from_ns(0) == "1970-01-01T00:00:00.000000000Z"
    assert iso_from_ns(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    assert iso_from_ns(T0 + 123_456_789) == "2027-01-15T08:00:00.123456789Z"
    assert iso_from_ns(-1) == "1969-12-31T23:59:59.999999999Z"
    assert iso_from_ns(None) is None


def test_unknown_signal_is_a_value_error(tmp_path):
    stored = StoredData(tmp_path)
    with pytest.raises(ValueError):
        stored.recent_files("profiles")
    with pytest.raises(ValueError):
        stored.disk_usage("spans")


def test_missing_output_dir_answers_empty(tmp_path):
    stored = StoredData(tmp_path / "nothing-here")
    assert stored.recent_files("traces") == []
    assert stored.disk_usage("logs") == {"completed_files": 0, "completed_bytes": 0, "in_progress_bytes": 0}
    assert stored.services() == []
    assert stored.spans() == {"spans": [], "scanned": {"files": 0, "rows": 0, "truncated": False}}
    assert stored.trace(TID) is None
    assert stored.logs()["logs"] == []
    assert stored.metric_names()["metrics"] == []
    assert stored.metric_points("x")["points"] == []


# ------------------------------------------------------------------ files

def test_recent_files_newest_by_mtime_with_rows_and_time_range(tmp_path):
    # Two instances: seq 7 of instance a is *older* than seq 1 of instance b.
    old = write(tmp_path, "traces", [traces_batch(("api", [span("a", 0, 5), span("b", 2, 1)]))], seq=7,
                instance="a", mtime=1)
    new = write(tmp_path, "traces", [traces_batch(("api", [span("c", 100, 10)])),
                                     traces_batch(("api", [span("d", 50, 1)]))], seq=1, instance="b", mtime=2)
    part = tmp_path / "traces" / (files.file_name("traces", 1_800_000_100, 2, "b") + ".part")
    part.write_bytes(b"ARROW1\x00\x00 in progress")

    listed = StoredData(tmp_path).recent_files("traces")
    assert [f["name"] for f in listed] == [new.name, old.name]
    first = listed[0]
    assert first["path"] == str(new)
    assert first["bytes"] == new.stat().st_size + sources.sources_path(new).stat().st_size  # with its sources
    assert (first["rows"], first["batches"]) == (2, 2)
    assert first["min_time"] == "2027-01-15T08:00:00.050000000Z"
    assert first["max_time"] == "2027-01-15T08:00:00.110000000Z"  # c ends at 100 + 10 ms
    assert first["modified"] == "1970-01-12T13:47:00.000000000Z"  # mtime 1_000_020 s
    assert (listed[1]["rows"], listed[1]["min_time"], listed[1]["max_time"]) == (
        2, "2027-01-15T08:00:00.000000000Z", "2027-01-15T08:00:00.005000000Z")
    assert [f["name"] for f in StoredData(tmp_path).recent_files("traces", limit=1)] == [new.name]


def test_recent_files_logs_fall_back_to_observed_time_and_metrics_use_time(tmp_path):
    write(tmp_path, "logs", [logs_batch([log(None, 9, observed_ms=30), log(10, 9), log(20, 9)])], seq=1)
    write(tmp_path, "metrics", [metrics_batch([sum_metric("m", [(5, 1, {}), (7, 2, {})])])], seq=1)
    stored = StoredData(tmp_path)
    [logs_file] = stored.recent_files("logs")
    assert (logs_file["min_time"], logs_file["max_time"]) == (
        "2027-01-15T08:00:00.010000000Z", "2027-01-15T08:00:00.030000000Z")
    [metrics_file] = stored.recent_files("metrics")
    assert (metrics_file["rows"], metrics_file["min_time"], metrics_file["max_time"]) == (
        2, "2027-01-15T08:00:00.005000000Z", "2027-01-15T08:00:00.007000000Z")


def test_recent_files_cache_does_not_reopen_completed_files(tmp_path, monkeypatch):
    write(tmp_path, "traces", [traces_batch(("api", [span("a", 0)]))], seq=1)
    write(tmp_path, "traces", [traces_batch(("api", [span("b", 1)]))], seq=2)
    opened = []
    real_open = pa.ipc.open_file
    monkeypatch.setattr(pa.ipc, "open_file", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    stored = StoredData(tmp_path)
    first = stored.recent_files("traces")
    assert opened, "the first call reads the files"
    opened.clear()
    assert stored.recent_files("traces") == first
    assert opened == []
    third = write(tmp_path, "traces", [traces_batch(("api", [span("c", 2)]))], seq=3)
    listed = stored.recent_files("traces")
    assert listed[0]["name"] == third.name and listed[1:] == first
    assert opened and len(opened) <= 2  # only the new file (schema, then its projected columns)


def test_recent_files_skip_unreadable_and_vanished_files(tmp_path):
    good = write(tmp_path, "logs", [logs_batch([log(1, 9)])], seq=1)
    bad = tmp_path / "logs" / files.file_name("logs", 1_800_000_002, 2)
    bad.write_bytes(b"not an arrow file at all")
    os.utime(bad, (2_000_000, 2_000_000))
    stored = StoredData(tmp_path)
    assert [f["name"] for f in stored.recent_files("logs")] == [good.name]
    assert stored.logs()["logs"][0]["time"] == "2027-01-15T08:00:00.001000000Z"
    assert stored.logs()["scanned"]["files"] == 1


def test_disk_usage_counts_completed_and_in_progress(tmp_path):
    a = write(tmp_path, "metrics", [metrics_batch([sum_metric("m", [(1, 1, {})])])], seq=1)
    b = write(tmp_path, "metrics", [metrics_batch([sum_metric("m", [(2, 2, {})])])], seq=2)
    part = tmp_path / "metrics" / (files.file_name("metrics", 1_800_000_003, 3) + ".part")
    part.write_bytes(b"x" * 1234)
    (tmp_path / "metrics" / "notes.txt").write_text("ignored")
    assert StoredData(tmp_path).disk_usage("metrics") == {
        "completed_files": 2, "completed_bytes": sum(path.stat().st_size + sources.sources_path(path).stat().st_size
                                                     for path in (a, b)),
        "in_progress_bytes": 1234}
    assert StoredData(tmp_path).disk_usage("traces")["completed_files"] == 0


# ------------------------------------------------------------------ traces

def test_services_distinct_sorted_and_verbatim(tmp_path):
    write(tmp_path, "traces",
          [traces_batch(("web", [span("a", 0)]), ("<script>alert(1)</script>", [span("b", 1)]))], seq=1)
    write(tmp_path, "traces", [traces_batch(("api", [span("c", 2)]), ("web", [span("d", 3)]))], seq=2)
    assert StoredData(tmp_path).services() == ["<script>alert(1)</script>", "api", "web"]


def test_spans_newest_first_filters_and_limit(tmp_path):
    write(tmp_path, "traces", [traces_batch(("api", [span("GET /cart", 10, 2.5, span_id=1),
                                                     span("POST /pay", 30, 1, span_id=2)]))], seq=1)
    write(tmp_path, "traces", [traces_batch(("web", [span("get /CART items", 20, span_id=3)]),
                                            ("api", [span("<script>x</script>", 40, span_id=4, parent=1)]))],
          seq=2)
    stored = StoredData(tmp_path)
    everything = stored.spans()
    assert spans_named(everything) == ["<script>x</script>", "POST /pay", "get /CART items", "GET /cart"]
    assert everything["scanned"] == {"files": 2, "rows": 4, "truncated": False}
    assert spans_named(stored.spans(service="api")) == ["<script>x</script>", "POST /pay", "GET /cart"]
    assert spans_named(stored.spans(name="cart")) == ["get /CART items", "GET /cart"]
    assert spans_named(stored.spans(service="api", name="CART")) == ["GET /cart"]
    assert spans_named(stored.spans(service="nobody")) == []
    assert spans_named(stored.spans(limit=2)) == ["<script>x</script>", "POST /pay"]
    assert spans_named(stored.spans(limit=0)) == []

    oldest = everything["spans"][-1]
    assert oldest == {
        "trace_id": TID.hex(), "span_id": "0000000000000001", "parent_span_id": "", "service": "api",
        "name": "GET /cart", "kind": 2, "start_time": "2027-01-15T08:00:00.010000000Z",
        "start_unix_nano": T0 + 10 * MS, "duration_ms": 2.5, "status_code": 0, "status_message": None}
    assert everything["spans"][0]["parent_span_id"] == "0000000000000001"


def test_span_status_and_null_end_time(tmp_path):
    batch = traces_batch(("api", [span("failed", 0, status=pb.Status(code=2, message="boom")),
                                  span("open", 1, span_id=2)]))
    end_time = pa.array([T0 + 5 * MS, None], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    batch = batch.set_column(batch.schema.get_field_index("end_time"), "end_time", end_time)
    write(tmp_path, "traces", [batch], seq=1)
    failed, open_span = sorted(StoredData(tmp_path).spans()["spans"], key=lambda s: s["name"])
    assert (failed["status_code"], failed["status_message"], failed["duration_ms"]) == (2, "boom", 5.0)
    assert open_span["duration_ms"] is None
    trace = StoredData(tmp_path).trace(TID)
    assert trace["duration_ms"] == 5.0


def test_trace_waterfall_order_depth_and_orphan(tmp_path):
    other = bytes(16 * [7])
    # root(1) -> a(2, starts 20) -> grandchild(4); root -> b(3, starts 5); orphan(5)'s parent 99 is absent.
    write(tmp_path, "traces", [traces_batch(("api", [
        span("root", 0, 100, span_id=1), span("a", 20, 30, span_id=2, parent=1),
        span("unrelated", 0, span_id=9, trace_id=other)]))], seq=1)
    write(tmp_path, "traces", [traces_batch(("db", [span("grandchild", 25, 5, span_id=4, parent=2),
                                                    span("b", 5, 10, span_id=3, parent=1),
                                                    span("orphan", 2, 200, span_id=5, parent=99)]))], seq=2)
    stored = StoredData(tmp_path)
    trace = stored.trace(TID)
    assert [(s["name"], s["depth"]) for s in trace["spans"]] == [
        ("root", 0), ("b", 1), ("a", 1), ("grandchild", 2), ("orphan", 0)]
    assert [s["offset_ms"] for s in trace["spans"]] == [0.0, 5.0, 20.0, 25.0, 2.0]
    assert trace["trace_id"] == TID.hex()
    assert trace["start_time"] == "2027-01-15T08:00:00.000000000Z"
    assert trace["duration_ms"] == 202.0  # the orphan ends last
    assert trace["scanned"] == {"files": 2, "rows": 6, "truncated": False}
    assert {s["service"] for s in trace["spans"]} == {"api", "db"}
    assert stored.trace(TID.hex())["spans"] == trace["spans"]
    assert [s["name"] for s in stored.trace(other)["spans"]] == ["unrelated"]
    assert stored.trace(bytes(16)) is None


def test_trace_parent_cycle_does_not_hang_or_lose_spans(tmp_path):
    write(tmp_path, "traces", [traces_batch(("api", [span("x", 0, span_id=1, parent=2),
                                                     span("y", 1, span_id=2, parent=1),
                                                     span("self", 2, span_id=3, parent=3)]))], seq=1)
    trace = StoredData(tmp_path).trace(TID)
    assert sorted(s["name"] for s in trace["spans"]) == ["self", "x", "y"]
    # Roots by start time; x, the earliest span of the x <-> y cycle, stands in as its root.
    assert [(s["name"], s["depth"]) for s in trace["spans"]] == [("x", 0), ("y", 1), ("self", 0)]


# ------------------------------------------------------------------ logs

def test_logs_severity_filter_order_and_body_rendering(tmp_path):
    kv = pb.KeyValueList(values=[pb.KeyValue(key="k", value=pb.AnyValue(int_value=1))])
    write(tmp_path, "logs", [logs_batch([
        log(1, 9, pb.AnyValue(string_value="<b>hello</b>"), trace_id=TID, span_id=bytes(range(8)),
            text="INFO"),
        log(2, 13, pb.AnyValue(int_value=42), text="WARN"),
        log(3, 17, pb.AnyValue(double_value=1.5)),
        log(4, 17, pb.AnyValue(bool_value=True)),
    ])], seq=1)
    write(tmp_path, "logs", [logs_batch([
        log(5, 21, pb.AnyValue(bytes_value=b"\x01\xff")),
        log(6, 5, pb.AnyValue(array_value=pb.ArrayValue(values=[pb.AnyValue(string_value="a")]))),
        log(7, 5, pb.AnyValue(kvlist_value=kv)),
        log(None, 5, None, observed_ms=8),  # no body; time 0: observed_time stands in
        log(9, 1, pb.AnyValue()),  # an empty AnyValue
    ], service="worker")], seq=2)
    stored = StoredData(tmp_path)
    everything = stored.logs()["logs"]
    assert [entry["body"] for entry in everything] == [
        "", "", "<kvlist>", "<array>", "01ff", "True", "1.5", "42", "<b>hello</b>"]
    assert [entry["time"][-12:] for entry in everything] == [
        f"0.00{t}000000Z" for t in (9, 8, 7, 6, 5, 4, 3, 2, 1)]
    hello = everything[-1]
    assert hello == {"time": "2027-01-15T08:00:00.001000000Z", "service": "api", "severity_number": 9,
                     "severity_text": "INFO", "body": "<b>hello</b>", "trace_id": TID.hex(),
                     "span_id": "0001020304050607"}
    assert everything[0]["service"] == "worker" and everything[0]["trace_id"] == ""
    warned = stored.logs(severity_min=13)
    assert [entry["severity_number"] for entry in warned["logs"]] == [21, 17, 17, 13]
    assert warned["scanned"] == {"files": 2, "rows": 9, "truncated": False}
    assert [entry["body"] for entry in stored.logs(limit=3)["logs"]] == ["", "", "<kvlist>"]


def test_render_body_kinds():
    assert render_body(None) == ""
    assert render_body({"type": 0}) == ""
    assert render_body({"type": 1, "str": "<script>"}) == "<script>"
    assert render_body({"type": 2, "bool": False}) == "False"
    assert render_body({"type": 7, "bytes": b"\x00\x10"}) == "0010"
    assert render_body({"type": 5, "bytes": b"\x0a\x00"}) == "<array>"
    assert render_body("plain") == "plain"


# ------------------------------------------------------------------ metrics

def write_metrics(tmp_path):
    write(tmp_path, "metrics", [metrics_batch([
        sum_metric("requests", [(1, 10, {"route": "/a", "code": 200}), (2, 20, {"route": "/b"})]),
        histogram_metric("latency", [(1, 4, 100.0), (2, 2, None)]),
    ])], seq=1)
    write(tmp_path, "metrics", [metrics_batch([
        sum_metric("requests", [(3, 30.5, {"route": "<script>"}), (4, 40, {})]),
        histogram_metric("latency", [(3, 5, 50.0)]),
    ], service="web")], seq=2)


def test_metric_names_with_point_counts(tmp_path):
    write_metrics(tmp_path)
    result = StoredData(tmp_path).metric_names()
    assert result["metrics"] == [
        {"name": "latency", "type": "histogram", "unit": "ms", "description": "", "points": 3},
        {"name": "requests", "type": "sum", "unit": "1", "description": "requests served", "points": 4},
    ]
    assert result["scanned"] == {"files": 2, "rows": 7, "truncated": False}


def test_metric_points_sum_since_limit_and_order(tmp_path):
    write_metrics(tmp_path)
    stored = StoredData(tmp_path)
    result = stored.metric_points("requests")
    assert (result["name"], result["type"], result["unit"]) == ("requests", "sum", "1")
    assert [p["value"] for p in result["points"]] == [10.0, 20.0, 30.5, 40.0]
    assert [p["time_unix_nano"] for p in result["points"]] == [T0 + t * MS for t in (1, 2, 3, 4)]
    assert result["points"][0] == {"time": "2027-01-15T08:00:00.001000000Z", "time_unix_nano": T0 + MS,
                                   "value": 10.0, "count": None, "service": "api",
                                   "attributes": {"route": "/a", "code": 200}}  # an int stays an int
    assert result["points"][2]["attributes"] == {"route": "<script>"}
    assert [p["value"] for p in stored.metric_points("requests", since_unix_nano=T0 + 2 * MS)["points"]] == [
        30.5, 40.0]
    assert [p["value"] for p in stored.metric_points("requests", limit=3)["points"]] == [20.0, 30.5, 40.0]
    newest = stored.metric_points("requests", since_unix_nano=T0, limit=1)
    assert [p["value"] for p in newest["points"]] == [40.0]
    missing = stored.metric_points("nope")
    assert (missing["points"], missing["type"]) == ([], None)


def test_metric_points_histogram_sum_and_count(tmp_path):
    write_metrics(tmp_path)
    result = StoredData(tmp_path).metric_points("latency")
    assert result["type"] == "histogram" and result["unit"] == "ms"
    assert [(p["value"], p["count"]) for p in result["points"]] == [(100.0, 4), (2.0, 2), (50.0, 5)]
    assert [p["service"] for p in result["points"]] == ["api", "api", "web"]


def test_other_column_encodings_are_read(tmp_path):
    batch = traces_batch(("api", [span("GET /a", 0)]), ("web", [span("GET /b", 1, span_id=2)]))
    index = batch.schema.get_field_index("service_name")
    batch = batch.set_column(index, "service_name", batch.column(index).dictionary_encode())
    index = batch.schema.get_field_index("name")
    batch = batch.set_column(index, "name", batch.column(index).cast(pa.large_string()))
    write(tmp_path, "traces", [batch], seq=1, table_schema=batch.schema)
    stored = StoredData(tmp_path)
    assert spans_named(stored.spans(service="web", name="get")) == ["GET /b"]
    assert stored.services() == ["api", "web"]


def test_metric_point_attributes_as_map_or_unknown_layout(tmp_path):
    batch = metrics_batch([sum_metric("m", [(1, 1, {}), (2, 2, {})])])
    index = batch.schema.get_field_index("attributes")
    as_map = pa.array([[("host", "h1"), ("zone", "<z>")], []], pa.map_(pa.string(), pa.string()))
    mapped = batch.set_column(index, "attributes", as_map)
    write(tmp_path, "metrics", [mapped], seq=1, table_schema=mapped.schema)
    assert [p["attributes"] for p in StoredData(tmp_path).metric_points("m")["points"]] == [
        {"host": "h1", "zone": "<z>"}, {}]
    odd = batch.set_column(index, "attributes", pa.array([3, 4], pa.int64()))
    write(tmp_path, "metrics", [odd], seq=2, table_schema=odd.schema)
    points = StoredData(tmp_path, max_files=1).metric_points("m")["points"]
    assert [(p["value"], p["attributes"]) for p in points] == [(1.0, {}), (2.0, {})]


# ------------------------------------------------------------------ budgets and robustness

def test_file_budget_reads_only_the_newest_files(tmp_path):
    write(tmp_path, "traces", [traces_batch(("api", [span("old", 0)]))], seq=1, mtime=1)
    write(tmp_path, "traces", [traces_batch(("web", [span("new", -5)]))], seq=2, mtime=3)
    write(tmp_path, "traces", [traces_batch(("db", [span("middle", 10)]))], seq=3, mtime=2)
    one = StoredData(tmp_path, max_files=1)
    result = one.spans()
    assert spans_named(result) == ["new"]
    assert result["scanned"] == {"files": 1, "rows": 1, "truncated": True}
    assert one.services() == ["web"]
    two = StoredData(tmp_path, max_files=2).spans()
    assert spans_named(two) == ["middle", "new"] and two["scanned"]["truncated"] is True
    assert StoredData(tmp_path, max_files=3).spans()["scanned"]["truncated"] is False


def test_row_budget_stops_before_exceeding_reading_newest_batches_first(tmp_path):
    older = [traces_batch(("api", [span(f"old{i}", i, span_id=i + 1) for i in range(10)]))]
    write(tmp_path, "traces", older, seq=1)
    first_batch = traces_batch(("api", [span(f"b1-{i}", 100 + i, span_id=20 + i) for i in range(4)]))
    second_batch = traces_batch(("api", [span(f"b2-{i}", 50 + i, span_id=40 + i) for i in range(4)]))
    write(tmp_path, "traces", [first_batch, second_batch], seq=2)

    result = StoredData(tmp_path, max_rows=6).spans()
    assert result["scanned"] == {"files": 1, "rows": 6, "truncated": True}
    # The last batch (newest written) is read first, then the newest rows of the one before.
    assert sorted(spans_named(result)) == ["b1-2", "b1-3", "b2-0", "b2-1", "b2-2", "b2-3"]
    exact = StoredData(tmp_path, max_rows=8).spans()
    assert exact["scanned"] == {"files": 1, "rows": 8, "truncated": True}  # the older file is left unread
    everything = StoredData(tmp_path, max_rows=18).spans()
    assert everything["scanned"] == {"files": 2, "rows": 18, "truncated": False}
    trace_scan = StoredData(tmp_path, max_rows=3).trace(TID)["scanned"]
    assert trace_scan == {"files": 1, "rows": 3, "truncated": True}


def test_part_files_are_never_read(tmp_path):
    complete = write(tmp_path, "logs", [logs_batch([log(1, 9, pb.AnyValue(string_value="done"))])], seq=1)
    part = tmp_path / "logs" / (files.file_name("logs", 1_800_000_002, 2) + ".part")
    files.write_ipc_file(part, schema_for("logs"),
                         [logs_batch([log(2, 9, pb.AnyValue(string_value="in progress"))])], OPTIONS)
    stored = StoredData(tmp_path)
    assert [entry["body"] for entry in stored.logs()["logs"]] == ["done"]
    assert [f["name"] for f in stored.recent_files("logs")] == [complete.name]


def test_file_deleted_between_listing_and_reading_is_skipped(tmp_path, monkeypatch):
    doomed = write(tmp_path, "traces", [traces_batch(("api", [span("doomed", 0)]))], seq=1)
    write(tmp_path, "traces", [traces_batch(("api", [span("kept", 1, span_id=2)]))], seq=2)
    real_listing = StoredData._listing

    def listing_then_retention(self, signal):
        result = real_listing(self, signal)
        doomed.unlink(missing_ok=True)
        return result

    monkeypatch.setattr(StoredData, "_listing", listing_then_retention)
    stored = StoredData(tmp_path)
    result = stored.spans()
    assert spans_named(result) == ["kept"]
    assert result["scanned"] == {"files": 1, "rows": 1, "truncated": False}
    assert [f["name"] for f in stored.recent_files("traces")] != []
    assert all(f["name"] != doomed.name for f in stored.recent_files("traces"))


def test_queries_read_only_the_columns_they_need(tmp_path, monkeypatch):
    write(tmp_path, "traces", [traces_batch(("api", [span("a", 0)]))], seq=1)
    included = []
    real_open = pa.ipc.open_file

    def recording_open(source, *args, options=None, **kwargs):
        if options is not None:
            included.append(list(options.included_fields))
        return real_open(source, *args, options=options, **kwargs)

    monkeypatch.setattr(pa.ipc, "open_file", recording_open)
    assert spans_named(StoredData(tmp_path).spans()) == ["a"]
    names = sources.rows_schema("traces").names
    assert len(included) == 1 and included[0]
    read = {names[i] for i in included[0]}
    assert read == set(data_module._SPAN_COLUMNS)
    assert "attributes" not in read and "events" not in read
