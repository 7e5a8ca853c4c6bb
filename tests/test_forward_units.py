"""The forwarder's parts one by one: checkpoint, reading the files as a log, retention's respect
for the checkpoint, the sequence floor, backoff, and the forward.* settings."""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pytest

from daemon_process import assert_one_line_error, run_otlpd, start_daemon
from forward_helpers import ScriptedRemote, forwarding_settings, forwarding_status, stored_rows, wait_until
from otlp_client import export, logs_request, trace_request
from otlpd import files
from otlpd.config import SETTINGS, ConfigError, resolve
from otlpd.forward.checkpoint import Checkpoint, Position, checkpoint_path, read_positions, sequence_floor
from otlpd.forward.log import OpenedFile, batch_rows, list_files, unshipped_rows
from otlpd.forward.retention import RetentionGuard
from otlpd.forward.retry import Backoff
from otlpd.forward.settings import client_settings

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])
ZSTD = pa.ipc.IpcWriteOptions(compression="zstd")


def batch(ids):
    ids = list(ids)
    return pa.record_batch([pa.array(ids, pa.int64()), pa.array([f"row {i}" for i in ids])], schema=SCHEMA)


# -- checkpoint ----------------------------------------------------------------------------

def test_checkpoint_round_trip_per_instance(tmp_path):
    path = checkpoint_path(tmp_path, "traces")
    checkpoint = Checkpoint(path, fsync=True)
    assert checkpoint.get("") is None
    checkpoint.set("", Position(3, 1, 250))
    checkpoint.set("w2", Position(9))
    again = Checkpoint(path)
    assert again.get("") == Position(3, 1, 250) and again.get("w2") == Position(9, 0, 0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["traces.json"]  # no temporary left
    assert sequence_floor(tmp_path, "traces") == 10
    assert sequence_floor(tmp_path, "logs") == 0


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint_path(tmp_path, "logs")
    checkpoint = Checkpoint(path, fsync=False)
    checkpoint.set("", Position(1, 2, 3))

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint.set("", Position(5))
    monkeypatch.undo()
    assert read_positions(path) == {"": Position(1, 2, 3)}
    assert [p.name for p in path.parent.iterdir()] == ["logs.json"]


@pytest.mark.parametrize("text", ["{not json", json.dumps({"version": 99, "positions": {}}),
                                  json.dumps({"version": 1, "positions": {"": {"seq": "x"}}})])
def test_a_damaged_checkpoint_stops_the_start_with_one_line(tmp_path, text):
    path = checkpoint_path(tmp_path, "metrics")
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^forward.endpoint: the checkpoint .* is not usable"):
        read_positions(path)


# -- the files as a log ----------------------------------------------------------------------

def test_row_counts_come_from_message_headers_and_a_torn_batch_is_not_read(tmp_path):
    complete = tmp_path / files.file_name("logs", time.time(), 1)
    files.write_ipc_file(complete, SCHEMA, [batch(range(n)) for n in (5, 70000, 1)], ZSTD)
    opened = OpenedFile(list_files(tmp_path)[""][0])
    assert opened.rows == [5, 70000, 1]
    assert opened.batch(1).equals(batch(range(70000)))
    # a file in progress cut inside its last batch: that batch is not there yet
    data = complete.read_bytes()
    part = tmp_path / (files.file_name("logs", time.time(), 2) + ".part")
    with pa.OSFile(str(part), "wb") as sink:
        with pa.ipc.new_file(sink, SCHEMA, options=ZSTD) as writer:
            writer.write_batch(batch(range(5)))
            first_end = sink.tell()
            writer.write_batch(batch(range(7)))
            second_end = sink.tell()
    part.write_bytes(part.read_bytes()[:(first_end + second_end) // 2])  # killed inside the second
    listed = list_files(tmp_path)[""]
    assert [(file.seq, file.complete) for file in listed] == [(1, True), (2, False)]
    assert OpenedFile(listed[1]).rows == [b.num_rows for b in files.read_part(part)[1]] == [5]
    assert batch_rows(_first_batch_message(data)) == 5


def _first_batch_message(data: bytes):
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(data[8:]))
    reader.read_next_message()  # the schema
    return reader.read_next_message()


def test_unshipped_rows_from_a_position():
    rows = [10, 20, 30]
    assert unshipped_rows(rows, 4, None) == 60
    assert unshipped_rows(rows, 4, Position(5)) == 0
    assert unshipped_rows(rows, 6, Position(5)) == 60
    assert unshipped_rows(rows, 5, Position(5, 1, 5)) == 45
    assert unshipped_rows(rows, 5, Position(5, 3)) == 0


# -- retention and the checkpoint ----------------------------------------------------------------

def write_files(directory, count, rows=100):
    directory.mkdir(parents=True)
    now = time.time()
    sizes = []
    for seq in range(1, count + 1):
        path = directory / files.file_name("logs", now, seq)
        files.write_ipc_file(path, SCHEMA, [batch(range(rows))], pa.ipc.IpcWriteOptions())
        os.utime(path, (now - 10_000, now - 10_000))  # all old
        sizes.append(path.stat().st_size)
    return sizes


def test_retention_by_age_never_deletes_what_is_not_shipped(tmp_path):
    directory = tmp_path / "logs"
    write_files(directory, 4)
    Checkpoint(checkpoint_path(tmp_path, "logs")).set("", Position(3, 0, 40))  # 1, 2 shipped; 3 partly
    dropped = []
    guard = RetentionGuard(tmp_path, "logs")
    deleted, _ = files.apply_retention(directory, max_age=60, max_total_bytes=0,
                                       unshipped=guard.rows_for(directory), dropped=lambda f, n: dropped.append(n))
    assert deleted == 2 and not dropped
    assert [file.seq for file in files.completed_files(directory)] == [3, 4]


def test_retention_by_size_deletes_shipped_first_then_counts_what_it_drops(tmp_path):
    directory = tmp_path / "logs"
    sizes = write_files(directory, 4)
    Checkpoint(checkpoint_path(tmp_path, "logs")).set("", Position(2, 0, 30))  # 1 shipped, 2 partly
    dropped = []
    guard = RetentionGuard(tmp_path, "logs")
    deleted, _ = files.apply_retention(directory, max_age=0, max_total_bytes=sizes[0] + sizes[1],
                                       unshipped=guard.rows_for(directory),
                                       dropped=lambda file, rows: dropped.append((file.seq, rows)))
    assert deleted == 2
    assert dropped == [(2, 70)]
    assert [file.seq for file in files.completed_files(directory)] == [3, 4]


def test_forced_deletion_is_counted_as_dropped_in_the_status(tmp_path):
    # a remote that never answers: nothing is shipped, retention.max_total_bytes deletes anyway
    daemon = start_daemon(tmp_path, **{"forward.endpoint": "127.0.0.1:1", "forward.insecure": "true",
                                       "retention.max_total_bytes": "1"})
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            for first in range(0, 300, 100):
                export(channel, "traces", trace_request(100, first=first).SerializeToString())
                daemon.rotate("traces")
        status = daemon.status.snapshot()["forwarding"]["signals"]["traces"]
        assert status["dropped_by_retention"] == 300 and status["dropped_files_by_retention"] == 3
        assert status["sent_records"] == 0
        assert daemon.writers["traces"].status()["unforwarded_records_deleted"] == 300
    finally:
        daemon.stop()
    # the ledger beside the checkpoint keeps the count across a restart
    daemon = start_daemon(tmp_path, **{"forward.endpoint": "127.0.0.1:1", "forward.insecure": "true"})
    try:
        assert daemon.status.snapshot()["forwarding"]["signals"]["traces"]["dropped_by_retention"] == 300
    finally:
        daemon.stop()


def test_a_new_file_never_takes_a_sequence_the_checkpoint_names(tmp_path):
    Checkpoint(checkpoint_path(tmp_path / "data", "traces")).set("", Position(41, 2))
    daemon = start_daemon(tmp_path)
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "traces", trace_request(3).SerializeToString())
        path = daemon.rotate("traces")["traces"]
    finally:
        daemon.stop()
    assert files.sequence_of(os.path.basename(path)) == 42
    assert stored_rows(tmp_path / "data", "traces") == 3


# -- backoff ------------------------------------------------------------------------------

def test_backoff_is_full_jitter_doubling_up_to_the_maximum_and_honours_retry_info():
    backoff = Backoff(0.5, 4.0, random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings))
    assert len(set(delays)) == len(delays)  # jittered
    assert backoff.next_delay(retry_delay=1.5) == 1.5
    assert backoff.next_delay(retry_delay=100) == 4.0


