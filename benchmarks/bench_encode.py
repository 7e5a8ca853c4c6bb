"""Encode rate of stored batches per signal: the Python reference (``to_request`` +
``SerializeToString``) against the Cython encoder (``otlpd._encoder``), and what cutting
a batch into requests with ``requests()`` adds.

Batches are what a data file holds: realistic requests (``benchmarks/requests.py``) decoded
by the daemon's decoder and split into rows and their sources (``otlpd.sources.lean``), as
the forwarder reads them. Every figure is the best CPU time of ``--repeat`` runs (shared machines).

    python -m benchmarks.bench_encode [--items 1000] [--repeat 7] [--max-items 512] [--max-bytes 65536]

``python -m pytest benchmarks -k encode`` runs the same encodes under pytest-benchmark.
"""
from __future__ import annotations

import argparse
import functools
import pytest

from benchmarks.cost_model import cpu_seconds
from benchmarks.requests import BUILDERS
from otlpd import decode, encode, sources

SIGNALS = ("traces", "metrics", "logs")


@functools.cache
def stored_batch(signal: str, items: int):
    """(full-layout rows, stored rows, their sources) of one realistic request of `items` records."""
    batch = decode.DECODERS[signal](BUILDERS[signal](items, seed=1))
    lean = sources.lean(batch)
    return batch, lean.rows, lean.sources


def measure(signal: str, items: int, repeat: int, max_items: int, max_bytes: int) -> dict:
    """Records/s of each way to encode one batch of `signal`."""
    full, rows, sources_ = stored_batch(signal, items)
    found = encode.implementations()
    cython = found["cython"]
    expected = encode.reference(signal, rows, sources_)
    assert cython.encode(signal, rows, sources_) == expected  # the same bytes, or no figures
    reference = cpu_seconds(lambda: encode.reference(signal, rows, sources_), max(1, repeat // 3))
    stored = cpu_seconds(lambda: cython.encode(signal, rows, sources_), repeat * 5)
    full_layout = cpu_seconds(lambda: cython.encode(signal, full), repeat * 5)
    pieces = list(cython.requests(signal, rows, sources_, max_items, max_bytes))
    cut = cpu_seconds(lambda: list(cython.requests(signal, rows, sources_, max_items, max_bytes)), repeat * 5)
    n = rows.num_rows
    return {
        "signal": signal, "records": n, "request_bytes": len(expected),
        "reference": n / reference, "cython": n / stored, "cython_full": n / full_layout,
        "requests": n / cut, "pieces": len(pieces), "ratio": reference / stored,
        "cut_cost": cut / stored - 1,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="records per batch (1000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure, the best kept (7)")
    parser.add_argument("--max-items", type=int, default=512, help="requests(): records per request (512)")
    parser.add_argument("--max-bytes", type=int, default=65536, help="requests(): bytes per request (65536)")
    args = parser.parse_args(argv)
    from benchmarks.run_all import environment

    print(", ".join(f"{key} {value}" for key, value in environment().items()
                    if key not in ("rotel",)) + f", otlpd_encoder {encode.IMPLEMENTATION}")
    print(f"{args.items} records a batch, stored layout unless said; requests() with max_items "
          f"{args.max_items}, max_bytes {args.max_bytes}")
    header = (f"{'signal':8} {'bytes':>8} {'reference/s':>12} {'cython/s':>12} {'ratio':>7} "
              f"{'full layout/s':>14} {'requests()/s':>13} {'pieces':>6} {'cut cost':>8}")
    print(header)
    for signal in SIGNALS:
        r = measure(signal, args.items, args.repeat, args.max_items, args.max_bytes)
        print(f"{signal:8} {r['request_bytes']:8,} {r['reference']:12,.0f} {r['cython']:12,.0f} "
              f"{r['ratio']:6.0f}x {r['cython_full']:14,.0f} {r['requests']:13,.0f} {r['pieces']:6} "
              f"{r['cut_cost']:+8.0%}")


@pytest.mark.parametrize("implementation", ["python", "cython"])
@pytest.mark.parametrize("signal", SIGNALS)
def bench_encode(benchmark, signal, implementation):
    _, rows, sources_ = stored_batch(signal, 1000)
    encoder = encode.implementations()[implementation].encode
    benchmark.group = f"encode {signal}"
    data = benchmark(encoder, signal, rows, sources_)
    assert data == encode.reference(signal, rows, sources_)


if __name__ == "__main__":
    main()
