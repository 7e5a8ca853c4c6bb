"""Profile otlpd under load with py-spy and print where its threads spend their samples.

    python -m benchmarks.profile --signal traces --items-per-request 1000 --duration 10 \
        [--otlpd-args="--receiver.workers 1"] [--native]

Starts otlpd on a free port, records it with ``py-spy record --format raw`` while
``benchmarks.loadgen`` sends load, stops it with SIGTERM, and prints the functions
with the largest inclusive and self shares of the samples (idle threads excluded).
"""
from __future__ import annotations

import argparse
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.loadgen import run_load

IDLE = ("wait", "_wait_once", "select", "poll", "_serve", "acquire")


def summarize(raw_path: Path, top: int = 20) -> str:
    """Inclusive and self shares per function of a py-spy raw (collapsed stacks) file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] for frame in stack.split(";")
                  if not frame.startswith("process ")]  # --subprocesses adds the process as a frame
        if not frames or frames[-1] in IDLE:
            continue  # a thread waiting for work is not a cost
        samples = int(count)
        total += samples
        for name in dict.fromkeys(frames):
            inclusive[name] += samples
        own[frames[-1]] += samples
    lines = [f"busy samples: {total}", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)] if total else []
    lines += ["self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top // 2)] if total else []
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", default="traces", choices=["traces", "metrics", "logs"])
    parser.add_argument("--items-per-request", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--otlpd-args", default="", help="extra otlpd flags")
    parser.add_argument("--native", action="store_true", help="include native (C) frames")
    parser.add_argument("--streams", type=int, default=0,
                        help="metrics: moving cumulative streams, this many requests per call slot "
                             "(loadgen's streams; e.g. 2 with --otlpd-args='--metrics.temporality delta')")
    parser.add_argument("--rate", type=float, help="requests/s in total (default: as fast as possible)")
    parser.add_argument("--keep-raw", metavar="FILE", help="also copy py-spy's collapsed stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="otlpd-profile-") as scratch:
        scratch_path = Path(scratch)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "otlpd", "--grpc-endpoint", "127.0.0.1:0", "--dashboard.endpoint", "127.0.0.1:0", "--output-dir",
             str(scratch_path / "data"), *shlex.split(args.otlpd_args)],
            stderr=subprocess.PIPE, text=True)
        port = None
        for line in daemon.stderr:
            match = re.search(r"listening on [^\s]+:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        if port is None:
            print("otlpd did not start", file=sys.stderr)
            return 1
        raw = scratch_path / "profile.txt"
        spies = []

        def start_profiler():  # once every client is connected and warm
            spies.append(subprocess.Popen(
                ["py-spy", "record", "-p", str(daemon.pid), "--subprocesses", "-r", "100",
                 "-d", str(int(args.duration)), "-f", "raw", "-o", str(raw),
                 # native stacks need the process paused while sampling
                 *(["--native"] if args.native else ["--nonblocking"])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        result = run_load(endpoint=f"127.0.0.1:{port}", signal=args.signal,
                          items_per_request=args.items_per_request, duration=args.duration,
                          on_start=start_profiler, streams=args.streams, rate=args.rate)
        spies[0].wait(args.duration + 30)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        print(f"load: {result['items_per_s']:,.0f} items/s, p50 {result['p50_ms']:.1f} ms, "
              f"p99 {result['p99_ms']:.1f} ms")
        if not raw.exists():
            print("py-spy recorded nothing (is ptrace allowed here?)", file=sys.stderr)
            return 1
        if args.keep_raw:
            Path(args.keep_raw).write_bytes(raw.read_bytes())
        print(summarize(raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
