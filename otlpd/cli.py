"""The ``otlpd`` command: ``otlpd [run] [--config FILE] [--<key> VALUE ...]``."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from otlpd import __version__
from otlpd.config import SETTINGS, ConfigError, load

log = logging.getLogger("otlpd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage mistake is one line, like every other start-up error."""
        self.exit(2, f"otlpd: error: {message} (see otlpd --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="otlpd",
        description="Receive OpenTelemetry traces, metrics and logs over OTLP/gRPC and store "
                    "them in rotated Arrow IPC files. Settings come from flags, then OTLPD_* "
                    "environment variables, then the --config YAML file, then defaults.",
        epilog="Every flag --a.b-c is also the YAML key a.b_c and the variable OTLPD_A__B_C. "
               "Sizes take units (64MiB, 1GB); durations take units (500ms, 10s, 5m, 7d).")
    parser.add_argument("command", nargs="?", default="run", choices=["run"],
                        help="what to do (default: run the daemon in the foreground)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--version", action="version", version=f"otlpd {__version__}")
    for setting in SETTINGS:
        parser.add_argument(setting.flag, dest=setting.key, metavar="VALUE", default=None,
                            help=f"{setting.help} (default: {setting.default}; env {setting.env})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {setting.key: getattr(args, setting.key) for setting in SETTINGS}
    try:
        config = load(args.config, flags=flags)
    except ConfigError as error:
        print(f"otlpd: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config["log_level"].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(config)


def run(config) -> int:
    """Run the daemon until SIGINT or SIGTERM, then drain and exit 0."""
    from otlpd.memory import configure_process_memory

    configure_process_memory()  # before pyarrow is loaded
    # heavy imports (grpc, pyarrow) only when running
    from otlpd.daemon import Daemon
    from otlpd.workers import Supervisor

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    workers = config["receiver.workers"]
    dashboard = None
    try:
        daemon = Supervisor(config) if workers > 1 else Daemon(config)
        if config["dashboard.enabled"]:
            from otlpd.web.server import build_dashboard

            dashboard = build_dashboard(config, daemon)  # binds now: a port in use stops start-up
        daemon.start()
    except ConfigError as error:
        if dashboard is not None:
            dashboard.stop()
        print(f"otlpd: error: {error}", file=sys.stderr)
        return 2
    if dashboard is not None:
        dashboard.start()
    log.info("otlpd %s listening on %s (OTLP/gRPC), %s, writing to %s%s",
             __version__, daemon.endpoint,
             f"dashboard on {dashboard.url}" if dashboard else "dashboard disabled", daemon.output_dir,
             f", {workers} worker processes" if workers > 1 else "")
    while not stop.wait(1.0):
        if workers > 1:
            daemon.watch()
    log.info("stopping: finishing requests in flight and writing buffered data")
    if dashboard is not None:
        dashboard.stop()
    daemon.stop()
    log.info("stopped")
    return 0
