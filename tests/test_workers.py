"""Several worker processes on one port (receiver.workers > 1)."""
import os
import re
import signal
import time

import grpc
import psutil
import pyarrow.dataset as ds
import pytest

from daemon_process import DaemonProcess
from otlp_client import export, trace_request
from otlpd import files
from otlpd.config import resolve
from otlpd.workers import Supervisor, _merge

pytestmark = pytest.mark.slow


def send_on_new_connections(endpoint, requests):
    """Each request on its own channel, so SO_REUSEPORT spreads them over the workers."""
    for request in requests:
        with grpc.insecure_channel(endpoint) as channel:
            assert export(channel, "traces", request.SerializeToString()) == b""


def stored_names(output):
    table = ds.dataset(str(output / "traces"), format="ipc").to_table(columns=["name"])
    return sorted(table.column("name").to_pylist())


def test_two_workers_share_the_port_and_write_their_own_files(tmp_path):
    output = tmp_path / "data"
    with DaemonProcess(output, "--receiver.workers", "2") as daemon:
        send_on_new_connections(daemon.endpoint, [trace_request(10, first=i * 10) for i in range(40)])
        assert daemon.stop() == 0
    assert stored_names(output) == sorted(f"span-{i}" for i in range(400))
    names = [path.name for path in (output / "traces").glob("*.arrow")]
    instances = {name.split("-")[2] for name in names}
    assert instances <= {"w1", "w2"}
    assert all(files.sequence_of(name) is not None for name in names)
    assert not list(output.rglob("*.part"))


def test_a_killed_worker_is_restarted_and_its_file_recovered(tmp_path):
    output = tmp_path / "data"
    with DaemonProcess(output, "--receiver.workers", "2", "--writer.write-interval", "50ms") as daemon:
        send_on_new_connections(daemon.endpoint, [trace_request(10, first=i * 10) for i in range(20)])
        daemon.wait_for(lambda: sum(  # everything acknowledged has reached the disk
            batch.num_rows for part in (output / "traces").glob("*.part")
            for batch in files.read_part(part)[1]) == 200)
        parts = sorted((output / "traces").glob("*.part"))
        victim_instance = parts[0].name.split("-")[2]
        pid = int(re.search(rf"worker {victim_instance} \(pid (\d+)\)", daemon.stderr).group(1))
        assert pid in [child.pid for child in psutil.Process(daemon.process.pid).children()]
        os.kill(pid, signal.SIGKILL)
        daemon.wait_for(lambda: "restarting it" in daemon.stderr, timeout=30)
        daemon.wait_for(lambda: not parts[0].exists(), timeout=30)
        send_on_new_connections(daemon.endpoint, [trace_request(10, first=200 + i * 10) for i in range(10)])
        assert daemon.stop() == 0
    assert stored_names(output) == sorted(f"span-{i}" for i in range(300))


def test_supervisor_status_and_rotate_cover_every_worker(tmp_path):
    config = resolve({}, {}, {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(tmp_path / "data"),
                              "receiver.workers": "2", "writer.write_interval": "1h",
                              "writer.fsync": "false"})
    supervisor = Supervisor(config)
    supervisor.start()
    try:
        send_on_new_connections(supervisor.endpoint, [trace_request(5, first=i * 5) for i in range(12)])
        snapshot = supervisor.status.snapshot()
        assert set(snapshot["workers"]) == {"w1", "w2"}
        assert snapshot["signals"]["traces"]["buffer"]["accepted_items"] == 60
        assert snapshot["signals"]["traces"]["receiver"]["requests"] == 12
        rotated = supervisor.rotate("traces")["traces"]
        assert 1 <= len(rotated) <= 2
        assert ds.dataset(rotated, format="ipc").count_rows() == 60
    finally:
        supervisor.stop()


def test_merge_sums_numbers_and_lists_the_rest():
    merged = _merge([{"a": {"n": 1, "f": "x"}, "b": 2}, {"a": {"n": 3, "f": None}, "b": 5}])
    assert merged == {"a": {"n": 4, "f": ["x", None]}, "b": 7}


def test_every_workers_metrics_reach_one_converter(tmp_path):
    """With two workers, one stream's cumulative points arrive at either worker; the first
    converts them all, in order: the right deltas, in its files only. A change of the setting
    through the supervisor (the web API's path) applies to what is sent after it."""
    from test_temporality import DELTA, request, sum_metric

    config = resolve({}, {}, {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(tmp_path / "data"),
                              "receiver.workers": "2", "writer.write_interval": "50ms",
                              "writer.fsync": "false", "metrics.temporality": "delta",
                              "metrics.initial_value": "keep"})
    supervisor = Supervisor(config)
    supervisor.start()
    base = 1_700_000_000

    def send(points, temporality_=2):
        for start, time_, value in points:
            with grpc.insecure_channel(supervisor.endpoint) as channel:
                assert export(channel, "metrics", request([sum_metric(
                    [(base + start, base + time_, value)], temporality_=temporality_)]).SerializeToString()) == b""

    try:
        send([(0, 10 * i, 5 * i) for i in range(1, 21)])  # 20 connections: both workers take some
        relayed = supervisor.status.snapshot()["workers"]["w2"]["signals"]["metrics"]["receiver"]
        assert relayed.get("relayed_requests", 0) > 0 and relayed.get("requests", 0) == 0
        deadline = time.monotonic() + 30
        while supervisor.temporality.snapshot()["converted_points"] < 20:  # written every 50 ms
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert supervisor.temporality.set("cumulative")["source"] == "api"
        send([(200 + 10 * i, 210 + 10 * i, 1) for i in range(10)], temporality_=DELTA)
    finally:
        supervisor.stop()
    metrics = tmp_path / "data" / "metrics"
    assert {path.name.split("-")[2] for path in metrics.glob("*.arrow")} == {"w1"}
    rows = sorted((row for path in metrics.glob("*.arrow") for row in files.read_table(path).to_pylist()),
                  key=lambda row: (row["aggregation_temporality"] == 2, row["time"]))
    stored = [((row["start_time"].timestamp() - base), row["time"].timestamp() - base, row["value_int"],
               row["aggregation_temporality"]) for row in rows]
    assert stored == [(0, 10, 5, DELTA)] + [(10 * (i - 1), 10 * i, 5, DELTA) for i in range(2, 21)] + [
        (200, 210 + 10 * i, i + 1, 2) for i in range(10)]


def test_worker_snapshots_merge_over_the_workers_that_have_a_counter():
    """A worker that received no request has no ``requests`` counter yet (counters start at
    their first event): the merged status sums those that have it, whichever worker does."""
    from otlpd.workers import _merge

    w1 = {"traces": {"receiver": {"requests": 12, "request_bytes": 900}, "state": "ok"}}
    w2 = {"traces": {"receiver": {}, "state": "ok"}, "logs": {"receiver": {"requests": 3}}}
    merged = _merge([w1, w2])
    assert merged["traces"]["receiver"] == {"requests": 12, "request_bytes": 900}
    assert merged["traces"]["state"] == ["ok", "ok"]
    assert merged["logs"]["receiver"] == {"requests": 3}
    assert _merge([w2, w1])["traces"]["receiver"]["requests"] == 12