# -- settings ---------------------------------------------------------------------------------

FORWARD = {"forward.endpoint": "collector.example:4317"}


@pytest.mark.parametrize("flags, key", [
    ({"forward.endpoint": "no-port"}, "forward.endpoint"),
    ({"forward.endpoint": "https://collector.example:4317"}, "forward.endpoint"),
    ({"forward.endpoint": "localhost:4317"}, "forward.endpoint"),  # itself (grpc_endpoint 127.0.0.1:4317)
    ({**FORWARD, "forward.compression": "zstd"}, "forward.compression"),
    ({**FORWARD, "forward.timeout": "soon"}, "forward.timeout"),
    ({**FORWARD, "forward.headers": "novalue"}, "forward.headers"),
    ({**FORWARD, "forward.headers": "Grpc-Timeout=1"}, "forward.headers"),
    ({**FORWARD, "forward.api_key_header": "X Key"}, "forward.api_key_header"),
    ({**FORWARD, "forward.tls_cert_file": "/etc/hostname"}, "forward.tls_cert_file"),
    ({**FORWARD, "forward.tls_ca_file": "/nonexistent/ca.pem"}, "forward.tls_ca_file"),
    ({**FORWARD, "forward.insecure": "true", "forward.tls_ca_file": "/etc/hostname"}, "forward.tls_ca_file"),
    ({**FORWARD, "forward.insecure": "true", "forward.bearer_token": "t"}, "forward.bearer_token"),
    ({**FORWARD, "forward.bearer_token": "t", "forward.basic_auth_user": "u",
      "forward.basic_auth_password": "p"}, "forward.bearer_token"),
    ({**FORWARD, "forward.basic_auth_user": "u"}, "forward.basic_auth_user"),
    ({**FORWARD, "forward.api_key": "k", "forward.api_key_file": "/etc/hostname"}, "forward.api_key_file"),
    ({**FORWARD, "forward.bearer_token_file": "/nonexistent"}, "forward.bearer_token_file"),
    ({**FORWARD, "forward.max_request_items": "0"}, "forward.max_request_items"),
    ({**FORWARD, "forward.max_in_flight": "0"}, "forward.max_in_flight"),
    ({**FORWARD, "forward.retry.initial_backoff": "10s", "forward.retry.max_backoff": "1s"},
     "forward.retry.max_backoff"),
    ({**FORWARD, "forward.breaker.failure_rate_threshold": "1.5"}, "forward.breaker.failure_rate_threshold"),
    ({**FORWARD, "forward.breaker.max_open_timeout": "100ms"}, "forward.breaker.max_open_timeout"),
])
def test_bad_forward_settings_are_one_line_naming_the_key(flags, key):
    with pytest.raises(ConfigError) as raised:
        resolve({}, {}, flags)
    message = str(raised.value)
    assert message.startswith(key + ":"), message
    assert "\n" not in message


