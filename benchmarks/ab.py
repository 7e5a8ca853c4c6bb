"""Alternating A/B runs of otlpd configurations under the same load, in one window.

These machines drift by 20-30 % within minutes, so two configurations are only
comparable when their runs alternate (A, B, A, B, ...) and the comparison is made
per round. Each variant is a label, extra otlpd flags and environment variables::

    python -m benchmarks.ab --rounds 3 \\
        "zstd=" "lz4=--writer.compression lz4" "arena1=MALLOC_ARENA_MAX=1"

``LABEL=ARGS``: ARGS are otlpd flags, and words of the form ``NAME=VALUE`` in front of
them are environment variables. Every run is a fresh otlpd (so VmHWM is its own) loaded
with :func:`benchmarks.loadgen.run_load` exactly as ``run_all`` does; the figures are
stored items/s (rows in its completed files), server CPU, items per CPU-second, peak
RSS (VmHWM) and UNAVAILABLE answers (the buffer ran full). The summary gives each
variant's median and, per round, its ratio to the first variant.
"""
from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.run_all import (
    SCENARIOS,
    add_stored,
    exit_on_sigterm,
    items_per_cpu_second,
    load_settings,
    measure,
    start_otlpd,
)

ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def parse_variant(spec: str) -> tuple[str, dict, list[str]]:
    """``LABEL=[NAME=VALUE ...] [otlpd flags]`` -> (label, environment, flags)."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise ValueError(f"variant {spec!r}: expected LABEL=[NAME=VALUE ...] [otlpd flags]")
    words = shlex.split(rest)
    env = {}
    while words and ENV_WORD.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return label, env, words


def run_once(label: str, env: dict, flags: list[str], load: dict, workdir: Path, settle: float) -> dict:
    server = start_otlpd(workdir, flags, env, name=f"otlpd ({label})")
    try:
        row = measure(server, load, settle)
    finally:
        code = server.stop()
    add_stored(row, workdir / load["signal"], code)
    row["items_per_cpu_s"] = items_per_cpu_second(row, row["stored_items_per_s"])
    row["unavailable"] = row["errors"].get("UNAVAILABLE", 0)
    return row


def summarize(labels: list[str], runs: list[tuple[int, str, dict]]) -> str:
    keys = [("stored items/s", "stored_items_per_s", "{:,.0f}"), ("CPU s", "cpu_s", "{:.2f}"),
            ("items/CPU-s", "items_per_cpu_s", "{:,.0f}"), ("peak RSS MiB", "peak_rss_mib", "{:,.0f}"),
            ("UNAVAILABLE", "unavailable", "{:,}"), ("p99 ms", "p99_ms", "{:.1f}")]
    lines = ["round  variant  " + "  ".join(title for title, _, _ in keys) + "  stored=accepted"]
    for round_no, label, row in runs:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in keys]
        lines.append(f"{round_no:5}  {label:7}  " + "  ".join(
            cell.rjust(len(title)) for cell, (title, _, _) in zip(cells, keys))
            + ("  yes" if row["stored_ok"] else "  NO"))
    lines.append("")
    first = labels[0]
    by_round = {(round_no, label): row for round_no, label, row in runs}
    rounds = sorted({round_no for round_no, _, _ in runs})
    for label in labels:
        rows = [by_round[(r, label)] for r in rounds if (r, label) in by_round]
        parts = []
        for title, key, fmt in keys[:4]:
            values = [row[key] for row in rows if row.get(key) is not None]
            if not values:
                continue
            text = f"{title} {fmt.format(statistics.median(values))}"
            if label != first:
                ratios = [by_round[(r, label)][key] / by_round[(r, first)][key] for r in rounds
                          if (r, label) in by_round and (r, first) in by_round
                          and by_round[(r, label)].get(key) and by_round[(r, first)].get(key)]
                if ratios:
                    text += f" ({'/'.join(f'{x:.2f}' for x in ratios)} x {first})"
            parts.append(text)
        lines.append(f"{label}: median " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", metavar="LABEL=[NAME=VALUE ...] [FLAGS]")
    parser.add_argument("--scenario", default="traces-1000", choices=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--settle", type=float, default=1.5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        variants = [parse_variant(spec) for spec in args.variants]
    except ValueError as error:
        parser.error(str(error))
    labels = [label for label, _, _ in variants]
    if len(set(labels)) != len(labels):
        parser.error("variant labels must differ")
    load = load_settings(args.scenario, args.duration, args.processes, args.channels, args.concurrency)
    runs = []
    with tempfile.TemporaryDirectory(prefix="otlpd-ab-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for label, env, flags in variants:
                workdir = Path(tmp) / f"{round_no}-{label}"
                row = run_once(label, env, flags, load, workdir, args.settle)
                print(f"[round {round_no}] {label}: {row['stored_items_per_s']:,.0f} items/s, "
                      f"{row['cpu_s']:.1f} CPU s, {row['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
                runs.append((round_no, label, row))
    print(summarize(labels, runs))
    return 0 if all(row["stored_ok"] for _, _, row in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
