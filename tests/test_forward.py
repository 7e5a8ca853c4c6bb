"""The forwarder end to end: a first otlpd ships what it stored to a second one (or to a small
scripted gRPC server), through remote outages, slow answers, refusals and a SIGKILL."""
import json
import socket
import time
import urllib.request
from collections import Counter

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from daemon_process import DaemonProcess, start_daemon
from forward_helpers import (PASSTHROUGH, ScriptedRemote, forwarding_flags, forwarding_settings, forwarding_status,
                             make_certificates, status_with, stored_records, stored_rows, wait_until)
from otlp_client import REQUEST_BUILDERS, export
from otlpd.config import SETTINGS_BY_KEY
from otlpd.schema import SIGNALS

MAX_IN_FLIGHT = SETTINGS_BY_KEY["forward.max_in_flight"].default
N = {"traces": 600, "metrics": 500, "logs": 700}


def send_all(endpoint: str, per_request: int = 100, first: int = 0) -> None:
    """N records of each signal, in requests of ``per_request``, with distinct contents."""
    with grpc.insecure_channel(endpoint) as channel:
        for signal in SIGNALS:
            for start in range(0, N[signal], per_request):
                service = f"svc-{(first + start) // per_request}"
                request = REQUEST_BUILDERS[signal](per_request, service=service)
                assert export(channel, signal, request.SerializeToString()) == b""


def total(counter: Counter) -> int:
    return sum(counter.values())


def test_everything_stored_is_forwarded_once(tmp_path):
    with DaemonProcess(tmp_path / "remote", *PASSTHROUGH) as remote:
        with DaemonProcess(tmp_path / "local", *forwarding_flags(remote.endpoint)) as local:
            send_all(local.endpoint)
            for signal in SIGNALS:
                wait_until(lambda: stored_rows(tmp_path / "remote", signal) >= N[signal], what=f"{signal} forwarded")
            assert local.stop() == 0
        assert remote.stop() == 0
    for signal in SIGNALS:
        here, there = stored_records(tmp_path / "local", signal), stored_records(tmp_path / "remote", signal)
        assert total(here) == N[signal]
        assert there == here
    # the checkpoint says where each signal stopped
    assert all((tmp_path / "local" / "forward" / f"{signal}.json").exists() for signal in SIGNALS)


def test_with_two_workers_the_supervisor_forwards_every_workers_files(tmp_path):
    with DaemonProcess(tmp_path / "remote", *PASSTHROUGH) as remote:
        with DaemonProcess(tmp_path / "local", *forwarding_flags(remote.endpoint),
                           "--receiver.workers", "2") as local:
            # several connections, so both workers get some
            for first in range(4):
                send_all(local.endpoint, first=first * 100)
            wait_until(lambda: all(stored_rows(tmp_path / "remote", s) >= 4 * N[s] for s in SIGNALS),
                       what="every worker's records forwarded")
            # the supervisor's own forwarder (its snapshot is cached for a second)
            wait_until(lambda: {signal: part["sent_records"] for signal, part
                                in api(local, "api/v1/forwarding")[1]["signals"].items()}
                       == {signal: 4 * N[signal] for signal in SIGNALS}, timeout=10)
            status, body = api(local, "api/v1/forwarding")
            assert status == 200 and body["enabled"]
            assert set(body["signals"]["traces"]["checkpoint"]) <= {"w1", "w2"}
            assert local.stop() == 0
        assert remote.stop() == 0
    instances = set()
    for signal in SIGNALS:
        here = stored_records(tmp_path / "local", signal)
        assert total(here) == 4 * N[signal]
        assert stored_records(tmp_path / "remote", signal) == here
        instances |= {path.name.split("-")[2] for path in (tmp_path / "local" / signal).glob("*.arrow")}
    assert instances <= {"w1", "w2"} and instances


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(daemon: DaemonProcess, path: str):
    with urllib.request.urlopen(daemon.dashboard_url + path.lstrip("/"), timeout=10) as response:
        return response.status, json.loads(response.read())