def test_secrets_come_from_files_and_the_environment_and_are_never_shown(tmp_path):
    token = tmp_path / "token"
    token.write_text("file-secret\n")
    config = resolve({}, {"forward.api_key": "env-secret"},
                     {**FORWARD, "forward.bearer_token_file": str(token), "forward.headers": "tenant=a%2Cb"})
    settings = client_settings(config)
    assert dict(settings.metadata) == {"tenant": "a,b", "x-api-key": "env-secret",
                                       "authorization": "Bearer file-secret"}
    shown = json.dumps(settings.public()) + repr(settings)
    assert "secret" not in shown and "a,b" not in shown
    assert settings.public()["auth"] == "api_key (x-api-key), bearer_token"


def test_a_bad_forward_setting_stops_the_start_with_one_line():
    result = run_otlpd("--forward.endpoint", "127.0.0.1:4317", "--forward.compression", "brotli")
    assert_one_line_error(result, "forward.compression: must be one of gzip, none")


def test_forwarding_is_off_without_an_endpoint(tmp_path):
    daemon = start_daemon(tmp_path)
    try:
        assert daemon.forwarder is None
        assert daemon.status.snapshot()["forwarding"] == {"enabled": False}
    finally:
        daemon.stop()
    assert not (tmp_path / "data" / "forward").exists()


