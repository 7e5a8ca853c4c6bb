"""The REST API through Flask's test client over a real daemon: every route, every error rule."""
import json
import logging
from pathlib import Path

import pytest
from flask import Blueprint
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from openapi_spec_validator import validate

from otlp_client import logs_request, metrics_request, trace_request
from otlpd.sources import sources_path
from otlpd.web import Extension
from otlpd.web.health import health
from otlpd.web.security import CONTENT_SECURITY_POLICY
from otlpd.web.summary import summarize
from web_stack import Stack

TOKEN = "s3cret-token-value"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    yield stack
    stack.close()


@pytest.fixture
def guarded(tmp_path):
    stack = Stack(tmp_path, admin_token=TOKEN)
    yield stack
    stack.close()


def family_tree(trace_id: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """A root, its child and grandchild, and an orphan whose parent was never stored."""
    base = 1_700_000_000_000_000_000

    def span(span_id, parent, name, start, end):
        return trace_pb2.Span(trace_id=trace_id, span_id=span_id.to_bytes(8, "big"),
                              parent_span_id=parent.to_bytes(8, "big") if parent else b"",
                              name=name, start_time_unix_nano=base + start, end_time_unix_nano=base + end)

    spans = [span(1, 0, "GET /cart", 0, 10_000_000), span(2, 1, "SELECT cart", 1_000_000, 4_000_000),
             span(3, 2, "connect", 1_500_000, 2_000_000), span(4, 99, "orphan", 5_000_000, 6_000_000)]
    resource = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value="shop"))])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


def rotate(stack) -> dict:
    response = stack.client.post("/api/v1/rotation", json={})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["completed"]


# -- status, history, headers -------------------------------------------------------------

def test_status_is_the_snapshot_with_summary_and_health(stack):
    stack.send("traces", trace_request(25))
    stack.wait_written("traces", 25)
    response = stack.client.get("/api/v1/status")
    assert response.status_code == 200
    body = response.get_json()
    assert body["version"]
    assert body["grpc_endpoint"] == stack.daemon.endpoint
    assert body["summary"]["traces"]["accepted_items"] == 25
    assert body["summary"]["traces"]["written_items"] == 25
    assert body["summary"]["logs"]["accepted_items"] == 0
    assert body["signals"]["traces"]["buffer"]["accepted_items"] == 25  # the snapshot itself
    assert body["health"] == {"status": "healthy", "ready": True, "reasons": [], "unready_reasons": []}


def test_every_response_carries_the_security_headers(stack):
    for path in ("/api/v1/status", "/", "/files", "/api/v1/nope", "/metrics"):
        response = stack.client.get(path)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY


def test_history_gives_rates_between_samples(stack):
    ctx = stack.app.extensions["otlpd"]
    ctx.history.sample()
    stack.send("traces", trace_request(40))
    stack.wait_written("traces", 40)
    ctx.history.sample()
    body = stack.client.get("/api/v1/history?seconds=60").get_json()
    assert len(body["time"]) == 1
    assert body["series"]["traces.received_items"][0] > 0
    assert body["series"]["traces.written_items"][0] > 0
    assert body["series"]["logs.received_items"] == [0.0]


# -- rotation ----------------------------------------------------------------------------

def test_rotation_shows_the_file_in_progress_then_the_completed_file(stack):
    stack.send("traces", trace_request(30))
    stack.wait_written("traces", 30)
    body = stack.client.get("/api/v1/rotation").get_json()
    traces = body["signals"]["traces"]
    assert len(traces["in_progress"]) == 1
    current = traces["in_progress"][0]
    assert current["rows"] == 30 and current["name"].endswith(".arrow.part")
    assert 0 < current["seconds_until_rotation"] <= 600
    assert current["bytes_until_rotation"] == body["max_file_bytes"] - current["bytes"]
    assert traces["recent"] == []

    response = stack.client.post("/api/v1/rotation", json={"signal": "traces"})
    assert response.status_code == 200
    completed = response.get_json()["completed"]
    assert list(completed) == ["traces"] and len(completed["traces"]) == 1
    path = Path(completed["traces"][0])
    assert path.exists() and path.suffix == ".arrow"

    traces = stack.client.get("/api/v1/rotation").get_json()["signals"]["traces"]
    assert traces["in_progress"] == []
    assert traces["recent"][0]["name"] == path.name
    assert traces["recent"][0]["rows"] == 30
    with_sources = path.stat().st_size + sources_path(path).stat().st_size  # a file counts its sources file
    assert traces["recent"][0]["bytes"] == with_sources
    assert traces["disk"]["completed_bytes"] == with_sources
    assert traces["files_rotated"] == 1
    assert traces["retention"]["max_age_seconds"] == 0


