"""Server-rendered pages; their scripts (``static/*.js``) poll the REST API.

Every page is a template of ``templates/`` and at most one script of ``static/``
(plus ``common.js``): the Content-Security-Policy allows no inline script or
style, so values from telemetry reach the page only through the API and the
scripts' ``textContent``, or through Jinja's autoescaping.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, render_template

from otlpd import schema
from otlpd.web.api import openapi_document
from otlpd.web.models import HEX_ID

bp = Blueprint("pages", __name__)

_TRACE_ID = re.compile(HEX_ID)
_METHODS = ("get", "post", "put", "patch", "delete")


@bp.get("/")
def overview():
    return render_template("overview.html", page="overview", signals=schema.SIGNALS)


@bp.get("/files")
def files():
    return render_template("files.html", page="files", signals=schema.SIGNALS)


@bp.get("/data")
def data():
    return render_template("data.html", page="data")


@bp.get("/temporality")
def temporality():
    return render_template("temporality.html", page="temporality")


@bp.get("/traces/<trace_id>")
def trace(trace_id: str):
    if not _TRACE_ID.match(trace_id):
        abort(400, "a trace id is written in hex: 2 to 64 digits 0-9 and a-f")
    return render_template("trace.html", page="data", nav_active="pages.data",
                           trace_id=trace_id.lower())


@bp.get("/api")
def api_reference():
    document = openapi_document()
    return render_template("api.html", page="api", document=document,
                           groups=operation_groups(document))


# -- the OpenAPI document, flattened for api.html -------------------------------------------

def _schema_name(schema_: dict[str, Any] | None) -> str | None:
    if not schema_:
        return None
    ref = schema_.get("$ref")
    if ref:
        return ref.rsplit("/", 1)[-1]
    if schema_.get("type") == "array" and isinstance(schema_.get("items"), dict):
        inner = _schema_name(schema_["items"])
        return f"array of {inner}" if inner else "array"
    return schema_.get("title") or schema_.get("type")


def _type(schema_: dict[str, Any]) -> str:
    """``integer``, ``string or null``, ``one of traces, metrics, logs``..."""
    if "enum" in schema_:
        return "one of " + ", ".join(str(value) for value in schema_["enum"])
    if "anyOf" in schema_:
        return " or ".join(_type(option) for option in schema_["anyOf"])
    if "$ref" in schema_:
        return _schema_name(schema_) or "object"
    kind = schema_.get("type", "any")
    if schema_.get("format"):
        kind += f" ({schema_['format']})"
    return kind


def _constraints(schema_: dict[str, Any]) -> list[str]:
    found: list[str] = []
    options = [schema_, *schema_.get("anyOf", [])]
    for option in options:
        for key, label in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                           ("exclusiveMaximum", "<"), ("minLength", "length >="),
                           ("maxLength", "length <="), ("pattern", "matches")):
            if key in option:
                value = option[key]
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                found.append(f"{label} {value}")
    return found


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    schema_ = parameter.get("schema", {})
    default = schema_.get("default")
    return {
        "name": parameter.get("name", ""),
        "in": parameter.get("in", ""),
        "required": bool(parameter.get("required")),
        "type": _type(schema_),
        "default": None if default is None else str(default),
        "description": parameter.get("description") or schema_.get("description") or "",
        "constraints": _constraints(schema_),
    }


def _operation(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    body = operation.get("requestBody")
    body_schema = None
    if body:
        content = body.get("content", {})
        media = next(iter(content), None)
        body_schema = {"media_type": media, "schema": _schema_name(content.get(media, {}).get("schema")),
                       "required": bool(body.get("required"))}
    responses = []
    for code, response in sorted(operation.get("responses", {}).items()):
        content = response.get("content", {})
        media = next(iter(content), None)
        responses.append({"code": code, "description": response.get("description", ""),
                          "schema": _schema_name(content.get(media, {}).get("schema")) if media else None})
    return {
        "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "").strip("-"),
        "method": method.upper(),
        "path": path,
        "summary": operation.get("summary", ""),
        "description": operation.get("description", ""),
        "parameters": [_parameter(parameter) for parameter in operation.get("parameters", [])],
        "body": body_schema,
        "responses": responses,
        "needs_token": bool(operation.get("security")),
    }


def operation_groups(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's operations grouped by tag, in the document's tag order."""
    tags = [dict(tag) for tag in document.get("tags", [])]
    known = {tag["name"] for tag in tags}
    groups: dict[str, list[dict[str, Any]]] = {tag["name"]: [] for tag in tags}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tag = next((name for name in operation.get("tags", []) if name in known), "other")
            groups.setdefault(tag, []).append(_operation(path, method, operation))
    if "other" in groups and "other" not in known:
        tags.append({"name": "other", "description": ""})
    return [{"name": tag["name"], "description": tag.get("description", ""),
             "operations": groups[tag["name"]]} for tag in tags if groups.get(tag["name"])]
