"""How fast the forwarder ships a stored backlog, and its CPU per record, by signal.

A backlog of ``--items`` records per signal is stored by an embedded otlpd without forwarding
and completed; then an embedded otlpd forwarding to a null server (a subprocess, so it does not
share this process's GIL) starts on those files, and the time and this process's CPU until
every record is acknowledged are measured. Run: ``python -m benchmarks.forward --items 200000``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.requests import request_pool
from benchmarks.run_all import _free_port, environment
from otlpd import encode, schema
from otlpd.daemon import Daemon

REQUEST_ITEMS = 1000


def store_backlog(output: Path, signal: str, items: int) -> int:
    pool = request_pool(signal, REQUEST_ITEMS)
    with Daemon.embedded(output, **{"writer.fsync": "false", "metrics.temporality": "passthrough"}) as daemon:
        for number in range(items // REQUEST_ITEMS):
            daemon.ingest(signal, pool[number % len(pool)])
    return items // REQUEST_ITEMS * REQUEST_ITEMS


def ship(output: Path, signal: str, endpoint: str, records: int, timeout: float, compression: str,
         max_in_flight: int) -> dict:
    settings = {"writer.fsync": "false", "forward.endpoint": endpoint, "forward.insecure": "true",
                "forward.compression": compression, "forward.max_in_flight": str(max_in_flight),
                "forward.poll_interval": "50ms", "metrics.temporality": "passthrough"}
    started, cpu = time.monotonic(), time.process_time()
    with Daemon.embedded(output, **settings) as daemon:
        deadline = started + timeout
        while daemon.status.snapshot()["forwarding"]["signals"][signal]["sent_records"] < records:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{signal}: not shipped in {timeout} s")
            time.sleep(0.02)
        part = daemon.status.snapshot()["forwarding"]["signals"][signal]
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu
    return {"signal": signal, "compression": compression, "max_in_flight": max_in_flight, "records": records, "seconds": round(seconds, 2),
            "records_per_second": round(records / seconds), "cpu_us_per_record": round(cpu_seconds / records * 1e6, 2),
            "requests": part["sent_requests"], "bytes_per_record": round(part["sent_bytes"] / records, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000, help="records stored per signal")
    parser.add_argument("--signals", default=",".join(schema.SIGNALS))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--compression", default="gzip,none", help="forward.compression values to run")
    parser.add_argument("--max-in-flight", default="1,4", help="forward.max_in_flight values to run (ratios "
                                                               "to the first, per signal and compression)")
    args = parser.parse_args(argv)
    print(json.dumps({**environment(), "otlpd_encoder": encode.IMPLEMENTATION}), flush=True)
    port = _free_port()
    null = subprocess.Popen([sys.executable, "-m", "benchmarks.null_server", "--endpoint", f"127.0.0.1:{port}",
                             "--threads", "4"], stderr=subprocess.PIPE, text=True)
    try:
        null.stderr.readline()  # "null server listening on ..."
        for signal in args.signals.split(","):
            with tempfile.TemporaryDirectory(prefix="otlpd-forward-bench-") as scratch:
                records = store_backlog(Path(scratch), signal, args.items)
                for compression in args.compression.split(","):
                    first = None
                    for max_in_flight in (int(value) for value in args.max_in_flight.split(",")):
                        # the same stored files each time: the checkpoint is removed in between
                        for checkpoint in (Path(scratch) / "forward").glob("*.json"):
                            checkpoint.unlink()
                        row = ship(Path(scratch), signal, f"127.0.0.1:{port}", records, args.timeout, compression,
                                   max_in_flight)
                        first = first or row
                        row["records_per_second_vs_first"] = round(
                            row["records_per_second"] / first["records_per_second"], 2)
                        print(json.dumps(row), flush=True)
    finally:
        null.terminate()
        null.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
