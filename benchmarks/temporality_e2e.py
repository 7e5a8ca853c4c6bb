"""Temporality end to end: otlpd under ``passthrough``, ``delta`` and ``cumulative``, alternating.

Every run is a fresh otlpd (``--metrics.temporality MODE``) loaded exactly as ``run_all``'s
``metrics-streams-1000`` scenario: realistic cumulative streams of every metric type, each call
slot sending its own series with times moving forward on every send (``loadgen``'s ``streams``,
``benchmarks.requests.StreamPool``). Rounds run the three settings one after the other (the
order rotates each round), and each ratio to ``passthrough`` is taken within its round; the
summary gives the median and the spread. After each run the conversion's counters come from
``GET /api/v1/temporality`` and the stored rows are checked: every accepted point was stored or
counted as dropped, and each row's ``aggregation_temporality`` is the one the setting asks for.

    python -m benchmarks.temporality_e2e --rounds 5 [--duration 8] [--rate REQUESTS_S] [--json FILE]

Without ``--rate`` every setting runs as fast as otlpd takes requests, and UNAVAILABLE answers
(its buffer ran full: the writer is behind) show which setting hit its ceiling; with ``--rate``
below that ceiling the points per CPU-second compare the settings at the same load.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds

from benchmarks.run_all import environment, exit_on_sigterm, load_settings, measure, start_otlpd

MODES = ("passthrough", "delta", "cumulative")
SCENARIO = "metrics-streams-1000"
DASHBOARD = re.compile(r"dashboard on (?P<url>http://[^\s,]+)")
CUMULATIVE, DELTA = 2, 1


def expected_temporality(mode: str, metric_type: str, monotonic: bool | None) -> int | None:
    """What a stored row of cumulative input must say under ``mode`` (None: no temporality)."""
    if metric_type in ("gauge", "summary"):
        return None
    if mode == "delta" and (metric_type != "sum" or monotonic):
        return DELTA  # up-down sums stay cumulative (docs/TEMPORALITY.md)
    return CUMULATIVE


def stored_temporalities(directory: Path) -> Counter:
    """(metric_type, is_monotonic, aggregation_temporality) -> stored rows, over completed files."""
    files = sorted(str(path) for path in directory.glob("*.arrow"))
    if not files:
        return Counter()
    table = ds.dataset(files, format="ipc").to_table(
        columns=["metric_type", "is_monotonic", "aggregation_temporality"])
    columns = [table.column(name).to_pylist() for name in table.column_names]
    return Counter(zip(*columns))


def temporality_counters(lines: list[str]) -> dict:
    """The conversion's counters from the running otlpd's ``GET /api/v1/temporality``."""
    url = next(match.group("url") for line in lines if (match := DASHBOARD.search(line)))
    with urllib.request.urlopen(url.rstrip("/") + "/api/v1/temporality", timeout=30) as answer:
        return json.load(answer)


def run_once(mode: str, load: dict, workdir: Path, settle: float, otlpd_args: list[str]) -> dict:
    server = start_otlpd(workdir, ["--metrics.temporality", mode, *otlpd_args], name=f"otlpd ({mode})")
    try:
        row = measure(server, load, settle)
        counters = temporality_counters(server.lines)
    finally:
        code = server.stop()
    kinds = stored_temporalities(workdir / "metrics")
    stored = sum(kinds.values())
    dropped = sum(counters["dropped_points"].values())
    items = row["items_per_request"]
    accepted = (row["requests_ok"] + row["warmup_ok"]) * items
    wrong = {f"{t}/{m}/{a}": n for (t, m, a), n in kinds.items() if a != expected_temporality(mode, t, m)}
    # the warm-up calls' points are stored too; their share is taken out of the window's figure
    window = 1 - row["warmup_ok"] * items / accepted if accepted else 0
    row.update(mode=mode, exit_code=code, stored_items=stored, accepted_items=accepted, dropped=dropped,
               counters=counters, wrong_temporality=wrong,
               stored_temporality={f"{t}/{m}/{a}": n for (t, m, a), n in sorted(kinds.items(), key=str)},
               stored_ok=code == 0 and stored + dropped == accepted and not wrong,
               stored_items_per_s=stored * window / row["elapsed_s"],
               handled_items_per_s=accepted * window / row["elapsed_s"])
    row["unavailable"] = row["errors"].get("UNAVAILABLE", 0)
    row["items_per_cpu_s"] = row["stored_items_per_s"] * row["elapsed_s"] / row["cpu_s"] if row["cpu_s"] else None
    row["handled_per_cpu_s"] = row["handled_items_per_s"] * row["elapsed_s"] / row["cpu_s"] if row["cpu_s"] else None
    return row


FIGURES = [  # (heading, key, format)
    ("stored pts/s", "stored_items_per_s", "{:,.0f}"),
    ("handled pts/s", "handled_items_per_s", "{:,.0f}"),
    ("CPU s", "cpu_s", "{:.2f}"),
    ("stored pts/CPU-s", "items_per_cpu_s", "{:,.0f}"),
    ("handled pts/CPU-s", "handled_per_cpu_s", "{:,.0f}"),
    ("UNAVAILABLE", "unavailable", "{:,}"),
    ("p99 ms", "p99_ms", "{:.0f}"),
]
RATIOS = [("stored pts/s", "stored_items_per_s"), ("stored pts/CPU-s", "items_per_cpu_s"),
          ("handled pts/s", "handled_items_per_s"), ("handled pts/CPU-s", "handled_per_cpu_s")]


def ratios(runs: list[dict]) -> dict:
    """(mode, key) -> the per-round ratios of ``mode`` to passthrough, in round order."""
    by_round = {(row["round"], row["mode"]): row for row in runs}
    rounds = sorted({row["round"] for row in runs})
    result = {}
    for mode in MODES[1:]:
        for _, key in RATIOS:
            result[mode, key] = [by_round[r, mode][key] / by_round[r, "passthrough"][key] for r in rounds
                                 if (r, mode) in by_round and (r, "passthrough") in by_round
                                 and by_round[r, mode].get(key) and by_round[r, "passthrough"].get(key)]
    return result


def summarize(runs: list[dict], budget: float = 0.15) -> str:
    header = ["round", "setting", *(title for title, _, _ in FIGURES), "stored", "dropped", "converted",
              "passed", "streams", "check"]
    table = [header]
    for row in runs:
        counters = row["counters"]
        table.append([str(row["round"]), row["mode"],
                      *(fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in FIGURES),
                      f"{row['stored_items']:,}", f"{row['dropped']:,}", f"{counters['converted_points']:,}",
                      f"{counters['passed_through_points']:,}", f"{counters['streams']:,}",
                      "ok" if row["stored_ok"] else "FAILED"])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for (mode, key), values in ratios(runs).items():
        if not values:
            continue
        title = next(title for title, k in RATIOS if k == key)
        median = statistics.median(values)
        verdict = "within" if median >= 1 - budget else "OVER"
        lines.append(f"{mode}/passthrough {title}: median {median:.3f} (range {min(values):.3f}-{max(values):.3f}; "
                     f"{'/'.join(f'{v:.3f}' for v in values)}): cost {1 - median:+.1%}, {verdict} the "
                     f"{budget:.0%} budget")
    drops = Counter()
    for row in runs:
        if row["mode"] == "delta":
            drops.update(row["counters"]["dropped_points"])
    if drops:
        lines.append("delta's dropped points by reason, all rounds: "
                     + ", ".join(f"{reason} {count:,}" for reason, count in sorted(drops.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--settle", type=float, default=1.5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float,
                        help="requests/s in total (default: as fast as possible); below what delta "
                             "sustains, the CPU per point compares the settings at the same load")
    parser.add_argument("--otlpd-args", default="", help="extra otlpd flags for every run")
    parser.add_argument("--json", metavar="FILE", help="also write the environment and every run as JSON")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    load = {**load_settings(SCENARIO, args.duration, args.processes, args.channels, args.concurrency),
            "rate": args.rate}
    env = environment()
    runs = []
    with tempfile.TemporaryDirectory(prefix="otlpd-temporality-") as tmp:
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                row = run_once(mode, load, Path(tmp) / f"{round_no}-{mode}", args.settle, args.otlpd_args.split())
                row["round"] = round_no
                print(f"[round {round_no}] {mode}: {row['stored_items_per_s']:,.0f} stored points/s, "
                      f"{row['cpu_s']:.1f} CPU s, converted {row['counters']['converted_points']:,}, "
                      f"dropped {row['dropped']:,}", file=sys.stderr, flush=True)
                runs.append(row)
    streams = load["streams"] * args.processes * args.channels * args.concurrency * load["items_per_request"]
    print(", ".join(f"{key} {value}" for key, value in env.items()))
    print(f"load: {SCENARIO}, {args.processes} processes x {args.channels} channels x {args.concurrency} in "
          f"flight, {load['streams']} requests of {load['items_per_request']} series per call slot "
          f"({streams:,} series), {f'{args.rate:g} requests/s' if args.rate else 'as fast as it goes'}, "
          f"{args.duration:g} s a run, settle {args.settle:g} s, {args.rounds} rounds")
    print()
    print(summarize(runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "load": load, "runs": runs}, indent=2))
    failed = [row for row in runs if not row["stored_ok"]]
    for row in failed:
        print(f"[round {row['round']}] {row['mode']}: stored {row['stored_items']:,} + dropped {row['dropped']:,} "
              f"of {row['accepted_items']:,} accepted, wrong temporality {row['wrong_temporality']}, "
              f"exit code {row['exit_code']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
