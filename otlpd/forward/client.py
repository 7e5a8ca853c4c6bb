"""The gRPC side of forwarding: channels to the remote, one Export call per request bytes."""
from __future__ import annotations

import itertools
import threading

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otlpd.forward.settings import ClientSettings

METHODS = {
    "traces": ("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
               trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    "metrics": ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"),
    "logs": ("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
             logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as stream:
        return stream.read()


def open_channel(settings: ClientSettings) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", 4 * 1024 * 1024),
               ("grpc.max_send_message_length", -1),
               ("grpc.enable_retries", 0),  # retries are the forwarder's, counted and with backoff
               ("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not shared with the others
    if settings.insecure:
        return grpc.insecure_channel(settings.endpoint, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=_read(settings.tls_ca_file),
                                               private_key=_read(settings.tls_key_file),
                                               certificate_chain=_read(settings.tls_cert_file))
    return grpc.secure_channel(settings.endpoint, credentials, options=options)


class ExportClient:
    """Export calls of every signal over ``channels`` channels; the request bytes go as they are.

    Each calling thread keeps one channel (the threads take them in turn): grpc compresses a
    channel's messages one at a time (measured: gzip over one channel uses one core however many
    threads call it, over a channel per thread it scales), so the senders of a window need a
    channel each for their compression to run in parallel."""

    def __init__(self, settings: ClientSettings, channels: int = 1):
        self.settings = settings
        self._channels = [open_channel(settings) for _ in range(max(1, channels))]
        self._calls = [{signal: channel.unary_unary(method, request_serializer=None,
                                                    response_deserializer=response.FromString)
                        for signal, (method, response, _) in METHODS.items()} for channel in self._channels]
        self._next = itertools.count()
        self._mine = threading.local()
        self._compression = grpc.Compression.Gzip if settings.compression == "gzip" else grpc.Compression.NoCompression

    def _calls_of_this_thread(self) -> dict:
        calls = getattr(self._mine, "calls", None)
        if calls is None:
            calls = self._mine.calls = self._calls[next(self._next) % len(self._calls)]
        return calls

    def export(self, signal: str, data: bytes) -> tuple[int, str]:
        """Send one request; returns (records the remote rejected, its message) from the
        response's ``partial_success``. Raises grpc.RpcError when the call fails."""
        response = self._calls_of_this_thread()[signal](data, timeout=self.settings.timeout,
                                        metadata=self.settings.metadata or None,
                                        compression=self._compression)
        partial = response.partial_success
        return int(getattr(partial, METHODS[signal][2])), partial.error_message

    def close(self) -> None:
        """Close the channels; calls in flight end with CANCELLED."""
        for channel in self._channels:
            channel.close()
