"""Forwarding end to end: does a forwarding otlpd keep up with its own ingestion, and how fast
does it drain a backlog into a second otlpd?

Two otlpd subprocesses: B, the remote, and A, loaded like ``run_all`` (traces-1000 at full
rate, :func:`benchmarks.loadgen.run_load`) and forwarding everything it stores to B.

1. **Keeps up**: rounds alternate A without forwarding (``off``) and A forwarding to B
   (``on``), each a fresh pair under the same load. Every second A's status (stored spans),
   A's forwarding status (acknowledged spans, backlog) and B's status (stored spans) are
   sampled. Figures: A's ingest rate (its stored spans/s, counted in its files after a
   SIGTERM as in ``run_all``), the forward rate (spans B acknowledged per second over the
   load window), the backlog (A's stored minus acknowledged spans) at the end and its slope
   over the second half of the load, and, per round, ingest on/off.
2. **Drains**: A forwards to a port where nothing listens while it stores ``--drain-spans``
   spans at full rate (its breaker opens); then B starts on that port and the time until A
   has every span acknowledged is taken: the drain rate, against A's ingest rate of step 1.

Run: ``python -m benchmarks.forward_e2e --rounds 3`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.run_all import (
    _free_port,
    add_stored,
    environment,
    exit_on_sigterm,
    load_settings,
    start_otlpd,
)
from benchmarks.loadgen import run_load

SIGNAL = "traces"
SCENARIO = "traces-1000"
# short waits once the remote is back, so the drain measures the forwarder, not its backoff
DRAIN_FLAGS = ["--forward.retry.initial-backoff", "0.1", "--forward.retry.max-backoff", "0.5",
               "--forward.breaker.open-timeout", "0.5", "--forward.breaker.max-open-timeout", "0.5"]


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.load(answer)


class Node:
    """One otlpd subprocess with its dashboard port (for the status API)."""

    def __init__(self, name: str, workdir: Path, flags: list[str], grpc_port: int | None = None):
        self.dashboard = _free_port()
        grpc = ["--grpc-endpoint", f"127.0.0.1:{grpc_port}"] if grpc_port else []
        self.server = start_otlpd(workdir, ["--dashboard.endpoint", f"127.0.0.1:{self.dashboard}",
                                            *grpc, *flags], name=name)

    def stored(self) -> int:
        return _get(self.dashboard, "/api/v1/status")["summary"][SIGNAL]["written_items"]

    def forwarding(self) -> dict:
        return _get(self.dashboard, "/api/v1/forwarding")["signals"][SIGNAL]

    def stop(self) -> int:
        return self.server.stop()


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y) points, y per second."""
    if len(points) < 2:
        return None
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else None


class Sampler:
    """Every ``interval`` seconds: A's stored spans, A's acknowledged spans and backlog, B's stored."""

    def __init__(self, a: Node, b: Node | None, interval: float = 1.0):
        self.samples: list[dict] = []
        self._a, self._b, self._interval = a, b, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while True:
            sample = {"t": time.monotonic() - self.started}
            with contextlib.suppress(OSError, ValueError, KeyError):
                sample["a_stored"] = self._a.stored()
                if self._b is not None:
                    part = self._a.forwarding()
                    sample.update(sent=part["sent_records"], backlog_files=part["backlog"]["records"],
                                  b_stored=self._b.stored())
                    sample["backlog"] = sample["a_stored"] - sample["sent"]
                self.samples.append(sample)
            if self._stop.wait(self._interval):
                return

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        return self.samples


