"""BatchBuffer push/drain throughput with 1 and 8 producer threads, for every implementation.

Producers push small opaque batches while the calling thread drains every millisecond,
as the writer thread does (far more often, to keep the lock contended).
"""
from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import pytest

from otlpd.buffer import implementations

PUSHES = 20_000
BATCH = object()
UNBOUNDED = 2**60


def push_drain(buffer, executor: ThreadPoolExecutor, threads: int, pushes: int = PUSHES) -> int:
    """``threads`` producers push ``pushes`` batches in all while this thread drains; returns drained."""
    def produce():
        push = buffer.push
        for _ in range(pushes // threads):
            push(BATCH, 1000, 10)

    producers = [executor.submit(produce) for _ in range(threads)]
    drained = 0
    while wait(producers, timeout=0.001, return_when=FIRST_EXCEPTION).not_done:
        drained += len(buffer.drain())
    for producer in producers:
        producer.result()
    return drained + len(buffer.drain())


@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.parametrize("implementation", list(implementations()))
def bench_push_drain(benchmark, implementation, threads):
    buffer = implementations()[implementation](UNBOUNDED, UNBOUNDED)
    benchmark.group = f"buffer push/drain, producers: {threads}"
    benchmark.extra_info["pushes"] = PUSHES
    with ThreadPoolExecutor(threads) as executor:
        drained = benchmark(push_drain, buffer, executor, threads)
    assert drained == PUSHES // threads * threads
