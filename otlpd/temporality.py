"""Metric temporality conversion, reference (the pure-Python twin of the native converter).

``metrics.temporality`` is ``cumulative`` (the default), ``delta`` or ``passthrough``. A
:class:`Converter` takes metric rows of the full layout (``otlpd.schema.METRICS_SCHEMA``) in
arrival order and returns the rows to store: Sums, Histograms and Exponential histograms in the
target temporality, everything else as it came. The rules, point by point, and where they differ
from the OpenTelemetry Collector's ``cumulativetodelta`` and ``deltatocumulative`` processors, are
in docs/TEMPORALITY.md; the tests compute their series by hand from that text.

A *stream* is (resource and scope, metric name, type, unit, monotonicity, point attributes): the
canonical bytes of the resource and scope values (``otlpd.sources.canonical_bytes``), the metric
columns, and the point's attributes sorted by key. The key is kept whole, so two streams never
merge; the native converter keys its table by a hash and keeps these bytes to compare.

The converter is not thread-safe: it runs where the metrics are serialised in arrival order (the
metrics writer), never on the gRPC threads.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
import time as _time

from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from otlpd import attributes as lean
from otlpd import decode, schema, sources
from otlpd._impl import import_extension, pure_python_requested
from otlpd.config import ConfigError

_native = import_extension("otlpd._temporality")

log = logging.getLogger(__name__)

DELTA, CUMULATIVE = 1, 2
MODES = ("cumulative", "delta", "passthrough")
INITIAL_VALUES = ("auto", "keep", "drop")
STATE_VERSION = 4  # of the saved state (1 keyed streams by Python tuples, 2 was JSON, 3 wrote every
                   # change with its identity; 4 numbers the streams, below)
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
CONVERTIBLE = ("sum", "histogram", "exponential_histogram")

# reasons of dropped points (the keys of ``dropped_points``)
DROP_BASELINE = "baseline"          # to delta: a first point (metrics.initial_value) or a reset
                                    # without a known new start: kept as the baseline only
DROP_OLD = "not_after_last_point"   # its time is not after the stream's last point
DROP_OVERLAP = "overlapping"        # to cumulative: a delta that starts before the last one ended


@dataclass
class Settings:
    temporality: str = "cumulative"
    initial_value: str = "auto"
    max_streams: int = 100_000
    max_stale_ns: int = 300 * 10**9   # streams without a point for this long (wall clock) are forgotten
    started_at_ns: int = 0            # when otlpd started (initial_value "auto")

    def __post_init__(self):
        if self.temporality not in MODES:
            raise ValueError(f"metrics.temporality: must be one of {', '.join(MODES)}, got {self.temporality!r}")
        if self.initial_value not in INITIAL_VALUES:
            raise ValueError(f"metrics.initial_value: must be one of {', '.join(INITIAL_VALUES)}, "
                             f"got {self.initial_value!r}")


@dataclass
class _Stream:
    start: int               # start_time of the stream's current interval (cumulative side)
    time: int                # time of its last point
    value: dict              # the last point's value columns (to delta: the cumulative baseline;
                             # to cumulative: the running total)
    shape: tuple             # bucket bounds, or exponential scale: a change resets the stream
    seen: int = 0            # wall clock (ns) of its last point, for metrics.max_stale


@dataclass
class Counters:
    converted_points: int = 0
    passed_through_points: int = 0
    dropped_points: collections.Counter = field(default_factory=collections.Counter)
    streams_over_limit: int = 0

    def snapshot(self) -> dict:
        return {"converted_points": self.converted_points,
                "passed_through_points": self.passed_through_points,
                "dropped_points": dict(self.dropped_points),
                "streams_over_limit": self.streams_over_limit}


_SOURCE = sources.SOURCE_COLUMNS
_KIND_CODE = {"sum": 1, "histogram": 2, "exponential_histogram": 3}
_OTHER_VALUE = lean.OTHER.value_type.field("value").type


def _put(out: bytearray, text) -> None:
    data = (text or "").encode("utf-8", "surrogatepass") if not isinstance(text, bytes) else text
    out += struct.pack("<I", len(data))
    out += data


def attributes_identity(attributes, types, other) -> bytes:
    """The point attributes' part of a stream identity, from their stored (lean) values: the
    number of entries, then each entry, sorted, as (key, tag, value): a map entry's tag is its
    type byte and its value the map's text; an ``attributes_other`` entry's tag is 16 + its
    AnyValue type and its value the canonical bytes of that AnyValue and its key_strindex. So
    the same attributes in any order are one stream, and ``"200"`` and ``200`` are two."""
    types = types or b""
    entries = [((key or "").encode("utf-8", "surrogatepass"), types[i] if i < len(types) else 0,
                (value or "").encode("utf-8", "surrogatepass"))
               for i, (key, value) in enumerate(attributes or ())]
    for entry in other or ():
        canonical = bytearray()
        sources._encode(entry["value"], _OTHER_VALUE, canonical)
        canonical += struct.pack("<i", entry["key_strindex"] or 0)
        value = entry["value"] or {}
        entries.append(((entry["key"] or "").encode("utf-8", "surrogatepass"), 16 + (value.get("type") or 0),
                        bytes(canonical)))
    out = bytearray(struct.pack("<I", len(entries)))
    for key, tag, value in sorted(entries):
        _put(out, key)
        out.append(tag)
        _put(out, value)
    return bytes(out)


def stream_key(row: dict, source_keys: dict | None = None) -> bytes:
    """A row's stream identity, whole (so two streams never merge): its resource and scope
    (a stored row's source's canonical key from ``source_keys``, else the canonical bytes of
    the row's own resource and scope columns), metric name, type, unit and monotonicity, and
    :func:`attributes_identity`. The native converter builds the same bytes."""
    source = (source_keys[row["source_id"]] if source_keys is not None
              else sources.canonical_bytes(row[name] for name in _SOURCE))
    out = bytearray()
    _put(out, source)
    _put(out, row["metric_name"])
    out.append(_KIND_CODE[row["metric_type"]])
    _put(out, row["metric_unit"])
    out.append(1 if row["is_monotonic"] else 0)
    out += attributes_identity(row["attributes"], row["attributes_types"], row["attributes_other"])
    return bytes(out)


def _value(row: dict) -> dict:
    kind = row["metric_type"]
    if kind == "sum":
        return {"value_double": row["value_double"], "value_int": row["value_int"]}
    if kind == "histogram":
        return {"count": row["count"], "sum": row["sum"], "min": row["min"], "max": row["max"],
                "bucket_counts": list(row["bucket_counts"] or [])}
    return {"count": row["count"], "sum": row["sum"], "min": row["min"], "max": row["max"],
            "zero_count": row["zero_count"],
            "positive": _buckets(row["positive_offset"], row["positive_bucket_counts"]),
            "negative": _buckets(row["negative_offset"], row["negative_bucket_counts"])}


def _buckets(offset, counts) -> dict:
    """Exponential histogram buckets as {index: count} (an absent side is empty)."""
    return {} if counts is None else {offset + i: n for i, n in enumerate(counts) if n}


def _shape(row: dict) -> tuple:
    kind = row["metric_type"]
    if kind == "histogram":
        return (len(row["bucket_counts"] or ()), *(row["explicit_bounds"] or ()))
    if kind == "exponential_histogram":
        return (row["scale"], row["zero_threshold"])
    return ()


def _total(value: dict) -> float:
    """What must not fall in a monotonic stream: a sum's value, a histogram's count."""
    if "count" in value:
        return value["count"] or 0
    return value["value_int"] if value["value_int"] is not None else (value["value_double"] or 0.0)


_U64 = 1 << 64


def _wrap_int64(value: int) -> int:
    return (value + (1 << 63)) % _U64 - (1 << 63)


def _combine(a: dict, b: dict, sign: int) -> dict:
    """a + sign * b, member by member (sums: the member a holds; buckets: by index). Integers
    wrap as the stored types do (int64 values, uint64 counts): a total past 2**64 - 1 points
    starts again from 0, as the instrument's own counter would."""
    out = {}
    for name, x in a.items():
        y = b.get(name)
        if name in ("positive", "negative"):
            keys = set(x) | set(y or {})
            out[name] = {k: (x.get(k, 0) + sign * (y or {}).get(k, 0)) % _U64 for k in keys}
        elif name in ("min", "max"):
            # accumulated: the least and greatest of the intervals; a difference has neither
            known = [v for v in (x, y) if v is not None]
            out[name] = (min if name == "min" else max)(known) if sign > 0 and known else None
        elif name == "bucket_counts":  # as long as b's: the same shape
            out[name] = [(p + sign * q) % _U64 for p, q in zip(x, y or [0] * len(x))]
        elif x is None:
            out[name] = None
        elif name == "value_int":
            out[name] = _wrap_int64(x + sign * _or0(y))
        elif name in ("count", "zero_count"):
            out[name] = (x + sign * _or0(y)) % _U64
        else:
            out[name] = x + sign * _or0(y)
    return out


def _decreased(new: dict, old: dict) -> bool:
    """A reset of a cumulative series: the total, or any bucket, fell."""
    if _total(new) < _total(old):
        return True
    if "bucket_counts" in new:
        return any(p < q for p, q in zip(new["bucket_counts"], old["bucket_counts"]))
    if "positive" in new:
        return any(new[side].get(k, 0) < n for side in ("positive", "negative") for k, n in old[side].items())
    return False


def _store(row: dict, value: dict, start: int, temporality: int) -> dict:
    out = dict(row, start_time=start, aggregation_temporality=temporality)
    if "positive" in value:
        value = dict(value)
        for side in ("positive", "negative"):
            buckets = value.pop(side)
            if row[f"{side}_bucket_counts"] is None and not buckets:
                continue  # the side stays absent
            lo = min(buckets, default=row[f"{side}_offset"] or 0)
            hi = max(buckets, default=lo - 1)
            out[f"{side}_offset"] = lo
            out[f"{side}_bucket_counts"] = [buckets.get(i, 0) for i in range(lo, hi + 1)]
    out.update(value)
    if temporality == DELTA and row["metric_type"] != "sum":
        out["min"] = out["max"] = None  # a cumulative min/max says nothing about the interval
    return out


class Converter:
    """Stateful conversion of metric rows, stream by stream, in arrival order."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.counters = Counters()
        self._streams: dict[bytes, _Stream] = {}  # in order of last use
        self._now = 0
        self._keys: dict[int, bytes] | None = None
        # since the state was last saved: the streams changed (the end of the order of use),
        # those expired, and whether only the whole state will do
        self._dirty: set[bytes] = set()
        self._removed: list[int] = []
        self._whole = True
        # every stream's serial number, given in order of creation: a saved change names a stream
        # whose identity is already saved by its number alone
        self._serial: dict[bytes, int] = {}
        self._by_serial: dict[int, bytes] = {}
        self._persisted: set[bytes] = set()
        self._next_serial = 0

    @property
    def streams(self) -> int:
        return len(self._streams)

    def reset(self) -> None:
        """Forget every stream (a change of the setting: no delta is computed across it)."""
        self._streams.clear()
        self._dirty.clear()
        self._removed.clear()
        self._whole = True
        self._serial.clear()
        self._by_serial.clear()
        self._persisted.clear()
        self._next_serial = 0

    def target(self) -> int | None:
        return {"cumulative": CUMULATIVE, "delta": DELTA}.get(self.settings.temporality)

    def needs(self, table: pa.Table | pa.RecordBatch) -> bool:
        """Whether any row of ``table`` is a sum or histogram of the other temporality (else
        every row is stored as it came, and :meth:`convert` is not needed)."""
        target = self.target()
        if target is None or table.num_rows == 0:
            return False
        other = CUMULATIVE if target == DELTA else DELTA
        mask = pc.and_(pc.is_in(table.column("metric_type"), value_set=pa.array(CONVERTIBLE)),
                       pc.equal(table.column("aggregation_temporality"), other))
        return pc.any(mask).as_py() or False

    def convert(self, table: pa.Table | pa.RecordBatch, now_ns: int | None = None,
                source_keys: dict[int, bytes] | None = None) -> pa.Table:
        """The rows to store for ``table``'s rows (the full layout, or stored rows with their
        sources' canonical keys by id in ``source_keys``), in order, received at ``now_ns``
        (wall clock; streams idle for ``max_stale_ns`` before it are forgotten first)."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self._now = _time.time_ns() if now_ns is None else now_ns
        self._keys = source_keys
        self._expire()
        # times as int64 nanoseconds (their storage), compared and stored back as they are
        physical = pa.schema([f.with_type(schema._physical(f.type)) for f in table.schema])
        rows = table.cast(physical).to_pylist()
        out = [stored for row in rows if (stored := self.convert_row(row)) is not None]
        return pa.Table.from_pylist(out, schema=physical).cast(table.schema)

    def convert_row(self, row: dict) -> dict | None:
        """One point (times as int64 ns): the row to store, or None when it is dropped (and
        counted)."""
        target = self.target()
        kind, given = row["metric_type"], row["aggregation_temporality"]
        if (target is None or kind not in CONVERTIBLE or given == target or given not in (DELTA, CUMULATIVE)
                or (target == DELTA and kind == "sum" and not row["is_monotonic"])):
            # passthrough, gauges and summaries, already right, unknown temporality, and (as the
            # specification's delta preference does for UpDownCounters) non-monotonic sums to delta
            self.counters.passed_through_points += 1
            return row
        if row["flags"] & NO_RECORDED_VALUE:
            self.counters.passed_through_points += 1
            return row  # never a baseline
        key = stream_key(row, self._keys)
        stream = self._streams.get(key)
        if stream is None and len(self._streams) >= self.settings.max_streams:
            self.counters.streams_over_limit += 1
            self.counters.passed_through_points += 1
            return row  # unconverted; its aggregation_temporality says so
        if target == DELTA:
            return self._to_delta(key, stream, row)
        return self._to_cumulative(key, stream, row)

    # -- the state saved beside the files (docs/TEMPORALITY.md, "Restarts")

    def state(self) -> dict:
        """Every stream's state as JSON-ready data, with the setting it belongs to."""
        return {"version": STATE_VERSION, "temporality": self.settings.temporality,
                "streams": [_entry(key, s) for key, s in self._streams.items()]}

    def dump(self) -> bytes:
        """The whole state in the saved format (below, "The saved state's format"): bytes,
        or from the native converter a bytes-like pyarrow Buffer (its memory, not copied)."""
        return _u32(len(self._streams)) + b"".join(_record(self._serial[key], key, s)
                                                    for key, s in self._streams.items())

    def dump_changes(self) -> bytes | None:
        """What changed since the state was last saved, in the saved format: the identities
        expired, then the records of the streams changed, in order of use; or None when only
        the whole state will do (nothing saved yet, or a reset). Taking them marks them saved.
        Bytes-like, as dump's."""
        if self._whole:
            return None
        changed = []
        for key in reversed(self._streams):  # the changed streams are the last used
            if key not in self._dirty:
                break
            changed.append(_record(self._serial[key], key if key not in self._persisted else None,
                                   self._streams[key]))
            self._persisted.add(key)
        changed.reverse()
        out = _u32(len(self._removed)) + b"".join(struct.pack("<Q", serial) for serial in self._removed)
        self._dirty.clear()
        self._removed.clear()
        return out + _u32(len(changed)) + b"".join(changed)

    def mark_saved(self) -> None:
        """The whole state was saved: nothing is changed since."""
        self._dirty.clear()
        self._removed.clear()
        self._whole = False
        self._persisted = set(self._streams)

    def load(self, state: dict) -> bool:
        """Take the streams of a saved :meth:`state` if it is of this setting (True), else
        nothing (False)."""
        if state.get("version") != STATE_VERSION or state.get("temporality") != self.settings.temporality:
            return False
        self.reset()
        for key, start, time, value, shape, seen in state["streams"]:
            self._touch(base64.b64decode(key), _Stream(start, time, _value_from_json(value), tuple(shape), seen))
        self.mark_saved()
        return True

    def load_dump(self, data: bytes, replace: bool = True) -> None:
        """Take a :meth:`dump` (replacing every stream), or (replace false) apply a
        :meth:`dump_changes`. What is loaded counts as saved. ValueError if it is not one."""
        reader = _Reader(data)
        if replace:
            self.reset()
        else:
            for _ in range(reader.u32()):
                key = self._by_serial.get(reader.unpack("<Q")[0])
                if key is not None:
                    del self._streams[key]
                    self._forget(key)
        try:
            for _ in range(reader.u32()):
                serial, key, stream = reader.record()
                if key is None:
                    key = self._by_serial.get(serial)
                    if key is None:
                        raise ValueError("not a saved temporality state (a change of no known stream)")
                elif self._serial.get(key, serial) != serial:
                    del self._by_serial[self._serial[key]]
                self._serial[key], self._by_serial[serial] = serial, key
                self._next_serial = max(self._next_serial, serial + 1)
                self._touch(key, stream)
            reader.end()
        finally:
            self.mark_saved()

    def _expire(self) -> None:
        """Forget the streams idle for longer than max_stale_ns. The table is in order of
        last use (every point a stream takes moves it to the end), so only the stale ones at
        its front are visited: O(expired), not O(streams), a request."""
        limit = self.settings.max_stale_ns
        if limit <= 0:
            return
        stale = []
        for key, stream in self._streams.items():
            if self._now - stream.seen <= limit:
                break
            stale.append(key)
        for key in stale:
            del self._streams[key]
            serial = self._forget(key)
            if not self._whole:
                self._removed.append(serial)

    def _forget(self, key: bytes) -> int:
        """A stream removed: its number and marks go (returns the number)."""
        serial = self._serial.pop(key)
        del self._by_serial[serial]
        self._dirty.discard(key)
        self._persisted.discard(key)
        return serial

    def _touch(self, key: bytes, stream: _Stream) -> None:
        if self._streams.pop(key, None) is None and key not in self._serial:  # a new stream: the next number
            self._serial[key], self._by_serial[self._next_serial] = self._next_serial, key
            self._next_serial += 1
        self._streams[key] = stream
        self._dirty.add(key)

    def _drop(self, reason: str) -> None:
        self.counters.dropped_points[reason] += 1

    def _to_delta(self, key: tuple, stream: _Stream | None, row: dict) -> dict | None:
        value, shape, start, time = _value(row), _shape(row), row["start_time"], row["time"]
        if stream is not None and time <= stream.time:
            self._drop(DROP_OLD)
            return None
        reset = stream is None or shape != stream.shape or start != stream.start or _decreased(value, stream.value)
        if not reset:
            self._touch(key, _Stream(start, time, value, shape, self._now))
            self.counters.converted_points += 1
            return _store(row, _combine(value, stream.value, -1), stream.time, DELTA)
        # a new baseline: the first point of a stream, or a reset (a value fell, a new start time,
        # other buckets). It is a delta since its own start only if that start is known and new.
        first = stream is None
        self._touch(key, _Stream(start, time, value, shape, self._now))
        keep = self.settings.initial_value == "keep" if first else False
        if (first and self.settings.initial_value == "auto") or not first:
            after = self.settings.started_at_ns if first else stream.time
            keep = start != time and start > 0 and start >= after
        if not keep:
            self._drop(DROP_BASELINE)
            return None
        self.counters.converted_points += 1
        return _store(row, value, start, DELTA)

    def _to_cumulative(self, key: tuple, stream: _Stream | None, row: dict) -> dict | None:
        value, shape, start, time = _value(row), _shape(row), row["start_time"], row["time"]
        if stream is not None:
            if time <= stream.time:
                self._drop(DROP_OLD)
                return None
            if start < stream.time:
                self._drop(DROP_OVERLAP)
                return None
        if stream is None or shape != stream.shape:
            total = _Stream(start, time, value, shape, self._now)  # a new stream, or new buckets: a reset
        else:
            total = _Stream(stream.start, time, _combine(stream.value, value, +1), shape, self._now)
        self._touch(key, total)
        self.counters.converted_points += 1
        return _store(row, total.value, total.start, CUMULATIVE)



class NativeConverter(Converter):
    """The same conversion with the stream table and the per-row arithmetic in Cython
    (``otlpd._temporality.StreamTable``, over the rows' Arrow buffers, the GIL released):
    what the daemon uses when the extension is built. The tests hold it to the reference."""

    def __init__(self, settings: Settings | None = None):
        super().__init__(settings)
        self._table = _native.StreamTable()

    @property
    def streams(self) -> int:
        return self._table.size

    def reset(self) -> None:
        self._table.clear()

    def convert(self, table: pa.Table | pa.RecordBatch, now_ns: int | None = None,
                source_keys: dict[int, bytes] | None = None) -> pa.Table:
        now = _time.time_ns() if now_ns is None else now_ns
        full = None
        if source_keys is None:  # rows of the full layout: convert their stored rows
            full = sources.lean(table)
            rows, source_keys = full.rows, dict(zip(full.source_ids, full.source_keys))
        else:
            rows = sources._as_batch(table, table.schema)
        target = self.target()
        if target is None:
            self._table.convert(rows.slice(0, 0), {}, DELTA, "auto", 0, self.settings.max_stale_ns, 0, now,
                                attributes_identity)  # (expiry only)
            self.counters.passed_through_points += rows.num_rows
            out = rows
        else:
            out, counts = self._table.convert(
                rows, source_keys, target, self.settings.initial_value, self.settings.max_streams,
                self.settings.max_stale_ns, self.settings.started_at_ns, now, attributes_identity)
            converted, passed, over, baseline, old, overlap = counts
            c = self.counters
            c.converted_points += converted
            c.passed_through_points += passed
            c.streams_over_limit += over
            for reason, n in ((DROP_BASELINE, baseline), (DROP_OLD, old), (DROP_OVERLAP, overlap)):
                if n:
                    c.dropped_points[reason] += n
        if full is not None:
            return sources.join(out, full.sources)
        return pa.Table.from_batches([out])

    def convert_row(self, row: dict) -> dict | None:
        raise NotImplementedError("the native converter converts batches (convert)")

    def state(self) -> dict:
        return self._twin().state()

    def dump(self) -> bytes:
        return self._table.dump()

    def _twin(self) -> Converter:
        """The reference holding this converter's streams (for the JSON view of state() and
        load(): the table itself speaks only the saved binary format)."""
        twin = Converter(self.settings)
        twin.load_dump(self._table.dump())
        return twin

    def dump_changes(self) -> bytes | None:
        return self._table.dump_changes()

    def mark_saved(self) -> None:
        self._table.mark_saved()

    def load(self, state: dict) -> bool:
        if state.get("version") != STATE_VERSION or state.get("temporality") != self.settings.temporality:
            return False
        twin = Converter(self.settings)
        twin.load(state)
        self._table.load_dump(twin.dump())
        return True

    def load_dump(self, data: bytes, replace: bool = True) -> None:
        self._table.load_dump(data, replace)


# -- The saved state's format (little-endian; the native converter reads and writes the same):
#   state:    u32 n, n records, in order of use
#   changes:  u32 n, n u64 serials of the streams expired; u32 m, m records changed, in order of use
#   record:   u64 serial (a stream's number, given in order of creation from 0 after a reset, or
#             taken from its record when loaded, the next new one after the highest loaded);
#             u8 1 then u32 length, identity (always in a state, and in changes for a stream whose
#             identity no saved state or change holds yet), or u8 0 (a change of a stream already
#             saved: its serial names it); then u8 kind (1 sum, 2 histogram, 3 exponential); i64
#             start, time, seen; then a sum: u8 flags (1 int, 2 double), i64 value_int, f64 value_double; else
#             u64 count, u8 flags (1 sum, 2 min, 4 max), f64 sum, min, max, then a histogram:
#             u32 n, u64[n] bucket counts, i64 number of buckets, u32 n, f64[n] bounds; an
#             exponential one: u64 zero_count, i64 scale, f64 zero_threshold, and per side
#             (positive, negative) i64 first index, u32 n, u64[n] counts, without zero counts
#             at either end. An absent value is 0 with its flag clear.

def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _record(serial: int, key: bytes | None, stream: _Stream) -> bytes:
    """A stream's record; ``key`` None: without its identity (a change of a saved stream)."""
    value, kind = stream.value, _KIND_OF[_value_kind(stream.value)]
    named = [struct.pack("<QB", serial, 0)] if key is None else [struct.pack("<QBI", serial, 1, len(key)), key]
    out = [*named, struct.pack("<Bqqq", kind, stream.start, stream.time, stream.seen)]
    if kind == 1:
        vi, vd = value["value_int"], value["value_double"]
        out.append(struct.pack("<Bqd", (vi is not None) | (vd is not None) << 1, _or0(vi), _or0(vd)))
        return b"".join(out)
    sum_, low, high = value["sum"], value["min"], value["max"]
    out.append(struct.pack("<QBddd", value["count"] or 0, (sum_ is not None) | (low is not None) << 1 | (high is not None) << 2,
                           _or0(sum_), _or0(low), _or0(high)))
    if kind == 2:
        buckets, (nbuckets, *bounds) = value["bucket_counts"], stream.shape
        out += [_u32(len(buckets)), struct.pack(f"<{len(buckets)}Q", *buckets), struct.pack("<q", nbuckets),
                _u32(len(bounds)), struct.pack(f"<{len(bounds)}d", *bounds)]
        return b"".join(out)
    scale, zero_threshold = stream.shape
    out.append(struct.pack("<Qqd", value["zero_count"] or 0, scale or 0, _or0(zero_threshold)))
    for side in ("positive", "negative"):
        counts = {index: n for index, n in value[side].items() if n}
        low_index = min(counts, default=0)
        dense = [counts.get(i, 0) for i in range(low_index, max(counts, default=-1) + 1)]
        out += [struct.pack("<q", low_index), _u32(len(dense)), struct.pack(f"<{len(dense)}Q", *dense)]
    return b"".join(out)


def _or0(number):
    """A value as stored, 0 when absent (``x or 0`` would turn -0.0 into 0.0)."""
    return 0 if number is None else number


_KIND_OF = {"sum": 1, "histogram": 2, "exponential_histogram": 3}


def _value_kind(value: dict) -> str:
    return "sum" if "value_int" in value else "exponential_histogram" if "positive" in value else "histogram"


class _Reader:
    """The saved format, read with every length checked (ValueError when it is not one)."""

    def __init__(self, data: bytes):
        self.data, self.at = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("not a saved temporality state (cut short)")
        self.at += n
        return bytes(self.data[self.at - n:self.at])

    def unpack(self, layout: str) -> tuple:
        return struct.unpack(layout, self.take(struct.calcsize(layout)))

    def u32(self) -> int:
        return self.unpack("<I")[0]

    def end(self) -> None:
        if self.at != len(self.data):
            raise ValueError("not a saved temporality state (bytes left over)")

    def counts(self) -> list:
        n = self.u32()
        return list(self.unpack(f"<{n}Q"))

    def record(self) -> tuple[int, bytes | None, _Stream]:
        """(serial, identity or None when the record names its stream by serial only, stream)."""
        serial, named = self.unpack("<QB")
        if named > 1:
            raise ValueError("not a saved temporality state (a record neither named nor numbered)")
        key = self.take(self.u32()) if named else None
        kind, start, time, seen = self.unpack("<Bqqq")
        if kind == 1:
            flags, vi, vd = self.unpack("<Bqd")
            return serial, key, _Stream(start, time, {"value_double": vd if flags & 2 else None,
                                              "value_int": vi if flags & 1 else None}, (), seen)
        if kind not in (2, 3):
            raise ValueError("not a saved temporality state (a record of no known kind)")
        count, flags, sum_, low, high = self.unpack("<QBddd")
        value = {"count": count, "sum": sum_ if flags & 1 else None, "min": low if flags & 2 else None,
                 "max": high if flags & 4 else None}
        if kind == 2:
            value["bucket_counts"] = self.counts()
            nbuckets, = self.unpack("<q")
            bounds = self.unpack(f"<{self.u32()}d")
            return serial, key, _Stream(start, time, value, (nbuckets, *bounds), seen)
        value["zero_count"], scale, zero_threshold = self.unpack("<Qqd")
        for side in ("positive", "negative"):
            low_index, = self.unpack("<q")
            value[side] = {low_index + i: n for i, n in enumerate(self.counts()) if n}
        return serial, key, _Stream(start, time, value, (scale, zero_threshold), seen)


def _entry(key: bytes, stream: _Stream) -> list:
    """A stream as the saved state holds it."""
    return [base64.b64encode(key).decode("ascii"), stream.start, stream.time, _value_json(stream.value),
            list(stream.shape), stream.seen]


def _value_json(value: dict) -> dict:
    return {name: sorted(v.items()) if name in ("positive", "negative") else v for name, v in value.items()}


def _value_from_json(data: dict) -> dict:
    return {name: {int(k): n for k, n in v} if name in ("positive", "negative") else v for name, v in data.items()}


class SettingChange:
    """Pushed through the metrics buffer by a change of the setting: the writer applies it in
    order, so every request acknowledged before the change is stored under the old setting and
    every one received after it under the new (a 0-byte, 0-row item always fits the buffer)."""

    num_rows = 0
    nbytes = 0

    def __init__(self, temporality: str):
        Settings(temporality=temporality)  # a clear error for an unknown value
        self.temporality = temporality

    def get_total_buffer_size(self) -> int:
        return 0


class Stage:
    """The conversion as the metrics writer runs it: on what it drains, in order, on its
    thread. An item is turned into its stored rows and sources (an otlpd.sources.Lean).

    The state is saved (``save``, called with the converter) after a write that changed it,
    at most once every ``save_interval`` seconds of ``clock``: the writer asks
    :meth:`save_in` when to wake at the latest, so the saved state is never more than one
    interval behind what was written; ``commit(force=True)`` (the writer's last write, at
    stop) saves whatever is unsaved."""

    def __init__(self, converter: Converter, save=None, save_interval: float = 0.0,
                 clock: Callable[[], float] = _time.monotonic):
        self.converter = converter
        self.save = save
        self.save_interval = save_interval
        self.dirty = False
        self._clock = clock
        self._saved_at = float("-inf")
        self.run_rows, self.run_bytes = RUN_ROWS, RUN_BYTES  # (limit_runs)
        # the sources seen lately, {source_id: (canonical key, sources batch, row)}: a run's
        # sources are looked up here, and imported from a request only when new
        self._sources: dict[int, tuple[bytes, pa.RecordBatch, int]] = {}

    def save_in(self) -> float | None:
        """Seconds until the unsaved state must be saved (the writer writes by then), or None."""
        if not self.dirty or self.save is None:
            return None
        return max(0.0, self._saved_at + self.save_interval - self._clock())

    def commit(self, force: bool = False) -> None:
        """The writer wrote what this stage converted: save the state it left, if the last
        save is an interval old (or ``force``)."""
        if not self.dirty or self.save is None:
            return
        now = self._clock()
        if force or now >= self._saved_at + self.save_interval:
            self.save(self.converter)
            self.dirty = False
            self._saved_at = now

    def process(self, drained: list) -> list:
        """The items to write for ``drained``, in order. Consecutive requests that need
        converting are converted as one run (one call, one pass: the per-call work of
        gathering and wrapping Arrow columns is paid once a run, not once a request), up to
        ``run_rows`` rows and ``run_bytes`` bytes: the writer's bounds of a written batch
        (limit_runs), so that a run is written as it is, never concatenated again."""
        out: list = []
        run: list = []
        run_rows = run_bytes = 0
        for item in drained:
            if isinstance(item, SettingChange):
                out.extend(self._convert_run(run))
                run, run_rows, run_bytes = [], 0, 0
                self.converter.settings = dataclasses.replace(self.converter.settings,
                                                              temporality=item.temporality)
                self.converter.reset()  # no delta is computed across the change
                self.dirty = True
                continue
            item = decode.as_item(item)
            if not self._may_need(item):
                out.extend(self._convert_run(run))
                run, run_rows, run_bytes = [], 0, 0
                self.converter.counters.passed_through_points += item.num_rows
                out.append(item)  # as it is (a Chunk stays one, merged natively)
                continue
            if run and (run_rows + item.num_rows > self.run_rows or run_bytes + item.nbytes > self.run_bytes):
                out.extend(self._convert_run(run))
                run, run_rows, run_bytes = [], 0, 0
            run.append(item)
            run_rows += item.num_rows
            run_bytes += item.nbytes
        out.extend(self._convert_run(run))
        return out

    def limit_runs(self, rows: int, nbytes: int) -> None:
        """Convert runs of at most ``rows`` rows and ``nbytes`` bytes (the writer's batch)."""
        self.run_rows, self.run_bytes = max(1, rows), max(1, nbytes)

    def _may_need(self, item) -> bool:
        """Whether item may hold a point to convert: the decoder's Chunk says which
        temporalities its sums and histograms have; other items are checked on their rows."""
        target = self.converter.target()
        if target is None:
            return False
        mask = getattr(item, "temporalities", None)
        if mask is not None:
            return bool(mask & (1 << (CUMULATIVE if target == DELTA else DELTA)))
        return self.converter.needs(item.to_batch())

    def _convert_run(self, run: list) -> list:
        """The converted rows of consecutive items, as one :class:`Converted` (as one item
        each if their sources collide: one id, two sources, across requests)."""
        if not run:
            return []
        merged = self._run_sources(run)
        if merged is None:  # (a single item's sources never collide)
            return [converted for item in run for converted in self._convert_run([item])]
        rows = decode.concat(run) if len(run) > 1 else decode.as_batch(run[0])
        ids, keys, places = merged
        table = self.converter.convert(rows, source_keys=dict(zip(ids, keys)))
        self.dirty = True  # only conversion (and expiry, which runs with it) changes the streams
        batches = table.combine_chunks().to_batches()
        rows = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=rows.schema)
        return [Converted(rows, ids, keys, places)]

    def _run_sources(self, items: list) -> tuple[tuple, tuple, list] | None:
        """The sources of ``items`` together (each id once, in order of first use): the ids,
        the canonical keys and where each source's row is (a sources batch and its row); None
        if two items give one id to two different sources. A request's sources batch is
        imported only if it brings a source not seen lately: the writer stores a source once
        a file, so the rows are gathered only if it asks (Converted.sources_batch)."""
        known: dict[int, bytes] = {}
        places = []
        cache = self._sources
        for item in items:
            batch = None
            for row, (source_id, key) in enumerate(zip(item.source_ids, item.source_keys)):
                seen = known.get(source_id)
                if seen is None:
                    known[source_id] = key
                    place = cache.get(source_id)
                    if place is None or place[0] != key:
                        if batch is None:
                            batch = item.sources_batch()
                        if len(cache) >= SOURCES_CACHED:
                            cache.clear()  # (sources that come and go: the next runs import theirs again)
                        place = cache[source_id] = (key, batch, row)
                    places.append(place)
                elif seen != key:
                    return None
        return tuple(known), tuple(known.values()), places


