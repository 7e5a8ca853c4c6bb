"""An OTLP/gRPC server that accepts every Export and does nothing: the ceiling for grpcio.

It registers raw-bytes handlers exactly like ``otlpd.receiver`` and answers ``b""``, so
the difference to otlpd is decoding, buffering and writing.
Run: ``python -m benchmarks.null_server --endpoint 127.0.0.1:4317 --threads 16``.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # otlpd's default receiver.max_request_bytes


def _export(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b""


def start_null_server(endpoint: str = "127.0.0.1:0", threads: int = 16) -> tuple[grpc.Server, int]:
    """Start a null server on ``endpoint`` (port 0 picks one); returns it and its port."""
    handlers = [
        grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(
            _export, request_deserializer=None, response_serializer=None)})
        for service in SERVICES.values()
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), handlers=handlers,
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    port = server.add_insecure_port(endpoint)
    server.start()
    return server, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="127.0.0.1:4317", help="HOST:PORT (port 0 picks one)")
    parser.add_argument("--threads", type=int, default=16, help="gRPC worker threads")
    args = parser.parse_args(argv)
    server, port = start_null_server(args.endpoint, args.threads)
    host = args.endpoint.rpartition(":")[0]
    print(f"null server listening on {host}:{port} (OTLP/gRPC)", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
