"""A property of the forwarder: whatever the writer does (writes, rotations, files in progress) and
whatever the remote answers (OK, UNAVAILABLE, INVALID_ARGUMENT), and however often the forwarder
is restarted from its checkpoint, every stored record reaches the remote exactly once, or is
counted as skipped, and in order within each file."""
from __future__ import annotations

import threading
from collections import Counter

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from forward_helpers import Refused, numbered_logs as logs, stored_records
from otlpd.breaker import CircuitBreaker
from otlpd.daemon import Daemon
from otlpd.forward.checkpoint import Checkpoint, checkpoint_path
from otlpd.forward.forwarder import SignalForwarder
from otlpd.forward.settings import ClientSettings, ForwardSettings
from strategies import records_multiset


class ScriptedClient:
    """Answers from a script (cycled): "ok", "unavailable" or "invalid"; keeps what it accepted."""

    def __init__(self, answers: list[str]):
        self.answers = answers or ["ok"]
        self.calls = 0
        self.accepted: list[bytes] = []
        self.skipped: list[bytes] = []

    def export(self, signal: str, data: bytes):
        answer = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        if answer == "unavailable":
            raise Refused(grpc.StatusCode.UNAVAILABLE)
        if answer == "invalid":
            self.skipped.append(data)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT)
        self.accepted.append(data)
        return 0, ""


SETTINGS = ForwardSettings(client=ClientSettings("unused:1"), max_request_items=7, poll_interval=0.001,
                           initial_backoff=0.0001, max_backoff=0.001, fsync=False,
                           max_in_flight=1)  # strict order (asserted below); the window: test_forward_window.py


def forwarder(output, client) -> SignalForwarder:
    breaker = CircuitBreaker(failure_threshold=3, open_timeout=0.001, max_open_timeout=0.002)
    return SignalForwarder("logs", output / "logs", Checkpoint(checkpoint_path(output, "logs"), fsync=False),
                           client, breaker, SETTINGS, threading.Event(), halt=lambda reason: None)


steps = st.lists(st.one_of(
    st.tuples(st.just("ingest"), st.integers(1, 30)),
    st.tuples(st.just("rotate"), st.none()),
    st.tuples(st.just("forward"), st.integers(1, 4)),
    st.tuples(st.just("restart"), st.none())), min_size=3, max_size=30)
answers = st.lists(st.sampled_from(["ok", "ok", "ok", "unavailable", "invalid"]), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps, script=answers)
def test_every_record_arrives_once_or_is_counted_skipped(tmp_path_factory, plan, script):
    output = tmp_path_factory.mktemp("log")
    client = ScriptedClient(script + ["ok"])  # cycled: never refused forever
    daemon = Daemon.embedded(output, **{"writer.fsync": "false", "writer.write_interval": "5ms",
                                        "metrics.temporality": "passthrough"})
    daemon.start()
    shipping = forwarder(output, client)
    sent = 0
    try:
        for action, amount in plan:
            if action == "ingest":
                daemon.ingest("logs", logs(sent, amount))
                sent += amount
            elif action == "rotate":
                daemon.rotate("logs")
            elif action == "forward":
                for _ in range(amount):
                    shipping._pass()
            else:
                shipping = forwarder(output, client)  # a restart: only the checkpoint on disk is kept
    finally:
        daemon.stop()  # completes the file in progress
    client.answers = ["ok"]
    shipping = forwarder(output, client)
    while shipping._pass():
        pass

    stored = stored_records(output, "logs")
    assert sum(stored.values()) == sent
    delivered, skipped = Counter(), Counter()
    for data in client.accepted:
        delivered += records_multiset("logs", logs_service_pb2.ExportLogsServiceRequest.FromString(data))
    for data in client.skipped:
        skipped += records_multiset("logs", logs_service_pb2.ExportLogsServiceRequest.FromString(data))
    assert delivered + skipped == stored  # each stored record once: delivered or skipped
    assert shipping.counters.snapshot().get("skipped_INVALID_ARGUMENT", 0) <= sum(skipped.values())
    # in order: the bodies delivered are increasing (one writer, one instance)
    bodies = [int(record.body.string_value.split()[1])
              for data in client.accepted
              for resource in logs_service_pb2.ExportLogsServiceRequest.FromString(data).resource_logs
              for scope in resource.scope_logs for record in scope.log_records]
    assert bodies == sorted(bodies)
