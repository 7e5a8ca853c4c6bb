"""Arrow IPC file write time of decoded traces per compression (none, lz4, zstd).

The data is 8 decoded 1000-span requests, written as the daemon writes them (one batch
per request, its IPC options) into memory: this measures encoding and compression only.
"""
from __future__ import annotations

import functools

import pyarrow as pa
import pytest

from benchmarks.requests import trace_request_bytes
from otlpd.schema import decode_traces
from otlpd.writer import WriterSettings

COMPRESSIONS = ("none", "lz4", "zstd")
REQUESTS = 8
MB = 1e6


@functools.cache
def traces_batches(requests: int = REQUESTS) -> tuple[pa.RecordBatch, ...]:
    """Decoded 1000-span trace requests, one batch each."""
    return tuple(decode_traces(trace_request_bytes(1000, seed=seed)) for seed in range(requests))


def write_ipc(batches, compression: str, path=None) -> int:
    """Write ``batches`` as one IPC file with the daemon's options, in memory or to ``path``
    (through the page cache, like the daemon); returns the file size."""
    sink = pa.BufferOutputStream() if path is None else pa.OSFile(str(path), "wb")
    options = WriterSettings(compression=compression).ipc_options()
    try:
        with pa.ipc.new_file(sink, batches[0].schema, options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
        return sink.tell()
    finally:
        sink.close()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def bench_write(benchmark, compression):
    batches = traces_batches()
    benchmark.group = "Arrow IPC write, 8000 spans"
    size = benchmark(write_ipc, batches, compression)
    benchmark.extra_info.update(input_mb=sum(b.nbytes for b in batches) / MB, output_mb=size / MB)
    assert size > 0
