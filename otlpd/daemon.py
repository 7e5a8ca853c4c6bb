"""Wiring: who talks to whom. The daemon owns one buffer and one writer per signal,
the receiver in front of them, and the status object that reads them all.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from otlpd import memory, schema, sources
from otlpd.buffer import IMPLEMENTATION as BUFFER_IMPLEMENTATION
from otlpd.buffer import BatchBuffer
from otlpd.config import Config, ConfigError, resolve
from otlpd.decode import BUFFER_DECODERS
from otlpd.decode import stats as decode_stats
from otlpd.forward.forwarder import Forwarder, disabled_snapshot
from otlpd.forward.checkpoint import sequence_floor
from otlpd.forward.retention import RetentionGuard
from otlpd.receiver import BindError, Intake, Receiver, build_server
from otlpd.relay import Relay, RelayServer
from otlpd.status import Counters, Status
from otlpd.temporality import TemporalityControl, release_spares
from otlpd.writer import SignalWriter, WriterSettings, split_memory_bound

log = logging.getLogger(__name__)


def writer_settings(config: Config, instance: str = "", retention: bool = True) -> WriterSettings:
    return WriterSettings(
        instance=instance,
        write_interval=config["writer.write_interval"],
        flush_rows=config["writer.flush_rows"],
        max_file_bytes=config["writer.max_file_bytes"],
        max_file_age=config["writer.max_file_age"],
        compression=config["writer.compression"],
        compression_level=config["writer.compression_level"],
        fsync=config["writer.fsync"],
        retention_max_age=config["retention.max_age"] if retention else 0.0,
        retention_max_total_bytes=config["retention.max_total_bytes"] if retention else 0,
        retention_check_interval=config["retention.check_interval"],
    )


def check_output_dir(path: Path) -> None:
    """Create the output directory and prove a file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".otlpd-write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"output_dir: cannot write to {path}: {error.strerror or error}") from None


