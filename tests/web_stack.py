"""A real daemon in this process with its dashboard app, for the web tests."""
from __future__ import annotations

import time

import grpc

from daemon_process import start_daemon
from otlp_client import export
from otlpd.web import create_app
from otlpd.web.source import Source


class Stack:
    """A started :class:`Daemon` on a free port, its :class:`Source` and a Flask app over it."""

    def __init__(self, tmp_path, admin_token: str = "", allowed_hosts=None, extensions=(), **settings):
        self.daemon = start_daemon(tmp_path, **{"writer.write_interval": "100ms", **settings})
        self.config = self.daemon.config
        self.source = Source(self.daemon, self.config)
        self.app = create_app(self.source, admin_token=admin_token, allowed_hosts=allowed_hosts,
                              extensions=list(extensions))
        self.client = self.app.test_client()
        self.channel = grpc.insecure_channel(self.daemon.endpoint)

    @property
    def output_dir(self):
        return self.daemon.output_dir

    def send(self, signal: str, request) -> None:
        export(self.channel, signal, request.SerializeToString())

    def wait_written(self, signal: str, rows: int, timeout: float = 30.0) -> None:
        """Until the writer has written ``rows`` rows of ``signal`` in all."""
        deadline = time.monotonic() + timeout
        while self.daemon.writers[signal].status().get("written_rows", 0) < rows:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{signal}: {rows} rows not written in {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        self.channel.close()
        self.daemon.stop()
