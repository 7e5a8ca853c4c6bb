"""The forwarder end to end: a first otlpd ships what it stored to a second one (or to a small
scripted gRPC server), through remote outages, slow answers, refusals and a SIGKILL."""
from collections import Counter

import grpc

from daemon_process import DaemonProcess
from forward_helpers import PASSTHROUGH, forwarding_flags, stored_records, stored_rows, wait_until
from otlp_client import REQUEST_BUILDERS, export
from otlpd.schema import SIGNALS

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
