"""Bytes of the three layouts of the lean-layout issue, on the realistic requests of
benchmarks/requests.py: v1 (attributes as lists of key/value structs, resource and scope on
every row), v2 (attributes as a map, types and a side list at every site; a log's string body
as a string column; resource and scope still on every row: the full layout) and v3 (v2's
attributes with resource and scope once per file, otlpd.sources: what the daemon writes).

    python -m benchmarks.lean_layout [--items 20000]

Decoded bytes are what the buffer holds per item; file bytes are per item of an IPC file
(64 k-row batches), plus the file's sources table where there is one. Speed is not measured
here (cost_model, ab and run_all measure the daemon's own path).
"""
from __future__ import annotations

import argparse

import pyarrow as pa

from benchmarks.attribute_form import file_bytes
from benchmarks.requests import request_pool
from otlpd import schema, sources


def measure(signal: str, items: int) -> dict:
    pool = request_pool(signal, 1000, size=max(1, items // 1000))
    before = pa.Table.from_batches([schema.decode_v1(signal, data) for data in pool]).combine_chunks()
    version2 = pa.Table.from_batches([schema.DECODERS[signal](data) for data in pool]).combine_chunks()
    rows, table_of_sources, _ = sources.split(version2)
    n = before.num_rows
    # what the buffer holds per item: the rows and each request's own sources
    per_request = sum(sources.lean(schema.DECODERS[signal](data)).sources.nbytes for data in pool)
    result = {"rows": n, "sources": table_of_sources.num_rows, "v1 decoded": before.nbytes / n,
              "v2 decoded": version2.nbytes / n, "lean decoded": (rows.nbytes + per_request) / n}
    for codec in ("zstd", "lz4"):
        result[f"v1 {codec}"] = file_bytes(before, codec) / n
        result[f"v2 {codec}"] = file_bytes(version2, codec) / n
        result[f"lean {codec}"] = (file_bytes(rows, codec) + file_bytes(table_of_sources, codec)) / n
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    print(f"pyarrow {pa.__version__}; bytes per item: v1, v2 (full layout), v3 (stored: rows, and "
          "sources once per file; decoded: once per request)")
    print(f"{'signal':8} {'decoded v1':>10} {'v2':>7} {'v3':>7} {'zstd v1':>8} {'v2':>7} {'v3':>7} "
          f"{'lz4 v1':>7} {'v2':>7} {'v3':>7} {'sources':>8}")
    for signal in schema.SIGNALS:
        m = measure(signal, args.items)
        print(f"{signal:8} {m['v1 decoded']:10.1f} {m['v2 decoded']:7.1f} {m['lean decoded']:7.1f} "
              f"{m['v1 zstd']:8.1f} {m['v2 zstd']:7.1f} {m['lean zstd']:7.1f} "
              f"{m['v1 lz4']:7.1f} {m['v2 lz4']:7.1f} {m['lean lz4']:7.1f} {m['sources']:8d}")


if __name__ == "__main__":
    main()
