"""The narrow view of the running daemon that the web side gets: nothing else reaches it.

A :class:`Source` reads ``status.snapshot()`` (cached for ``max_age`` seconds:
the supervisor of several workers answers one worker at a time, so a page
polled by several browsers must not multiply that work) and calls
``rotate()``. Neither takes a lock of the ingest path: the snapshot's counters
are each copied under their owner's short lock, and a rotation is a request the
writer thread answers between writes.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from otlpd import __version__, schema

# The settings the pages show beside the live state (never the admin token).
PUBLIC_SETTINGS = (
    "grpc_endpoint", "output_dir", "receiver.workers", "receiver.max_request_bytes",
    "buffer.max_bytes", "buffer.max_items",
    "writer.write_interval", "writer.max_file_bytes", "writer.max_file_age",
    "writer.compression", "writer.compression_level",
    "retention.max_age", "retention.max_total_bytes", "retention.check_interval",
    "dashboard.endpoint", "dashboard.max_scan_files", "dashboard.max_scan_rows",
)


class Source:
    """Status snapshot, rotation and settings of a :class:`~otlpd.daemon.Daemon` or a
    :class:`~otlpd.workers.Supervisor` (the same interface)."""

    def __init__(self, daemon, config, max_age: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self._daemon = daemon
        self.output_dir = Path(daemon.output_dir)
        self.settings = {key: config[key] for key in PUBLIC_SETTINGS}
        self.dashboard_url: str | None = None  # set by the server once it is bound
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()  # the web side's own: one refresh at a time
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    @property
    def temporality(self):
        """The daemon's TemporalityControl (a supervisor's asks its first worker, which
        converts every worker's metrics)."""
        return getattr(self._daemon, "temporality", None)

    @property
    def grpc_endpoint(self) -> str | None:
        return self._daemon.endpoint

    def snapshot(self) -> dict[str, Any]:
        """The daemon's status snapshot, at most ``max_age`` seconds old."""
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached_at >= self._max_age:
                self._cached = self._daemon.status.snapshot()
                self._cached_at = now
            return self._cached

    def rotate(self, signal: str | None = None) -> dict[str, list[str]]:
        """Complete the file in progress of one signal (or all); the completed paths per signal."""
        result = self._daemon.rotate(signal)
        with self._lock:
            self._cached = None  # the next snapshot shows the rotation
        completed: dict[str, list[str]] = {}
        for name in ([signal] if signal else schema.SIGNALS):
            paths = result.get(name)
            if paths is None:
                paths = []
            elif isinstance(paths, str):
                paths = [paths]
            completed[name] = list(paths)
        return completed

    @property
    def version(self) -> str:
        return __version__
