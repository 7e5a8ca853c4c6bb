"""Helpers of the forwarding tests: what a daemon stored, as counts and as multisets of records,
and tiny gRPC servers that answer Export calls the way a test needs."""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from otlp_client import METHODS
from otlpd import files
from otlpd.forward.log import OpenedFile, list_files, read_sources
from otlpd.schema import SIGNALS, to_request
from otlpd.sources import join
from strategies import records_multiset

REQUEST_TYPES = {"traces": trace_service_pb2.ExportTraceServiceRequest,
                 "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
                 "logs": logs_service_pb2.ExportLogsServiceRequest}
PASSTHROUGH = ("--metrics.temporality", "passthrough", "--writer.write-interval", "100ms",
               "--writer.fsync", "false")


def numbered_logs(first: int, count: int) -> bytes:
    """A logs request of ``count`` records with bodies "record <n>", n from ``first`` on."""
    records = [logs_pb2.LogRecord(time_unix_nano=1_700_000_000_000_000_000 + i,
                                  body=common_pb2.AnyValue(string_value=f"record {i}"))
               for i in range(first, first + count)]
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        scope_logs=[logs_pb2.ScopeLogs(log_records=records)])]).SerializeToString()


class Refused(grpc.RpcError):
    """What a failed call raises, for a fake client."""

    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return self._code.name.lower()

    def trailing_metadata(self):
        return ()


def forwarding_flags(endpoint: str, *extra: str) -> tuple[str, ...]:
    return (*PASSTHROUGH, "--forward.endpoint", endpoint, "--forward.insecure", "true",
            "--forward.poll-interval", "100ms", "--forward.retry.initial-backoff", "50ms",
            "--forward.retry.max-backoff", "500ms", "--forward.breaker.open-timeout", "200ms",
            "--forward.breaker.max-open-timeout", "1s", *extra)


def stored_rows(output: Path, signal: str) -> int:
    """Rows in every data file of a signal, completed or in progress."""
    total = 0
    for found in list_files(Path(output) / signal).values():
        for file in found:
            try:
                total += sum(OpenedFile(file).rows)
            except FileNotFoundError:
                pass  # renamed while listed
    return total


def stored_records(output: Path, signal: str) -> Counter:
    """Every stored record of a signal as a multiset (records_multiset of the files' rows),
    the files in progress included."""
    counter: Counter = Counter()
    for found in list_files(Path(output) / signal).values():
        for file in found:
            if file.complete:
                table = files.read_table(file.path)
            else:
                opened = OpenedFile(file)
                if not opened.batches:
                    continue
                table = join(_table([opened.batch(i) for i in range(opened.batches)]), read_sources(file.path))
            counter += records_multiset(signal, to_request(signal, table))
    return counter


def _table(batches):
    import pyarrow as pa

    return pa.Table.from_batches(batches)


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met in {timeout} s")
        time.sleep(interval)


def status_with(code: grpc.StatusCode, message: str, retry_delay: float | None = None):
    """A grpc.Status of ``code`` (with a RetryInfo when ``retry_delay`` is given)."""
    details = []
    if retry_delay is not None:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
            seconds=int(retry_delay), nanos=int((retry_delay % 1) * 1e9)))
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=message,
                                                  details=details))


class ScriptedRemote:
    """A gRPC server on a free loopback port answering Export calls with ``answer(signal,
    request_bytes, call_number)``: None for OK (an empty response), a float for OK after that
    many seconds, response bytes, or a grpc.Status to fail with. Every request received is kept.
    Enough threads for every call the three signals' windows have in flight at once."""

    def __init__(self, answer, threads: int = 16, credentials: grpc.ServerCredentials | None = None):
        self.answer = answer
        self.received: list[tuple[str, bytes]] = []
        self.calls = 0
        self.metadata: list[dict] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(threads))
        handlers = {}
        for signal in SIGNALS:
            service, method = METHODS[signal].strip("/").split("/")
            handlers.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._handler(signal), request_deserializer=None, response_serializer=None)
        for service, methods in handlers.items():
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        self.port = (self.server.add_secure_port("127.0.0.1:0", credentials) if credentials
                     else self.server.add_insecure_port("127.0.0.1:0"))
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _handler(self, signal: str):
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls += 1
                number = self.calls
                self.metadata.append(dict(context.invocation_metadata()))
            answer = self.answer(signal, request, number)
            if isinstance(answer, grpc.Status):
                context.abort_with_status(answer)
            if isinstance(answer, (int, float)):
                time.sleep(answer)
            with self._lock:
                self.received.append((signal, request))
            return answer if isinstance(answer, bytes) else b""
        return handle

    def records(self, signal: str) -> Counter:
        counter: Counter = Counter()
        with self._lock:
            requests = [data for name, data in self.received if name == signal]
        for data in requests:
            counter += records_multiset(signal, REQUEST_TYPES[signal].FromString(data))
        return counter

    def stop(self) -> None:
        self.server.stop(0).wait()


def forwarding_settings(endpoint: str, **extra: str) -> dict[str, str]:
    """forwarding_flags as start_daemon's settings."""
    flags = forwarding_flags(endpoint)
    settings = {flags[i][2:].replace("-", "_"): flags[i + 1] for i in range(0, len(flags), 2)}
    return {**settings, **extra}


def forwarding_status(daemon) -> dict:
    return daemon.status.snapshot()["forwarding"]


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    paths: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(data)

    def certificate(subject: str, key, issuer_name, issuer_key, ca: bool, usage=None, ip=None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if ip:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otlpd test CA")])
    ca = certificate("otlpd test CA", ca_key, ca_name, ca_key, True)
    write("ca", ca.public_bytes(serialization.Encoding.PEM))
    for name, usage, ip in (("server", ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.1"),
                            ("client", ExtendedKeyUsageOID.CLIENT_AUTH, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(f"otlpd test {name}", key, ca_name, ca_key, False, usage, ip)
        write(f"{name}-cert", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}-key", pem_key(key))
    return paths
