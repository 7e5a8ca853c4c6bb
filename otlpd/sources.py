"""Resource and scope once per file: the rows keep ``service_name`` and a ``source_id``, the
resource and scope they came from are one row of a small *sources* table beside them.

Every row of today's layout would repeat its resource and scope (about 371 of a realistic
span's 1,021 decoded bytes). Here a file's rows keep ``service_name`` (for the commonest
filter) and ``source_id``; each distinct resource+scope is one row of the file's sources
table, ``<output_dir>/sources/<signal>/<data file name>`` (docs/SCHEMA.md, "Sources").

``source_id`` is the FNV-1a 64-bit hash of a canonical encoding of the resource and scope
*values* (:func:`canonical_bytes`), not of their wire bytes: two senders that encode the
same resource differently get the same id, so one join key works across files and
processes. Two different sources with one id in one request are a collision (about
n^2 / 2^65 for n sources): :func:`split` gives the later one the next free id, so a
request never merges two sources, and the writer starts a new file before a request
whose source collides with one already in the current file (the rows carry the
canonical keys to tell). The Cython decoder (ext/decoder/sources.pxi) follows exactly
these rules; this module is its reference, and the pure-Python path's.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from otlpd import schema

# the resource and scope columns of the full layout, in order, service_name aside
_FIELDS = [field for field in schema.COMMON_STORED_FIELDS if field.name != "service_name"]
SOURCE_COLUMNS = tuple(field.name for field in _FIELDS)
SOURCE_ID = pa.field("source_id", pa.uint64())
_METADATA = {"otlpd.schema_version": schema.SCHEMA_VERSION}
SOURCES_SCHEMA = pa.schema([SOURCE_ID] + _FIELDS, metadata=_METADATA)
SOURCES_DIRECTORY = "sources"


def _rows_schema(full: pa.Schema) -> pa.Schema:
    fields = [field for field in full if field.name not in SOURCE_COLUMNS]
    at = [field.name for field in fields].index("service_name") + 1
    return pa.schema(fields[:at] + [SOURCE_ID] + fields[at:], metadata=_METADATA)


ROWS_SCHEMAS = {signal: _rows_schema(schema.schema_for(signal)) for signal in schema.SIGNALS}


def rows_schema(signal: str) -> pa.Schema:
    """The schema of the data files of ``signal``: the full layout without the resource and
    scope columns, with ``source_id`` after ``service_name``."""
    schema.schema_for(signal)  # a clear error for an unknown signal
    return ROWS_SCHEMAS[signal]


def sources_directory(signal_directory: Path | str) -> Path:
    """Where the sources files of ``<output_dir>/<signal>`` go: ``<output_dir>/sources/<signal>``."""
    signal_directory = Path(signal_directory)
    return signal_directory.parent / SOURCES_DIRECTORY / signal_directory.name


def sources_path(data_path: Path | str) -> Path:
    """The sources file of a data file ``<output_dir>/<signal>/<name>`` (or its ``.part``):
    ``<output_dir>/sources/<signal>/<name>``."""
    data_path = Path(data_path)
    return sources_directory(data_path.parent) / data_path.name


_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1
ID_MASK = _MASK  # tests narrow it (with the decoder's _set_source_id_mask) to force collisions


def fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


_INT_FORMATS = {8: "b", 16: "h", 32: "i", 64: "q"}


def _encode(value: Any, t: pa.DataType, out: bytearray) -> None:
    """Byte 0 for a null; else byte 1 and the value: a fixed-width value's little-endian
    bytes (a bool one byte), a string or binary its uint32 length and bytes, a list or map
    its uint32 length and elements (a map's are struct<key, value>), a struct its fields in
    order. It follows the Arrow type, so the decoder can walk its columns the
    same way."""
    if value is None:
        out.append(0)
        return
    out.append(1)
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            field = t.field(i)
            _encode(value[field.name], field.type, out)
    elif pa.types.is_map(t):
        out += struct.pack("<I", len(value))
        for key, item in value:
            out.append(1)  # an entry is a struct<key, value>, never null
            _encode(key, t.key_type, out)
            _encode(item, t.item_type, out)
    elif pa.types.is_list(t):
        out += struct.pack("<I", len(value))
        for item in value:
            _encode(item, t.value_type, out)
    elif pa.types.is_string(t) or pa.types.is_binary(t):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        out += struct.pack("<I", len(data)) + data
    elif pa.types.is_boolean(t):
        out.append(1 if value else 0)
    elif pa.types.is_floating(t):
        out += struct.pack("<d", value)
    elif pa.types.is_integer(t):
        code = _INT_FORMATS[t.bit_width]
        out += struct.pack("<" + (code if pa.types.is_signed_integer(t) else code.upper()), value)
    else:
        raise TypeError(f"no canonical encoding for {t}")


def canonical_bytes(values: Iterable[Any]) -> bytes:
    """The canonical encoding of one row's resource and scope values (SOURCE_COLUMNS order)."""
    out = bytearray()
    for value, field in zip(values, _FIELDS):
        _encode(value, field.type, out)
    return bytes(out)


class Lean:
    """One request's rows in the stored layout and the sources they refer to: what the
    buffer holds on the pure-Python path, with the interface of the decoder's Chunk
    (``num_rows``, ``nbytes``, ``to_batch()``, ``source_ids``, ``source_keys``,
    ``sources_batch()``)."""

    __slots__ = ("rows", "sources", "source_ids", "source_keys", "collisions")

    def __init__(self, rows: pa.RecordBatch, sources: pa.RecordBatch, source_keys: tuple, collisions: int = 0):
        self.rows = rows
        self.sources = sources
        self.source_ids = tuple(sources.column(0).to_pylist())
        self.source_keys = source_keys
        self.collisions = collisions

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.sources.nbytes

    def get_total_buffer_size(self) -> int:
        return self.rows.get_total_buffer_size() + self.sources.get_total_buffer_size()

    def to_batch(self) -> pa.RecordBatch:
        return self.rows

    def sources_batch(self) -> pa.RecordBatch:
        return self.sources


_NO_SOURCES = pa.RecordBatch.from_pylist([], schema=SOURCES_SCHEMA)


def plain(batch: pa.RecordBatch) -> Lean:
    """Rows as they are, referring to no source (a writer's tests write toy schemas; the
    benchmarks write the full layout this way to compare)."""
    return Lean(batch, _NO_SOURCES, ())


def lean_or_plain(table: pa.Table | pa.RecordBatch) -> Lean:
    """:func:`lean` for rows of the full layout, :func:`plain` for any other rows."""
    batch = _as_batch(table, table.schema)
    if any(batch.schema.names == schema.schema_for(signal).names for signal in schema.SIGNALS):
        return lean(batch)
    return plain(batch)


def _as_batch(table: pa.Table | pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    if isinstance(table, pa.RecordBatch):
        return table
    table = table.combine_chunks()
    batches = table.to_batches()
    return batches[0] if len(batches) == 1 else pa.RecordBatch.from_pylist([], schema=target)


def lean(table: pa.Table | pa.RecordBatch) -> Lean:
    """A request's rows of the full layout (``schema.schema_for``) as a :class:`Lean`: the
    reference of the decoder's stored layout. Sources in the order they first occur, one
    per distinct resource+scope; a later source whose id is taken gets the next free one."""
    columns = list(zip(*(table.column(name).to_pylist() for name in SOURCE_COLUMNS))) if table.num_rows else []
    ids: list[int] = []
    by_key: dict[bytes, int] = {}
    taken: set[int] = set()
    keys: list[bytes] = []
    values: list[tuple] = []
    collisions = 0
    previous = None
    for row in columns:
        if row is previous or row == previous:  # rows of one group: no new encoding
            ids.append(ids[-1])
            continue
        previous = row
        key = canonical_bytes(row)
        known = by_key.get(key)
        if known is None:
            known = fnv1a64(key) & ID_MASK
            while known in taken:  # a different source already has this id in this request
                collisions += 1
                known = (known + 1) & _MASK
            by_key[key] = known
            taken.add(known)
            keys.append(key)
            values.append((known, *row))
        ids.append(known)
    signal = _signal_of(table.schema)
    target = rows_schema(signal)
    source_columns = list(zip(*values)) if values else [()] * len(SOURCES_SCHEMA)
    sources_batch = pa.RecordBatch.from_arrays(
        [pa.array(column, field.type) for column, field in zip(source_columns, SOURCES_SCHEMA)],
        schema=SOURCES_SCHEMA)
    id_array = pa.array(ids, pa.uint64())
    rows = pa.RecordBatch.from_arrays(
        [id_array if name == "source_id" else _column(table, name) for name in target.names], schema=target)
    return Lean(rows, sources_batch, tuple(keys), collisions)


def _column(table, name):
    column = table.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _signal_of(full: pa.Schema) -> str:
    for signal in schema.SIGNALS:
        if full.names == schema.schema_for(signal).names:
            return signal
    raise ValueError("not rows of otlpd's full layout (schema.schema_for)")


def split(table: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table, int]:
    """(the rows in the stored layout, their sources table, collisions resolved) for rows of
    the full layout."""
    result = lean(table)
    return (pa.Table.from_batches([result.rows]), pa.Table.from_batches([result.sources]),
            result.collisions)


def join(rows: pa.Table | pa.RecordBatch, sources: pa.Table | pa.RecordBatch,
         target: pa.Schema | None = None) -> pa.Table:
    """The full layout again (``target``, by default the signal's ``schema.schema_for``),
    from stored rows and the sources table of their file. A sources table may hold a source
    twice (the same id, the same values: several files' tables together)."""
    if target is None:
        target = next(schema.schema_for(signal) for signal in schema.SIGNALS
                      if rows.schema.names == rows_schema(signal).names)
    positions = pc.index_in(rows.column("source_id"), value_set=sources.column("source_id"))
    if positions.null_count:
        missing = pc.filter(rows.column("source_id"), pc.is_null(positions))[0].as_py()
        raise ValueError(f"source_id {missing} is not in the sources table")
    taken = sources.take(positions)
    return pa.table([taken.column(name) if name in SOURCE_COLUMNS else rows.column(name)
                     for name in target.names], schema=target)
