"""Whole-daemon properties: lossless round trip over gRPC, and crash recovery after SIGKILL."""
import grpc
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings

from daemon_process import DaemonProcess
from otlp_client import export, trace_request
from otlpd import files
from otlpd.config import resolve
from otlpd.daemon import Daemon
from otlpd.schema import SIGNALS, to_request
from strategies import export_requests, records_multiset


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    output = tmp_path_factory.mktemp("roundtrip")
    # passthrough: this is the store's losslessness; conversion has its own tests (test_temporality*)
    daemon = Daemon(resolve({}, {}, {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(output),
                                     "writer.fsync": "false", "writer.write_interval": "1h",
                                     "metrics.temporality": "passthrough"}))
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon.endpoint) as channel:
        yield channel


@pytest.mark.parametrize("signal", SIGNALS)
def test_round_trip_through_the_daemon(daemon, channel, signal):
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=export_requests(signal))
    def round_trip(request):
        assert export(channel, signal, request.SerializeToString()) == b""
        path = daemon.rotate(signal)[signal]
        expected = records_multiset(signal, request)
        if not expected:
            assert path is None
            return
        assert records_multiset(signal, to_request(signal, files.read_table(path))) == expected

    round_trip()


@pytest.mark.slow
def test_sigkill_after_flush_loses_no_written_batch(tmp_path):
    output = tmp_path / "data"
    with DaemonProcess(output, "--writer.write-interval", "50ms") as daemon:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            for first in range(0, 500, 100):
                export(channel, "traces", trace_request(100, first=first).SerializeToString())

        def flushed():
            parts = list((output / "traces").glob("*.arrow.part"))
            return parts and sum(b.num_rows for b in files.read_part(parts[0])[1]) == 500

        daemon.wait_for(flushed)
        daemon.kill()
    assert not list((output / "traces").glob("*.arrow"))  # nothing was completed before the kill

    with DaemonProcess(output) as restarted:
        # recovery happens before the port opens: the files are complete now
        completed = list((output / "traces").glob("*.arrow"))
        assert len(completed) == 1
        assert not list((output / "traces").glob("*.part"))
        table = ds.dataset(str(output / "traces"), format="ipc").to_table()
        assert sorted(table.column("name").to_pylist()) == sorted(f"span-{i}" for i in range(500))
        assert "recovered" in restarted.stderr
        assert restarted.stop() == 0
