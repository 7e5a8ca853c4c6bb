"""CircuitBreaker decisions per second (allow + record_success pairs), Cython vs pure Python,
with 1 and 8 threads, printed as ratios beside the environment.

Usage, from the repository root (never ``python benchmarks/bench_breaker.py``)::

    python -m benchmarks.bench_breaker                 # best of 3 rounds of >= 0.5 s each
    python -m benchmarks.bench_breaker --min-time 2    # steadier figures
    python -m pytest benchmarks -k breaker             # the same through pytest-benchmark

Every thread runs ``ticket = breaker.allow(); breaker.record_success(ticket)`` in a loop on
one closed breaker with the default clock (``time.monotonic``), as the forwarder's senders
would. Figures depend on the machine and on what else runs on it: compare ratios taken in
one run, not figures from different runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from otlpd.breaker import IMPLEMENTATION, implementations

PAIRS = 40_000


def decide(breaker, executor: ThreadPoolExecutor, threads: int, pairs: int = PAIRS) -> int:
    """``threads`` threads make ``pairs`` allow/record_success pairs in all; returns how many."""
    def run() -> int:
        allow, record_success = breaker.allow, breaker.record_success
        for _ in range(pairs // threads):
            record_success(allow())
        return pairs // threads

    return sum(future.result() for future in [executor.submit(run) for _ in range(threads)])


def pairs_per_second(cls: type, threads: int, min_time: float, rounds: int = 3) -> tuple[float, float]:
    """(best decisions/s over ``rounds`` rounds of at least ``min_time`` s, lock acquisitions a pair)."""
    breaker = cls(failure_threshold=10**6)
    best = 0.0
    with ThreadPoolExecutor(threads) as executor:
        decide(breaker, executor, threads, pairs=threads * 100)  # warm up the threads
        before_locks, before_pairs = breaker.lock_acquisitions, breaker.snapshot()["counters"]["allowed"]
        for _ in range(rounds):
            done, began = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - began) < min_time:
                done += decide(breaker, executor, threads)
            best = max(best, done / elapsed)
        pairs = breaker.snapshot()["counters"]["allowed"] - before_pairs
        locks = breaker.lock_acquisitions - before_locks - 1  # the snapshot took one
    assert breaker.state == "closed"
    return best, locks / pairs


def breaker_lines(min_time: float, thread_counts: tuple[int, ...] = (1, 8)) -> list[str]:
    """One line per thread count: each implementation's decisions/s and the ratio."""
    lines = []
    for threads in thread_counts:
        figures = {name: pairs_per_second(cls, threads, min_time)
                   for name, cls in implementations().items()}
        rates = ", ".join(f"{name} {rate:,.0f} decisions/s ({locks:.2f} locks each)"
                          for name, (rate, locks) in figures.items())
        ratio = (f"; cython/python {figures['cython'][0] / figures['python'][0]:.2f}x"
                 if "cython" in figures else "; Cython breaker not built")
        lines.append(f"breaker allow+record_success, {threads} thread{'s' * (threads > 1)}: "
                     f"{rates}{ratio}")
    return lines


@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.parametrize("implementation", list(implementations()))
def bench_allow_record(benchmark, implementation, threads):
    breaker = implementations()[implementation](failure_threshold=10**6)
    benchmark.group = f"breaker allow+record_success, threads: {threads}"
    benchmark.extra_info["pairs"] = PAIRS
    with ThreadPoolExecutor(threads) as executor:
        done = benchmark(decide, breaker, executor, threads)
    assert done == PAIRS // threads * threads
    assert breaker.state == "closed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per round of each figure")
    args = parser.parse_args(argv)
    from benchmarks.run_all import environment

    print(", ".join(f"{key} {value}" for key, value in
                    {**environment(), "otlpd_breaker": IMPLEMENTATION}.items()))
    print("\n".join(breaker_lines(args.min_time)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
