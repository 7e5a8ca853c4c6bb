"""Application factory: blueprints, security rules, errors as JSON, the extension slots."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from flask_openapi3 import Info, OpenAPI
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from otlpd import __version__
from otlpd.web import security
from otlpd.web.data import StoredData
from otlpd.web.health import health
from otlpd.web.history import History
from otlpd.web.models import ErrorBody
from otlpd.web.summary import summarize

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # the largest JSON body a mutating call takes (413 beyond)


@dataclasses.dataclass
class Extension:
    """A later feature's share of the web side (temporality, forwarding): its blueprint
    (pages and ``/api/v1/...`` routes), its entries in the navigation and the panels it
    adds to the overview page (template names rendered there)."""

    name: str
    blueprint: Blueprint | None = None
    api_blueprint: Any = None  # a flask_openapi3.APIBlueprint, documented in the OpenAPI document
    nav: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (label, endpoint)
    overview_panels: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WebContext:
    """What the views use, kept on the app (``current_app.extensions["otlpd"]``)."""

    source: Any
    history: History
    data: StoredData
    admin_token: str
    extensions: list[Extension]

    def health(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Health from ``summary`` (of the snapshot the caller already holds), or from a new
        snapshot's."""
        if summary is None:
            summary = summarize(self.source.snapshot())
        return health(summary, self.history.rejecting(), serving=self.source.grpc_endpoint is not None)

    @property
    def nav(self) -> list[tuple[str, str]]:
        entries = [("Overview", "pages.overview"), ("Files", "pages.files"), ("Data", "pages.data"),
                   ("Temporality", "pages.temporality")]
        for extension in self.extensions:
            entries += extension.nav
        return entries + [("API", "pages.api_reference")]

    @property
    def overview_panels(self) -> list[str]:
        return [panel for extension in self.extensions for panel in extension.overview_panels]


def context() -> WebContext:
    return current_app.extensions["otlpd"]


def _validation_error(error: ValidationError):
    """flask-openapi3 hands request validation errors here: one readable 400."""
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "__root__")
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    response = jsonify(error="; ".join(problems) or "invalid request")
    response.status_code = 400
    return response


def create_app(source, admin_token: str = "", extensions: list[Extension] | tuple = (),
               history: History | None = None, data: StoredData | None = None,
               allowed_hosts: set[str] | None = None) -> OpenAPI:
    """The dashboard application over ``source`` (a :class:`~otlpd.web.source.Source`).

    ``allowed_hosts``: the Host header values accepted (None: any); the server passes
    the loopback names when it listens on loopback (DNS rebinding).
    """
    app = OpenAPI(__name__, info=Info(title="otlpd", version=__version__,
                                      description="otlpd's dashboard REST API"),
                  doc_ui=False, validation_error_status=400, validation_error_model=ErrorBody,
                  validation_error_callback=_validation_error,
                  security_schemes={"bearer": {"type": "http", "scheme": "bearer"}})
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    settings = source.settings
    app.extensions["otlpd"] = WebContext(
        source=source,
        history=history or History(source),
        data=data or StoredData(source.output_dir, settings.get("dashboard.max_scan_files", 8),
                                settings.get("dashboard.max_scan_rows", 1_000_000)),
        admin_token=admin_token,
        extensions=list(extensions))
    security.install(app, admin_token, allowed_hosts)
    _install_errors(app)

    from otlpd.web import api, pages, probes
    app.register_api(api.api)
    app.register_api(probes.bp)
    app.register_blueprint(pages.bp)
    for extension in extensions:
        if extension.api_blueprint is not None:
            app.register_api(extension.api_blueprint)
        if extension.blueprint is not None:
            app.register_blueprint(extension.blueprint)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        ctx = context()
        return {"nav": ctx.nav, "overview_panels": ctx.overview_panels, "version": __version__,
                "admin_token_required": bool(ctx.admin_token)}

    return app


def _install_errors(app) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        description = error.description or error.name
        if error.code == 413:
            description = f"the body is too large: at most {MAX_BODY_BYTES} bytes"
        if security.is_api_request():
            response = jsonify(error=description)
        else:
            response = current_app.make_response(
                render_template("error.html", code=error.code, name=error.name,
                                description=description))
        response.status_code = error.code or 500
        if error.code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="otlpd"'
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("dashboard: %s %s failed", request.method, request.path)
        response = jsonify(error="internal error; see the otlpd log")
        response.status_code = 500
        return response