def test_checking_the_forward_settings_loads_neither_pyarrow_nor_grpc():
    # the command line configures the allocator after reading the settings and before pyarrow loads
    code = ("import sys; from otlpd.config import resolve; resolve({}, {}, {'forward.endpoint': 'h:1'}); "
            "print(sorted(m for m in ('pyarrow', 'grpc') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_every_forward_setting_is_documented():
    docs = Path(__file__).resolve().parents[1] / "docs"
    forwarding, configuration = (docs / "FORWARDING.md").read_text(), (docs / "CONFIGURATION.md").read_text()
    for setting in SETTINGS:
        if setting.key.startswith("forward."):
            row = f"| `{setting.key}` |"
            assert row in forwarding and row in configuration, setting.key
            assert f"`{setting.env}`" in forwarding and f"`{setting.flag}`" in forwarding, setting.key


@pytest.mark.parametrize("max_in_flight", ["1", "4"])
def test_an_acknowledged_request_whose_checkpoint_cannot_be_saved_counts_as_a_suspected_duplicate(
        tmp_path, monkeypatch, max_in_flight):
    remote = ScriptedRemote(lambda *_: None)
    daemon = start_daemon(tmp_path, **forwarding_settings(remote.endpoint, **{
        "forward.max_request_items": "10", "forward.max_in_flight": max_in_flight}))
    try:
        real_save = Checkpoint.save
        failures = []

        def failing_once(self):
            if "logs" in self.path.name and not failures:
                failures.append(dict(self.positions))
                raise OSError(28, "No space left on device")
            real_save(self)

        monkeypatch.setattr(Checkpoint, "save", failing_once)
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "logs", logs_request(30).SerializeToString())

        def resent_and_delivered():
            part = forwarding_status(daemon)["signals"]["logs"]
            suspected = part["duplicates_suspected"]
            return suspected["requests"] >= 1 and part["sent_records"] == 30 + suspected["records"]

        wait_until(resent_and_delivered, timeout=20)
        part = forwarding_status(daemon)["signals"]["logs"]
        suspected = part["duplicates_suspected"]
        if max_in_flight == "1":  # one request acknowledged at a time: exactly that one again
            assert suspected == {"requests": 1, "records": 10}
        assert part["last_error"]["code"] == "LOCAL" and "No space left" in part["last_error"]["message"]
    finally:
        daemon.stop()
        remote.stop()
    # 3 requests, and each one whose acknowledgement was not recorded twice
    assert sum(1 for signal, _ in remote.received if signal == "logs") == 3 + suspected["requests"]
    assert suspected["records"] == 10 * suspected["requests"]