def test_rotation_of_every_signal(stack):
    stack.send("traces", trace_request(3))
    stack.send("logs", logs_request(4))
    stack.wait_written("traces", 3)
    stack.wait_written("logs", 4)
    completed = rotate(stack)
    assert set(completed) == {"traces", "metrics", "logs"}
    assert len(completed["traces"]) == 1 and len(completed["logs"]) == 1
    assert completed["metrics"] == []  # nothing in progress: no empty file is made


# -- mutating calls: JSON only, token, bad bodies ------------------------------------------

def files_rotated(stack) -> int:
    return stack.daemon.writers["traces"].status().get("files_rotated", 0)


@pytest.mark.parametrize("kwargs,status,fragment", [
    ({"data": "signal=traces", "content_type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    ({"data": "signal=traces", "content_type": "multipart/form-data; boundary=x"}, 415, "JSON"),
    ({"data": '{"signal": "traces"}', "content_type": "text/plain"}, 415, "JSON"),
    ({"data": '{"signal": "traces"', "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": '["traces"]', "content_type": "application/json"}, 400, "JSON object"),
    ({"json": {"signal": "spans"}}, 400, "signal"),
    ({"json": {"signal": "traces", "force": True}}, 400, "force"),
    ({"json": {"signal": 5}}, 400, "signal"),
    ({"data": "x" * 70_000, "content_type": "application/json"}, 413, "large"),
])
def test_bad_rotation_requests_change_nothing(stack, kwargs, status, fragment):
    stack.send("traces", trace_request(5))
    stack.wait_written("traces", 5)
    response = stack.client.post("/api/v1/rotation", **kwargs)
    assert response.status_code == status
    assert fragment.lower() in response.get_json()["error"].lower()
    assert files_rotated(stack) == 0
    assert not list((stack.output_dir / "traces").glob("*.arrow"))


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer"])
def test_a_mutating_call_without_the_token_is_401_and_changes_nothing(guarded, authorization):
    guarded.send("traces", trace_request(5))
    guarded.wait_written("traces", 5)
    headers = {"Authorization": authorization} if authorization else {}
    response = guarded.client.post("/api/v1/rotation", json={}, headers=headers)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert files_rotated(guarded) == 0


def test_the_token_allows_the_call_and_reads_stay_open(guarded):
    guarded.send("traces", trace_request(5))
    guarded.wait_written("traces", 5)
    for path in ("/api/v1/status", "/api/v1/rotation", "/", "/metrics", "/readyz"):
        assert guarded.client.get(path).status_code == 200, path
    response = guarded.client.post("/api/v1/rotation", json={"signal": "traces"},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert files_rotated(guarded) == 1


def test_the_token_never_appears_in_output(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    guarded.client.post("/api/v1/rotation", json={}, headers={"Authorization": "Bearer wrong"})
    guarded.client.post("/api/v1/rotation", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    bodies = [guarded.client.get(path).get_data(as_text=True)
              for path in ("/api/v1/status", "/api/v1/rotation", "/metrics", "/api/v1/openapi.json",
                           "/", "/files", "/api")]
    assert all(TOKEN not in body for body in bodies)
    assert TOKEN not in caplog.text
    assert TOKEN not in json.dumps(guarded.daemon.status.snapshot())


def test_a_foreign_host_header_is_refused_on_loopback(tmp_path):
    stack = Stack(tmp_path, allowed_hosts={"127.0.0.1", "localhost"})
    try:
        assert stack.client.get("/api/v1/status", headers={"Host": "127.0.0.1:8317"}).status_code == 200
        response = stack.client.get("/api/v1/status", headers={"Host": "evil.example:8317"})
        assert response.status_code == 400
        assert "Host" in response.get_json()["error"]
        response = stack.client.post("/api/v1/rotation", json={}, headers={"Host": "evil.example"})
        assert response.status_code == 400
    finally:
        stack.close()


# -- bad queries ---------------------------------------------------------------------------

@pytest.mark.parametrize("path,status,fragment", [
    ("/api/v1/spans?limit=1000000000", 400, "limit"),
    ("/api/v1/spans?limit=0", 400, "limit"),
    ("/api/v1/spans?limit=many", 400, "limit"),
    ("/api/v1/spans?colour=red", 400, "colour"),
    ("/api/v1/logs?severity_min=99", 400, "severity_min"),
    ("/api/v1/metrics/requests?since=yesterday", 400, "since"),
    ("/api/v1/rotation?limit=1000000000", 400, "limit"),
    ("/api/v1/history?seconds=-1", 400, "seconds"),
    ("/api/v1/traces/not-hex", 400, "trace_id"),
    ("/api/v1/traces/abc", 400, "trace_id"),
    ("/api/v1/traces/" + "00" * 16, 404, "no stored span"),
    ("/api/v1/metrics/no.such.metric", 404, "no stored metric"),
    ("/api/v1/nope", 404, "not found"),
])
def test_bad_queries_get_a_4xx_with_a_message(stack, path, status, fragment):
    response = stack.client.get(path)
    assert response.status_code == status
    assert fragment.lower() in response.get_json()["error"].lower()


def test_a_delete_may_come_without_a_body_but_not_without_the_token(tmp_path):
    blueprint = Blueprint("deleting", __name__)

    @blueprint.delete("/api/v1/thing")
    def delete_thing():
        return {"deleted": True}

    stack = Stack(tmp_path, admin_token=TOKEN, extensions=[Extension("deleting", blueprint=blueprint)])
    try:
        assert stack.client.delete("/api/v1/thing").status_code == 401
        response = stack.client.delete("/api/v1/thing", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200 and response.get_json() == {"deleted": True}
        with_form = stack.client.delete("/api/v1/thing", data="a=1", content_type="application/x-www-form-urlencoded",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert with_form.status_code == 415
    finally:
        stack.close()


def test_a_wrong_method_is_405_with_json(stack):
    response = stack.client.delete("/api/v1/status", json={})
    assert response.status_code == 405
    assert "error" in response.get_json()


# -- stored data ---------------------------------------------------------------------------

def test_data_routes_read_completed_files(stack):
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    stack.send("traces", trace_request(12, service="checkout"))
    stack.send("traces", trace_request(3, service="billing", first=100))
    stack.send("traces", family_tree(trace_id))
    stack.send("logs", logs_request(6))
    stack.send("metrics", metrics_request(5))
    stack.wait_written("traces", 19)
    stack.wait_written("logs", 6)
    stack.wait_written("metrics", 5)
    assert stack.client.get("/api/v1/spans").get_json()["spans"] == []  # completed files only
    rotate(stack)

    spans = stack.client.get("/api/v1/spans?service=checkout&limit=5").get_json()
    assert len(spans["spans"]) == 5
    assert {span["service"] for span in spans["spans"]} == {"checkout"}
    assert spans["scanned"]["files"] == 1
    named = stack.client.get("/api/v1/spans?name=SELECT").get_json()["spans"]
    assert [span["name"] for span in named] == ["SELECT cart"]
    assert set(stack.client.get("/api/v1/services").get_json()["services"]) == {"checkout", "billing", "shop"}

    trace = stack.client.get(f"/api/v1/traces/{trace_id.hex().upper()}").get_json()
    assert trace["trace_id"] == trace_id.hex()
    assert [(span["name"], span["depth"]) for span in trace["spans"]] == [
        ("GET /cart", 0), ("SELECT cart", 1), ("connect", 2), ("orphan", 0)]
    assert trace["duration_ms"] == pytest.approx(10.0)
    assert trace["spans"][1]["offset_ms"] == pytest.approx(1.0)

    logs = stack.client.get("/api/v1/logs?severity_min=9&limit=4").get_json()["logs"]
    assert len(logs) == 4 and all(log["severity_number"] == 9 for log in logs)
    assert logs[0]["body"].startswith("line ")
    assert stack.client.get("/api/v1/logs?severity_min=10").get_json()["logs"] == []

    metrics = stack.client.get("/api/v1/metrics").get_json()["metrics"]
    assert [(m["name"], m["type"], m["points"]) for m in metrics] == [("requests", "sum", 5)]
    points = stack.client.get("/api/v1/metrics/requests").get_json()
    assert [point["value"] for point in points["points"]] == [0, 1, 2, 3, 4]
    # the first point is at exactly 2023-11-14T22:13:20Z; `since` is exclusive
    later = stack.client.get("/api/v1/metrics/requests?since=2023-11-14T22:13:20Z").get_json()
    assert [point["value"] for point in later["points"]] == [1, 2, 3, 4]
    unix = stack.client.get("/api/v1/metrics/requests?since=1700000000").get_json()
    assert [point["value"] for point in unix["points"]] == [1, 2, 3, 4]


# -- probes and Prometheus -----------------------------------------------------------------

def test_healthz_and_readyz(stack):
    assert stack.client.get("/healthz").get_json() == {"status": "alive"}
    assert stack.client.get("/readyz").status_code == 200
    stack.daemon.stop()
    response = stack.client.get("/readyz")
    assert response.status_code == 503
    reasons = response.get_json()["reasons"]
    assert reasons[0] == "the OTLP receiver is not serving"
    assert "traces writer is not running" in reasons


def test_health_from_a_snapshot_with_a_failed_writer_and_a_full_buffer():
    snapshot = {"signals": {
        "traces": {"writer": {"last_error": "write failed: [Errno 28] No space left on device", "running": True}},
        "logs": {"receiver": {"rejected_buffer_full_requests": 3}, "writer": {"running": True}},
        "metrics": {"receiver": {"rejected_invalid_requests": 2}, "writer": {"running": False}},
    }}
    result = health(summarize(snapshot), {"logs": {"buffer_full": 3}, "metrics": {"invalid": 2}}, serving=True)
    assert result["status"] == "degraded" and not result["ready"]
    assert "traces writer: write failed: [Errno 28] No space left on device" in result["reasons"]
    assert "metrics writer is not running" in result["reasons"]
    assert any(reason.startswith("logs: requests refused") and "buffer full" in reason
               for reason in result["unready_reasons"])
    # invalid requests are the client's fault: degraded, still ready for others
    assert not any(reason.startswith("metrics: requests refused") for reason in result["unready_reasons"])
    assert any(reason.startswith("metrics: requests refused") for reason in result["reasons"])


def test_prometheus_metrics_equal_the_status_snapshot(stack):
    from prometheus_client.parser import text_string_to_metric_families

    stack.send("traces", trace_request(20))
    stack.send("logs", logs_request(7))
    stack.wait_written("traces", 20)
    stack.wait_written("logs", 7)
    rotate(stack)
    stack.send("traces", trace_request(4))
    stack.wait_written("traces", 24)
    response = stack.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    summary = stack.client.get("/api/v1/status").get_json()["summary"]
    for signal in ("traces", "metrics", "logs"):
        label = (("signal", signal),)
        assert samples[("otlpd_received_items_total", label)] == summary[signal]["received_items"]
        assert samples[("otlpd_written_items_total", label)] == summary[signal]["written_items"]
        assert samples[("otlpd_buffer_bytes", label)] == summary[signal]["buffer_bytes"]
        assert samples[("otlpd_buffer_max_items", label)] == summary[signal]["buffer_max_items"]
        assert samples[("otlpd_files_rotated_total", label)] == summary[signal]["files_rotated"]
        assert samples[("otlpd_files_deleted_total", label)] == summary[signal]["files_deleted"]
    assert samples[("otlpd_received_items_total", (("signal", "traces"),))] == 24
    completed = sum(path.stat().st_size + sources_path(path).stat().st_size
                    for path in (stack.output_dir / "traces").glob("*.arrow"))
    assert samples[("otlpd_disk_bytes", (("signal", "traces"), ("state", "completed")))] == completed
    assert samples[("otlpd_disk_bytes", (("signal", "traces"), ("state", "in_progress")))] > 0
    assert samples[("otlpd_ready", ())] == 1


def test_prometheus_counts_rejections_by_reason(stack):
    import grpc
    from prometheus_client.parser import text_string_to_metric_families

    from otlp_client import export

    with pytest.raises(grpc.RpcError):
        export(stack.channel, "traces", b"\xff\xff\xff")
    text = stack.client.get("/metrics").get_data(as_text=True)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert values[("otlpd_rejected_requests_total", (("reason", "invalid"), ("signal", "traces")))] == 1


# -- the OpenAPI document and the extension slots ------------------------------------------

def test_the_openapi_document_is_valid_and_lists_every_route(stack):
    document = stack.client.get("/api/v1/openapi.json").get_json()
    validate(document)
    paths = document["paths"]
    for path in ("/api/v1/status", "/api/v1/rotation", "/api/v1/spans", "/api/v1/traces/{trace_id}",
                 "/api/v1/logs", "/api/v1/metrics", "/api/v1/metrics/{name}", "/healthz", "/readyz", "/metrics"):
        assert path in paths, path
    assert "post" in paths["/api/v1/rotation"]
    # without a token the document does not claim one is needed; with one, it does
    assert "401" not in paths["/api/v1/rotation"]["post"]["responses"]
    assert "security" not in paths["/api/v1/rotation"]["post"]
    limit = next(p for p in paths["/api/v1/spans"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000
    page = stack.client.get("/api")
    assert page.status_code == 200 and b"/api/v1/spans" in page.data


def test_with_a_token_the_document_requires_it_for_changes(guarded):
    document = guarded.client.get("/api/v1/openapi.json").get_json()
    validate(document)
    rotate_operation = document["paths"]["/api/v1/rotation"]["post"]
    assert rotate_operation["security"] == [{"bearer": []}]
    assert "401" in rotate_operation["responses"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/api/v1/spans"]["get"]


def test_an_extension_adds_its_page_route_and_nav_entry(tmp_path):
    blueprint = Blueprint("forwarding", __name__)

    @blueprint.get("/forwarding")
    def forwarding_page():
        return "forwarding page"

    stack = Stack(tmp_path, extensions=[Extension("forwarding", blueprint=blueprint,
                                                  nav=[("Forwarding", "forwarding.forwarding_page")])])
    try:
        assert stack.client.get("/forwarding").get_data(as_text=True) == "forwarding page"
        overview = stack.client.get("/").get_data(as_text=True)
        assert 'href="/forwarding"' in overview and "Forwarding" in overview
    finally:
        stack.close()


def test_a_full_buffer_makes_the_overview_degraded_and_readyz_503(tmp_path):
    import grpc

    from otlp_client import export

    stack = Stack(tmp_path, **{"buffer.max_items": "100", "writer.write_interval": "30s",
                               "writer.flush_rows": "1000"})
    try:
        history = stack.app.extensions["otlpd"].history
        history.sample()
        stack.send("traces", trace_request(60))
        with pytest.raises(grpc.RpcError) as refused:
            export(stack.channel, "traces", trace_request(60).SerializeToString())
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        history.sample()
        status = stack.client.get("/api/v1/status").get_json()
        assert status["health"]["status"] == "degraded"
        assert status["summary"]["traces"]["rejected_items"] == {"buffer_full": 60}
        assert status["summary"]["traces"]["received_items"] == 120
        response = stack.client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["reasons"] == ["traces: requests refused in the last seconds (1 buffer full)"]
    finally:
        stack.close()
