"""Several receiver processes on one port: a supervisor and N worker daemons.

A Python gRPC server is bound to one core by the GIL. With ``receiver.workers``
above 1 the supervisor (the process the user started) recovers files left in
progress, reserves the port, and spawns that many worker processes; each runs a
full :class:`~otlpd.daemon.Daemon` (receiver, buffers, writers) bound to the
same port with SO_REUSEPORT, so the kernel spreads client connections over
them. Each worker writes its own files (``<signal>-<start>-w<N>-<seq>.arrow``),
so no two processes ever write the same file. Metrics are the exception: the
first worker converts and writes every worker's (the others relay them to it,
:mod:`otlpd.relay`), because temporality conversion keeps state per stream. The supervisor talks to each
worker over a pipe: status snapshots (summed into one), rotation and stop.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from otlpd import files, schema
from otlpd.config import Config, ConfigError
from otlpd.daemon import Daemon, check_output_dir, writer_settings
from otlpd.forward.forwarder import Forwarder, disabled_snapshot
from otlpd.memory import configure_process_memory
from otlpd.receiver import BindError, check_bindable

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 120.0
POLL_INTERVAL = 0.2


def _worker_main(values: dict, instance: str, share: int, retention: bool, conn,
                 metrics_relay: dict | None = None) -> None:
    """Entry point of a worker process: run a Daemon and answer the supervisor's commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the supervisor decides
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    logging.basicConfig(level=values["log_level"].upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[{instance}]: %(message)s")
    configure_process_memory()
    parent = os.getppid()
    daemon = Daemon(Config(values), instance=instance, share=share, reuse_port=True,
                    recover=False, retention=retention, forward=False, metrics_relay=metrics_relay)
    try:
        daemon.start()
    except ConfigError as error:
        conn.send(("error", str(error)))
        return
    conn.send(("ready", daemon.port))
    while not terminated.is_set() and os.getppid() == parent:
        if not conn.poll(POLL_INTERVAL):
            continue
        try:
            command, argument = conn.recv()
        except EOFError:
            break
        if command == "stop":
            break
        if command == "status":
            conn.send(daemon.status.snapshot())
        elif command == "rotate":
            conn.send(daemon.rotate(argument))
        elif command == "temporality":  # the first worker's: it converts every worker's metrics
            try:
                conn.send(("ok", daemon.temporality.snapshot() if argument is None
                           else daemon.temporality.set(argument["temporality"])))
            except (ValueError, OSError) as error:
                conn.send(("error", str(error)))
    daemon.stop()
    try:
        conn.send(("stopped", None))
    except (BrokenPipeError, OSError):
        pass


class _Worker:
    """The supervisor's handle on one worker process; one request at a time on its pipe."""

    def __init__(self, instance: str, process, conn):
        self.instance = instance
        self.process = process
        self.conn = conn
        self.lock = threading.Lock()

    def ask(self, command: str, argument: Any = None, timeout: float = 60.0) -> Any:
        with self.lock:
            self.conn.send((command, argument))
            if not self.conn.poll(timeout):
                raise TimeoutError(f"worker {self.instance} did not answer {command!r} in {timeout} s")
            return self.conn.recv()


class Supervisor:
    """Same interface as :class:`Daemon` (start, stop, rotate, status, endpoint), over N processes."""

    def __init__(self, config: Config):
        self.config = config
        self.workers_wanted = config["receiver.workers"]
        self.output_dir = Path(config["output_dir"]).resolve()
        self.port: int | None = None
        self._workers: list[_Worker] = []
        self._context = multiprocessing.get_context("spawn")
        self._values: dict = {}
        self.status = self  # Daemon exposes .status.snapshot(); so does the supervisor
        self._started_at = time.time()
        # every worker's metrics go to the first one (otlpd.relay), over a socket in here
        self._relay_directory = tempfile.mkdtemp(prefix="otlpd-relay-")
        self._relay = {"address": os.path.join(self._relay_directory, "metrics.sock"),
                       "authkey": secrets.token_bytes(32)}
        self.temporality = _TemporalityOfFirstWorker(self)
        # one forwarder for every worker's files (they are the log); workers never forward
        self.forwarder = Forwarder.from_config(config, self.output_dir) if config["forward.endpoint"] else None

    @property
    def endpoint(self) -> str | None:
        if self.port is None:
            return None
        return f"{self.config['grpc_endpoint'].rpartition(':')[0]}:{self.port}"

    def start(self) -> None:
        check_output_dir(self.output_dir)
        self._recover()
        host, _, port = self.config["grpc_endpoint"].rpartition(":")
        try:
            check_bindable(self.config["grpc_endpoint"])
        except BindError as error:
            raise ConfigError(f"grpc_endpoint: {error}") from None
        # Hold the port (bound, not listening) with SO_REUSEPORT until every worker
        # has bound it too: port 0 becomes one concrete port shared by all.
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as reserve:
            reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserve.bind((host.strip("[]"), int(port)))
            self.port = reserve.getsockname()[1]
            self._values = {**self.config.as_dict(), "grpc_endpoint": self.endpoint}
            try:
                for number in range(1, self.workers_wanted + 1):
                    self._workers.append(self._spawn(number))
                for worker in self._workers:
                    self._await_ready(worker)
            except BaseException:
                self.stop()
                raise
        if self.forwarder is not None:
            self.forwarder.start()

    def _spawn(self, number: int) -> _Worker:
        instance = f"w{number}"
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, name=f"otlpd-{instance}",
            args=(self._values, instance, self.workers_wanted, number == 1, child_conn,
                  {**self._relay, "serve": number == 1}))
        process.start()
        child_conn.close()
        return _Worker(instance, process, parent_conn)

    def _await_ready(self, worker: _Worker) -> None:
        if not worker.conn.poll(READY_TIMEOUT):
            raise ConfigError(f"receiver.workers: worker {worker.instance} did not start in {READY_TIMEOUT} s")
        kind, detail = worker.conn.recv()
        if kind == "error":
            raise ConfigError(detail)
        log.info("worker %s (pid %d) is serving", worker.instance, worker.process.pid)

    def _recover(self, instance: str | None = None) -> None:
        """Complete files left in progress (by a crash of everything, or of one worker)."""
        options = writer_settings(self.config).ipc_options()
        for signal_name in schema.SIGNALS:
            directory = self.output_dir / signal_name
            directory.mkdir(parents=True, exist_ok=True)
            files.recover_directory(directory, options, self.config["writer.fsync"], instance=instance)

    def watch(self) -> None:
        """Restart any worker that died on its own, after recovering its file in progress."""
        for index, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            log.error("worker %s exited with code %s; recovering its files and restarting it",
                      worker.instance, worker.process.exitcode)
            self._recover(worker.instance)
            replacement = self._spawn(index + 1)
            self._workers[index] = replacement
            try:
                self._await_ready(replacement)
            except ConfigError as error:
                log.error("worker %s did not restart: %s", replacement.instance, error)

    def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
        # the first worker last: the others relay their metrics to it until they have stopped
        deadline = time.monotonic() + STOP_TIMEOUT
        self._stop(self._workers[1:], deadline)
        self._stop(self._workers[:1], deadline)
        self._workers = []
        shutil.rmtree(self._relay_directory, ignore_errors=True)

    @staticmethod
    def _stop(workers: list[_Worker], deadline: float) -> None:
        for worker in workers:
            if worker.process.is_alive():
                try:
                    with worker.lock:
                        worker.conn.send(("stop", None))
                except (BrokenPipeError, OSError):
                    pass
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker %s did not stop in time; killing it", worker.instance)
                worker.process.kill()
                worker.process.join()

    def rotate(self, signal_name: str | None = None) -> dict[str, list[str]]:
        """Complete the current file of every worker; returns the completed paths per signal."""
        result: dict[str, list[str]] = {}
        for worker in self._workers:
            for name, path in worker.ask("rotate", signal_name).items():
                result.setdefault(name, [])
                if path is not None:
                    result[name].append(path)
        return result

    def snapshot(self) -> dict:
        """One status snapshot: counters summed over workers, plus each worker's own."""
        per_worker = {worker.instance: worker.ask("status") for worker in self._workers}
        merged = _merge([snap["signals"] for snap in per_worker.values()])
        return {
            "time": time.time(),
            "uptime_seconds": time.time() - self._started_at,
            "daemon": {"grpc_endpoint": self.endpoint, "output_dir": str(self.output_dir),
                       "workers": len(self._workers), "pid": os.getpid()},
            "signals": merged,
            "forwarding": disabled_snapshot() if self.forwarder is None
            else self.forwarder.snapshot(),
            "workers": per_worker,
        }


