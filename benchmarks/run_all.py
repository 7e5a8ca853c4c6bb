"""End-to-end comparison: the null server, otlpd and rotel under the same OTLP/gRPC load.

For every scenario each target runs in a subprocess of its own and gets the same load
(:func:`benchmarks.loadgen.run_load`); the server's process tree is measured with
psutil: CPU seconds from the start of the load until ``--settle`` seconds after it (so
otlpd's writer has written what it accepted) and peak RSS. otlpd is then stopped and
the rows in its completed ``.arrow`` files are counted, which must equal the items it
accepted; a second otlpd then runs at half the measured rate for latency.
Run: ``python -m benchmarks.run_all`` (``--quick`` for a short smoke run).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.dataset as ds

from benchmarks.loadgen import run_load

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on (?P<host>[^\s]+):(?P<port>\d+) \(OTLP/gRPC\)")
SCENARIOS = {
    "traces-1000": ("traces", 1000),
    "traces-100": ("traces", 100),
    "metrics-1000": ("metrics", 1000),
    "logs-1000": ("logs", 1000),
    "metrics-streams-1000": ("metrics", 1000),
}
DEFAULT_SCENARIOS = ("traces-1000", "traces-100", "metrics-1000", "logs-1000")
# scenario -> requests of moving cumulative series per call slot (loadgen's ``streams``)
STREAM_SCENARIOS = {"metrics-streams-1000": 2}
TARGETS = ("null", "otlpd", "rotel")
NULL_THREADS = 4  # otlpd's default receiver.threads
START_TIMEOUT = 60.0
MIB = 1024 * 1024


def rotel_binary() -> Path | None:
    """The ``rotel-agent`` executable shipped in the ``rotel`` Python package, if installed."""
    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "rotel-agent"
    return binary if binary.exists() else None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """Machine and library versions, to print beside any benchmark figure."""
    from otlpd.buffer import IMPLEMENTATION
    from otlpd.decode import DECODERS

    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), model)
    binary = rotel_binary()
    rotel = _version("rotel")
    if binary is not None:
        agent = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
        rotel += f" ({agent.stdout.strip()})"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "pyarrow": _version("pyarrow"),
        "cython": _version("Cython"),
        "rotel": rotel,
        "otlpd_buffer": IMPLEMENTATION,
        "otlpd_decoder": DECODERS["traces"].__module__,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server under test in a subprocess; ready once it listens (its log line, or a TCP probe)."""

    def __init__(self, name: str, command: list[str], port: int | None = None, env: dict | None = None):
        self.name = name
        self.port = port
        self.lines: list[str] = []
        self.popen = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.process = psutil.Process(self.popen.pid)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.popen.kill()
            self.popen.wait()
            raise

    def _read(self) -> None:
        for line in self.popen.stderr:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match.group("port"))
                self._listening.set()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            if self._listening.is_set() or (self.port is not None and self._accepts()):
                return
            time.sleep(0.05)
        time.sleep(0.2)  # let the reader collect the last lines
        raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.lines[-30:]))

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the whole process tree so far."""
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def peak_rss_bytes(self) -> int:
        """The kernel's high-water mark of resident memory (VmHWM), summed over the
        processes of the tree: exact for one process, an upper bound for several."""
        total = 0
        for process in self._tree():
            with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
                with open(f"/proc/{process.pid}/status") as status:
                    line = next(line for line in status if line.startswith("VmHWM:"))
                total += int(line.split()[1]) * 1024
        return total

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self._reader.join(5)
        return code


class PeakRss:
    """Samples the RSS of a server's process tree every 100 ms on a thread; keeps the peak."""

    def __init__(self, server: Server, interval: float = 0.1):
        self.peak = 0
        self._server = server
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._server.rss_bytes())
            if self._stop.wait(self._interval):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit in the main thread, so the ``finally`` blocks stop the
    servers under test instead of leaving them running after the script is killed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def start_otlpd(workdir: Path, otlpd_args: list[str], env: dict | None = None, name: str = "otlpd") -> Server:
    """otlpd writing under ``workdir``, configured only by ``otlpd_args`` and ``env``
    (the caller's OTLPD_* variables are not passed on)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTLPD_") or k == "OTLPD_PURE_PYTHON"}
    return Server(name, [sys.executable, "-m", "otlpd", "--grpc-endpoint", "127.0.0.1:0", "--dashboard.endpoint", "127.0.0.1:0",
                         "--output-dir", str(workdir), *otlpd_args], env={**base, **(env or {})})


def load_settings(scenario: str, duration: float, processes: int, channels: int, concurrency: int) -> dict:
    """The keyword arguments of :func:`run_load` for one scenario."""
    signal_name, items = SCENARIOS[scenario]
    return dict(signal=signal_name, items_per_request=items, duration=duration, processes=processes,
                channels_per_process=channels, concurrency=concurrency,
                streams=STREAM_SCENARIOS.get(scenario, 0))


def items_per_cpu_second(row: dict, items_per_s: float) -> float | None:
    """Items per server CPU-second of a measured row, from its items/s over the load window."""
    return items_per_s * row["elapsed_s"] / row["cpu_s"] if row["cpu_s"] else None


def add_stored(row: dict, directory: Path, exit_code: int) -> None:
    """Add what otlpd stored in ``directory`` (one signal's files) to its loadgen row: stored
    items, stored items/s over the load window, and whether it equals what was accepted."""
    items = row["items_per_request"]
    stored = stored_rows(directory)
    accepted = (row["requests_ok"] + row["warmup_ok"]) * items
    row.update(exit_code=exit_code, stored_items=stored, accepted_items=accepted,
               stored_ok=stored == accepted and exit_code == 0,
               stored_items_per_s=(stored - row["warmup_ok"] * items) / row["elapsed_s"])


def start_target(target: str, workdir: Path, otlpd_args: list[str]) -> Server:
    """Start ``null``, ``otlpd`` (writing under ``workdir``) or ``rotel`` (blackhole exporter)."""
    if target == "null":
        return Server("null server", [sys.executable, "-m", "benchmarks.null_server",
                                      "--endpoint", "127.0.0.1:0", "--threads", str(NULL_THREADS)])
    if target == "otlpd":
        return start_otlpd(workdir, otlpd_args)
    port = _free_port()
    return Server("rotel", [
        str(rotel_binary()), "start", "--exporter", "blackhole",
        "--otlp-grpc-endpoint", f"127.0.0.1:{port}",
        "--otlp-http-endpoint", f"127.0.0.1:{_free_port()}",
        "--otlp-grpc-max-recv-msg-size-mib", "64",  # otlpd's default limit
        "--pid-file", str(workdir / "rotel.pid"), "--log-file", str(workdir / "rotel.log"),
    ], port=port)


def measure(server: Server, load: dict, settle: float) -> dict:
    """Run the load against ``server``; add its CPU seconds and peak RSS to the loadgen figures.

    The server must be fresh: its VmHWM counts from its start."""
    monitor = PeakRss(server)
    cpu_before = []
    result = run_load(server.endpoint, on_start=lambda: cpu_before.append(server.cpu_seconds()), **load)
    time.sleep(settle)
    result["cpu_s"] = server.cpu_seconds() - cpu_before[0]
    # sampling misses short peaks; VmHWM does not (and is absent off Linux)
    result["peak_rss_mib"] = max(monitor.stop(), server.peak_rss_bytes()) / MIB
    return result


def stored_rows(directory: Path) -> int:
    """Rows in the completed ``.arrow`` files of one signal directory."""
    files = sorted(str(path) for path in directory.glob("*.arrow"))
    return ds.dataset(files, format="ipc").count_rows() if files else 0


def run_scenario(name: str, targets: list[str], settings: dict, workdir: Path, log,
                 round_number: int = 1) -> list[dict]:
    """All targets, then otlpd's latency run, for one scenario; one row per run."""
    load = load_settings(name, settings["duration"], settings["processes"], settings["channels"],
                         settings["concurrency"])
    workdir = workdir / f"round-{round_number}"
    rows = []
    for target in targets:
        server = start_target(target, workdir / f"{name}-{target}", settings["otlpd_args"])
        try:
            row = measure(server, load, settings["settle"])
        finally:
            code = server.stop()
        row.update(scenario=name, target=target, throughput=row["items_per_s"], round=round_number)
        if target == "otlpd":
            add_stored(row, workdir / f"{name}-{target}" / load["signal"], code)
            row["throughput"] = row["stored_items_per_s"]
        row["items_per_cpu_s"] = items_per_cpu_second(row, row["throughput"])
        log(f"[{name}] {target}: {row['throughput']:,.0f} items/s, {row['cpu_s']:.1f} CPU s")
        rows.append(row)
    otlpd = next((row for row in rows if row["target"] == "otlpd"), None)
    if otlpd is not None and otlpd["requests_per_s"] > 0:
        rate = otlpd["requests_per_s"] / 2
        server = start_target("otlpd", workdir / f"{name}-otlpd-latency", settings["otlpd_args"])
        try:
            row = measure(server, {**load, "rate": rate}, settle=0)
        finally:
            server.stop()
        row.update(scenario=name, target="otlpd@half", throughput=row["items_per_s"], items_per_cpu_s=None,
                   round=round_number)
        log(f"[{name}] otlpd at {rate:.1f} requests/s: p50 {row['p50_ms'] or 0:.1f} ms, "
            f"p99 {row['p99_ms'] or 0:.1f} ms")
        rows.append(row)
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    """On the otlpd row: otlpd/null and otlpd/rotel throughput, otlpd/rotel items per CPU-second."""
    by_target = {row["target"]: row for row in rows}
    otlpd = by_target.get("otlpd")
    if otlpd is None:
        return
    ratio = (lambda a, b: a / b if a is not None and b else None)
    null, rotel = by_target.get("null"), by_target.get("rotel")
    otlpd["vs_null"] = ratio(otlpd["throughput"], null["throughput"]) if null else None
    otlpd["vs_rotel"] = ratio(otlpd["throughput"], rotel["throughput"]) if rotel else None
    otlpd["vs_rotel_cpu"] = ratio(otlpd["items_per_cpu_s"], rotel["items_per_cpu_s"]) if rotel else None


COLUMNS = [  # (heading, row key, format)
    ("round", "round", "{}"),
    ("scenario", "scenario", "{}"),
    ("target", "target", "{}"),
    ("items/s", "throughput", "{:,.0f}"),
    ("req/s", "requests_per_s", "{:,.1f}"),
    ("errors", "errors", None),
    ("CPU s", "cpu_s", "{:.2f}"),
    ("items/CPU-s", "items_per_cpu_s", "{:,.0f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("stored", "stored_items", "{:,}"),
    ("stored=accepted", "stored_ok", None),
    ("otlpd/null", "vs_null", "{:.2f}x"),
    ("otlpd/rotel", "vs_rotel", "{:.2f}x"),
    ("otlpd/rotel CPU", "vs_rotel_cpu", "{:.2f}x"),
]


def _cell(row: dict, key: str, fmt: str | None) -> str:
    value = row.get(key)
    if key == "errors":
        return ",".join(f"{code}:{count}" for code, count in sorted(value.items())) or "0"
    if key == "stored_ok":
        return "-" if value is None else ("yes" if value else "NO")
    if key == "target" and row.get("rate"):
        return f"{value} ({row['rate']:.1f} req/s)"
    return "-" if value is None else fmt.format(value)


def format_report(env: dict, settings: dict, rows: list[dict]) -> str:
    """The environment, the load settings and one aligned table of every run."""
    table = [[heading for heading, _, _ in COLUMNS]]
    table += [[_cell(row, key, fmt) for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [", ".join(f"{key} {value}" for key, value in env.items()),
             (f"load: {settings['processes']} processes x {settings['channels']} channels x "
              f"{settings['concurrency']} in flight, {settings['duration']:g} s per target, "
              f"settle {settings['settle']:g} s, otlpd args: {shlex.join(settings['otlpd_args']) or '(none)'}"),
             "items/s of otlpd = rows stored in its files per second; otlpd@half = otlpd at half "
             "its measured request rate, latency from the scheduled send time",
             ""]
    for i, line in enumerate(table):
        lines.append("  ".join(cell.ljust(w) if j < 3 else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(line, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    rounds = max((row.get("round", 1) for row in rows), default=1)
    if rounds > 1:
        lines += ["", f"over {rounds} rounds (each ratio taken within its round; the median, then "
                      "round by round):"]
        lines += summarize_rounds(rows)
    return "\n".join(lines)


def summarize_rounds(rows: list[dict]) -> list[str]:
    """Per scenario: the median and the per-round values of otlpd's ratios, its highest peak RSS."""
    lines = []
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        otlpd = [row for row in rows if row["scenario"] == scenario and row["target"] == "otlpd"]
        parts = []
        for heading, key in (("otlpd/null", "vs_null"), ("otlpd/rotel", "vs_rotel"),
                             ("otlpd/rotel CPU", "vs_rotel_cpu")):
            values = [row[key] for row in otlpd if row.get(key) is not None]
            if values:
                parts.append(f"{heading} {statistics.median(values):.2f}x "
                             f"({'/'.join(f'{value:.2f}' for value in values)})")
        peaks = [row["peak_rss_mib"] for row in otlpd]
        if peaks:
            parts.append(f"otlpd peak RSS up to {max(peaks):,.0f} MiB")
        lines.append(f"{scenario}: " + ", ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated, from {', '.join(SCENARIOS)} (default all but "
                             "metrics-streams-1000)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, from null, otlpd, rotel")
    parser.add_argument("--duration", type=float, help="seconds of load per target (default 10, --quick 1)")
    parser.add_argument("--settle", type=float,
                        help="seconds after the load still counted as server CPU (default 1.5, --quick 0.5)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--channels", type=int, default=2, help="channels per load generator process")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per channel")
    parser.add_argument("--otlpd-args", default="", help='extra otlpd flags, e.g. --otlpd-args="--writer.compression lz4"')
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every scenario this many times, its targets one after the other "
                             "each time, and summarize the ratios per round (noisy machines)")
    parser.add_argument("--quick", action="store_true", help="short runs, for the smoke test")
    parser.add_argument("--json", metavar="FILE", help="also write the environment and results as JSON")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    scenarios = [name for name in args.scenarios.split(",") if name]
    targets = [name for name in args.targets.split(",") if name]
    unknown = (set(scenarios) - set(SCENARIOS)) | (set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown scenario or target: {', '.join(sorted(unknown))}")
    if "rotel" in targets and rotel_binary() is None:
        print("rotel is not installed (pip install rotel): skipping it", file=sys.stderr)
        targets.remove("rotel")
    settings = {
        "duration": args.duration or (1.0 if args.quick else 10.0),
        "settle": args.settle if args.settle is not None else (0.5 if args.quick else 1.5),
        "processes": args.processes, "channels": args.channels, "concurrency": args.concurrency,
        "otlpd_args": shlex.split(args.otlpd_args),
    }
    env = environment()
    rows = []
    with tempfile.TemporaryDirectory(prefix="otlpd-bench-") as workdir:
        for name in scenarios:
            for round_number in range(1, max(1, args.rounds) + 1):
                rows += run_scenario(name, targets, settings, Path(workdir),
                                     log=lambda message: print(message, file=sys.stderr, flush=True),
                                     round_number=round_number)
    print(format_report(env, settings, rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "settings": settings, "rows": rows},
                                              indent=2))
    failed = [row for row in rows if row.get("stored_ok") is False]
    for row in failed:
        print(f"[{row['scenario']}] otlpd stored {row['stored_items']} of {row['accepted_items']} accepted "
              f"items (exit code {row['exit_code']})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