# rows converted in one call at most (a transient copy of that size), unless the writer sets its
# own bounds (Stage.limit_runs: a run is then one written batch)
RUN_ROWS = 65536
RUN_BYTES = 16 * 1024 * 1024
SOURCES_CACHED = 4096  # sources a stage remembers (each keeps its request's sources batch alive)


class Converted:
    """A run's converted rows and the sources they refer to, with the interface of a
    buffered item (otlpd.sources.Lean's). The sources batch is gathered from where the stage
    found each source only when asked for (the writer asks for those new to its file)."""

    __slots__ = ("rows", "source_ids", "source_keys", "collisions", "_places", "_sources")

    def __init__(self, rows: pa.RecordBatch, source_ids: tuple, source_keys: tuple, places: list):
        self.rows = rows
        self.source_ids = source_ids
        self.source_keys = source_keys
        self.collisions = 0
        self._places = places
        self._sources = None

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes

    def get_total_buffer_size(self) -> int:
        return self.rows.get_total_buffer_size()

    def to_batch(self) -> pa.RecordBatch:
        return self.rows

    def sources_batch(self) -> pa.RecordBatch:
        if self._sources is None:
            parts = []  # (batch, rows): consecutive sources of one batch taken together
            for _key, batch, row in self._places:
                if parts and parts[-1][0] is batch:
                    parts[-1][1].append(row)
                else:
                    parts.append((batch, [row]))
            taken = [batch if rows == list(range(batch.num_rows)) else batch.take(pa.array(rows, pa.int32()))
                     for batch, rows in parts]
            if len(taken) == 1:
                self._sources = taken[0]
            elif taken:
                self._sources = pa.Table.from_batches(taken, schema=sources.SOURCES_SCHEMA) \
                    .combine_chunks().to_batches()[0]
            else:
                self._sources = pa.RecordBatch.from_pylist([], schema=sources.SOURCES_SCHEMA)
            self._places = None
        return self._sources


