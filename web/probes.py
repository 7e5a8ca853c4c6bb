"""``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus), for orchestrators and scrapers."""
from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from otlpd.web.app import context
from otlpd.web.models import BaseModel, errors
from otlpd.web.prometheus import StatusCollector

PROBES = Tag(name="probes", description="liveness, readiness and Prometheus metrics")
bp = APIBlueprint("probes", __name__, abp_responses=errors(400))


class Alive(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    reasons: list[str]


@bp.get("/healthz", tags=[PROBES], responses={200: Alive}, summary="The process is alive")
def healthz():
    return jsonify(status="alive")


@bp.get("/readyz", tags=[PROBES], responses={200: Ready, 503: Ready},
        summary="200 when the receiver accepts and every writer is healthy, 503 with the reasons otherwise")
def readyz():
    state = context().health()
    response = jsonify(ready=state["ready"], reasons=state["unready_reasons"])
    response.status_code = 200 if state["ready"] else 503
    return response


@bp.get("/metrics", tags=[PROBES],
        responses={200: {"description": "Prometheus text exposition format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics, read from the status snapshot at scrape time")
def metrics():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(context()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})
