"""The receiver against real grpc clients on loopback: statuses for good and bad input."""
import contextlib
import gzip
import threading
import time

import grpc
import pyarrow.dataset as ds
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from daemon_process import start_daemon
from otlp_client import REQUEST_BUILDERS, export, trace_request
from otlpd.config import resolve
from otlpd.daemon import Daemon
from otlpd.decode import DECODERS, IMPLEMENTATION
from otlpd.receiver import SERVICES, Intake, Receiver, build_server
from otlpd.status import Counters


@pytest.fixture
def daemon(tmp_path):
    daemon = start_daemon(tmp_path, **{"receiver.max_request_bytes": "1MiB", "buffer.max_bytes": "16MiB"})
    yield daemon
    daemon.stop()


@pytest.fixture
def channel(daemon):
    with grpc.insecure_channel(daemon.endpoint) as channel:
        yield channel


def rows(daemon, signal):
    daemon.rotate(signal)
    directory = daemon.output_dir / signal
    if not list(directory.glob("*.arrow")):
        return 0
    return ds.dataset(str(directory), format="ipc").count_rows()


def status_code(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_valid_requests_are_stored(daemon, channel, signal):
    request = REQUEST_BUILDERS[signal](25)
    assert export(channel, signal, request.SerializeToString()) == b""
    assert rows(daemon, signal) == 25
    counters = daemon.status.snapshot()["signals"][signal]
    assert counters["receiver"]["requests"] == 1
    assert counters["buffer"]["accepted_items"] == 25
    assert counters["writer"]["written_rows"] == 25


def test_empty_request_is_success(daemon, channel):
    assert export(channel, "traces", b"") == b""
    assert rows(daemon, "traces") == 0


def test_gzip_request(daemon, channel):
    data = trace_request(40).SerializeToString()
    assert export(channel, "traces", data, compression=grpc.Compression.Gzip) == b""
    assert rows(daemon, "traces") == 40


@pytest.mark.parametrize("data", [
    b"\xff\xfe\xfd garbage \x00\x01",  # not protobuf at all
    trace_request(3).SerializeToString()[:-7],  # truncated in the middle of a span
    b"\x0a\x05\x12\x03\x0a\x01",  # a length that runs past the end of its parent
], ids=["garbage", "truncated", "overrun"])
def test_invalid_bytes_get_invalid_argument(daemon, channel, data):
    error = status_code(export, channel, "traces", data)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in error.details()
    # ... and the daemon keeps serving
    assert export(channel, "traces", trace_request(2).SerializeToString()) == b""
    assert rows(daemon, "traces") == 2
    assert daemon.status.snapshot()["signals"]["traces"]["receiver"]["rejected_invalid_requests"] == 1


def test_wrong_wire_type_is_skipped_as_unknown_field(daemon, channel):
    # field 1 (resource_spans) sent as a varint: protobuf parsers treat a known
    # field number with another wire type as an unknown field and skip it.
    assert export(channel, "traces", b"\x08\x96\x01") == b""
    assert rows(daemon, "traces") == 0


def test_oversized_request_is_resource_exhausted_without_retry_info(daemon, channel):
    data = trace_request(15000).SerializeToString()
    assert len(data) > 1024 * 1024
    error = status_code(export, channel, "traces", data)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_status.from_call(error) is None  # no details, so no RetryInfo
    assert export(channel, "traces", trace_request(1).SerializeToString()) == b""


def test_gzip_bomb_is_resource_exhausted(daemon, channel):
    bomb = b"\x00" * (64 * 1024 * 1024)
    assert len(gzip.compress(bomb)) < 128 * 1024  # small on the wire
    error = status_code(export, channel, "traces", bomb, compression=grpc.Compression.Gzip)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert export(channel, "traces", trace_request(1).SerializeToString()) == b""


def test_full_buffer_answers_unavailable_with_retry_info(tmp_path, buffer_cls):
    daemon = start_daemon(tmp_path, buffer_cls, **{
        "receiver.max_request_bytes": "1MiB", "buffer.max_bytes": "16MiB", "buffer.max_items": "10",
        "writer.write_interval": "1h", "writer.flush_rows": "1000", "receiver.retry_delay": "1.5s"})
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "traces", trace_request(6).SerializeToString())
            error = status_code(export, channel, "traces", trace_request(6).SerializeToString())
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            details = rpc_status.from_call(error)
            assert details is not None
            retry_info = error_details_pb2.RetryInfo()
            assert details.details[0].Unpack(retry_info)
            assert retry_info.retry_delay.seconds == 1 and retry_info.retry_delay.nanos == 500_000_000
            signals = daemon.status.snapshot()["signals"]
            assert signals["traces"]["receiver"]["rejected_buffer_full_items"] == 6
            assert signals["traces"]["buffer"]["rejected_items"] == 6
            # after the writer drains, the same request is accepted
            daemon.rotate("traces")
            export(channel, "traces", trace_request(6).SerializeToString())
    finally:
        daemon.stop()
    assert ds.dataset(str(tmp_path / "data" / "traces"), format="ipc").count_rows() == 12


def test_stop_drains_what_was_accepted(tmp_path, buffer_cls):
    daemon = start_daemon(tmp_path, buffer_cls, **{"writer.write_interval": "1h"})
    with grpc.insecure_channel(daemon.endpoint) as channel:
        for signal, build in REQUEST_BUILDERS.items():
            export(channel, signal, build(7).SerializeToString())
    started = time.monotonic()
    daemon.stop()
    assert time.monotonic() - started < 30
    for signal in REQUEST_BUILDERS:
        directory = tmp_path / "data" / signal
        assert not list(directory.glob("*.part"))
        assert ds.dataset(str(directory), format="ipc").count_rows() == 7


