"""The window of requests in flight (forward.max_in_flight): the checkpoint passes only the
acknowledged prefix, whatever order the answers come in; a retried request among several is
delivered once; a stop mid-window keeps what was acknowledged and nothing else; with 1, one
request at a time as before. A client the test holds and releases call by call decides the
order of the answers; the last test drives real gRPC."""
from __future__ import annotations

import threading
from collections import Counter

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from daemon_process import start_daemon
from forward_helpers import (Refused, ScriptedRemote, forwarding_settings, forwarding_status, numbered_logs as logs,
                             status_with, wait_until)
from otlp_client import export, logs_request
from otlpd.breaker import CircuitBreaker
from otlpd.daemon import Daemon
from otlpd.forward.checkpoint import Checkpoint, Position, checkpoint_path, read_positions
from otlpd.forward.forwarder import SignalForwarder
from otlpd.forward.log import OpenedFile, list_files
from otlpd.forward.settings import ClientSettings, ForwardSettings

RECORDS = 30  # stored, in requests of 10: three requests, first records 0, 10 and 20
TIMEOUT = 10.0


def numbers(data: bytes) -> list[int]:
    request = logs_service_pb2.ExportLogsServiceRequest.FromString(data)
    return [int(record.body.string_value.split()[1]) for resource in request.resource_logs
            for scope in resource.scope_logs for record in scope.log_records]


class HeldClient:
    """Export calls, named by their first record's number, that return only once the test
    releases them (``hold``), fail once with the codes in ``fail_first``, and end CANCELLED when
    the client is closed (as a closed channel does)."""

    def __init__(self, hold: bool = True, fail_first: dict[int, grpc.StatusCode] | None = None):
        self.hold = hold
        self.fail_first = dict(fail_first or {})
        self.calls: list[int] = []
        self.delivered: list[list[int]] = []
        self.active = self.most_active = 0
        self._released: set[int] = set()
        self._closed = False
        self._changed = threading.Condition()

    def export(self, signal: str, data: bytes):
        first = numbers(data)[0]
        with self._changed:
            self.calls.append(first)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self._changed.notify_all()
            try:
                if self.hold:
                    assert self._changed.wait_for(lambda: first in self._released or self._closed, TIMEOUT)
                if self._closed:
                    raise Refused(grpc.StatusCode.CANCELLED)
                code = self.fail_first.pop(first, None)
                if code is not None:
                    raise Refused(code)
                self.delivered.append(numbers(data))
                return 0, ""
            finally:
                self.active -= 1
                self._changed.notify_all()

    def release(self, *firsts: int) -> None:
        with self._changed:
            self._released.update(firsts)
            self._changed.notify_all()

    def wait_for(self, predicate, what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), TIMEOUT), what

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@pytest.fixture
def stored(tmp_path):
    """RECORDS log records stored in one completed file."""
    with Daemon.embedded(tmp_path, **{"writer.fsync": "false", "metrics.temporality": "passthrough"}) as daemon:
        daemon.ingest("logs", logs(0, RECORDS))
    return tmp_path


class CountedCheckpoint(Checkpoint):
    def __init__(self, *args, **kwargs):
        self.saves = 0
        super().__init__(*args, **kwargs)

    def save(self) -> None:
        self.saves += 1
        super().save()


def forwarder(output, client, max_in_flight: int, stopping: threading.Event | None = None,
              breaker=None) -> SignalForwarder:
    settings = ForwardSettings(client=ClientSettings("unused:1"), max_request_items=10, poll_interval=0.01,
                               initial_backoff=0.001, max_backoff=0.01, fsync=False, max_in_flight=max_in_flight)
    checkpoint = CountedCheckpoint(checkpoint_path(output, "logs"), fsync=False)
    return SignalForwarder("logs", output / "logs", checkpoint, client, breaker or CircuitBreaker(failure_threshold=100),
                           settings, stopping or threading.Event(), halt=lambda reason: None)


def stored_file(output):
    [file] = list_files(output / "logs")[""]
    assert file.complete and OpenedFile(file).rows == [RECORDS]  # one batch of them
    return file


def end_position(output) -> Position:
    """The checkpoint once all RECORDS are shipped: past the file's only batch."""
    return Position(stored_file(output).seq, 1)


def wait_finished(shipping: SignalForwarder, count: int) -> None:
    """Until ``count`` steps of the window have ended (the sender threads set their events)."""
    for step in list(shipping._window)[:count]:
        assert step.done.wait(TIMEOUT)


def test_the_checkpoint_passes_only_the_acknowledged_prefix(stored):
    client = HeldClient()
    shipping = forwarder(stored, client, max_in_flight=3)
    assert shipping.checkpoint.get("") is None  # nothing shipped yet
    shipping._pass()  # encodes the three requests and hands them to the senders
    client.wait_for(lambda c: sorted(c.calls) == [0, 10, 20], "three calls in flight at once")
    assert client.most_active == 3

    client.release(20, 10)  # the later two are acknowledged first
    client.wait_for(lambda c: len(c.delivered) == 2, "two answers")
    steps = list(shipping._window)
    assert steps[1].done.wait(TIMEOUT) and steps[2].done.wait(TIMEOUT)
    shipping._record()
    assert shipping.checkpoint.get("") is None  # the oldest is not acknowledged: nothing moves
    assert read_positions(shipping.checkpoint.path).get("") is None

    saves = shipping.checkpoint.saves
    client.release(0)
    wait_finished(shipping, 3)
    shipping._record()
    assert shipping.checkpoint.get("") == end_position(stored)  # past all three
    assert shipping.checkpoint.saves == saves + 1  # three acknowledgements, one write
    assert len(shipping._window) == 0