def test_remote_down_and_back_loses_nothing_and_ingestion_goes_on(tmp_path):
    port = free_port()
    remote_args = (*PASSTHROUGH, "--grpc-endpoint", f"127.0.0.1:{port}")
    with DaemonProcess(tmp_path / "remote", *remote_args) as remote:
        with DaemonProcess(tmp_path / "local", *forwarding_flags(f"127.0.0.1:{port}")) as local:
            send_all(local.endpoint)
            wait_until(lambda: stored_rows(tmp_path / "remote", "traces") >= N["traces"], what="first part")
            assert remote.stop() == 0
            # the remote is down: ingestion accepts everything, the forwarder waits
            send_all(local.endpoint, first=10_000)
            wait_until(lambda: api(local, "api/v1/status")[1]["forwarding"]["breaker"]["state"] != "closed",
                       what="breaker open")
            assert api(local, "readyz")[0] == 200
            with DaemonProcess(tmp_path / "remote", *remote_args) as restarted:
                wait_until(lambda: all(stored_rows(tmp_path / "remote", s) >= 2 * N[s] for s in SIGNALS),
                           what="everything forwarded after the restart")
                forwarding = api(local, "api/v1/status")[1]["forwarding"]
                assert local.stop() == 0
                assert restarted.stop() == 0
    for signal in SIGNALS:
        here, there = stored_records(tmp_path / "local", signal), stored_records(tmp_path / "remote", signal)
        assert total(here) == 2 * N[signal]
        assert not here - there  # nothing lost
        # anything extra is a send that timed out after the remote stored it, and is reported
        assert total(there) - total(here) == forwarding["signals"][signal]["duplicates_suspected"]["records"]
        assert forwarding["signals"][signal]["retries"] > 0 or signal != "traces"
    assert any(t["to"] == "open" for t in forwarding["breaker"]["transitions"])


@pytest.fixture
def scripted(request):
    remotes = []

    def make(answer):
        remote = ScriptedRemote(answer)
        remotes.append(remote)
        return remote

    yield make
    for remote in remotes:
        remote.stop()


@pytest.fixture
def forwarding_daemon(tmp_path):
    daemons = []

    def make(endpoint: str, **settings: str):
        daemon = start_daemon(tmp_path, **forwarding_settings(endpoint, **settings))
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


def expected_records(daemon, signal: str) -> Counter:
    daemon.rotate(signal)
    return stored_records(daemon.output_dir, signal)


def test_a_slow_remote_gets_everything_and_the_resends_are_reported(scripted, forwarding_daemon):
    # the first three calls answer after 1 s, beyond forward.timeout: the remote stores them,
    # the forwarder sees DEADLINE_EXCEEDED and sends them again
    remote = scripted(lambda signal, data, number: 1.0 if number <= 3 else None)
    daemon = forwarding_daemon(remote.endpoint, **{"forward.timeout": "300ms"})
    send_all(daemon.endpoint)
    for signal in SIGNALS:
        wait_until(lambda: total(remote.records(signal)) >= N[signal] and
                   not forwarding_status(daemon)["signals"][signal]["backlog"]["records"], what=signal)
    time.sleep(1.0)  # the last slow call has stored its copy by now
    status = forwarding_status(daemon)
    suspected = 0
    for signal in SIGNALS:
        here, there = expected_records(daemon, signal), remote.records(signal)
        assert not here - there
        extra = total(there) - total(here)
        assert extra == status["signals"][signal]["duplicates_suspected"]["records"]
        suspected += extra
        assert status["signals"][signal]["retries_by_code"].get("DEADLINE_EXCEEDED", 0) == \
            status["signals"][signal]["duplicates_suspected"]["requests"]
    assert suspected > 0


def test_invalid_argument_skips_that_request_only_and_counts_it(scripted, forwarding_daemon):
    refused = status_with(grpc.StatusCode.INVALID_ARGUMENT, "span name too long")
    remote = scripted(lambda signal, data, number: refused if signal == "traces" and b"svc-0" in data else None)
    daemon = forwarding_daemon(remote.endpoint, **{"forward.max_request_items": "100"})
    send_all(daemon.endpoint)
    wait_until(lambda: all(total(remote.records(s)) >= N[s] - (100 if s == "traces" else 0) for s in SIGNALS))
    wait_until(lambda: forwarding_status(daemon)["signals"]["traces"]["skipped_records"] == 100)
    status = forwarding_status(daemon)["signals"]
    assert status["traces"]["skipped_by_code"] == {"INVALID_ARGUMENT": 100}
    assert status["traces"]["last_error"]["message"] == "span name too long"
    assert status["traces"]["retries"] == 0
    assert status["metrics"]["skipped_records"] == 0
    assert total(remote.records("traces")) == N["traces"] - 100
    assert sum(1 for signal, data in remote.received if b"svc-0" in data and signal == "traces") == 0


def test_unauthenticated_stops_forwarding_and_says_why(scripted, forwarding_daemon):
    remote = scripted(lambda *_: status_with(grpc.StatusCode.UNAUTHENTICATED, "bad api key"))
    daemon = forwarding_daemon(remote.endpoint, **{"forward.api_key": "s3cret-key-value"})
    send_all(daemon.endpoint)
    wait_until(lambda: forwarding_status(daemon)["state"] == "stopped")
    # the other signals' calls in flight when the first answer came end too
    wait_until(lambda: not any(part["running"] for part in forwarding_status(daemon)["signals"].values()))
    calls = remote.calls
    send_all(daemon.endpoint, first=1000)  # ingestion goes on
    time.sleep(0.5)
    status = forwarding_status(daemon)
    assert "UNAUTHENTICATED" in status["stopped_reason"] and "bad api key" in status["stopped_reason"]
    # the calls in flight when the first answer came (a window per signal at most), then nothing
    assert calls <= 3 * MAX_IN_FLIGHT and remote.calls == calls
    assert remote.metadata[0]["x-api-key"] == "s3cret-key-value"
    assert "s3cret" not in json.dumps(daemon.status.snapshot())


