"""``/api/v1/``: JSON in and out, declared in :mod:`otlpd.web.models` (which also make the
OpenAPI document). Every route reads ``Source.snapshot()``, calls ``Source.rotate()`` or
reads completed files through :class:`~otlpd.web.data.StoredData`; none touches the
ingest path's locks."""
from __future__ import annotations

import copy
import logging
import time
from datetime import timezone

from flask import abort, current_app, jsonify
from flask_openapi3 import APIBlueprint, Tag

from otlpd import schema
from otlpd.web.app import context
from otlpd.web.models import (HistoryBody, HistoryQuery, LogsBody, LogsQuery, MetricPath,
                              MetricPointsBody, MetricQuery, MetricsBody, RotateRequest, RotateResult,
                              RotationBody, RotationQuery, ServicesBody, SpansBody, SpansQuery,
                              StatusBody, TemporalityBody, TemporalityRequest, TraceBody, TracePath,
                              errors)
from otlpd.web.summary import summarize, writer_states

log = logging.getLogger(__name__)

STATE = Tag(name="state", description="live state of the daemon")
FILES = Tag(name="files", description="files in progress, completed files and rotation")
DATA = Tag(name="data", description="stored telemetry, read from completed files")
METRICS = Tag(name="temporality", description="metric temporality conversion (docs/TEMPORALITY.md)")

api = APIBlueprint("api", __name__, url_prefix="/api/v1", abp_responses=errors(400))


def status_body() -> dict:
    ctx = context()
    snapshot = ctx.source.snapshot()
    summary = summarize(snapshot)
    return {
        "time": snapshot.get("time", time.time()),
        "uptime_seconds": snapshot.get("uptime_seconds", 0.0),
        "version": ctx.source.version,
        "grpc_endpoint": ctx.source.grpc_endpoint,
        "dashboard_url": ctx.source.dashboard_url,
        "health": ctx.health(summary),
        "summary": summary,
        **{key: value for key, value in snapshot.items() if key not in ("time", "uptime_seconds")},
    }


@api.get("/status", tags=[STATE], responses={200: StatusBody},
         summary="The status snapshot: counters of every component, with summary and health")
def get_status():
    return jsonify(status_body())


@api.get("/history", tags=[STATE], responses={200: HistoryBody},
         summary="Per-second rates of received, written and rejected items over the last minutes")
def get_history(query: HistoryQuery):
    return jsonify(context().history.rates(query.seconds))


def _in_progress(writer: dict, now: float, settings: dict) -> dict | None:
    if not writer.get("current_file"):
        return None
    opened = writer.get("current_file_opened_at")
    age = None if opened is None else max(0.0, now - opened)
    size = int(writer.get("current_file_bytes") or 0)
    return {
        "name": writer["current_file"],
        "bytes": size,
        "rows": int(writer.get("current_file_rows") or 0),
        "opened_at": opened,
        "age_seconds": age,
        "seconds_until_rotation": None if age is None else max(0.0, settings["writer.max_file_age"] - age),
        "bytes_until_rotation": max(0, settings["writer.max_file_bytes"] - size),
    }


@api.get("/rotation", tags=[FILES], responses={200: RotationBody},
         summary="Per signal: the files in progress, the recent completed files, disk use and retention")
def get_rotation(query: RotationQuery):
    ctx = context()
    snapshot = ctx.source.snapshot()
    settings = ctx.source.settings
    summary = summarize(snapshot)
    now = time.time()
    signals = {}
    for signal in schema.SIGNALS:
        in_progress = [info for info in (_in_progress(writer, now, settings)
                                         for writer in writer_states(snapshot, signal)) if info]
        signals[signal] = {
            "in_progress": in_progress,
            "recent": ctx.data.recent_files(signal, query.limit),
            "disk": ctx.data.disk_usage(signal),
            "files_rotated": summary[signal]["files_rotated"],
            "retention": {
                "max_age_seconds": settings["retention.max_age"],
                "max_total_bytes": settings["retention.max_total_bytes"],
                "check_interval_seconds": settings["retention.check_interval"],
                "deleted_files": summary[signal]["files_deleted"],
                "deleted_bytes": summary[signal]["bytes_deleted"],
            },
        }
    return jsonify(max_file_bytes=settings["writer.max_file_bytes"],
                   max_file_age_seconds=settings["writer.max_file_age"], signals=signals)


@api.post("/rotation", tags=[FILES], security=[{"bearer": []}],
          responses={200: RotateResult, **errors(401, 413, 415, 503)},
          summary="Complete the file in progress of one signal ({\"signal\": \"traces\"}) or of all ({})")