def keep_up(forwarding: bool, load: dict, workdir: Path, settle: float, flags: list[str]) -> dict:
    """One fresh A (forwarding to a fresh B or not) under ``load``; its figures."""
    b = Node("otlpd B (remote)", workdir / "b", []) if forwarding else None
    a = None
    try:
        forward = ["--forward.endpoint", b.server.endpoint, "--forward.insecure", "true", *flags] if b else []
        a = Node("otlpd A", workdir / "a", forward)
        sampler = Sampler(a, b)
        cpu = {}

        def on_start():
            cpu.update(a=a.server.cpu_seconds(), b=b.server.cpu_seconds() if b else 0.0)
            sampler.start()

        row = run_load(a.server.endpoint, on_start=on_start, **load)
        ended = time.monotonic() - sampler.started
        time.sleep(settle)
        row["cpu_a_s"] = a.server.cpu_seconds() - cpu["a"]
        row["cpu_b_s"] = b.server.cpu_seconds() - cpu["b"] if b else None
        samples = sampler.stop()
        if b is not None:
            row.update(forward_summary(samples, ended, row["elapsed_s"]))
    finally:
        code = a.stop() if a else 1
        if b is not None:
            b.stop()
    add_stored(row, workdir / "a" / SIGNAL, code)
    row["forwarding"] = forwarding
    return row


def forward_summary(samples: list[dict], ended: float, elapsed: float) -> dict:
    """Forward rate, backlog at the end of the load and its slope over the load's second half."""
    during = [s for s in samples if "sent" in s and s["t"] <= ended + 0.5]
    if len(during) < 2:
        return {"forward_spans_per_s": None, "backlog_end": None, "backlog_slope_per_s": None}
    first, last = during[0], during[-1]
    half = [(s["t"], s["backlog"]) for s in during if s["t"] >= ended / 2]
    return {
        "forward_spans_per_s": (last["sent"] - first["sent"]) / (last["t"] - first["t"]),
        "remote_stored_spans_per_s": (last["b_stored"] - first["b_stored"]) / (last["t"] - first["t"]),
        "backlog_end": last["backlog"],
        "backlog_max": max(s["backlog"] for s in during),
        "backlog_slope_per_s": slope(half),
        "backlog_series": [(round(s["t"], 1), s["backlog"]) for s in during],
    }


def settled(node: Node, quiet: float = 1.0, timeout: float = 60.0) -> int:
    """The node's stored spans once the writer has written everything it accepted (no change
    for ``quiet`` seconds)."""
    stored, deadline = node.stored(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = node.stored()
        if now == stored:
            break
        stored = now
    return stored


def drain(spans: int, load: dict, workdir: Path, flags: list[str], timeout: float) -> dict:
    """Store ``spans`` spans in A while its remote is down, start B, time the drain."""
    port = _free_port()
    a = Node("otlpd A", workdir / "a", ["--forward.endpoint", f"127.0.0.1:{port}", "--forward.insecure", "true",
                                        *DRAIN_FLAGS, *flags])
    b = None
    try:
        started = time.monotonic()
        chunk = dict(load, duration=min(load["duration"] / 4, 5.0))
        while a.stored() < spans:
            run_load(a.server.endpoint, **chunk)
        stored = settled(a)
        built = time.monotonic() - started
        assert a.forwarding()["sent_records"] == 0, "the remote was down: nothing can have been sent"
        cpu_a = a.server.cpu_seconds()
        b = Node("otlpd B (remote)", workdir / "b", [], grpc_port=port)
        up = time.monotonic()
        cpu_b = b.server.cpu_seconds()
        first = None
        while True:
            sent = a.forwarding()["sent_records"]
            now = time.monotonic()
            if sent and first is None:
                first = (now, sent)
            if sent >= stored:
                break
            if now - up > timeout:
                raise TimeoutError(f"drain: {sent:,} of {stored:,} spans sent in {timeout} s")
            time.sleep(0.2)
        seconds = now - up
        cpu = {"cpu_a_s": a.server.cpu_seconds() - cpu_a, "cpu_b_s": b.server.cpu_seconds() - cpu_b}
        remote = settled(b)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    return {"backlog_spans": stored, "build_s": built, "drain_s": seconds, "drain_spans_per_s": stored / seconds,
            "drain_after_first_ack_spans_per_s":
                (stored - first[1]) / (now - first[0]) if first and now > first[0] else None,
            "remote_stored": remote, "remote_stored_ok": remote >= stored, **cpu,
            "cpu_a_us_per_span": cpu["cpu_a_s"] / stored * 1e6, "cpu_b_us_per_span": cpu["cpu_b_s"] / stored * 1e6}


def _median(values: list) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} ({' / '.join(f'{value:,.0f}' for value in values)})"


