"""The dashboard and REST API, installed as ``otlpd.web``.

``create_app(source)`` builds the Flask application (flask-openapi3, so the
OpenAPI document comes from the same pydantic models that validate requests);
:class:`~otlpd.web.server.DashboardServer` serves it with waitress inside the
daemon process. The app reads the daemon only through its
:class:`~otlpd.web.source.Source`: a status snapshot and ``rotate()``.
"""
from __future__ import annotations

from otlpd.web.app import Extension, WebContext, create_app

__all__ = ["Extension", "WebContext", "create_app"]