def test_a_retryable_failure_among_several_in_flight_is_retried_and_delivered_once(stored):
    client = HeldClient(hold=False, fail_first={10: grpc.StatusCode.UNAVAILABLE})
    shipping = forwarder(stored, client, max_in_flight=3)
    while shipping._pass():
        pass
    delivered = Counter(number for request in client.delivered for number in request)
    assert delivered == Counter(range(RECORDS))  # every record once
    assert client.calls.count(10) == 2 and len(client.calls) == 4
    counters = shipping.counters.snapshot()
    assert counters["retries_UNAVAILABLE"] == 1 and counters["sent_records"] == RECORDS
    assert "duplicates_suspected_requests" not in counters
    assert shipping.checkpoint.get("") == end_position(stored)


def test_stop_mid_window_keeps_what_was_acknowledged_and_nothing_else(stored):
    client = HeldClient()
    stopping = threading.Event()
    shipping = forwarder(stored, client, max_in_flight=3, stopping=stopping)
    shipping.start()
    client.wait_for(lambda c: len(c.calls) == 3, "three calls in flight")
    client.release(0, 20)  # the first and the last acknowledged, the middle one still out
    client.wait_for(lambda c: len(c.delivered) == 2, "two answers")
    stopping.set()
    client.close()  # as Forwarder.stop() closes the channel: the middle call ends CANCELLED
    shipping.join(TIMEOUT)
    assert not shipping._thread.is_alive()

    # on disk: past the first request only
    assert read_positions(shipping.checkpoint.path)[""] == Position(stored_file(stored).seq, 0, 10)
    # the last request was acknowledged after one that was not: it will go again, and says so
    assert shipping.counters.snapshot()["duplicates_suspected_requests"] == 1

    # a restart from the checkpoint on disk sends the other two; nothing is missing
    again = HeldClient(hold=False)
    restarted = forwarder(stored, again, max_in_flight=3)
    while restarted._pass():
        pass
    assert sorted(again.calls) == [10, 20]
    delivered = Counter(n for client_ in (client, again) for request in client_.delivered for n in request)
    assert set(delivered) == set(range(RECORDS))
    assert sum(delivered.values()) - RECORDS == 10  # the suspected duplicate, once


def test_a_half_open_breaker_lets_only_its_probe_out_of_a_window(stored):
    """The remote was failing (the breaker open); once its open_timeout passed, the breaker
    lets one probe through. Of a window of three, only the probe is sent: the other senders are
    refused and wait, none piles onto the remote, until the probe succeeds and the breaker
    closes; then the rest go, each record once."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, open_timeout=1.0, half_open_probes=1, clock=lambda: now[0])
    breaker.record_failure(breaker.allow(), reason="UNAVAILABLE")
    assert breaker.snapshot()["state"] == "open"
    now[0] = 2.0  # past open_timeout: the next decision is a half-open probe
    client = HeldClient()
    shipping = forwarder(stored, client, max_in_flight=3, breaker=breaker)
    shipping._pass()
    client.wait_for(lambda c: c.calls == [0], "the probe is out")
    assert breaker.snapshot()["state"] == "half_open"
    # the two other senders are refused meanwhile (they look again every REFUSED_WAIT): a few
    # of those periods pass with the probe held, and no second call starts
    assert not threading.Event().wait(0.5)
    assert client.calls == [0] and client.most_active == 1
    client.release(0, 10, 20)
    wait_finished(shipping, 3)
    shipping._record()
    assert breaker.snapshot()["state"] == "closed"
    assert sorted(client.calls) == [0, 10, 20]  # each sent once
    assert Counter(n for request in client.delivered for n in request) == Counter(range(RECORDS))
    assert shipping.checkpoint.get("") == end_position(stored)


def test_with_one_in_flight_requests_go_one_at_a_time_in_order(stored):
    client = HeldClient(hold=False)
    shipping = forwarder(stored, client, max_in_flight=1)
    assert shipping._senders is None  # sent on the signal's own thread, as before the window
    saves = shipping.checkpoint.saves
    while shipping._pass():
        pass
    assert client.calls == [0, 10, 20] and client.most_active == 1
    assert [request[0] for request in client.delivered] == [0, 10, 20]
    assert shipping.checkpoint.saves - saves == 3  # a checkpoint write after every request


def test_over_grpc_a_retried_request_in_a_window_reaches_the_remote_once(tmp_path):
    # the second request answered UNAVAILABLE once while the others are acknowledged
    failed = []

    def answer(signal, data, number):
        if signal == "logs" and b"svc-1" in data and not failed:
            failed.append(number)
            return status_with(grpc.StatusCode.UNAVAILABLE, "try again")
        return 0.05  # slow enough that several calls are out at once

    remote = ScriptedRemote(answer)
    daemon = start_daemon(tmp_path, **forwarding_settings(remote.endpoint, **{
        "forward.max_request_items": "100", "forward.max_in_flight": "4"}))
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            for first in range(0, 500, 100):
                export(channel, "logs", logs_request(100, service=f"svc-{first // 100}").SerializeToString())
        daemon.rotate("logs")
        wait_until(lambda: forwarding_status(daemon)["signals"]["logs"]["sent_records"] == 500, timeout=30)
        part = forwarding_status(daemon)["signals"]["logs"]
    finally:
        daemon.stop()
        remote.stop()
    assert failed and part["retries_by_code"] == {"UNAVAILABLE": 1}
    assert part["duplicates_suspected"] == {"requests": 0, "records": 0}
    received = [data for signal, data in remote.received if signal == "logs"]
    assert sum(1 for data in received if b"svc-1" in data) == 1  # delivered once
    assert sum(records for records in remote.records("logs").values()) == 500