def test_request_larger_than_free_bytes_is_refused_before_decoding(tmp_path):
    daemon = start_daemon(tmp_path, **{
        "receiver.max_request_bytes": "1MiB", "buffer.max_bytes": "1MiB", "writer.write_interval": "1h"})
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            request = trace_request(400).SerializeToString()
            while True:  # fill the buffer until it pushes back
                try:
                    export(channel, "traces", request)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    break
            counters = daemon.status.snapshot()["signals"]["traces"]["receiver"]
            free = daemon.buffers["traces"].free_bytes
            bigger = trace_request(2000).SerializeToString()
            assert len(bigger) > free
            error = status_code(export, channel, "traces", bigger)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert rpc_status.from_call(error) is not None  # RetryInfo, like any full buffer
            after = daemon.status.snapshot()["signals"]["traces"]["receiver"]
            assert after["rejected_buffer_full_requests"] == counters["rejected_buffer_full_requests"] + 1
            # no decode happened: no rows were counted for the refused request
            assert after.get("rejected_buffer_full_items", 0) == counters.get("rejected_buffer_full_items", 0)
    finally:
        daemon.stop()


def test_buffer_and_writer_copy_share_the_memory_bound(tmp_path):
    """buffer.max_bytes bounds every decoded row in memory, the writer's one
    concatenated copy included (docs/ARCHITECTURE.md, "Memory bound")."""
    mib = 1024 * 1024
    daemon = Daemon(resolve({}, {}, {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(tmp_path),
                                     "buffer.max_bytes": "64MiB", "receiver.max_request_bytes": "4MiB"}))
    for signal in ("traces", "metrics", "logs"):
        buffer_bytes = daemon.buffers[signal].max_bytes
        copy_bytes = daemon.writers[signal].settings.coalesce_bytes
        assert copy_bytes == 8 * mib and buffer_bytes + copy_bytes == 64 * mib
    # the largest request must still fit an empty buffer: the copy gives way
    daemon = Daemon(resolve({}, {}, {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(tmp_path),
                                     "buffer.max_bytes": "64MiB", "receiver.max_request_bytes": "60MiB"}))
    assert daemon.buffers["traces"].max_bytes == 60 * mib
    assert daemon.writers["traces"].settings.coalesce_bytes == 4 * mib


@contextlib.contextmanager
def traces_channel(decode, buffer, counters=None, retry_delay=1.0, **server_options):
    """A real gRPC server on loopback whose traces intake uses ``decode`` and ``buffer``,
    and a channel to it; the server stops on exit."""
    receiver = Receiver({"traces": Intake(decode, buffer, lambda pending: None, counters or Counters())},
                        retry_delay=retry_delay)
    server, port = build_server(receiver, "127.0.0.1:0", max_request_bytes=1 << 20, **server_options)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        server.stop(None)


def test_out_of_memory_while_decoding_answers_unavailable_with_retry_info(tmp_path, buffer_cls):
    """A MemoryError from the decoder (the real one raises it when malloc/mmap fail,
    which cannot be provoked safely here, so this decoder stands in) is transient:
    UNAVAILABLE + RetryInfo, nothing accepted, no traceback to the client."""
    def decode(_request):
        raise MemoryError

    counters = Counters()
    with traces_channel(decode, buffer_cls(1 << 20, 1000), counters, retry_delay=2.0, threads=2) as channel:
        error = status_code(export, channel, "traces", trace_request(3).SerializeToString())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "out of memory" in error.details()
    retry_info = error_details_pb2.RetryInfo()
    assert rpc_status.from_call(error).details[0].Unpack(retry_info)
    assert retry_info.retry_delay.seconds == 2
    assert counters.snapshot()["rejected_out_of_memory_requests"] == 1


@pytest.mark.parametrize("limit,concurrent", [(1, 1), (0, 2)])
def test_max_concurrent_streams_makes_calls_wait_not_fail(buffer_cls, limit, concurrent):
    """receiver.max_concurrent_streams: a second call on the same connection waits for a
    stream instead of being refused (without the limit both are decoded at once)."""
    entered, release = [], threading.Event()

    def decode(data):
        entered.append(data)
        release.wait(20)
        return DECODERS["traces"](data)

    try:
        with traces_channel(decode, buffer_cls(1 << 26, 1 << 20), threads=4,
                            max_concurrent_streams=limit) as channel:
            call = channel.unary_unary(f"/{SERVICES['traces']}/Export")
            first = call.future(trace_request(2).SerializeToString(), timeout=30)
            deadline = time.monotonic() + 10
            while not entered and time.monotonic() < deadline:
                time.sleep(0.01)
            second = call.future(trace_request(3).SerializeToString(), timeout=30)
            deadline = time.monotonic() + 10
            while len(entered) < concurrent and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # a second stream, if allowed, reaches the handler by now
            assert len(entered) == concurrent
            release.set()
            assert first.result() == b"" and second.result() == b""
    finally:
        release.set()  # never leave the server's threads waiting
    assert len(entered) == 2


def test_status_reports_the_decoder_and_its_mapped_memory(tmp_path):
    daemon = start_daemon(tmp_path)
    try:
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "traces", trace_request(400).SerializeToString())
        decoder = daemon.status.snapshot()["daemon"]["decoder"]
    finally:
        daemon.stop()
    assert decoder["implementation"] == IMPLEMENTATION
    if IMPLEMENTATION == "cython":
        assert decoder["decoded"] >= 1
        assert 0 <= decoder["map_cache_bytes"] <= decoder["map_cache_limit"]
        assert decoder["mapped_bytes"] >= decoder["map_cache_bytes"]
    else:
        assert set(decoder) == {"implementation"}
