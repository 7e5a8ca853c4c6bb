"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a daemon
subprocess fed by the OpenTelemetry SDK.

Each test fails (never skips) when /usr/bin/chromium is missing: CI installs it with
``apt-get install chromium``. On a failure the test saves a screenshot of the page in its
tmp_path (``failure.png``). The overview test also refreshes ``docs/dashboard-overview.png``.
"""
from __future__ import annotations

import functools
import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from daemon_process import DaemonProcess

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "dashboard-overview.png"
TOKEN = "browser-test-token"
SERVICE = "browser-shop"
XSS_PARENT = "<script>alert(1)</script>"
XSS_CHILD = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 15_000

# Records CSP violations the browser reports (they are console errors too; this is the
# structured record). Playwright injects it outside the page's CSP.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


# -- the daemon and what the SDK sends it ------------------------------------------------------

class Telemetry:
    """The SDK's three providers exporting to the daemon (insecure gRPC), one service."""

    def __init__(self, endpoint: str):
        resource = Resource.create({"service.name": SERVICE})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=100))
        self.tracer = self.tracer_provider.get_tracer("browser.test")
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=100))
        self.logger = self.logger_provider.get_logger("browser.test")
        self.reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                                    export_interval_millis=500)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.orders = self.meter_provider.get_meter("browser.test").create_counter("shop.orders", unit="1")

    def spans(self, name: str, count: int = 1) -> None:
        for _ in range(count):
            with self.tracer.start_as_current_span(name):
                pass

    def trace(self, parent: str, child: str) -> str:
        """A parent span with one child (and a grandchild); the trace id in hex."""
        with self.tracer.start_as_current_span(parent) as root:
            with self.tracer.start_as_current_span(child):
                time.sleep(0.004)
                with self.tracer.start_as_current_span(child + " / query") as leaf:
                    leaf.set_status(Status(StatusCode.ERROR, "timeout"))
                    time.sleep(0.002)
            time.sleep(0.002)
        return format(root.get_span_context().trace_id, "032x")

    def log(self, body: str, severity: SeverityNumber = SeverityNumber.WARN) -> None:
        self.logger.emit(LogRecord(body=body, severity_number=severity, severity_text=severity.name,
                                   timestamp=time.time_ns()))

    def flush(self) -> None:
        assert self.tracer_provider.force_flush(10_000)
        assert self.logger_provider.force_flush(10_000)
        assert self.meter_provider.force_flush(10_000)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


class Stream:
    """Sends spans, log records and counter points in a thread until stopped (live charts)."""

    def __init__(self, telemetry: Telemetry):
        self.telemetry = telemetry
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.telemetry.spans("GET /cart", 25 + 10 * (i % 4))
            if i % 2 == 0:
                self.telemetry.log(f"order {i} placed", SeverityNumber.INFO)
            self.telemetry.orders.add(1 + i % 3, {"region": "eu" if i % 2 else "us"})
            self.sent += 25 + 10 * (i % 4)
            i += 1
            self._stop.wait(0.15)

    def __enter__(self) -> "Stream":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.telemetry.flush()


