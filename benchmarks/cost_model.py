"""Where a stored item's CPU goes: each stage of otlpd's path measured alone, per item.

Stages, on the realistic requests of ``benchmarks/requests.py``, each the best of
``--rounds`` rounds of CPU time (``time.process_time``: every thread of this process,
so Arrow's compression threads count too):

- decode: the daemon's decoder (Cython unless ``OTLPD_PURE_PYTHON=1``) as the receiver
  calls it (``BUFFER_DECODERS``: request bytes to a Chunk, or a record batch), and its
  fixed cost per request (1-item requests);
- coalesce: the writer's concatenation of those into groups of ``COALESCE_BYTES`` (the
  native merge of chunks), and for comparison pyarrow's concatenation of the same rows
  decoded as record batches (``DECODERS``);
- write: Arrow IPC file writing of those groups to a real file, per compression.

For the layout decision (docs/PERFORMANCE.md, "Lean layout") the writer stages are
measured on the stored layout (resource and scope once per file, otlpd.sources) and
again on the full layout, which repeats them on every row (schema version 2's files).

It then adds the gRPC cost per item of a server that does nothing (``--grpc-us``,
from ``run_all``'s null server: CPU seconds / items) and prints the ceiling of items
per CPU-second that follows, beside the decoded layout's bytes per item by column
group (what the decoder, the concatenation and the compressor handle).

Run: ``python -m benchmarks.cost_model`` (``--quick`` for the smoke test).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.bench_write import COMPRESSIONS, write_ipc
from benchmarks.requests import request_pool
from otlpd.decode import BUFFER_DECODERS, DECODERS, IMPLEMENTATION
from otlpd.schema import SIGNALS
from otlpd.sources import SOURCE_COLUMNS, lean, plain
from otlpd.writer import _coalesce

COMMON = {*SOURCE_COLUMNS, "service_name", "source_id"}  # resource and scope columns


def cpu_seconds(fn, rounds: int) -> float:
    """Best CPU time of ``fn()`` over ``rounds`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        fn()
        best = min(best, time.process_time() - began)
    return best


def coalesce_each(items: list) -> int:
    """Run the writer's coalescing over ``items`` the way the writer does: each group
    is dropped before the next is made (the native merge then reuses its mapping)."""
    groups = 0
    for group, batch in _coalesce(list(items)):
        del group, batch
        groups += 1
    return groups


def layout_bytes(batch: pa.RecordBatch) -> dict[str, float]:
    """Decoded bytes per item: resource and scope columns, attribute lists, the rest."""
    groups = {"resource+scope": 0, "attributes": 0, "other": 0}
    for name, column in zip(batch.schema.names, batch.columns):
        key = ("resource+scope" if name in COMMON
               else "attributes" if name.startswith("attributes") or name in ("events", "links", "exemplars")
               else "other")
        groups[key] += column.nbytes
    return {key: value / batch.num_rows for key, value in groups.items()}


def writer_stages(batches: list, compressions, rounds: int, path_for,
                  prefix: str = "") -> tuple[dict, pa.RecordBatch]:
    """CPU per item of the writer's concatenation and of the IPC write per compression,
    and the file bytes per item, for ``batches`` (keys prefixed with ``prefix``); and
    the first concatenated batch."""
    rows = sum(batch.num_rows for batch in batches)
    result = {prefix + "coalesce": cpu_seconds(lambda: coalesce_each(batches), rounds) / rows}
    groups = [batch for _, batch in _coalesce(list(batches))]
    for compression in compressions:
        path = path_for(compression)
        result[f"{prefix}write_{compression}"] = cpu_seconds(
            lambda c=compression, p=path: write_ipc(groups, c, p), rounds) / rows
        result[f"{prefix}file_bytes_{compression}"] = write_ipc(groups, compression, path) / rows
    return result, groups[0]


def measure(signal: str, items: int, copies: int, rounds: int, directory: Path) -> dict:
    decode = BUFFER_DECODERS[signal]
    pool = request_pool(signal, items)
    total = len(pool) * items
    result = {"decode": cpu_seconds(lambda: [decode(data) for data in pool], rounds) / total}
    tiny = request_pool(signal, 1)
    result["decode_fixed_per_request"] = cpu_seconds(
        lambda: [decode(data) for _ in range(8) for data in tiny], rounds) / (8 * len(tiny))
    # The writer's coalescing as the daemon runs it. A merge only reads its chunks, so
    # the rounds can reuse them; a group of one chunk would convert (use up) that chunk.
    buffered = [decode(data) for data in pool] * copies
    if coalesce_each(buffered) * 2 > len(buffered):
        raise SystemExit("cost_model: requests too large to measure the merge (groups of one)")
    result["merge"] = cpu_seconds(lambda: coalesce_each(buffered), rounds) / (total * copies)
    full = [DECODERS[signal](data) for data in pool]
    stored = [lean(batch) for batch in full] * copies  # record batches: pyarrow concatenates
    stages, first_group = writer_stages(stored, COMPRESSIONS, rounds,
                                        lambda compression: directory / f"{signal}-{compression}.arrow")
    result.update(stages)
    result["sources_per_request"] = sum(len(item.source_ids) for item in stored) / len(stored)
    result.update(writer_stages([plain(batch) for batch in full] * copies, ("zstd",), rounds,
                                lambda _: directory / f"{signal}-full.arrow", prefix="full_")[0])
    result["wire_bytes"] = sum(len(data) for data in pool) / total
    result["layout"] = layout_bytes(first_group)
    return result


def report(signal: str, items: int, r: dict, grpc_us: float | None) -> list[str]:
    us = {key: value * 1e6 for key, value in r.items() if isinstance(value, float)}
    layout = ", ".join(f"{key} {value:,.0f}" for key, value in r["layout"].items())
    lines = [
        f"{signal} ({items} items/request, decoder {IMPLEMENTATION}): "
        f"wire {r['wire_bytes']:,.0f} B/item; decoded {sum(r['layout'].values()):,.0f} B/item "
        f"({layout})",
        f"  decode {us['decode']:.3f} us/item (+ {us['decode_fixed_per_request']:.1f} us fixed "
        f"a request); coalesce {us['merge']:.3f} us/item (pyarrow's concatenation of batches: "
        f"{us['coalesce']:.3f})",
    ]
    for compression in COMPRESSIONS:
        lines.append(f"  write {compression:>4}: {us['write_' + compression]:.3f} us/item, "
                     f"file {r['file_bytes_' + compression]:,.0f} B/item")
    lines.append(f"  full layout (resource+scope on every row, as schema version 2 stored it): "
                 f"coalesce {us['full_coalesce']:.3f}, write zstd {us['full_write_zstd']:.3f} us/item, "
                 f"file {r['full_file_bytes_zstd']:,.0f} B/item ({r['sources_per_request']:.1f} sources "
                 "a request, written once per file, not counted)")
    stages = us["decode"] + us["decode_fixed_per_request"] / items + us["merge"] + us["write_zstd"]
    lines.append(f"  stages with zstd: {stages:.3f} us/item -> at most "
                 f"{1e6 / stages:,.0f} items per CPU-second without gRPC")
    if grpc_us is not None:
        total = stages + grpc_us
        lines.append(f"  + gRPC {grpc_us:.3f} us/item (null server) = {total:.3f} us/item -> "
                     f"at most {1e6 / total:,.0f} items per CPU-second")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", default=",".join(SIGNALS))
    parser.add_argument("--items-per-request", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=8,
                        help="the request pool is repeated this many times for the writer stages")
    parser.add_argument("--grpc-us", type=float, default=None,
                        help="gRPC CPU microseconds per item of the null server, from run_all")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.items_per_request, args.rounds, args.copies = 20, 1, 1
    with tempfile.TemporaryDirectory(prefix="otlpd-cost-") as tmp:
        for signal in args.signals.split(","):
            r = measure(signal, args.items_per_request, args.copies, args.rounds, Path(tmp))
            print("\n".join(report(signal, args.items_per_request, r, args.grpc_us)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
