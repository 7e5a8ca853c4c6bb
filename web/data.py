"""The dashboard's read-only view of *stored* telemetry: completed Arrow IPC files, always bounded.

Only completed ``<output_dir>/<signal>/*.arrow`` files are read (never the
``.arrow.part`` in progress), newest first by modification time (several
worker processes write into one directory, each with its own sequence
numbers, so the sequence alone does not order them). Every query reads at
most ``max_files`` files and ``max_rows`` rows: record batches are read
newest first within a file, only the top-level columns the query needs are
decoded (``IpcReadOptions(included_fields=...)``), filtering happens in
``pyarrow.compute``, and only the few rows of the answer become Python
objects. Each answer says what it scanned: ``{"files", "rows", "truncated"}``.

A file deleted by retention or unreadable while a query runs is skipped.
Nothing here escapes text for HTML: the pages do that.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from otlpd import attributes as lean
from otlpd import files, schema, sources

log = logging.getLogger(__name__)

# Errors of a file that vanished (retention), is truncated, corrupt or not readable.
_READ_ERRORS = (OSError, pa.ArrowException, ValueError, IndexError)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HISTOGRAM_TYPES = frozenset({"histogram", "exponential_histogram", "summary"})

_SPAN_COLUMNS = ("trace_id", "span_id", "parent_span_id", "service_name", "name", "kind",
                 "start_time", "end_time", "status_code", "status_message")
_LOG_COLUMNS = ("time", "observed_time", "service_name", "severity_number", "severity_text", "body",
                "body_other", "trace_id", "span_id")
_METRIC_NAME_COLUMNS = ("metric_name", "metric_type", "metric_unit", "metric_description")
_POINT_COLUMNS = ("metric_name", "metric_type", "metric_unit", "time", "value_double", "value_int",
                  "count", "sum", "service_name", "attributes", "attributes_types", "attributes_other")
# The columns recent_files reads for a file's time range.
_TIME_COLUMNS = {"traces": ("start_time", "end_time"), "logs": ("time", "observed_time"),
                 "metrics": ("time",)}
# Attribute columns: kept only in a shape we know how to render (a map of strings, or a list of
# key/value structs as written before schema version 2).
_ATTRIBUTE_COLUMNS = frozenset({"attributes"})


# --------------------------------------------------------------------------- formatting

def iso_from_ns(ns: int | None) -> str | None:
    """``2026-12-02T14:31:43.123456789Z`` for nanoseconds since the epoch (datetime has only µs)."""
    if ns is None:
        return None
    seconds, fraction = divmod(int(ns), 1_000_000_000)
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{fraction:09d}Z")


def _hex(value: bytes | None) -> str:
    return value.hex() if value else ""


def _any_value(value: Any) -> Any:
    """A stored AnyValue struct (as a dict) as a JSON-friendly Python value."""
    if not isinstance(value, dict):
        return value.hex() if isinstance(value, (bytes, bytearray)) else value
    kind = value.get("type")
    if kind == 1:
        return value.get("str")
    if kind == 2:
        return value.get("bool")
    if kind in (3, 8):
        return value.get("int")
    if kind == 4:
        number = value.get("double")
        # JSON has no NaN or infinity: those are given as text ("nan", "inf", "-inf")
        return number if number is None or math.isfinite(number) else str(number)
    if kind == 5:
        return "<array>"
    if kind == 6:
        return "<kvlist>"
    if kind == 7:
        data = value.get("bytes")
        return data.hex() if data is not None else None
    return None


def render_body(body: Any) -> str:
    """A log body as text: strings as they are, other AnyValue kinds readably, unset as ``""``."""
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, (bytes, bytearray)):
        return body.hex()
    if not isinstance(body, dict):
        return str(body)
    kind = body.get("type")
    if kind in (5, 6):
        return "<array>" if kind == 5 else "<kvlist>"
    value = _any_value(body)
    if value is None and kind not in (0, None):  # an AnyValue kind of a newer proto: any member set
        value = next((v for k, v in body.items() if k != "type" and v is not None), None)
        if isinstance(value, (bytes, bytearray)):
            value = value.hex()
    return "" if value is None else str(value)


def _attributes(value: Any, types: bytes | None = None, other: list | None = None) -> dict:
    """Point attributes, as to_pylist gives them: the map with its types and side list (each
    value then as its type: 200, not "200"), else a list of {key, value} structs or map pairs."""
    out: dict = {}
    if not isinstance(value, list):
        return out
    if isinstance(types, bytes) and len(types) == len(value):
        try:
            for item in lean.join(value, types, other):
                out.setdefault(item["key"], _any_value(item["value"]))  # the first of a repeated key
            return out
        except (ValueError, KeyError, TypeError):  # not otlpd's layout: the map's text as it is
            out = {}
    for item in value:
        if isinstance(item, dict) and "key" in item:
            out[item["key"]] = _any_value(item.get("value"))
        elif isinstance(item, tuple) and len(item) == 2:
            out[item[0]] = item[1]
    return out


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- reading

@dataclass
class _Scan:
    files: int = 0
    rows: int = 0
    truncated: bool = False

    def as_dict(self) -> dict:
        return {"files": self.files, "rows": self.rows, "truncated": self.truncated}


def _check_signal(signal: str) -> None:
    if signal not in schema.SIGNALS:
        raise ValueError(f"unknown signal {signal!r}, expected one of {schema.SIGNALS}")


def _read_batches(path: Path, columns, budget: int) -> tuple[list[pa.RecordBatch], bool]:
    """The batches of one file, newest (last) first, projected on ``columns`` (those the file
    has), holding at most ``budget`` rows; and whether the budget left batches unread.

    A batch that does not fit is cut to its last rows (the newest appended) that do.
    """
    source = pa.memory_map(str(path))
    try:
        names = pa.ipc.open_file(source).schema.names
        indices = sorted({names.index(c) for c in columns if c in names})
        if not indices:  # none of our columns: not a file of ours (and [] would read every field)
            return [], False
        reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(included_fields=indices))
        batches = []
        for i in reversed(range(reader.num_record_batches)):
            batch = reader.get_batch(i)
            if batch.num_rows > budget:
                if budget > 0:
                    batches.append(batch.slice(batch.num_rows - budget))
                return batches, True
            budget -= batch.num_rows
            batches.append(batch)
        return batches, False
    finally:
        source.close()  # buffers still referenced keep their mapping alive


def _as_int64_ns(array: pa.Array) -> pa.Array:
    """A time column as int64 nanoseconds (nulls where it cannot be one)."""
    t = array.type
    try:
        if pa.types.is_timestamp(t):
            if t.unit != "ns":
                array = pc.cast(array, pa.timestamp("ns", t.tz))
            return pc.cast(array, pa.int64())
        if pa.types.is_integer(t):
            return pc.cast(array, pa.int64())
    except pa.ArrowException:
        pass
    return pa.nulls(len(array), pa.int64())


def _renderable_attributes(t: pa.DataType) -> bool:
    """list<struct<key, value, ...>> or map<string, string>: the shapes _attributes renders."""
    if pa.types.is_map(t):
        return pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = t.value_type
        return pa.types.is_struct(child) and child.get_field_index("key") >= 0 \
            and child.get_field_index("value") >= 0
    return False


def _normalize(batch: pa.RecordBatch, signal: str, columns) -> pa.RecordBatch:
    """Exactly ``columns``, in order: times as int64 ns, absent columns as typed nulls,
    attribute columns of an unknown layout as nulls."""
    reference = schema.schema_for(signal)
    n = batch.num_rows
    arrays, fields = [], []
    for name in columns:
        index = batch.schema.get_field_index(name)
        expected = reference.field(name).type if reference.get_field_index(name) >= 0 else pa.null()
        if index < 0:
            array = pa.nulls(n, pa.int64() if pa.types.is_timestamp(expected) else expected)
        else:
            array = batch.column(index)
            if pa.types.is_timestamp(array.type) or pa.types.is_timestamp(expected):
                array = _as_int64_ns(array)
            elif name in _ATTRIBUTE_COLUMNS:
                if not _renderable_attributes(array.type):
                    array = pa.nulls(n, pa.null())
            elif array.type != expected and expected != pa.null():
                try:  # e.g. large_string or dictionary columns written by another tool
                    array = pc.cast(array, expected)
                except pa.ArrowException:
                    array = pa.nulls(n, expected)
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _and(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return pc.and_kleene(a, b)


def _log_time(batch: pa.RecordBatch) -> pa.Array:
    """``time``, or ``observed_time`` when time is 0/null (null when neither is known)."""
    t, observed = batch.column("time"), batch.column("observed_time")
    known_t = pc.fill_null(pc.not_equal(t, 0), False)
    known_observed = pc.fill_null(pc.not_equal(observed, 0), False)
    fallback = pc.if_else(known_observed, observed, pa.scalar(None, pa.int64()))
    return pc.if_else(known_t, t, fallback)


def _min_max(array: pa.Array) -> tuple[int | None, int | None]:
    result = pc.min_max(array)
    return result["min"].as_py(), result["max"].as_py()


def _newest_key(row: dict) -> tuple:
    key = row["_key"]
    return (key is None, -(key or 0))


# --------------------------------------------------------------------------- StoredData

class StoredData:
    """Bounded, read-only queries over the completed files under ``output_dir``; thread-safe."""

    _CACHE_SIZE = 256

    def __init__(self, output_dir: Path | str, max_files: int = 8, max_rows: int = 1_000_000):
        if max_files < 1 or max_rows < 1:
            raise ValueError("max_files and max_rows must be at least 1")
        self.output_dir = Path(output_dir)
        self.max_files = int(max_files)
        self.max_rows = int(max_rows)
        self._cache: collections.OrderedDict[tuple, dict | None] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    # ---------------------------------------------------------------- files

    def _listing(self, signal: str) -> list[files.CompletedFile]:
        """Completed files of a signal, newest first (mtime, then name)."""
        _check_signal(signal)
        try:
            listing = files.completed_files(self.output_dir / signal)
        except (FileNotFoundError, NotADirectoryError):
            return []
        listing.sort(key=lambda f: (f.mtime, f.path.name), reverse=True)
        return listing

    def _scan(self, signal: str, columns, scan: _Scan) -> Iterator[list[pa.RecordBatch]]:
        """The normalized batches of each file read, newest file first, within the budget."""
        listing = self._listing(signal)
        if len(listing) > self.max_files:
            scan.truncated = True
            listing = listing[: self.max_files]
        for file in listing:
            budget = self.max_rows - scan.rows
            if budget <= 0:
                scan.truncated = True
                break
            try:
                batches, cut = _read_batches(file.path, columns, budget)
                batches = [_normalize(b, signal, columns) for b in batches]
            except _READ_ERRORS as error:
                log.debug("skipped %s: %s", file.path, error)
                continue
            scan.files += 1
            scan.rows += sum(b.num_rows for b in batches)
            if batches:
                yield batches
            if cut:
                scan.truncated = True
                break

    def _file_info(self, signal: str, file: files.CompletedFile) -> dict | None:
        key = (str(file.path), file.size, file.mtime)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            info = self._read_info(signal, file.path)
        except FileNotFoundError:
            return None  # gone (retention); nothing to remember
        except OSError as error:  # maybe transient (permissions): not cached
            log.debug("cannot read %s: %s", file.path, error)
            return None
        except _READ_ERRORS as error:  # corrupt: completed files never change, so remember it
            log.debug("unreadable %s: %s", file.path, error)
            info = None
        with self._cache_lock:
            self._cache[key] = info
            self._cache.move_to_end(key)
            while len(self._cache) > self._CACHE_SIZE:
                self._cache.popitem(last=False)
        return info

    @staticmethod
    def _read_info(signal: str, path: Path) -> dict:
        source = pa.memory_map(str(path))
        try:
            names = pa.ipc.open_file(source).schema.names
            wanted = [c for c in _TIME_COLUMNS[signal] if c in names]
            indices = [names.index(c) for c in wanted] or [0]
            reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(included_fields=indices))
            rows, low, high = 0, None, None
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                rows += batch.num_rows
                if not wanted or batch.num_rows == 0:
                    continue
                batch = _normalize(batch, signal, _TIME_COLUMNS[signal])
                if signal == "traces":  # start_time..end_time
                    start_low, start_high = _min_max(batch.column("start_time"))
                    lows, highs = [start_low], [start_high, _min_max(batch.column("end_time"))[1]]
                else:
                    times = _log_time(batch) if signal == "logs" else batch.column("time")
                    batch_low, batch_high = _min_max(times)
                    lows, highs = [batch_low], [batch_high]
                for v in lows:
                    if v is not None:
                        low = v if low is None else min(low, v)
                for v in highs:
                    if v is not None:
                        high = v if high is None else max(high, v)
            return {"rows": rows, "batches": reader.num_record_batches,
                    "min_time": iso_from_ns(low), "max_time": iso_from_ns(high)}
        finally:
            source.close()

    def recent_files(self, signal: str, limit: int = 10) -> list[dict]:
        """The newest completed files of a signal, with their row counts and time ranges."""
        out: list[dict] = []
        for file in self._listing(signal):
            if len(out) >= limit:
                break
            info = self._file_info(signal, file)
            if info is None:
                continue
            out.append({"name": file.path.name, "path": str(file.path), "bytes": file.size, **info,
                        "modified": iso_from_ns(round(file.mtime * 1_000_000) * 1000)})
        return out

    def disk_usage(self, signal: str) -> dict:
        """Completed files and bytes, and bytes of files in progress, of a signal's directory;
        the bytes count each file's sources file (otlpd.sources) too."""
        _check_signal(signal)
        usage = {"completed_files": 0, "completed_bytes": 0, "in_progress_bytes": 0}
        for directory, data in ((self.output_dir / signal, True),
                                (sources.sources_directory(self.output_dir / signal), False)):
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    name = entry.name
                    part = name.endswith(files.PART_SUFFIX)
                    if not part and not (name.endswith(files.COMPLETE_SUFFIX)
                                         and files.sequence_of(name) is not None):
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
                    if part:
                        usage["in_progress_bytes"] += size
                    else:
                        usage["completed_files"] += data
                        usage["completed_bytes"] += size
        return usage

    # ---------------------------------------------------------------- queries

    def _newest(self, signal: str, columns, limit: int,
                prepare: Callable[[pa.RecordBatch], tuple[Any, pa.Array]]) -> tuple[list[dict], _Scan]:
        """The ``limit`` rows with the largest key (newest first, nulls last, ties in scan order)
        among those ``prepare(batch) -> (mask or None, int64 key)`` selects; rows carry ``_key``."""
        scan = _Scan()
        best: list[dict] = []
        limit = max(0, int(limit))
        if limit == 0:
            return best, scan
        threshold: int | None = None
        for batches in self._scan(signal, columns, scan):
            parts = []
            for batch in batches:
                mask, key = prepare(batch)
                if threshold is not None:  # rows not newer than the limit-th kept cannot make it
                    mask = _and(mask, pc.greater(key, threshold))
                if mask is not None:
                    mask = pc.fill_null(mask, False)
                    batch, key = batch.filter(mask), key.filter(mask)
                if batch.num_rows == 0:
                    continue
                batch = batch.append_column("_key", key)
                order = pc.sort_indices(batch, sort_keys=[("_key", "descending")])
                parts.append(batch.take(order[:limit]))
            if not parts:
                continue
            table = pa.Table.from_batches(parts)
            order = pc.sort_indices(table, sort_keys=[("_key", "descending")])
            best.extend(table.take(order[:limit]).to_pylist())
            best.sort(key=_newest_key)  # stable: earlier-scanned rows win ties
            del best[limit:]
            if len(best) == limit and best[-1]["_key"] is not None:
                threshold = best[-1]["_key"]
        return best, scan

    def _filtered(self, signal: str, columns,
                  mask_of: Callable[[pa.RecordBatch], Any]) -> tuple[list[dict], _Scan]:
        """Every row ``mask_of`` selects, in scan order."""
        scan = _Scan()
        rows: list[dict] = []
        for batches in self._scan(signal, columns, scan):
            for batch in batches:
                mask = mask_of(batch)
                if mask is None:
                    continue
                selected = batch.filter(pc.fill_null(mask, False))
                if selected.num_rows:
                    rows.extend(selected.to_pylist())
        return rows, scan

    def services(self) -> list[str]:
        """Distinct service names of the spans in the scanned trace files, sorted."""
        names: set[str] = set()
        for batches in self._scan("traces", ("service_name",), _Scan()):
            for batch in batches:
                names.update(pc.unique(batch.column("service_name")).to_pylist())
        names.discard(None)
        return sorted(names)

    @staticmethod
    def _span(row: dict) -> dict:
        start, end = row["start_time"], row["end_time"]
        duration = (end - start) / 1e6 if start is not None and end else None
        return {
            "trace_id": _hex(row["trace_id"]),
            "span_id": _hex(row["span_id"]),
            "parent_span_id": _hex(row["parent_span_id"]),
            "service": row["service_name"],
            "name": row["name"],
            "kind": row["kind"] if row["kind"] is not None else 0,
            "start_time": iso_from_ns(start),
            "start_unix_nano": start,
            "duration_ms": duration,
            "status_code": row["status_code"] if row["status_code"] is not None else 0,
            "status_message": row["status_message"],
        }

    def spans(self, service: str | None = None, name: str | None = None, limit: int = 100) -> dict:
        """The newest spans (by start time), of one service (exact) and/or whose name contains
        ``name`` (case-insensitive); None or "" filters nothing."""

        def prepare(batch):
            mask = None
            if service:
                mask = pc.equal(batch.column("service_name"), pa.scalar(service, pa.string()))
            if name:
                mask = _and(mask, pc.match_substring(batch.column("name"), name, ignore_case=True))
            return mask, batch.column("start_time")

        rows, scan = self._newest("traces", _SPAN_COLUMNS, limit, prepare)
        return {"spans": [self._span(row) for row in rows], "scanned": scan.as_dict()}

    def trace(self, trace_id: bytes | str) -> dict | None:
        """Every stored span of a trace (within the budget) in waterfall order; None if none.

        ``trace_id`` is the raw id, or its hex (a ValueError if it is not hex).
        """
        if isinstance(trace_id, str):
            trace_id = bytes.fromhex(trace_id)
        trace_id = bytes(trace_id)

        def mask_of(batch):
            column = batch.column("trace_id")
            try:
                return pc.equal(column, pa.scalar(trace_id, column.type))
            except (pa.ArrowException, TypeError, ValueError):
                return None  # an id type this id cannot be

        rows, scan = self._filtered("traces", _SPAN_COLUMNS, mask_of)
        if not rows:
            return None
        spans = [self._span(row) for row in rows]
        spans.sort(key=lambda s: (s["start_unix_nano"] is None, s["start_unix_nano"] or 0))
        present = {s["span_id"] for s in spans}
        children: dict[str, list[int]] = collections.defaultdict(list)
        roots = []
        for i, s in enumerate(spans):
            parent = s["parent_span_id"]
            if parent and parent != s["span_id"] and parent in present:
                children[parent].append(i)
            else:
                roots.append(i)
        visited = [False] * len(spans)

        def visit(root: int, ordered: list) -> None:
            stack = [(root, 0)]
            while stack:
                i, depth = stack.pop()
                if visited[i]:
                    continue
                visited[i] = True
                ordered.append((i, depth))
                stack.extend((c, depth + 1) for c in reversed(children.get(spans[i]["span_id"], ())))

        for i in roots:
            visit(i, [])
        for i in range(len(spans)):  # spans on a parent cycle: the earliest of each is a root too
            if not visited[i]:
                roots.append(i)
                visit(i, [])
        visited = [False] * len(spans)
        ordered: list[tuple[int, int]] = []
        for i in sorted(roots):  # roots by start time
            visit(i, ordered)

        starts = [s["start_unix_nano"] for s in spans if s["start_unix_nano"] is not None]
        earliest = min(starts) if starts else None
        ends = [row["end_time"] for row in rows if row["end_time"]]
        out = []
        for i, depth in ordered:
            span = dict(spans[i])
            span["depth"] = depth
            start = span["start_unix_nano"]
            known = start is not None and earliest is not None
            span["offset_ms"] = (start - earliest) / 1e6 if known else None
            out.append(span)
        return {
            "trace_id": trace_id.hex(),
            "spans": out,
            "start_time": iso_from_ns(earliest),
            "duration_ms": (max(ends) - earliest) / 1e6 if ends and earliest is not None else None,
            "scanned": scan.as_dict(),
        }

    def logs(self, severity_min: int = 0, limit: int = 100) -> dict:
        """The newest log records whose severity_number is at least ``severity_min``."""

        def prepare(batch):
            mask = None
            if severity_min > 0:
                mask = pc.greater_equal(batch.column("severity_number"), int(severity_min))
            return mask, _log_time(batch)

        rows, scan = self._newest("logs", _LOG_COLUMNS, limit, prepare)
        return {
            "logs": [{"time": iso_from_ns(row["_key"]), "service": row["service_name"],
                      "severity_number": row["severity_number"], "severity_text": row["severity_text"],
                      "body": render_body(row["body"] if row["body"] is not None else row["body_other"]),
                      "trace_id": _hex(row["trace_id"]),
                      "span_id": _hex(row["span_id"])} for row in rows],
            "scanned": scan.as_dict(),
        }

    def metric_names(self) -> dict:
        """Every metric of the scanned files with its type, unit, description (the newest file's)
        and number of points, sorted by name."""
        scan = _Scan()
        metrics: dict[str, dict] = {}
        for batches in self._scan("metrics", _METRIC_NAME_COLUMNS, scan):
            groups = pa.Table.from_batches(batches).group_by(list(_METRIC_NAME_COLUMNS)).aggregate(
                [([], "count_all")])
            for group in groups.to_pylist():
                name = group["metric_name"]
                if name is None:
                    continue
                entry = metrics.setdefault(name, {"name": name, "type": group["metric_type"],
                                                  "unit": group["metric_unit"],
                                                  "description": group["metric_description"], "points": 0})
                entry["points"] += group["count_all"]
        return {"metrics": [metrics[name] for name in sorted(metrics)], "scanned": scan.as_dict()}

    def metric_points(self, name: str, since_unix_nano: int | None = None, limit: int = 1000) -> dict:
        """The newest ``limit`` points of a metric later than ``since_unix_nano``, oldest first."""

        def prepare(batch):
            time = batch.column("time")
            mask = _and(pc.equal(batch.column("metric_name"), pa.scalar(name, pa.string())),
                        pc.is_valid(time))
            if since_unix_nano is not None:
                mask = _and(mask, pc.greater(time, int(since_unix_nano)))
            return mask, time

        rows, scan = self._newest("metrics", _POINT_COLUMNS, limit, prepare)
        points = []
        for row in reversed(rows):
            if row["metric_type"] in _HISTOGRAM_TYPES:
                value = row["sum"] if row["sum"] is not None else row["count"]
                count = row["count"]
            else:
                value = row["value_double"] if row["value_double"] is not None else row["value_int"]
                count = None
            points.append({"time": iso_from_ns(row["time"]), "time_unix_nano": row["time"],
                           "value": _finite(value), "count": count, "service": row["service_name"],
                           "attributes": _attributes(row["attributes"], row["attributes_types"],
                                                     row["attributes_other"])})
        newest = rows[0] if rows else {}
        return {"name": name, "type": newest.get("metric_type"), "unit": newest.get("metric_unit"),
                "points": points, "scanned": scan.as_dict()}
