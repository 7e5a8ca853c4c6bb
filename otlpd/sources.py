"""Resource and scope once per file (the other half of the lean layout), reference.

Today every row repeats its resource and scope columns (about 371 of a realistic span's 1,021
decoded bytes). In the lean layout a row keeps ``service_name`` and a ``source_id``; the
resource and scope it came from are one row of a small *sources* table written beside the
data file. Like :mod:`otlpd.attributes`, this module fixes the rules natively built code
will follow; the daemon does not write it yet.

``source_id`` is the FNV-1a 64-bit hash of a canonical encoding of the resource and scope
values (:func:`canonical_bytes`), not of their wire bytes: two senders that encode the
same resource differently get the same id, so one join key works across files and processes
(``JOIN ... USING (source_id)`` over every sources table, duplicates collapsed with
``DISTINCT ON`` / ``unique``). Two different sources with one id in one file are a collision
(about n^2 / 2^65 for n sources): :func:`split` then gives the later one the next free id
(so a file never merges two sources), and says so.
"""
from __future__ import annotations

import struct
from typing import Any, Iterable

import pyarrow as pa

from otlpd import attributes as lean
from otlpd import schema

# the stored (lean) form of the resource and scope columns, service_name aside
_FIELDS = [field for field in lean.lean_fields(schema.COMMON_FIELDS, schema.ATTRS, lean.ANYVALUE)
           if field.name != "service_name"]
SOURCE_COLUMNS = tuple(field.name for field in _FIELDS)
SOURCE_ID = pa.field("source_id", pa.uint64())
SOURCES_SCHEMA = pa.schema([SOURCE_ID] + _FIELDS)

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


def _encode(value: Any, out: bytearray) -> None:
    """Tag, then the value: lengths and numbers are 8-byte little-endian; a struct is its
    fields in schema order, a list its length and elements."""
    if value is None:
        out += b"\x00"
    elif isinstance(value, bool):
        out += b"\x01\x01" if value else b"\x01\x00"
    elif isinstance(value, int):
        out += b"\x02" + struct.pack("<q", value if value < (1 << 63) else value - (1 << 64))
    elif isinstance(value, float):
        out += b"\x03" + struct.pack("<d", value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out += b"\x04" + struct.pack("<Q", len(data)) + data
    elif isinstance(value, (bytes, bytearray)):
        out += b"\x05" + struct.pack("<Q", len(value)) + bytes(value)
    elif isinstance(value, (list, tuple)):
        out += b"\x06" + struct.pack("<Q", len(value))
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        out += b"\x07" + struct.pack("<Q", len(value))
        for item in value.values():  # to_pylist keeps the struct's field order
            _encode(item, out)
    else:
        raise TypeError(f"no canonical encoding for {type(value).__name__}")


def canonical_bytes(values: Iterable[Any]) -> bytes:
    """The canonical encoding of one row's resource and scope values (SOURCE_COLUMNS order)."""
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)


def split(table: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table, int]:
    """(rows without the resource/scope columns but with ``source_id``, the sources table,
    collisions resolved) for a table of today's layout."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    columns = list(zip(*(table[name].to_pylist() for name in SOURCE_COLUMNS))) if table.num_rows else []
    ids: list[int] = []
    by_key: dict[bytes, int] = {}
    taken: dict[int, bytes] = {}
    sources: list[tuple] = []
    collisions = 0
    for values in columns:
        key = canonical_bytes(values)
        known = by_key.get(key)
        if known is None:
            known = fnv1a64(key)
            while known in taken:  # a different source already has this id in this file
                collisions += 1
                known = (known + 1) & _MASK
            by_key[key] = known
            taken[known] = key
            sources.append((known, *values))
        ids.append(known)
    rows = table.drop_columns(list(SOURCE_COLUMNS))
    rows = rows.add_column(rows.schema.get_field_index("service_name") + 1, SOURCE_ID, pa.array(ids, pa.uint64()))
    source_columns = list(zip(*sources)) if sources else [()] * len(SOURCES_SCHEMA)
    sources_table = pa.table([pa.array(column, field.type) for column, field in zip(source_columns, SOURCES_SCHEMA)],
                             schema=SOURCES_SCHEMA)
    return rows, sources_table, collisions


def join(rows: pa.Table, sources: pa.Table, target: pa.Schema) -> pa.Table:
    """Today's layout again (``target``), from the rows and their file's sources table."""
    index = {source_id: i for i, source_id in enumerate(sources["source_id"].to_pylist())}
    try:
        positions = pa.array([index[i] for i in rows["source_id"].to_pylist()], pa.int64())
    except KeyError as error:
        raise ValueError(f"source_id {error.args[0]} is not in the sources table") from None
    taken = sources.take(positions)
    return pa.table([taken[name] if name in SOURCE_COLUMNS else rows[name] for name in target.names],
                    schema=target)
