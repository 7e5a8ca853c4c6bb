"""The Forwarding page and the overview's panel in Chromium (Playwright), against a daemon
subprocess forwarding to a second one that is stopped and started again."""
from __future__ import annotations

import socket

import grpc
import pytest

from daemon_process import DaemonProcess
from forward_helpers import PASSTHROUGH, forwarding_flags
from otlp_client import export, trace_request
import test_web_browser
from test_web_browser import VIEWPORT, Tab

pytestmark = [pytest.mark.slow, pytest.mark.browser]

browser = test_web_browser.browser  # Chromium through Playwright, as the dashboard's browser tests have it


@pytest.fixture
def tab(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield lambda url: Tab(context.new_page(), url)
    finally:
        context.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_forwarding_page_follows_an_outage(tab, tmp_path):
    port = free_port()
    remote_args = (*PASSTHROUGH, "--grpc-endpoint", f"127.0.0.1:{port}")
    with DaemonProcess(tmp_path / "remote", *remote_args) as remote, \
            DaemonProcess(tmp_path / "local", *forwarding_flags(f"127.0.0.1:{port}")) as local:
        with grpc.insecure_channel(local.endpoint) as channel:
            export(channel, "traces", trace_request(50).SerializeToString())
        page_tab = tab(local.dashboard_url.rstrip("/"))
        page = page_tab.page
        page_tab.goto("/forwarding")
        page.wait_for_function("() => document.getElementById('fw-traces-sent').textContent === '50'")
        assert page.locator("#fw-state").text_content() == "forwarding"
        assert page.locator("#fw-breaker").text_content() == "closed"
        assert page.locator("#fw-endpoint").text_content() == f"127.0.0.1:{port}"
        assert page.locator("nav a[aria-current='page']").text_content() == "Forwarding"

        remote.stop()
        with grpc.insecure_channel(local.endpoint) as channel:
            export(channel, "traces", trace_request(30, first=50).SerializeToString())
        page.wait_for_function("() => document.getElementById('fw-breaker').textContent === 'open'")
        page.wait_for_function("() => document.getElementById('fw-traces-backlog').textContent === '30'")
        assert page.locator("#fw-transitions tbody tr").count() >= 1
        assert "UNAVAILABLE" in page.locator("#fw-errors").text_content()
        assert page.locator("#fw-state").text_content() == "waiting for the remote"

        overview = tab(local.dashboard_url.rstrip("/"))
        overview.goto("/")
        overview.page.wait_for_function(
            "() => document.getElementById('fw-traces-backlog-short').textContent.startsWith('30 records')")
        assert overview.page.locator("#fw-panel").is_visible()  # hidden while forwarding is off

        with DaemonProcess(tmp_path / "remote", *remote_args):
            page.wait_for_function("() => document.getElementById('fw-traces-sent').textContent === '80'",
                                   timeout=30_000)
            page.wait_for_function("() => document.getElementById('fw-breaker').textContent === 'closed'")
        page_tab.assert_clean()
        overview.assert_clean()
