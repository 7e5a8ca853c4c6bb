"""Bytes of the attribute columns before schema version 2 (lists of structs) against the lean
attribute form (otlpd.attributes), on the realistic requests of benchmarks/requests.py: decoded
Arrow bytes and file bytes per item.

    python -m benchmarks.attribute_form [--items 20000]

Speed is not measured here: the lean form's reference is pure Python; the native decoder
will be measured by cost_model, ab and run_all once it writes the form.
"""
from __future__ import annotations

import argparse
import io

import pyarrow as pa

from benchmarks.requests import request_pool
from otlpd import attributes as lean
from otlpd import schema

# the row's own attribute column, the same name in every signal (events' attributes are nested)
COLUMN = "attributes"


def file_bytes(table: pa.Table, codec: str) -> int:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as writer:
        writer.write_table(table, max_chunksize=65536)
    return sink.tell()


def measure(signal: str, items: int) -> dict:
    per_request = 1000
    pool = request_pool(signal, per_request, size=max(1, items // per_request))
    batches = [schema.decode_v1(signal, data) for data in pool]
    table = pa.Table.from_batches(batches).combine_chunks()
    rows = table.num_rows
    today = pa.table({COLUMN: table[COLUMN]})
    maps, types, other = lean.split_column(table[COLUMN].combine_chunks())
    lean_table = pa.table({COLUMN: maps, f"{COLUMN}_types": types, f"{COLUMN}_other": other})
    return {
        "rows": rows,
        "today decoded": today.nbytes / rows, "lean decoded": lean_table.nbytes / rows,
        "today zstd": file_bytes(today, "zstd") / rows, "lean zstd": file_bytes(lean_table, "zstd") / rows,
        "today lz4": file_bytes(today, "lz4") / rows, "lean lz4": file_bytes(lean_table, "lz4") / rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    print(f"pyarrow {pa.__version__}; bytes per item of the top-level attribute column(s)")
    print(f"{'signal':8} {'decoded today':>14} {'lean':>8} {'zstd today':>11} {'lean':>8} {'lz4 today':>10} {'lean':>8}")
    for signal in schema.SIGNALS:
        m = measure(signal, args.items)
        print(f"{signal:8} {m['today decoded']:14.1f} {m['lean decoded']:8.1f} {m['today zstd']:11.1f} "
              f"{m['lean zstd']:8.1f} {m['today lz4']:10.1f} {m['lean lz4']:8.1f}")


if __name__ == "__main__":
    main()