def post_rotation(body: RotateRequest):
    try:
        completed = context().source.rotate(body.signal)
    except (RuntimeError, TimeoutError) as error:
        abort(503, f"rotation failed: {error}")
    log.info("dashboard: rotated %s: %s", body.signal or "every signal",
             ", ".join(path for paths in completed.values() for path in paths) or "nothing to complete")
    return jsonify(completed=completed)


def _temporality(value=..., /):
    """The temporality's snapshot, or (with a value, None for the configured one) the snapshot
    after setting it: 503 when the daemon cannot answer (with several workers, the first
    worker converts every worker's metrics and answers for them)."""
    control = context().source.temporality
    if control is None:
        abort(503, "this daemon converts no metrics")
    try:
        return control.snapshot() if value is ... else control.set(value)
    except (OSError, TimeoutError) as error:
        abort(503, f"metric temporality: {error}")


@api.get("/temporality", tags=[METRICS], responses={200: TemporalityBody, **errors(503)},
         summary="The metric temporality in effect, where it comes from, and the conversion's counters")
def get_temporality():
    return jsonify(_temporality())


@api.put("/temporality", tags=[METRICS], security=[{"bearer": []}],
         responses={200: TemporalityBody, **errors(401, 413, 415, 503)},
         summary="Store metrics as {\"temporality\": \"delta\"} (or cumulative, passthrough) from now on; "
                 "kept across restarts")
def put_temporality(body: TemporalityRequest):
    return jsonify(_temporality(body.temporality))


@api.delete("/temporality", tags=[METRICS], security=[{"bearer": []}],
            responses={200: TemporalityBody, **errors(401, 503)},
            summary="Back to the configured metrics.temporality (the value set over the API is forgotten)")
def delete_temporality():
    return jsonify(_temporality(None))


@api.get("/services", tags=[DATA], responses={200: ServicesBody},
         summary="service.name values of the recent stored spans")
def get_services():
    return jsonify(services=context().data.services())


@api.get("/spans", tags=[DATA], responses={200: SpansBody},
         summary="The most recent stored spans, newest first")
def get_spans(query: SpansQuery):
    return jsonify(context().data.spans(service=query.service or None, name=query.name or None,
                                        limit=query.limit))


@api.get("/traces/<trace_id>", tags=[DATA], responses={200: TraceBody, **errors(404)},
         summary="Every stored span of one trace, parents before their children (a waterfall)")
def get_trace(path: TracePath):
    found = context().data.trace(bytes.fromhex(path.trace_id))
    if found is None:
        abort(404, f"no stored span of trace {path.trace_id.lower()} in the recent completed files")
    return jsonify(found)


@api.get("/logs", tags=[DATA], responses={200: LogsBody},
         summary="The most recent stored log records, newest first")
def get_logs(query: LogsQuery):
    return jsonify(context().data.logs(severity_min=query.severity_min, limit=query.limit))


@api.get("/metrics", tags=[DATA], responses={200: MetricsBody},
         summary="Names of the stored metrics with their types")
def get_metrics():
    return jsonify(context().data.metric_names())


@api.get("/metrics/<path:name>", tags=[DATA], responses={200: MetricPointsBody, **errors(404)},
         summary="Points of one metric, oldest first")
def get_metric(path: MetricPath, query: MetricQuery):
    since = None
    if query.since is not None:
        moment = query.since if query.since.tzinfo else query.since.replace(tzinfo=timezone.utc)
        since = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
        since = max(-(1 << 63), min((1 << 63) - 1, since))  # stored times are int64 nanoseconds
    found = context().data.metric_points(path.name, since_unix_nano=since, limit=query.limit)
    if not found["points"] and found.get("type") is None:
        abort(404, f"no stored metric named {path.name!r} in the recent completed files")
    return jsonify(found)


def openapi_document() -> dict:
    """The OpenAPI document of this app as configured: without an admin token, mutating
    calls need no authentication, so the document does not claim they do."""
    document = copy.deepcopy(current_app.api_doc)
    if not context().admin_token:
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                if isinstance(operation, dict):
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        document.get("components", {}).pop("securitySchemes", None)
    return document


@api.get("/openapi.json", tags=[STATE], summary="This API's OpenAPI 3 document",
         responses={200: {"description": "an OpenAPI 3.1 document",
                          "content": {"application/json": {"schema": {"type": "object"}}}}})
def get_openapi():
    return jsonify(openapi_document())