def test_resource_exhausted_is_retried_only_with_retry_info(scripted, forwarding_daemon):
    traces_calls = []

    def answer(signal, data, number):
        if signal == "traces":
            traces_calls.append(number)
        if signal == "traces" and len(traces_calls) <= 2:
            return status_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_delay=0.2)
        if signal == "logs" and b"svc-0" in data:
            return status_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "too large")
        return None

    remote = scripted(answer)
    daemon = forwarding_daemon(remote.endpoint, **{"forward.max_request_items": "100"})
    send_all(daemon.endpoint)
    wait_until(lambda: total(remote.records("traces")) >= N["traces"]
               and total(remote.records("logs")) >= N["logs"] - 100
               and forwarding_status(daemon)["signals"]["logs"]["skipped_records"] == 100)
    status = forwarding_status(daemon)["signals"]
    assert status["traces"]["retries_by_code"].get("RESOURCE_EXHAUSTED", 0) >= 1
    assert status["traces"]["skipped_records"] == 0
    assert status["logs"]["skipped_by_code"] == {"RESOURCE_EXHAUSTED": 100}


def test_partial_success_is_counted(scripted, forwarding_daemon):
    response = logs_service_pb2.ExportLogsServiceResponse(partial_success=logs_service_pb2.ExportLogsPartialSuccess(
        rejected_log_records=3, error_message="3 records too old")).SerializeToString()
    remote = scripted(lambda signal, data, number: response if signal == "logs" else None)
    daemon = forwarding_daemon(remote.endpoint, **{"forward.max_request_items": "100"})
    send_all(daemon.endpoint)
    wait_until(lambda: forwarding_status(daemon)["signals"]["logs"]["sent_records"] == N["logs"])
    partial = forwarding_status(daemon)["signals"]["logs"]["partial_success"]
    assert partial == {"requests": N["logs"] // 100, "rejected": 3 * N["logs"] // 100,
                       "last_message": "3 records too old"}


def test_sigkill_mid_backlog_resumes_from_the_checkpoint(tmp_path, scripted):
    remote = scripted(lambda signal, data, number: 0.05)  # slow enough to kill it half-way
    flags = forwarding_flags(remote.endpoint, "--forward.max-request-items", "20")
    with DaemonProcess(tmp_path / "local", *flags) as local:
        send_all(local.endpoint)
        wait_until(lambda: total(remote.records("traces")) >= 100, what="some forwarded")
        local.kill()
    assert total(remote.records("traces")) < N["traces"]
    with DaemonProcess(tmp_path / "local", *flags) as local:
        wait_until(lambda: all(total(remote.records(s)) >= N[s] for s in SIGNALS), what="the rest forwarded")
        time.sleep(0.3)
        assert local.stop() == 0
    for signal in SIGNALS:
        here, there = stored_records(tmp_path / "local", signal), remote.records(signal)
        assert total(here) == N[signal]
        assert not here - there  # nothing missing
        # at most the requests in flight at the kill (stored remotely, not checkpointed) twice
        assert total(there) - total(here) <= 20 * MAX_IN_FLIGHT


def test_mutual_tls_with_a_private_ca(tmp_path, forwarding_daemon):
    certificates = make_certificates(tmp_path)
    credentials = grpc.ssl_server_credentials(
        [(certificates["server-key"].read_bytes(), certificates["server-cert"].read_bytes())],
        root_certificates=certificates["ca"].read_bytes(), require_client_auth=True)
    remote = ScriptedRemote(lambda *_: None, credentials=credentials)
    try:
        daemon = forwarding_daemon(remote.endpoint, **{
            "forward.insecure": "false", "forward.tls_ca_file": str(certificates["ca"]),
            "forward.tls_cert_file": str(certificates["client-cert"]),
            "forward.tls_key_file": str(certificates["client-key"]),
            "forward.bearer_token": "tls-only-token"})
        send_all(daemon.endpoint)
        wait_until(lambda: all(total(remote.records(s)) >= N[s] for s in SIGNALS))
        assert remote.metadata[0]["authorization"] == "Bearer tls-only-token"
        remote_part = forwarding_status(daemon)["remote"]
        assert remote_part["tls"] and remote_part["mutual_tls"] and remote_part["auth"] == "bearer_token"
    finally:
        remote.stop()
