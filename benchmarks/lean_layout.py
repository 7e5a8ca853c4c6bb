"""Bytes of today's layout against the lean layout the lean-layout issue asks for, built from
the two reference halves (otlpd.attributes at every attribute site, nested ones included;
otlpd.sources for resource and scope once per file; a log's string body as a plain string
column), on the realistic requests of benchmarks/requests.py.

    python -m benchmarks.lean_layout [--items 20000]

Decoded bytes are what the buffer holds per item; file bytes are per item of an IPC file
(64 k-row batches) plus the file's sources table. Speed is not measured: these halves are
pure Python references; the native decoder will be measured by cost_model, ab and run_all.
"""
from __future__ import annotations

import argparse

import pyarrow as pa

from benchmarks.attribute_form import file_bytes
from benchmarks.requests import request_pool
from otlpd import attributes as lean
from otlpd import schema, sources


def lean_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct(lean_fields([t.field(i) for i in range(t.num_fields)]))
    if pa.types.is_list(t):
        return pa.list_(lean_type(t.value_type))
    return t


def lean_fields(fields) -> list[pa.Field]:
    out = []
    for field in fields:
        if field.type == schema.ATTRS:
            out += [pa.field(field.name, lean.MAP), pa.field(field.name + "_types", lean.TYPES),
                    pa.field(field.name + "_other", lean.OTHER)]
        elif field.name == "body" and field.type == schema.ANYVALUE:
            out += [pa.field("body", pa.string()), pa.field("body_other", schema.ANYVALUE)]
        else:
            out.append(pa.field(field.name, lean_type(field.type)))
    return out


def lean_value(t: pa.DataType, value):
    if value is None:
        return None
    if pa.types.is_struct(t):
        return lean_row([t.field(i) for i in range(t.num_fields)], value)
    if pa.types.is_list(t):
        return [lean_value(t.value_type, item) for item in value]
    return value


def lean_row(fields, row: dict) -> dict:
    out = {}
    for field in fields:
        value = row[field.name]
        if field.type == schema.ATTRS:
            if value is None:
                out.update({field.name: None, field.name + "_types": None, field.name + "_other": None})
                continue
            entries, types, other = lean.split([{**a, "value": lean._value_dict(a["value"])} for a in value])
            out.update({field.name: entries, field.name + "_types": types, field.name + "_other": other})
        elif field.name == "body" and field.type == schema.ANYVALUE:
            string = value is not None and value["type"] == 1
            out.update({"body": value["str"] if string else None, "body_other": None if string else value})
        else:
            out[field.name] = lean_value(field.type, value)
    return out


def _convert(table: pa.Table) -> pa.Table:
    """``table`` in the lean form, through Python values (timestamps as int64 on the way)."""
    physical = table.cast(pa.schema([f.with_type(schema._physical(f.type)) for f in table.schema]))
    converted = pa.Table.from_pylist([lean_row(physical.schema, row) for row in physical.to_pylist()],
                                     schema=pa.schema(lean_fields(physical.schema)))
    return converted.cast(pa.schema(lean_fields(table.schema)))


def to_lean(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    rows, table_of_sources, _ = sources.split(table)
    return _convert(rows), _convert(table_of_sources)


def measure(signal: str, items: int) -> dict:
    pool = request_pool(signal, 1000, size=max(1, items // 1000))
    table = pa.Table.from_batches([schema.DECODERS[signal](data) for data in pool]).combine_chunks()
    data, table_of_sources = to_lean(table)
    n = table.num_rows
    result = {"rows": n, "sources": table_of_sources.num_rows,
              "today decoded": table.nbytes / n, "lean decoded": data.nbytes / n}
    for codec in ("zstd", "lz4"):
        result[f"today {codec}"] = file_bytes(table, codec) / n
        result[f"lean {codec}"] = (file_bytes(data, codec) + file_bytes(table_of_sources, codec)) / n
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    print(f"pyarrow {pa.__version__}; bytes per item (file bytes include the sources table)")
    print(f"{'signal':8} {'decoded today':>14} {'lean':>8} {'zstd today':>11} {'lean':>8} "
          f"{'lz4 today':>10} {'lean':>8} {'sources':>8}")
    for signal in schema.SIGNALS:
        m = measure(signal, args.items)
        print(f"{signal:8} {m['today decoded']:14.1f} {m['lean decoded']:8.1f} {m['today zstd']:11.1f} "
              f"{m['lean zstd']:8.1f} {m['today lz4']:10.1f} {m['lean lz4']:8.1f} {m['sources']:8d}")


if __name__ == "__main__":
    main()