class Daemon:
    """The running otlpd: start() binds and starts everything, stop() drains and closes.

    With several worker processes (:mod:`otlpd.workers`) each runs a Daemon with its
    own ``instance`` name (in its file names), a ``share`` of the buffer bounds,
    the port shared through SO_REUSEPORT, and recovery and retention left to the
    supervisor and the first worker respectively, and forwarding to the supervisor
    (``forward``: False).
    """

    def __init__(self, config: Config, instance: str = "", share: int = 1,
                 reuse_port: bool = False, recover: bool = True, retention: bool = True,
                 buffer_factory=BatchBuffer, grpc: bool = True, forward: bool = True,
                 metrics_relay: dict | None = None):
        self.config = config
        self._serve_grpc = grpc
        self.instance = instance
        self._reuse_port = reuse_port
        self._recover = recover
        self.output_dir = Path(config["output_dir"]).resolve()
        self.status = Status()
        self.temporality = TemporalityControl(config, self.output_dir)
        self.buffers = {}
        self.writers = {}
        self.receiver_counters = {}
        intakes = {}
        buffer_bytes, coalesce_bytes = split_memory_bound(max(1, config["buffer.max_bytes"] // share),
                                                          config["receiver.max_request_bytes"])
        settings = dataclasses.replace(writer_settings(config, instance, retention),
                                       coalesce_bytes=coalesce_bytes)
        # With several workers (otlpd.workers), the first takes every worker's metrics
        # (otlpd.relay): its metrics buffer has the whole share, the others relay theirs.
        self._metrics_relay = metrics_relay
        serves_metrics = metrics_relay is not None and metrics_relay["serve"]
        relays = {"metrics": Relay(metrics_relay["address"], metrics_relay["authkey"])} \
            if metrics_relay is not None and not serves_metrics else {}
        self._relay_server = RelayServer(metrics_relay["address"], metrics_relay["authkey"],
                                         lambda request: self.receiver.ingest("metrics", request)) \
            if serves_metrics else None
        whole_bytes, _ = split_memory_bound(config["buffer.max_bytes"], config["receiver.max_request_bytes"])
        forwarding = bool(config["forward.endpoint"])
        for signal in schema.SIGNALS:
            whole = signal == "metrics" and serves_metrics
            buffer = buffer_factory(whole_bytes if whole else buffer_bytes,
                                    config["buffer.max_items"] if whole else max(1, config["buffer.max_items"] // share))
            writer = SignalWriter(signal, sources.rows_schema(signal), buffer,
                                  self.output_dir / signal, settings,
                                  stage=self.temporality.stage if signal == "metrics" else None,
                                  retention_guard=RetentionGuard(self.output_dir, signal, settings.fsync)
                                  if forwarding else None,
                                  min_sequence=sequence_floor(self.output_dir, signal))
            counters = Counters()
            self.buffers[signal] = buffer
            self.writers[signal] = writer
            self.receiver_counters[signal] = counters
            intakes[signal] = Intake(BUFFER_DECODERS[signal], buffer, writer.on_pending, counters)
        self.temporality.buffer = self.buffers["metrics"]
        self.receiver = Receiver(intakes, config["receiver.retry_delay"], relays)
        self.server = None
        self.port = None
        self.status.register("signals", self._signal_status)
        self.status.register("temporality", self.temporality.snapshot)
        # forwarding reads the files the writers completed; a ConfigError here (a damaged
        # checkpoint) stops the start
        self.forwarder = Forwarder.from_config(config, self.output_dir) if forwarding and forward else None
        self.status.register("forwarding", self._forwarding_status)
        self.status.register("daemon", lambda: {
            "grpc_endpoint": self.endpoint, "output_dir": str(self.output_dir),
            "instance": self.instance,
            "buffer_implementation": BUFFER_IMPLEMENTATION, "pid": os.getpid(),
            "memory": dict(memory.APPLIED),
            "decoder": decode_stats(),
        })

    @property
    def endpoint(self) -> str | None:
        if self.port is None:
            return None
        host = self.config["grpc_endpoint"].rpartition(":")[0]
        return f"{host}:{self.port}"

    def start(self) -> None:
        """Recover files left in progress, start the writers, then open the port."""
        check_output_dir(self.output_dir)
        for writer in self.writers.values():
            writer.prepare(recover=self._recover)
        if not self._serve_grpc:  # embedded: requests come through ingest() only
            for writer in self.writers.values():
                writer.start()
            self._start_forwarding()
            return
        try:
            self.server, self.port = build_server(
                self.receiver, self.config["grpc_endpoint"], self.config["receiver.threads"],
                self.config["receiver.max_request_bytes"], reuse_port=self._reuse_port,
                max_concurrent_streams=self.config["receiver.max_concurrent_streams"])
        except BindError as error:
            raise ConfigError(f"grpc_endpoint: {error}") from None
        for writer in self.writers.values():
            writer.start()
        if self._relay_server is not None:
            self._relay_server.start()
        self.server.start()
        self._start_forwarding()

    def _start_forwarding(self) -> None:
        if self.forwarder is not None:
            self.forwarder.start()

    def stop(self) -> None:
        """Stop forwarding, stop accepting, finish requests in flight, write everything, complete
        the files."""
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.server is not None:
            self.server.stop(self.config["receiver.grace_period"]).wait()
            self.port = None  # endpoint None: not serving (the dashboard's readiness reads it)
        if self._relay_server is not None:  # (the other workers have stopped relaying first)
            self._relay_server.stop()
        for writer in self.writers.values():
            writer.stop()
        release_spares()  # (the converter's, kept for a next conversion there is none of)

    @classmethod
    def embedded(cls, output_dir: str | Path, grpc: bool = False, **settings: Any) -> "Daemon":
        """A daemon for use inside an application (``with Daemon.embedded("otlpd-data") as
        daemon:``): settings by their keys (``**{"metrics.temporality": "delta"}``), no gRPC
        port unless ``grpc`` is true, no dashboard (``otlpd.web.server.build_dashboard`` adds
        one). Requests come from :mod:`otlpd.sdk`'s exporters or :meth:`ingest`."""
        values = {"output_dir": str(output_dir), **{key: str(value) for key, value in settings.items()}}
        if not grpc:
            values.setdefault("grpc_endpoint", "127.0.0.1:0")
        return cls(resolve({}, {}, values), grpc=grpc)

    def __enter__(self) -> "Daemon":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def ingest(self, signal: str, request: bytes) -> None:
        """One Export request's bytes from this process; raises receiver.IngestError when
        refused (a full buffer: ``retryable``)."""
        self.receiver.ingest(signal, request)

    def rotate(self, signal: str | None = None) -> dict[str, str | None]:
        """Complete the current file of one signal (or all); returns the completed paths."""
        signals = [signal] if signal else list(self.writers)
        return {name: _path_str(self.writers[name].rotate()) for name in signals}

    def _forwarding_status(self) -> dict:
        if self.forwarder is None:
            return disabled_snapshot()
        return self.forwarder.snapshot()

    def _signal_status(self) -> dict:
        result = {}
        for signal in schema.SIGNALS:
            result[signal] = {
                "receiver": self.receiver_counters[signal].snapshot(),
                "buffer": self.buffers[signal].stats(),
                "writer": self.writers[signal].status(),
            }
        return result


def _path_str(path: Path | None) -> str | None:
    return None if path is None else str(path)
