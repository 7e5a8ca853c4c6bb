"""A few micro benchmarks, run quickly, printed as ratios: Cython vs Python buffer,
compression vs none, other decoders vs the Python reference; plus the environment.

Each figure is the best of 3 rounds of at least ``--min-time`` seconds.
Run: ``python -m benchmarks.ratios``.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.bench_buffer import PUSHES, UNBOUNDED, push_drain
from benchmarks.bench_decode import ITEMS, decoder_tables, request
from benchmarks.bench_write import COMPRESSIONS, MB, traces_batches, write_ipc
from benchmarks.run_all import environment
from otlpd.buffer import implementations


def seconds_per_call(fn, min_time: float, rounds: int = 3) -> float:
    """Best, over ``rounds``, of the mean time of ``fn()`` over at least ``min_time`` seconds."""
    fn()  # warm up
    best = float("inf")
    for _ in range(rounds):
        calls, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < min_time:
            fn()
            calls += 1
        best = min(best, elapsed / calls)
    return best


def buffer_lines(min_time: float) -> list[str]:
    lines = []
    for threads in (1, 8):
        rates = {}
        with ThreadPoolExecutor(threads) as executor:
            for name, cls in implementations().items():
                buffer = cls(UNBOUNDED, UNBOUNDED)
                rates[name] = PUSHES / seconds_per_call(lambda: push_drain(buffer, executor, threads), min_time)
        figures = ", ".join(f"{name} {rate:,.0f} pushes/s" for name, rate in rates.items())
        ratio = (f"; cython/python {rates['cython'] / rates['python']:.2f}x"
                 if "cython" in rates else "; Cython buffer not built")
        plural = "s" if threads > 1 else ""
        lines.append(f"buffer push/drain, {threads} producer thread{plural}: {figures}{ratio}")
    return lines


def write_lines(min_time: float) -> list[str]:
    batches = traces_batches()
    input_mb = sum(batch.nbytes for batch in batches) / MB
    times = {c: seconds_per_call(lambda c=c: write_ipc(batches, c), min_time) for c in COMPRESSIONS}
    sizes = {c: write_ipc(batches, c) / MB for c in COMPRESSIONS}
    lines = []
    for c in COMPRESSIONS:
        lines.append(f"Arrow IPC write {c:>4}: {input_mb / times[c]:,.0f} MB/s of {input_mb:.1f} MB "
                     f"-> {sizes[c]:.1f} MB; time {times[c] / times['none']:.2f}x none, "
                     f"size {sizes[c] / sizes['none']:.2f}x none")
    return lines


def decode_lines(min_time: float) -> list[str]:
    tables = decoder_tables()
    lines = []
    for signal in ("traces", "metrics", "logs"):
        data = request(signal)
        rates = {name: ITEMS / seconds_per_call(lambda t=table: t[signal](data), min_time)
                 for name, table in tables.items()}
        figures = ", ".join(f"{name} {rate:,.0f} items/s" for name, rate in rates.items())
        ratios = "".join(f"; {name}/python {rate / rates['python']:.2f}x"
                         for name, rate in rates.items() if name != "python")
        lines.append(f"decode {signal} ({ITEMS} items/request): {figures}{ratios}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per round of each figure")
    args = parser.parse_args(argv)
    print(", ".join(f"{key} {value}" for key, value in environment().items()))
    for lines in (buffer_lines, write_lines, decode_lines):
        print("\n".join(lines(args.min_time)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
