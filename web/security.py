"""The web side's security rules, applied to every request of the app.

- Mutating calls (POST, PUT, PATCH, DELETE) need ``Authorization: Bearer <token>`` when an
  admin token is set (compared in constant time), and a JSON body (``Content-Type:
  application/json``, 415 otherwise): an HTML form on another site cannot send that type,
  and a cross-site ``fetch`` that does needs a CORS preflight this app never grants. A
  DELETE may have no body at all (no form can send a DELETE).
- On a loopback endpoint only loopback Host headers are answered, so a web page whose
  domain was re-pointed at 127.0.0.1 (DNS rebinding) cannot read the API either.
- Every response carries a Content-Security-Policy without inline scripts,
  ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY``.
"""
from __future__ import annotations

import hmac

from flask import abort, request
from werkzeug.exceptions import BadRequest

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")


def token_matches(header: str | None, token: str) -> bool:
    """``header`` is ``Bearer <token>``; constant time in the token's content."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def is_api_request() -> bool:
    """The REST API and the probes (JSON errors, no caching), as opposed to the pages."""
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz", "/metrics")


def hostname(host: str) -> str:
    """``127.0.0.1:8317`` -> ``127.0.0.1``, ``[::1]:8317`` -> ``[::1]``, ``localhost`` -> ``localhost``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if ":" in host else host


def install(app, admin_token: str, allowed_hosts: set[str] | None) -> None:
    @app.before_request
    def _check_request():
        if allowed_hosts is not None:
            if hostname(request.host).lower() not in allowed_hosts:
                abort(400, f"Host {request.host!r} is not this dashboard's address")
        if request.method not in MUTATING or request.routing_exception is not None:
            return None  # reads; and 404/405 answer before any rule about bodies
        if admin_token and not token_matches(request.headers.get("Authorization"), admin_token):
            abort(401, "this call needs the header Authorization: Bearer <dashboard.admin_token>")
        if request.method == "DELETE" and not request.content_length and not request.mimetype:
            return None  # a DELETE without a body (no HTML form can send a DELETE)
        if request.mimetype != "application/json":
            abort(415, "send the body as JSON with Content-Type: application/json")
        try:
            body = request.get_json()
        except BadRequest:
            abort(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            abort(400, "the body must be a JSON object")
        return None

    @app.after_request
    def _headers(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if is_api_request():
            response.headers["Cache-Control"] = "no-store"
        return response
