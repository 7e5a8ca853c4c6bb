"""GET /api/v1/forwarding, the forwarding page and panel, /metrics and /readyz while the remote
is down, and secrets that never show, over a real daemon forwarding to a scripted remote."""
import json
import logging

import grpc
import pytest
from openapi_spec_validator import validate

from forward_helpers import ScriptedRemote, forwarding_settings, status_with, wait_until
from otlp_client import logs_request, trace_request
from otlpd.web import forwarding
from web_stack import Stack

SECRETS = {"forward.api_key": "k3y-value-never-shown", "forward.headers": "x-tenant=t3nant-never-shown"}


@pytest.fixture
def remote():
    remote = ScriptedRemote(lambda signal, data, number:
                            status_with(grpc.StatusCode.INVALID_ARGUMENT, "bad log") if signal == "logs" else None)
    yield remote
    remote.stop()


@pytest.fixture
def stack(tmp_path, remote):
    stack = Stack(tmp_path, extensions=[forwarding.extension()],
                  **forwarding_settings(remote.endpoint, **SECRETS))
    yield stack
    stack.close()


def body(stack):
    response = stack.client.get("/api/v1/forwarding")
    assert response.status_code == 200
    return response.get_json()


def test_forwarding_api_shows_every_part(stack, remote):
    stack.send("traces", trace_request(40))
    stack.send("logs", logs_request(5))
    wait_until(lambda: body(stack)["signals"]["traces"]["sent_records"] == 40
               and body(stack)["signals"]["logs"]["skipped_records"] == 5)
    wait_until(lambda: body(stack)["signals"]["traces"]["backlog"]["records"] == 0)
    result = body(stack)
    assert result["enabled"] and result["state"] == "forwarding" and result["stopped_reason"] is None
    assert result["remote"] == {"endpoint": remote.endpoint, "insecure": True, "tls": False, "mutual_tls": False,
                                "compression": "gzip", "timeout_seconds": 10.0, "auth": "api_key (x-api-key)",
                                "header_names": ["x-api-key", "x-tenant"]}
    assert result["breaker"]["state"] == "closed" and "transitions" in result["breaker"]
    traces = result["signals"]["traces"]
    assert traces["backlog"] == {"records": 0, "bytes": 0, "files": 0, "lag_seconds": 0.0}
    assert traces["sent_requests"] == 1 and traces["retries"] == 0
    assert traces["checkpoint"][""]["row"] == 0 or traces["checkpoint"][""]["batch"] >= 1
    logs = result["signals"]["logs"]
    assert logs["skipped_by_code"] == {"INVALID_ARGUMENT": 5}
    assert logs["last_error"]["code"] == "INVALID_ARGUMENT" and logs["last_error"]["message"] == "bad log"
    for part in result["signals"].values():
        assert {"send_rate_records_per_second", "dropped_by_retention", "partial_success",
                "duplicates_suspected"} <= part.keys()
    # the status object carries the same part
    assert stack.client.get("/api/v1/status").get_json()["forwarding"]["remote"] == result["remote"]


def test_the_page_the_panel_and_the_openapi_document(stack):
    page = stack.client.get("/forwarding")
    assert page.status_code == 200 and b"Circuit breaker" in page.data and b"forwarding.js" in page.data
    overview = stack.client.get("/")
    assert b"forwarding-panel" in overview.data and b'href="/forwarding"' in overview.data
    document = stack.client.get("/api/v1/openapi.json").get_json()
    validate(document)
    assert "/api/v1/forwarding" in document["paths"]


def test_metrics_export_backlog_and_breaker_state(stack):
    stack.send("traces", trace_request(10))
    wait_until(lambda: body(stack)["signals"]["traces"]["sent_records"] == 10)
    text = stack.client.get("/metrics").get_data(as_text=True)
    assert 'otlpd_forward_breaker_state{state="closed"} 1.0' in text
    assert 'otlpd_forward_backlog_records{signal="traces"}' in text
    assert 'otlpd_forward_sent_records_total{signal="traces"} 10.0' in text


def test_readyz_stays_ready_while_the_remote_is_down(tmp_path):
    stack = Stack(tmp_path, extensions=[forwarding.extension()], **forwarding_settings("127.0.0.1:1"))
    try:
        stack.send("traces", trace_request(10))
        wait_until(lambda: body(stack)["breaker"]["state"] != "closed")
        assert stack.client.get("/readyz").status_code == 200
        assert body(stack)["state"] == "waiting for the remote"
        wait_until(lambda: body(stack)["signals"]["traces"]["backlog"]["records"] == 10, timeout=10)
        assert body(stack)["signals"]["traces"]["last_error"]["code"] == "UNAVAILABLE"
    finally:
        stack.close()


def test_forwarding_off(tmp_path):
    stack = Stack(tmp_path, extensions=[forwarding.extension()])
    try:
        assert body(stack)["enabled"] is False
        assert stack.client.get("/forwarding").status_code == 200
        assert "otlpd_forward_" not in stack.client.get("/metrics").get_data(as_text=True)
    finally:
        stack.close()


def test_secrets_never_appear_in_logs_status_api_pages_or_metrics(stack, remote, caplog):
    caplog.set_level(logging.DEBUG)
    stack.send("traces", trace_request(3))
    stack.send("logs", logs_request(3))  # a refusal, logged
    wait_until(lambda: body(stack)["signals"]["logs"]["skipped_records"] == 3)
    assert remote.metadata[0]["x-api-key"] == SECRETS["forward.api_key"]  # it is sent...
    shown = [json.dumps(stack.daemon.status.snapshot()), caplog.text]
    for path in ("/api/v1/forwarding", "/api/v1/status", "/forwarding", "/", "/metrics", "/api/v1/openapi.json"):
        shown.append(stack.client.get(path).get_data(as_text=True))
    for text in shown:  # ...and never shown
        assert "k3y-value" not in text and "t3nant" not in text