class _TemporalityOfFirstWorker:
    """The supervisor's view of the metric temporality (the web API's): the first worker's
    TemporalityControl, which converts every worker's metrics, asked over its pipe."""

    def __init__(self, supervisor: Supervisor):
        self._supervisor = supervisor

    def _ask(self, argument: dict | None) -> dict:
        workers = self._supervisor._workers
        if not workers:
            raise OSError("otlpd is not running")
        kind, answer = workers[0].ask("temporality", argument)
        if kind != "ok":
            raise ValueError(answer)
        return answer

    def snapshot(self) -> dict:
        return self._ask(None)

    def set(self, value: str | None) -> dict:
        return self._ask({"temporality": value})


def _merge(snapshots: list[dict]) -> dict:
    """Sum numbers leaf by leaf; other leaves become the list of each worker's value. A key
    some workers lack (a counter that starts at its first event: a worker that received no
    request has no ``requests``) merges over those that have it."""
    merged: dict = {}
    for key in dict.fromkeys(key for snap in snapshots for key in snap):
        values = [snap.get(key) for snap in snapshots]
        present = [snap[key] for snap in snapshots if key in snap]
        if all(isinstance(value, dict) for value in present):
            merged[key] = _merge(present)
        elif all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
            merged[key] = sum(present)
        else:
            merged[key] = values
    return merged