class Dashboard:
    """The daemon under test, its REST API and the SDK sending to it."""

    def __init__(self, daemon: DaemonProcess, telemetry: Telemetry):
        self.daemon = daemon
        self.telemetry = telemetry
        self.url = daemon.dashboard_url.rstrip("/")
        self.output_dir = daemon.output_dir

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def rotate(self, signal: str | None = None) -> dict:
        request = urllib.request.Request(
            self.url + "/api/v1/rotation", method="POST",
            data=json.dumps({"signal": signal} if signal else {}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_accepted(self, signal: str, at_least: int, timeout: float = 10.0) -> None:
        """Until the daemon has accepted at_least rows of signal (so a rotation holds them)."""
        self.daemon.wait_for(lambda: self.get("/api/v1/status")["summary"][signal]["accepted_items"] >= at_least,
                             timeout=timeout, interval=0.05)

    def accepted(self, signal: str) -> int:
        return self.get("/api/v1/status")["summary"][signal]["accepted_items"]

    def send_and_store(self, send) -> object:
        """Run send(telemetry), flush, wait until accepted, rotate every signal: the rows are
        in completed files that the data API reads."""
        before = self.accepted("traces")
        result = send(self.telemetry)
        self.telemetry.flush()  # the SDK's exports are synchronous: the daemon acknowledged them
        self.wait_accepted("traces", before + 1)
        self.rotate()
        return result


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    output = tmp_path_factory.mktemp("web-browser") / "data"
    with DaemonProcess(output, "--dashboard.admin-token", TOKEN, "--writer.write-interval", "0.25") as daemon:
        assert daemon.dashboard_url, "no dashboard URL in the start-up line:\n" + daemon.stderr
        telemetry = Telemetry(f"http://{daemon.endpoint}")
        try:
            yield Dashboard(daemon, telemetry)
        finally:
            telemetry.shutdown()
        assert daemon.stop() == 0, daemon.stderr


# -- the browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`); "
                    "these tests drive it through Playwright and never download a browser", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A page at 1280x800 that records console errors, page errors, CSP violations and dialogs."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.add_init_script(CSP_PROBE)
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console: {message.text} ({message.location.get('url', '')})"))
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def goto(self, path: str):
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
        return response

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("() => window.__cspViolations || []")

    def assert_clean(self) -> None:
        violations = self.csp_violations()
        assert not violations, f"CSP violations: {violations}"
        assert not self.errors, "errors in the page:\n" + "\n".join(self.errors)
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"


@pytest.fixture
def tab(browser, dashboard):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield Tab(context.new_page(), dashboard.url)
    finally:
        context.close()


def screenshot_on_failure(test):
    """Save failure.png (the tab's page) in the test's tmp_path when the test fails."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except BaseException:
            tab, tmp_path = kwargs.get("tab"), kwargs.get("tmp_path")
            if tab is not None and tmp_path is not None:
                try:
                    tab.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                    print(f"screenshot of the failing page: {tmp_path / 'failure.png'}")
                except Exception as error:  # noqa: BLE001 - the test's own failure matters more
                    print(f"no failure screenshot: {error}")
            raise
    return wrapper


def number(text: str) -> int:
    digits = re.sub(r"[^0-9]", "", text)
    assert digits, f"not a number: {text!r}"
    return int(digits)


# -- the tests -----------------------------------------------------------------------------------

@screenshot_on_failure
def test_overview_counts_and_chart_move_while_data_arrives(tab, dashboard, tmp_path):
    page = tab.page
    tab.goto("/")
    received = page.locator("#traces-received")
    page.wait_for_function("() => document.getElementById('traces-received').textContent.trim() !== '—'")
    before = number(received.text_content())
    page.wait_for_function("() => window.otlpdCharts && window.otlpdCharts.overview")
    assert page.locator("#rate-chart canvas").count() == 1
    assert page.locator("#rate-chart canvas").is_visible()
    points_before = page.evaluate("() => window.otlpdCharts.overview.data[0].length")
    assert page.locator("#health").get_attribute("data-status") == "healthy"
    assert "Healthy" in page.locator("#health-status").text_content()

    with Stream(dashboard.telemetry) as stream:
        page.wait_for_function(
            "n => Number(document.getElementById('traces-received').textContent.replace(/[^0-9]/g, '')) > n",
            arg=before)
        page.wait_for_function("n => window.otlpdCharts.overview.data[0].length > n", arg=points_before)
        # The chart shows the spans per second (series 1: traces received) and the writer
        # writing them (series 2); enough seconds of it for the picture in the docs.
        page.wait_for_function("""() => {
            const data = window.otlpdCharts.overview.data;
            return data[0].length >= 12 && Math.max(...data[1].slice(-8)) > 0 && Math.max(...data[2].slice(-8)) > 0;
        }""", timeout=25_000)
        page.wait_for_function(
            "() => Number(document.getElementById('traces-written').textContent.replace(/[^0-9]/g, '')) > 0")
        assert number(received.text_content()) > before
        assert page.locator("#traces-received-rate").text_content() not in ("—", "0/s")
        assert page.locator("#traces-buffer-items").evaluate("meter => meter.max") > 1  # the buffer's bound
        assert page.locator("#decoder dt").count() >= 1
        page.wait_for_timeout(500)  # the legend and axes settle after the last setData
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    assert stream.sent > 0
    tab.assert_clean()


@screenshot_on_failure
def test_rotate_now_completes_a_file(tab, dashboard, tmp_path):
    page = tab.page
    traces_dir = dashboard.output_dir / "traces"
    on_disk_before = {path.name for path in traces_dir.glob("*.arrow")}
    accepted = dashboard.accepted("traces")
    dashboard.telemetry.spans("rotation probe", 5)
    dashboard.telemetry.flush()
    dashboard.wait_accepted("traces", accepted + 5)

    tab.goto("/files")
    in_progress = page.locator("#traces-in-progress .file-name")
    in_progress.first.wait_for()
    assert in_progress.first.text_content().startswith("traces-")

    # Without the admin token the API refuses; the page says why.
    page.get_by_role("button", name="Rotate traces now").click()
    message = page.locator("#rotate-message")
    page.wait_for_function("() => document.getElementById('rotate-message').className.includes('message-error')")
    assert "Rotation failed" in message.text_content()
    assert "Authorization: Bearer" in message.text_content()
    assert {path.name for path in traces_dir.glob("*.arrow")} == on_disk_before

    page.fill("#admin-token", TOKEN)
    page.get_by_role("button", name="Remember for this tab").click()
    assert page.evaluate("() => sessionStorage.getItem('otlpd.admin_token')") == TOKEN
    page.get_by_role("button", name="Rotate traces now").click()
    page.wait_for_function("() => document.getElementById('rotate-message').className.includes('message-ok')")
    text = message.text_content()
    completed = re.findall(r"traces-[0-9TZ]+-[0-9]+\.arrow", text)
    assert len(completed) == 1, text
    name = completed[0]
    assert name not in on_disk_before
    assert (traces_dir / name).is_file()
    assert name in {path.name for path in traces_dir.glob("*.arrow")}
    # The page refreshes after the rotation: the file is listed among the completed ones.
    recent = page.locator("#traces-recent .file-name", has_text=name)
    recent.wait_for()
    assert recent.get_attribute("title").endswith(name)
    # A 401 response is a console error in Chromium ("Failed to load resource"): the
    # refusal above was expected, anything else is not.
    unexpected = [error for error in tab.errors if "401" not in error]
    assert not unexpected, unexpected
    assert not tab.csp_violations()


@screenshot_on_failure
def test_data_page_lists_a_sent_span(tab, dashboard, tmp_path):
    page = tab.page
    span_name = f"browse catalogue {time.time_ns()}"
    dashboard.send_and_store(lambda telemetry: telemetry.spans(span_name, 2))

    tab.goto("/data")
    row = page.locator("#spans tr", has_text=span_name)
    row.first.wait_for()
    assert row.count() == 2
    assert row.first.locator("td").nth(1).text_content() == SERVICE
    link = row.first.locator("td.span-name a")
    trace_id = row.first.get_attribute("data-trace-id")
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert link.get_attribute("href").endswith("/traces/" + trace_id)
    assert "completed files" in page.locator(".note").text_content()
    assert re.search(r"Read \d+ completed files?, [\d,]+ rows?", page.locator("#spans-scanned").text_content())

    # The service select is filled from /api/v1/services; the name filter narrows the list.
    page.locator(f"#span-service option[value='{SERVICE}']").wait_for(state="attached")
    page.select_option("#span-service", SERVICE)
    page.fill("#span-name", span_name.upper())
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function("n => [...document.querySelectorAll('#spans tr')].every(r => r.textContent.includes(n))",
                           arg=span_name)
    assert page.locator("#spans tr").count() == 2
    assert f"name={span_name.upper().replace(' ', '+')}" in page.url
    tab.assert_clean()


@screenshot_on_failure
def test_trace_view_shows_the_spans_as_a_waterfall(tab, dashboard, tmp_path):
    page = tab.page
    trace_id = dashboard.send_and_store(lambda telemetry: telemetry.trace("checkout", "charge card"))

    tab.goto(f"/traces/{trace_id}")
    rows = page.locator("#waterfall .wf-row:not(.wf-header)")
    rows.first.wait_for()
    assert rows.count() == 3
    names = [rows.nth(i).locator(".wf-label").text_content() for i in range(3)]
    assert names == ["checkout", "charge card", "charge card / query"]
    depths = [int(rows.nth(i).get_attribute("data-depth")) for i in range(3)]
    assert depths == [0, 1, 2]
    lefts = [rows.nth(i).locator(".wf-label").bounding_box()["x"] for i in range(3)]
    assert lefts[0] < lefts[1] < lefts[2], lefts  # each child indented deeper than its parent
    bars = [rows.nth(i).locator(".wf-bar").bounding_box() for i in range(3)]
    assert bars[1]["width"] < bars[0]["width"]  # sized by duration relative to the trace
    assert bars[1]["x"] >= bars[0]["x"]  # and placed by offset
    assert "error" in rows.nth(2).locator(".badge").text_content()
    assert page.locator("#trace-spans").text_content() == "3"
    tab.assert_clean()

    # A trace id nothing stored has: the page says so.
    tab.goto("/traces/" + "ab" * 16)
    page.locator("#trace-message", has_text="Trace not found").wait_for()
    assert rows.count() == 0


@screenshot_on_failure
def test_span_names_with_markup_are_shown_as_text(tab, dashboard, tmp_path):
    page = tab.page
    trace_id = dashboard.send_and_store(lambda telemetry: telemetry.trace(XSS_PARENT, XSS_CHILD))

    tab.goto("/data")
    page.locator("#spans td.span-name a", has_text=XSS_PARENT).first.wait_for()
    page.locator("#spans td.span-name a", has_text=XSS_CHILD).first.wait_for()
    assert page.locator("#spans img").count() == 0
    assert page.locator("#spans script").count() == 0

    tab.goto(f"/traces/{trace_id}")
    labels = page.locator("#waterfall .wf-label")
    labels.first.wait_for()
    assert labels.all_text_contents() == [XSS_PARENT, XSS_CHILD, XSS_CHILD + " / query"]
    assert page.locator("#waterfall img, #waterfall script").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert not tab.dialogs, tab.dialogs
    tab.assert_clean()


@screenshot_on_failure
def test_temporality_page_shows_and_changes_the_setting(tab, dashboard, tmp_path):
    page = tab.page
    tab.goto("/temporality")
    page.wait_for_function("() => document.getElementById('t-current').textContent === 'cumulative'")
    assert page.locator("#t-source").text_content() == "the configuration"
    assert page.locator("input[value=cumulative]").is_checked()
    page.check("input[value=delta]")
    page.fill("#admin-token", TOKEN)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function("() => document.getElementById('temporality-message').className.includes('message-ok')")
    assert "stored as delta" in page.locator("#temporality-message").text_content()
    assert page.locator("#t-current").text_content() == "delta"
    assert dashboard.get("/api/v1/temporality")["source"] == "api"
    page.get_by_role("button", name="Back to the configured value").click()
    page.wait_for_function("() => document.getElementById('t-current').textContent === 'cumulative'")
    assert dashboard.get("/api/v1/temporality")["source"] == "config"
    tab.assert_clean()


def test_every_page_loads_without_errors_or_csp_violations(tab, dashboard, tmp_path):
    page = tab.page
    trace_id = dashboard.send_and_store(lambda telemetry: (
        telemetry.log("payment <b>declined</b>", SeverityNumber.ERROR),
        telemetry.orders.add(3, {"region": "eu"}),
        telemetry.trace("GET /account", "load profile"))[-1])
    pages = {
        "/": "#rate-chart canvas",
        "/files": "#traces-recent .file-name",
        "/data": "#metric-chart canvas",
        f"/traces/{trace_id}": "#waterfall .wf-bar",
        "/api": "article.operation",
        "/temporality": "#t-current",
    }
    for path, ready in pages.items():
        response = tab.goto(path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.locator(ready).first.wait_for()
        if path != "/api":  # the pages with a script say when they last read the API
            page.wait_for_function("() => document.getElementById('live').textContent.startsWith('updated')")
        page.wait_for_timeout(400)
        tab.assert_clean()
        assert page.locator("nav a[aria-current='page']").count() == 1

    # The data page drew the log record and the metric read from the completed files.
    tab.goto("/data")
    page.locator("#logs td.log-body", has_text="payment <b>declined</b>").wait_for()
    page.wait_for_function("() => window.otlpdCharts.metric && window.otlpdCharts.metric.data[0].length > 0")
    assert page.locator("#metric-name option", has_text="shop.orders").count() == 1
    # The API page documents every route of the OpenAPI document.
    tab.goto("/api")
    document = dashboard.get("/api/v1/openapi.json")
    operations = sum(1 for item in document["paths"].values() for method in item
                     if method in ("get", "post", "put", "delete"))
    assert page.locator("article.operation").count() == operations
    assert page.locator("a[href$='/api/v1/openapi.json']").count() >= 1
    tab.assert_clean()

    # The probe does see a violation: an inline style attribute is refused and recorded.
    page.evaluate("() => document.body.insertAdjacentHTML('beforeend', '<div style=\"color: red\">x</div>')")
    page.wait_for_function("() => window.__cspViolations.length > 0")
