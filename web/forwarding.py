"""The forwarding page, its overview panel, ``GET /api/v1/forwarding`` and its Prometheus
metrics: an :class:`~otlpd.web.app.Extension` over the status snapshot's ``forwarding`` part
(otlpd.forward). It shows what the snapshot holds and nothing else: no secret is in it."""
from __future__ import annotations

import time
from typing import Any, Iterator

from flask import Blueprint, jsonify, render_template
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from otlpd import schema
from otlpd.web.app import Extension, context
from otlpd.web.models import ForwardingBody, errors

FORWARDING = Tag(name="forwarding", description="shipping the stored files to a remote OTLP endpoint "
                                                 "(docs/FORWARDING.md)")
BREAKER_STATES = ("closed", "open", "half_open")

api = APIBlueprint("forwarding_api", __name__, url_prefix="/api/v1", abp_responses=errors(400))
pages = Blueprint("forwarding", __name__)


def forwarding_body(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"time": snapshot.get("time", time.time()), **snapshot.get("forwarding", {"enabled": False})}


@api.get("/forwarding", tags=[FORWARDING], responses={200: ForwardingBody},
         summary="Forwarding: remote, breaker state and transitions, backlog, rates, retries, skipped, "
                 "dropped, partial success, suspected duplicates and the last error, per signal")
def get_forwarding():
    return jsonify(forwarding_body(context().source.snapshot()))


@pages.get("/forwarding")
def page():
    return render_template("forwarding.html", page="forwarding", signals=schema.SIGNALS)


def extension() -> Extension:
    return Extension(name="forwarding", blueprint=pages, api_blueprint=api,
                     nav=[("Forwarding", "forwarding.page")], overview_panels=["forwarding_panel.html"])


def collect(snapshot: dict[str, Any]) -> Iterator:
    """Prometheus families of the forwarding part of a snapshot (none when forwarding is off)."""
    forwarding = snapshot.get("forwarding") or {}
    if not forwarding.get("enabled"):
        return
    state = GaugeMetricFamily("otlpd_forward_breaker_state", "1 for the circuit breaker's current state",
                              labels=["state"])
    for name in BREAKER_STATES:
        state.add_metric([name], 1.0 if forwarding["breaker"]["state"] == name else 0.0)
    yield state
    stopped = GaugeMetricFamily("otlpd_forward_stopped", "1 when forwarding stopped for a configuration error")
    stopped.add_metric([], 1.0 if forwarding.get("stopped_reason") else 0.0)
    yield stopped
    signals = forwarding["signals"]
    for key, text in (("records", "Stored records not yet forwarded"), ("bytes", "Stored bytes not yet forwarded"),
                      ("files", "Files with records not yet forwarded"),
                      ("lag_seconds", "Age of the oldest stored record not yet forwarded")):
        family = GaugeMetricFamily(f"otlpd_forward_backlog_{key}", text, labels=["signal"])
        for signal, part in signals.items():
            family.add_metric([signal], part["backlog"].get(key) or 0)
        yield family
    for name, text, value in (
            ("sent_records", "Records acknowledged by the remote", lambda part: part["sent_records"]),
            ("sent_requests", "Requests acknowledged by the remote", lambda part: part["sent_requests"]),
            ("retries", "Sends retried after a retryable failure", lambda part: part["retries"]),
            ("dropped_records", "Unforwarded records deleted by retention.max_total_bytes",
             lambda part: part["dropped_by_retention"]),
            ("duplicates_suspected_records", "Records resent after a send that timed out",
             lambda part: part["duplicates_suspected"]["records"]),
            ("partial_success_rejected_records", "Records the remote rejected in a partial success",
             lambda part: part["partial_success"]["rejected"])):
        family = CounterMetricFamily(f"otlpd_forward_{name}", text, labels=["signal"])
        for signal, part in signals.items():
            family.add_metric([signal], value(part))
        yield family
    skipped = CounterMetricFamily("otlpd_forward_skipped_records", "Records the remote refused for good, by code",
                                  labels=["signal", "code"])
    for signal, part in signals.items():
        for code, count in sorted(part["skipped_by_code"].items()):
            skipped.add_metric([signal, code], count)
    yield skipped