def report(env: dict, keep: list[dict], drains: list[dict]) -> str:
    lines = [", ".join(f"{key} {value}" for key, value in env.items()), "",
             "keeps up (traces-1000, full rate; per round):",
             "round  forwarding      ingest spans/s  forward spans/s  backlog end  slope 2nd half /s  "
             "CPU A s  CPU B s  stored=accepted"]
    for row in keep:
        cells = [f"{row['round']:5}", f"{row['variant']:14}", f"{row['stored_items_per_s']:14,.0f}"]
        for key, width in (("forward_spans_per_s", 15), ("backlog_end", 11), ("backlog_slope_per_s", 17)):
            value = row.get(key)
            cells.append(f"{value:{width},.0f}" if value is not None else "-".rjust(width))
        cells += [f"{row['cpu_a_s']:7.1f}", f"{row['cpu_b_s']:7.1f}" if row["cpu_b_s"] is not None else "      -",
                  "yes" if row["stored_ok"] else "NO"]
        lines.append("  ".join(cells))
    off = {row["round"]: row for row in keep if not row["forwarding"]}
    ingest_off = [row["stored_items_per_s"] for row in off.values()]
    lines += ["", f"ingest off: median {_median(ingest_off)} spans/s"]
    variants = list(dict.fromkeys(row["variant"] for row in keep if row["forwarding"]))
    first = {row["round"]: row for row in keep if row["forwarding"] and row["variant"] == (variants or [None])[0]}
    for variant in variants:
        on = [row for row in keep if row["variant"] == variant]
        ratios = [row["stored_items_per_s"] / off[row["round"]]["stored_items_per_s"] for row in on
                  if row["round"] in off and off[row["round"]]["stored_items_per_s"]]
        fwd = [row["forward_spans_per_s"] / row["stored_items_per_s"] for row in on
               if row.get("forward_spans_per_s") is not None and row["stored_items_per_s"]]
        lines += ["", f"[{variant}]",
                  f"ingest on:  median {_median([row['stored_items_per_s'] for row in on])} spans/s",
                  f"forward:    median {_median([row.get('forward_spans_per_s') for row in on])} spans/s",
                  f"backlog slope, second half: {_median([row.get('backlog_slope_per_s') for row in on])} spans/s",
                  "ingest on/off (per round): " + " / ".join(f"{r:.2f}" for r in ratios),
                  "forward/ingest with forwarding on (per round): " + " / ".join(f"{r:.2f}" for r in fwd)]
        if variant != variants[0]:
            lines.append(f"forward / [{variants[0]}] forward (per round): " + " / ".join(
                f"{row['forward_spans_per_s'] / first[row['round']]['forward_spans_per_s']:.2f}" for row in on
                if row.get("forward_spans_per_s") and first.get(row["round"], {}).get("forward_spans_per_s")))
    if drains:
        reference = statistics.median(ingest_off) if ingest_off else None
        lines += ["", "drains (remote down while A stores the backlog, then started):",
                  "round  forwarding      backlog spans  drain s  drain spans/s  after 1st ack spans/s  CPU A s  "
                  "CPU B s  remote stored all"]
        for row in drains:
            after = row["drain_after_first_ack_spans_per_s"]
            lines.append(f"{row['round']:5}  {row['variant']:14}  {row['backlog_spans']:13,}  {row['drain_s']:7.1f}  "
                         f"{row['drain_spans_per_s']:13,.0f}  {after if after is None else f'{after:21,.0f}'}  "
                         f"{row['cpu_a_s']:7.1f}  {row['cpu_b_s']:7.1f}  {'yes' if row['remote_stored_ok'] else 'NO'}")
        variants = list(dict.fromkeys(row["variant"] for row in drains))
        first = {row["round"]: row for row in drains if row["variant"] == variants[0]}
        for variant in variants:
            rows = [row for row in drains if row["variant"] == variant]
            rates = [row["drain_spans_per_s"] for row in rows]
            lines.append(f"[{variant}] drain: median {_median(rates)} spans/s")
            if reference:
                lines.append(f"[{variant}] drain / ingest off (median of step 1, {reference:,.0f} spans/s): "
                             + " / ".join(f"{rate / reference:.2f}" for rate in rates))
            if variant != variants[0]:
                lines.append(f"[{variant}] drain / [{variants[0]}] drain (per round): " + " / ".join(
                    f"{row['drain_spans_per_s'] / first[row['round']]['drain_spans_per_s']:.2f}"
                    for row in rows if row["round"] in first))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating off/on rounds, then drain rounds")
    parser.add_argument("--duration", type=float, help="seconds of load per keep-up run (default 20, --quick 2)")
    parser.add_argument("--settle", type=float, default=1.5)
    parser.add_argument("--drain-spans", type=int, help="backlog to drain (default 2,000,000, --quick 20,000; 0: skip)")
    parser.add_argument("--drain-rounds", type=int, help="drain runs (default --rounds)")
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--forward-args", default="", help='extra flags of A when forwarding, e.g. '
                                                           '--forward-args="--forward.compression none"')
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help='a forwarding configuration of A to compare (repeatable; each round runs off, then '
                             'every variant), e.g. --variant "w1=--forward.max-in-flight 1"; default: one, '
                             '"on", with --forward-args')
    parser.add_argument("--quick", action="store_true", help="short runs, for the smoke test")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    duration = args.duration or (2.0 if args.quick else 20.0)
    drain_spans = args.drain_spans if args.drain_spans is not None else (20_000 if args.quick else 2_000_000)
    variants = [(label, [*args.forward_args.split(), *flags.split()])
                for label, _, flags in (variant.partition("=") for variant in args.variant)] \
        or [("on", args.forward_args.split())]
    load = load_settings(SCENARIO, duration, args.processes, args.channels, args.concurrency)
    from otlpd import encode
    from otlpd.breaker import CircuitBreaker
    env = {**environment(), "otlpd_encoder": encode.IMPLEMENTATION,
           "otlpd_breaker": CircuitBreaker.__module__, "forward_args": args.forward_args or "(none)",
           "variants": "; ".join(f"{label}: {' '.join(flags) or '(defaults)'}" for label, flags in variants)}
    print(json.dumps(env), file=sys.stderr, flush=True)
    keep, drains = [], []
    with tempfile.TemporaryDirectory(prefix="otlpd-forward-e2e-") as tmp:
        for number in range(1, args.rounds + 1):
            for index, (label, flags) in enumerate([("off", None), *variants]):
                row = keep_up(flags is not None, load, Path(tmp) / f"keep-{number}-{index}", args.settle, flags or [])
                row.update(round=number, variant=label)
                keep.append(row)
                print(f"[round {number}] {label}: {row['stored_items_per_s']:,.0f} spans/s stored, forward "
                      f"{row.get('forward_spans_per_s') or 0:,.0f} spans/s", file=sys.stderr, flush=True)
        for number in range(1, (args.drain_rounds if args.drain_rounds is not None else args.rounds) + 1):
            for index, (label, flags) in enumerate(variants if drain_spans else []):
                row = drain(drain_spans, load, Path(tmp) / f"drain-{number}-{index}", flags, args.drain_timeout)
                row.update(round=number, variant=label)
                drains.append(row)
                print(f"[round {number}] {label} drain: {row['backlog_spans']:,} spans in {row['drain_s']:.1f} s",
                      file=sys.stderr, flush=True)
    print(report(env, keep, drains))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "keep_up": keep, "drain": drains}, indent=2))
    ok = all(row["stored_ok"] for row in keep) and all(row["remote_stored_ok"] for row in drains)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