def implementations() -> dict[str, type]:
    """Every importable converter, by name ("python": the reference, "cython")."""
    found: dict[str, type] = {"python": Converter}
    if _native is not None:
        found["cython"] = NativeConverter
    return found


def release_spares() -> int:
    """Frees the blocks the native converter keeps for its next conversion (at most 64 MiB,
    docs/CONFIGURATION.md "Allocators"); the bytes freed. The daemon calls it when it stops."""
    return 0 if _native is None else _native.release_spares()


IMPLEMENTATION = "python" if pure_python_requested() or _native is None else "cython"
DEFAULT_CONVERTER = implementations()[IMPLEMENTATION]  # what the daemon converts with


def _write_atomically(path: Path, data: str | bytes | tuple) -> None:
    """A temporary file renamed into place: a crash leaves the old content or the new. A
    tuple of bytes is written in its parts (a state of megabytes is not copied together)."""
    scratch = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        scratch.write_text(data)
    else:
        with open(scratch, "wb") as stream:
            _write_all(stream, (data,) if isinstance(data, bytes) else data)
    os.replace(scratch, path)


def _write_all(stream, parts) -> None:
    """``parts`` to a file opened in binary mode, each without a copy (os.writev of the raw file)."""
    stream.flush()
    fd, views = stream.fileno(), [memoryview(part) for part in parts if len(part)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views and written:
            views[0] = views[0][written:]


_MAGIC = b"OTLPDTS\x00"  # the whole state's file: magic, u32 length, JSON header, the state
_EMPTY_CHANGES = struct.pack("<II", 0, 0)


def _split_whole(data: bytes) -> tuple[dict, bytes]:
    """(the header, the state) of a whole state's file; ValueError if it is not one."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise ValueError("not a saved temporality state")
    length, = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    header = json.loads(data[start:start + length])
    if not isinstance(header, dict):
        raise ValueError("not a saved temporality state")
    return header, data[start + length:]


STATE_FILE = "temporality.json"  # in the output directory: the value set over the API
STREAMS_FILE = "temporality-streams.bin"  # beside it: the conversion state of every stream
CHANGES_FILE = "temporality-streams.log"  # and the changes since, a frame a write
CHANGES_MIN_BYTES = 1 << 20  # the log may grow to this, or to the whole state's size, before it is folded in


class TemporalityControl:
    """The setting at run time: the configured value, the API's (persisted in the output
    directory until it is removed), and the metrics writer's stage that applies it."""

    def __init__(self, config, output_dir: Path, clock: Callable[[], float] = _time.monotonic):
        self.configured = config["metrics.temporality"]
        self.path = Path(output_dir) / STATE_FILE
        self.buffer = None  # the metrics buffer the changes go through (set by the daemon)
        self._lock = threading.Lock()
        saved = self._load()
        self.current = saved["temporality"] if saved else self.configured
        self.source = "api" if saved else "config"
        self.changed_at = saved.get("changed_at") if saved else None
        self.streams_path = Path(output_dir) / STREAMS_FILE
        self.changes_path = Path(output_dir) / CHANGES_FILE
        self._generation = 0     # of the whole state saved; the changes logged after it carry it
        self._whole_bytes = 0    # its size, and the log's: the log is folded in once it is larger
        self._changes_bytes = 0
        self._whole_next = False  # a save failed half-way: the next is whole
        converter = DEFAULT_CONVERTER(Settings(
            temporality=self.current, initial_value=config["metrics.initial_value"],
            max_streams=config["metrics.max_streams"], max_stale_ns=int(config["metrics.max_stale"] * 1e9),
            started_at_ns=_time.time_ns()))
        self._load_streams(converter)
        self.stage = Stage(converter, save=self._save_streams, save_interval=config["writer.write_interval"],
                           clock=clock)

    def _load_streams(self, converter: Converter) -> None:
        """The streams saved by the last run (the whole state, then the changes logged after
        it), if they belong to the setting now in effect; a state that cannot be read is
        logged and ignored: the streams start afresh."""
        try:
            data = self.streams_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            log.warning("%s: conversion state not read (%s); every stream starts afresh", self.streams_path, error)
            return
        try:
            header, dump = _split_whole(data)
            if header.get("version") != STATE_VERSION or header.get("temporality") != converter.settings.temporality:
                log.info("%s: saved under temporality %s (state version %s), not %s (version %s); every "
                         "stream starts afresh", self.streams_path, header.get("temporality"),
                         header.get("version"), converter.settings.temporality, STATE_VERSION)
                return
            converter.load_dump(dump)
        except ValueError as error:
            log.warning("%s: conversion state not read (%s); every stream starts afresh", self.streams_path, error)
            converter.reset()
            return
        self._generation = header.get("generation", 0)
        self._whole_bytes = len(data)
        applied = self._load_changes(converter)
        log.info("metrics temporality: %d streams go on from %s (and %d saved changes)",
                 converter.streams, self.streams_path, applied)

    def _load_changes(self, converter: Converter) -> int:
        """Apply the changes logged after the whole state (of its generation; a frame cut
        short by a crash, or damaged, ends them)."""
        try:
            data = self.changes_path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as error:
            log.warning("%s: saved changes not read (%s)", self.changes_path, error)
            return 0
        applied = at = 0
        while at + 8 <= len(data):
            length, crc = struct.unpack_from("<II", data, at)
            payload = data[at + 8:at + 8 + length]
            if len(payload) < max(length, 8) or zlib.crc32(payload) != crc:
                break  # the last frame, cut short: the changes of the write being made
            generation, = struct.unpack_from("<Q", payload)
            if generation == self._generation:
                try:
                    converter.load_dump(payload[8:], replace=False)
                except ValueError as error:
                    log.warning("%s: saved changes not read after the first %d (%s)", self.changes_path,
                                applied, error)
                    break
                applied += 1
            at += 8 + length
        self._changes_bytes = at
        return applied

    def _save_streams(self, converter: Converter) -> None:
        """After a write that changed the streams: the changes since the last save, appended
        to the log (only the streams that changed), or the whole state (the first time, after
        a reset, or once the log outgrows it), which starts a new generation."""
        try:
            changes = None
            if not self._whole_next and self._changes_bytes <= max(CHANGES_MIN_BYTES, self._whole_bytes):
                changes = converter.dump_changes()
            if changes is not None:
                if changes != _EMPTY_CHANGES:
                    generation = struct.pack("<Q", self._generation)
                    length = len(generation) + len(changes)  # the frame's parts, not copied together
                    head = struct.pack("<II", length, zlib.crc32(changes, zlib.crc32(generation)))
                    self._whole_next = True  # until the frame is written whole
                    with open(self.changes_path, "ab") as log_file:
                        _write_all(log_file, (head, generation, changes))
                    self._whole_next = False
                    self._changes_bytes += len(head) + length
                return
            self._generation += 1
            header = json.dumps({"version": STATE_VERSION, "temporality": converter.settings.temporality,
                                 "generation": self._generation}).encode()
            parts = (_MAGIC, struct.pack("<I", len(header)), header, converter.dump())
            self._whole_next = True
            _write_atomically(self.streams_path, parts)
            self.changes_path.unlink(missing_ok=True)  # (its frames are of the older generation)
            self._whole_next = False
            converter.mark_saved()
            self._whole_bytes, self._changes_bytes = sum(map(len, parts)), 0
        except OSError as error:
            log.error("%s: conversion state not saved: %s", self.streams_path, error)

    def _load(self) -> dict | None:
        try:
            saved = json.loads(self.path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None  # (an output_dir that is not a directory is the writer's error to tell)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{self.path}: not a saved temporality setting ({error}); "
                              "remove it to use metrics.temporality") from None
        if not isinstance(saved, dict) or saved.get("temporality") not in MODES:
            raise ConfigError(f"{self.path}: temporality must be one of {', '.join(MODES)}; "
                              "remove it to use metrics.temporality")
        return saved

    def snapshot(self) -> dict:
        counters = self.stage.converter.counters
        return {"temporality": self.current, "configured": self.configured, "source": self.source,
                "changed_at": self.changed_at, "streams": self.stage.converter.streams,
                "converted_points": counters.converted_points,
                "dropped_points": dict(counters.dropped_points),
                "passed_through_points": counters.passed_through_points,
                "streams_over_limit": counters.streams_over_limit}

    def set(self, value: str | None) -> dict:
        """Change the setting (None: back to the configured value, and forget the saved one).
        Every request received after this returns is stored under the new value."""
        with self._lock:
            if value is None:
                self.path.unlink(missing_ok=True)
                new, source = self.configured, "config"
            else:
                if value not in MODES:
                    raise ValueError(f"temporality must be one of {', '.join(MODES)}, got {value!r}")
                new, source = value, "api"
            changed_at = _time.time()
            if value is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(self.path, json.dumps({"temporality": new, "changed_at": changed_at}))
            if self.buffer is not None:
                self.buffer.push(SettingChange(new), 0, 0)
            old, self.current, self.source, self.changed_at = self.current, new, source, changed_at
        log.info("metrics.temporality: %s -> %s (%s)", old, new,
                 "set over the API" if source == "api" else "the configured value again")
        return self.snapshot()
