"""OTLP/gRPC load generator: pre-serialized Export requests from several processes and channels.

Each client process opens ``channels_per_process`` channels (one TCP connection each)
and keeps ``concurrency`` calls in flight per channel, one thread per call slot. Without
a rate every slot sends back to back for ``duration`` seconds; with a rate (requests/s,
total) the calls follow a fixed schedule and latency is measured from the scheduled send
time, so a server that falls behind shows up in the latency (no coordinated omission).
Failed calls (UNAVAILABLE included) are counted by status code and never retried.
Run: ``python -m benchmarks.loadgen --endpoint 127.0.0.1:4317 --signal traces --duration 10``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import sys
import threading
import time
import traceback
from collections import Counter

import grpc

from benchmarks.null_server import MAX_MESSAGE_BYTES, SERVICES
from benchmarks.requests import StreamPool, request_pool

METHODS = {signal: f"/{service}/Export" for signal, service in SERVICES.items()}
CONNECT_TIMEOUT = 10.0


def _settings(endpoint, signal, items_per_request, duration, rate, processes,
              channels_per_process, concurrency, timeout, seed, streams=0) -> dict:
    if signal not in METHODS:
        raise ValueError(f"signal must be one of {', '.join(METHODS)}, got {signal!r}")
    if min(items_per_request, processes, channels_per_process, concurrency) < 1 or duration <= 0:
        raise ValueError("items, processes, channels, concurrency and duration must be positive")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if streams and signal != "metrics":
        raise ValueError("moving streams are metrics only")
    return dict(endpoint=endpoint, signal=signal, items_per_request=items_per_request,
                duration=duration, rate=rate, processes=processes,
                channels_per_process=channels_per_process, concurrency=concurrency,
                timeout=timeout, seed=seed, streams=streams)


def _open_channels(settings: dict) -> list[grpc.Channel]:
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               # own subchannel pool: every channel gets its own connection
               ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(settings["endpoint"], options=options)
                for _ in range(settings["channels_per_process"])]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
    return channels


class _Slot:
    """One in-flight call slot (a thread): its counts and latencies."""

    def __init__(self, call, pool: list[bytes], first: int, streams: StreamPool | None = None):
        self.call = call
        self.streams = streams
        self.pool = pool
        self.next = first
        self.ok = 0
        self.errors: Counter = Counter()
        self.latencies: list[float] = []

    def send(self, timeout: float, since: float | None = None) -> None:
        """One Export; latency counts from ``since`` (the scheduled time) or from now."""
        if self.streams is not None:
            data = self.streams.next()
        else:
            data = self.pool[self.next % len(self.pool)]
            self.next += 1
        started = time.monotonic() if since is None else since
        try:
            self.call(data, timeout=timeout)
        except grpc.RpcError as error:
            self.errors[error.code().name] += 1
            return
        self.ok += 1
        self.latencies.append(time.monotonic() - started)

    def run(self, deadline: float, timeout: float, next_send) -> None:
        """Send until ``deadline``: back to back, or at the times ``next_send()`` hands out."""
        if next_send is None:
            while time.monotonic() < deadline:
                self.send(timeout)
            return
        while (when := next_send()) < deadline:
            time.sleep(max(0.0, when - time.monotonic()))
            self.send(timeout, since=when)


def _worker(index: int, settings: dict, ready, start, results) -> None:
    """One client process: prepare, report ready, wait for the start, load, report results."""
    try:
        results.put(_load(index, settings, ready, start))
    except BaseException:  # noqa: BLE001 - the parent re-raises it
        ready.put(index)
        results.put({"failure": traceback.format_exc()})


def _load(index: int, settings: dict, ready, start) -> dict:
    streams = settings["streams"]
    pool = [] if streams else request_pool(settings["signal"], settings["items_per_request"],
                                           seed=settings["seed"] * 1000 + index)
    channels = _open_channels(settings)
    calls = [channel.unary_unary(METHODS[settings["signal"]], request_serializer=None,
                                 response_deserializer=None) for channel in channels]
    slots = [_Slot(calls[i % len(calls)], pool, first=i,
                   streams=StreamPool(settings["items_per_request"], streams, f"{settings['seed']}/{index}/{i}",
                                      seed=(settings["seed"] * 1000 + index) * 1000 + i) if streams else None)
             for i in range(len(calls) * settings["concurrency"])]
    for slot in slots[:len(calls)]:  # warm-up: one call per connection, not measured
        slot.send(settings["timeout"])
    warmup_ok, warmup_errors = sum(s.ok for s in slots), sum((s.errors for s in slots), Counter())
    for slot in slots:
        slot.ok, slot.errors, slot.latencies = 0, Counter(), []
    ready.put(index)
    start.wait()
    began = time.monotonic()
    deadline = began + settings["duration"]
    next_send = None
    if settings["rate"]:
        interval = settings["processes"] / settings["rate"]
        ticks = itertools.count()  # next() on it is atomic under the GIL: shared by all slots
        offset = index / settings["processes"]  # processes take turns rather than send together
        next_send = lambda: began + (next(ticks) + offset) * interval  # noqa: E731
    threads = [threading.Thread(target=slot.run, args=(deadline, settings["timeout"], next_send))
               for slot in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = time.monotonic()
    for channel in channels:
        channel.close()
    return {
        "began": began, "ended": ended, "ok": sum(s.ok for s in slots),
        "errors": dict(sum((s.errors for s in slots), Counter())),
        "latencies": [x for s in slots for x in s.latencies],
        "warmup_ok": warmup_ok, "warmup_errors": dict(warmup_errors),
    }


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summarize(settings: dict, parts: list[dict]) -> dict:
    elapsed = max(p["ended"] for p in parts) - min(p["began"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    errors = sum((Counter(p["errors"]) for p in parts), Counter())
    latencies = sorted(x for p in parts for x in p["latencies"])
    ms = (lambda value: None if value is None else value * 1000)
    return {
        **settings,
        "elapsed_s": elapsed,
        "requests_ok": ok,
        "requests_failed": sum(errors.values()),
        "errors": dict(errors),
        "items_ok": ok * settings["items_per_request"],
        "requests_per_s": ok / elapsed,
        "items_per_s": ok * settings["items_per_request"] / elapsed,
        "p50_ms": ms(_percentile(latencies, 0.50)),
        "p99_ms": ms(_percentile(latencies, 0.99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "warmup_ok": sum(p["warmup_ok"] for p in parts),
        "warmup_errors": dict(sum((Counter(p["warmup_errors"]) for p in parts), Counter())),
    }


def run_load(endpoint: str, signal: str = "traces", items_per_request: int = 1000,
             duration: float = 10.0, rate: float | None = None, processes: int = 2,
             channels_per_process: int = 2, concurrency: int = 4, timeout: float = 30.0,
             seed: int = 0, on_start=None, streams: int = 0) -> dict:
    """Load ``endpoint`` and return the figures (see ``_summarize``); ``on_start()`` runs just
    before the clock starts, after every client process has connected and warmed up.

    The warm-up calls (one per channel) are not in the figures but in ``warmup_ok`` and
    ``warmup_errors``: a server that stores data stores those items too.

    ``streams`` (metrics only): instead of replaying a fixed pool, every call slot sends its own
    ``streams`` requests of distinct cumulative series in turn, each send the next report of
    its series (``benchmarks.requests.StreamPool``: times patched forward in the bytes).
    """
    settings = _settings(endpoint, signal, items_per_request, duration, rate, processes,
                         channels_per_process, concurrency, timeout, seed, streams)
    context = multiprocessing.get_context("spawn")  # fork and grpc threads do not mix
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    workers = [context.Process(target=_worker, args=(i, settings, ready, start, results), daemon=True)
               for i in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=120)
        if on_start is not None:
            on_start()
        start.set()
        parts = [results.get(timeout=duration + timeout + 120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    failures = [p["failure"] for p in parts if "failure" in p]
    if failures:
        raise RuntimeError("a load generator process failed:\n" + failures[0])
    return _summarize(settings, parts)


def format_result(result: dict) -> str:
    """Two human-readable lines: the settings, then the figures."""
    errors = ", ".join(f"{code} {count}" for code, count in sorted(result["errors"].items())) or "none"
    rate = f" at {result['rate']:g} requests/s" if result["rate"] else ""
    latency = ("p50 n/a  p99 n/a" if result["p50_ms"] is None
               else f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms")
    return (
        f"{result['signal']} x{result['items_per_request']} -> {result['endpoint']}: "
        f"{result['processes']} processes x {result['channels_per_process']} channels x "
        f"{result['concurrency']} in flight{rate}, {result['elapsed_s']:.1f} s\n"
        f"requests/s {result['requests_per_s']:,.1f}  items/s {result['items_per_s']:,.0f}  "
        f"{latency}  errors: {errors}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="127.0.0.1:4317", help="HOST:PORT of the OTLP/gRPC server")
    parser.add_argument("--signal", choices=list(METHODS), default="traces")
    parser.add_argument("--items-per-request", type=int, default=1000,
                        help="spans, data points or log records per request")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--rate", type=float, help="requests/s in total (default: as fast as possible)")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--channels-per-process", type=int, default=2, help="channels (connections) per process")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per channel")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, seconds")
    parser.add_argument("--seed", type=int, default=0, help="varies the generated requests")
    parser.add_argument("--streams", type=int, default=0,
                        help="metrics: each call slot sends this many requests of its own moving "
                             "cumulative series (times move forward every send) instead of a fixed pool")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    result = run_load(args.endpoint, args.signal, args.items_per_request, args.duration, args.rate,
                      args.processes, args.channels_per_process, args.concurrency, args.timeout,
                      args.seed, streams=args.streams)
    print(json.dumps(result) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
