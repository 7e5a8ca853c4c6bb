"""otlpd daemons for tests: in a subprocess (DaemonProcess) or in this process (start_daemon),
on a free loopback port."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

START_LINE = re.compile(r"listening on (?P<host>[^\s]+):(?P<port>\d+) \(OTLP/gRPC\)")
DASHBOARD = re.compile(r"dashboard on (?P<url>http://\S+/)")


def clean_environment() -> dict[str, str]:
    """The test's environment without OTLPD_* settings (the implementation switch stays),
    and the dashboard on a free port, so a test never needs 8317 to be free."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("OTLPD_") or name == "OTLPD_PURE_PYTHON"}
    environment["OTLPD_DASHBOARD__ENDPOINT"] = "127.0.0.1:0"
    return environment


class DaemonProcess:
    """``python -m otlpd`` on 127.0.0.1 with a port chosen by the kernel (port 0)."""

    def __init__(self, output_dir: Path, *args: str, start_timeout: float = 60.0):
        self.output_dir = Path(output_dir)
        self.stderr_lines: list[str] = []
        command = [sys.executable, "-m", "otlpd", "--grpc-endpoint", "127.0.0.1:0",
                   "--output-dir", str(output_dir), *args]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, env=clean_environment())
        self._started = threading.Event()
        self.port: int | None = None
        self.dashboard_url: str | None = None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._started.wait(start_timeout) or self.port is None:
            self.process.kill()
            self.process.wait(10)
            raise RuntimeError("otlpd did not start:\n" + "".join(self.stderr_lines))

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            match = START_LINE.search(line)
            if match and self.port is None:
                self.port = int(match.group("port"))
                dashboard = DASHBOARD.search(line)
                self.dashboard_url = dashboard.group("url") if dashboard else None
                self._started.set()
        self._started.set()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the daemon drains and completes its files."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to complete anything."""
        self.process.kill()
        self.process.wait(30)
        self._reader.join(5)

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time; daemon stderr:\n" + self.stderr)
            if self.process.poll() is not None:
                raise RuntimeError("otlpd exited early:\n" + self.stderr)
            time.sleep(interval)

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.kill()


def start_daemon(tmp_path: Path, buffer_cls=None, **settings: str):
    """A started :class:`~otlpd.daemon.Daemon` in this process (no fsync), writing under tmp_path/data."""
    from otlpd.config import resolve
    from otlpd.daemon import Daemon

    flags = {"grpc_endpoint": "127.0.0.1:0", "output_dir": str(tmp_path / "data"),
             "writer.fsync": "false", **settings}
    daemon = Daemon(resolve({}, {}, flags), **({"buffer_factory": buffer_cls} if buffer_cls else {}))
    daemon.start()
    return daemon


def run_otlpd(*args: str, env: dict | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``python -m otlpd ARGS`` to completion (for start-up errors and --help)."""
    return subprocess.run([sys.executable, "-m", "otlpd", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean_environment(), **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> str:
    """otlpd exited 2 with one line on stderr, no traceback, containing ``fragment``; the line."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]
