"""The dashboard's HTTP server: waitress on threads of its own inside the daemon process."""
from __future__ import annotations

import logging
import threading

from waitress import create_server
from waitress import wasyncore

from otlpd.config import ConfigError

log = logging.getLogger(__name__)


class DashboardServer:
    """Binds at construction (so a port in use is a start-up error before the daemon
    starts), serves from ``start()`` until ``stop()``."""

    def __init__(self, app, endpoint: str, threads: int = 4):
        host, _, port = endpoint.rpartition(":")
        self.app = app
        try:
            self._server = create_server(app, host=host.strip("[]"), port=int(port), threads=threads,
                                         ident="otlpd", clear_untrusted_proxy_headers=True)
        except OSError as error:
            raise ConfigError(f"dashboard.endpoint: cannot listen on {endpoint}: "
                              f"{error.strerror or error}") from None
        self.host = host
        self.port = int(self._server.effective_port)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="otlpd-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = self.host if not self.host.strip("[]") in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        self.app.extensions["otlpd"].history.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:  # noqa: BLE001 - the loop's sockets closed under it while stopping
            if not self._stopping:
                log.exception("dashboard: the HTTP server stopped")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering: finish requests being handled (up to ``timeout``), close every connection."""
        self._stopping = True
        self.app.extensions["otlpd"].history.stop()
        self._server.task_dispatcher.shutdown(timeout=timeout)
        # waitress has no public stop: its loop ends once its socket map is empty. Empty it
        # from the loop's own thread (a thunk the trigger runs there), so no socket is closed
        # under a poll() in progress.
        if self._thread.is_alive():
            try:
                self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
            except OSError:
                pass
            self._thread.join(timeout)
        if self._server._map:  # never started, or the loop did not get to it
            wasyncore.close_all(self._server._map)


def build_dashboard(config, daemon) -> DashboardServer:
    """The dashboard of a Daemon or Supervisor as ``config`` asks for it, bound but not serving yet."""
    from otlpd.config import is_loopback
    from otlpd.web import forwarding
    from otlpd.web.app import create_app
    from otlpd.web.security import LOOPBACK_HOSTS
    from otlpd.web.source import Source

    endpoint = config["dashboard.endpoint"]
    host = endpoint.rpartition(":")[0]
    # The supervisor asks its workers one at a time: cache its snapshot for a second.
    source = Source(daemon, config, max_age=1.0 if config["receiver.workers"] > 1 else 0.0)
    allowed = {*LOOPBACK_HOSTS, host.lower()} if is_loopback(host) else None
    app = create_app(source, admin_token=config["dashboard.admin_token"], allowed_hosts=allowed,
                     extensions=[forwarding.extension()])
    server = DashboardServer(app, endpoint, config["dashboard.threads"])
    source.dashboard_url = server.url
    return server
