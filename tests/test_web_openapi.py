"""schemathesis against the running dashboard's own OpenAPI document: generated requests to
every operation get no 5xx, and every response matches the document."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from otlp_client import logs_request, metrics_request, trace_request
from otlpd.web.server import DashboardServer
from web_stack import Stack

pytestmark = pytest.mark.slow


TOKEN = "openapi-test-token"


def serve(tmp_path_factory, admin_token: str = ""):
    """A real daemon with stored data in every signal, its dashboard served by waitress."""
    stack = Stack(tmp_path_factory.mktemp("openapi"), admin_token=admin_token)
    stack.send("traces", trace_request(50))
    stack.send("logs", logs_request(20))
    stack.send("metrics", metrics_request(20))
    for signal, rows in (("traces", 50), ("logs", 20), ("metrics", 20)):
        stack.wait_written(signal, rows)
    stack.client.post("/api/v1/rotation", json={})
    stack.send("traces", trace_request(5, first=50))  # and a file in progress
    server = DashboardServer(stack.app, "127.0.0.1:0", threads=4)
    stack.source.dashboard_url = server.url
    server.start()
    return stack, server


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    stack, server = serve(tmp_path_factory)
    yield schemathesis.openapi.from_url(server.url + "api/v1/openapi.json")
    server.stop()
    stack.close()


@pytest.fixture(scope="module")
def guarded_api_schema(tmp_path_factory):
    """The same with an admin token: the document says which calls need it, and they do."""
    stack, server = serve(tmp_path_factory, admin_token=TOKEN)
    yield schemathesis.openapi.from_url(server.url + "api/v1/openapi.json")
    server.stop()
    stack.close()


schema = schemathesis.pytest.from_fixture("api_schema")
guarded_schema = schemathesis.pytest.from_fixture("guarded_api_schema")
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@EXAMPLES
def test_every_operation_conforms_to_the_document(case):
    case.call_and_validate()


@guarded_schema.parametrize()
@EXAMPLES
def test_with_a_token_every_operation_conforms_to_the_document(case):
    case.call_and_validate()
