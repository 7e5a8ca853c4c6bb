"""The OTLP/gRPC receiver: Export request bytes -> decoder -> buffer.

Handlers are registered without a request deserializer, so grpcio hands them
the request as raw ``bytes``; decoding happens in one seam per signal
(:data:`otlpd.decode.DECODERS`) that a native decoder can replace.
"""
from __future__ import annotations

import logging
import socket
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from otlpd.buffer import BatchTooLarge, BufferFull
from otlpd.schema import DecodeError
from otlpd.status import Counters

log = logging.getLogger(__name__)

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

# An empty Export*ServiceResponse: full success, no partial_success field.
EMPTY_RESPONSE = b""


class BindError(OSError):
    """The endpoint could not be bound (in use, bad address, no permission)."""


@dataclass
class Intake:
    """Where one signal's requests go: how to decode them and which buffer takes them.

    ``on_pending`` is called with the buffer's pending row count after each
    accepted push, so the writer can be woken early.
    """

    decode: Callable[[bytes], object]
    buffer: object
    on_pending: Callable[[int], None]
    counters: Counters


def _retry_status(delay_seconds: float, message: str) -> grpc.Status:
    """UNAVAILABLE with a google.rpc.RetryInfo detail: OTLP's backpressure signal."""
    seconds = int(delay_seconds)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((delay_seconds - seconds) * 1e9))
    detail = status_pb2.Status().details.add()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    return rpc_status.to_status(status)


class IngestError(Exception):
    """A request refused in process (:meth:`Receiver.ingest`): the gRPC status it would get."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.retryable = code == grpc.StatusCode.UNAVAILABLE  # a full buffer: retry later


class _InProcess:
    """What :meth:`Receiver.export` needs of a gRPC context, for requests from this process:
    an abort raises :class:`IngestError`."""

    def abort(self, code: grpc.StatusCode, details: str):
        raise IngestError(code, details)

    def abort_with_status(self, status):
        raise IngestError(status.code, status.details)


class Receiver:
    """Export handlers for the three signals; holds no state besides its intakes."""

    def __init__(self, intakes: dict[str, Intake], retry_delay: float,
                 relays: dict[str, Callable[[bytes], None]] | None = None):
        self._intakes = intakes
        # signals whose requests another process takes (otlpd.relay): a relay returns once it
        # accepted the request, or raises IngestError; that process counts them
        self._relays = relays or {}
        self._retry_delay = retry_delay
        # built once: the backpressure answer must be cheap when it is frequent
        self._full = {signal: _retry_status(retry_delay, f"otlpd {signal} buffer is full, retry later")
                      for signal in intakes}
        self._no_memory = {signal: _retry_status(retry_delay, f"otlpd is out of memory decoding {signal}, retry later")
                           for signal in intakes}

    def export(self, signal: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        relay = self._relays.get(signal)
        if relay is not None:
            self._intakes[signal].counters.add(relayed_requests=1)  # (the process taking them counts the rest)
            try:
                relay(request)
            except IngestError as error:
                if error.retryable:
                    context.abort_with_status(_retry_status(self._retry_delay, str(error)))
                context.abort(error.code, str(error))
            return EMPTY_RESPONSE
        intake = self._intakes[signal]
        counts = {"requests": 1, "request_bytes": len(request)}  # added once, however it ends
        try:
            if len(request) > intake.buffer.free_bytes:
                # Decoded rows are larger than their wire form: this request cannot fit
                # now, so answer before spending a decode on it.
                counts["rejected_buffer_full_requests"] = 1
                context.abort_with_status(self._full[signal])
            try:
                batch = intake.decode(request)
            except DecodeError as error:
                counts["rejected_invalid_requests"] = 1
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            except MemoryError:
                # Nothing was accepted; like a full buffer, the client should retry later.
                log.warning("%s: out of memory decoding a %d-byte request; answered UNAVAILABLE",
                            signal, len(request))
                counts["rejected_out_of_memory_requests"] = 1
                context.abort_with_status(self._no_memory[signal])
            rows = batch.num_rows
            if rows == 0:
                return EMPTY_RESPONSE
            try:
                pending = intake.buffer.push(batch, batch.get_total_buffer_size(), rows)
            except BatchTooLarge as error:
                # Never fits: RESOURCE_EXHAUSTED without RetryInfo is not retried (OTLP spec).
                counts.update(rejected_too_large_requests=1, rejected_too_large_items=rows)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{signal}: {error}")
            except BufferFull:
                counts.update(rejected_buffer_full_requests=1, rejected_buffer_full_items=rows)
                context.abort_with_status(self._full[signal])
        finally:
            intake.counters.add(**counts)
        intake.on_pending(pending)
        return EMPTY_RESPONSE

    def ingest(self, signal: str, request: bytes) -> None:
        """One Export request from this process (the SDK exporters of :mod:`otlpd.sdk`): the
        same checks, decode, buffer and counters as over gRPC; a refusal raises IngestError."""
        self.export(signal, request, _InProcess())

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        result = []
        for signal, service in SERVICES.items():
            if signal not in self._intakes:
                continue
            method = grpc.unary_unary_rpc_method_handler(
                lambda request, context, signal=signal: self.export(signal, request, context),
                request_deserializer=None, response_serializer=None)
            result.append(grpc.method_handlers_generic_handler(service, {"Export": method}))
        return result


def build_server(receiver: Receiver, endpoint: str, threads: int,
                 max_request_bytes: int, reuse_port: bool = False,
                 max_concurrent_streams: int = 0) -> tuple[grpc.Server, int]:
    """A started-ready threaded gRPC server bound to ``endpoint``; returns it and the bound port.

    No ``maximum_concurrent_rpcs``: grpcio answers calls beyond it with
    RESOURCE_EXHAUSTED without RetryInfo, which OTLP clients do not retry (data
    loss); a per-connection stream limit makes clients wait instead.
    """
    options = [
        ("grpc.max_receive_message_length", max_request_bytes),
        # grpc sets SO_REUSEPORT by default, which would let a second daemon
        # silently share (and split) the port; refuse a port in use instead.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    if max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", max_concurrent_streams))
    if not reuse_port:
        check_bindable(endpoint)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads,
                                                    thread_name_prefix="otlpd-grpc"),
                         handlers=receiver.handlers(), options=options)
    try:
        port = server.add_insecure_port(endpoint)
    except RuntimeError as error:
        raise BindError(f"cannot listen on {endpoint}: {error}") from None
    if port == 0:
        raise BindError(f"cannot listen on {endpoint}: address in use or not available")
    return server, port


def check_bindable(endpoint: str) -> None:
    """Bind the address once with a plain socket, so a port in use is one clear error.

    grpc would fail too, but only after logging its own multi-line report.
    """
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        addresses = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise BindError(f"cannot listen on {endpoint}: {error.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # like grpc: connections of an earlier run in TIME_WAIT do not block
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise BindError(f"cannot listen on {endpoint}: {error.strerror}") from None
