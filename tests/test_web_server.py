"""The dashboard inside a real otlpd process: served by waitress, its settings, start-up errors."""
import json
import socket
import urllib.error
import urllib.request

import grpc
import pytest

from daemon_process import DaemonProcess, assert_one_line_error, run_otlpd
from otlp_client import export, trace_request

pytestmark = pytest.mark.slow

TOKEN = "file-token-0123456789"


def get(url: str, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post(url: str, body: dict, token: str | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_daemon_serves_its_dashboard_and_names_it_at_start(tmp_path):
    with DaemonProcess(tmp_path / "data") as daemon:
        assert daemon.dashboard_url and daemon.dashboard_url.startswith("http://127.0.0.1:")
        status, headers, body = get(daemon.dashboard_url)
        assert status == 200 and b"otlpd" in body
        assert headers["Server"] == "otlpd"  # waitress, with otlpd's ident
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "traces", trace_request(10).SerializeToString())
        daemon.wait_for(lambda: json.loads(get(daemon.dashboard_url + "api/v1/status")[2])
                        ["summary"]["traces"]["written_items"] == 10)
        status, completed = post(daemon.dashboard_url + "api/v1/rotation", {"signal": "traces"})
        assert status == 200 and len(completed["completed"]["traces"]) == 1
        assert get(daemon.dashboard_url + "readyz")[0] == 200
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_dashboard_disabled(tmp_path):
    with DaemonProcess(tmp_path / "data", "--dashboard.enabled", "false") as daemon:
        assert daemon.dashboard_url is None
        assert "dashboard disabled" in daemon.stderr
        assert daemon.stop() == 0


def test_a_dashboard_port_in_use_stops_start_up_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_otlpd("--grpc-endpoint", "127.0.0.1:0", "--output-dir", str(tmp_path / "d"),
                           "--dashboard.endpoint", f"127.0.0.1:{port}")
    assert_one_line_error(result, f"dashboard.endpoint: cannot listen on 127.0.0.1:{port}")


def test_a_public_dashboard_needs_a_token(tmp_path):
    result = run_otlpd("--grpc-endpoint", "127.0.0.1:0", "--output-dir", str(tmp_path / "d"),
                       "--dashboard.endpoint", "0.0.0.0:0")
    line = assert_one_line_error(result, "dashboard.endpoint: 0.0.0.0:0 is reachable from other hosts")
    assert "dashboard.admin_token" in line
    result = run_otlpd("--dashboard.admin-token-file", str(tmp_path / "missing"))
    assert_one_line_error(result, "dashboard.admin_token_file: cannot read")


def test_a_token_from_a_file_guards_changes_and_is_never_printed(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with DaemonProcess(tmp_path / "data", "--dashboard.endpoint", "0.0.0.0:0",
                       "--dashboard.admin-token-file", str(token_file), "--log-level", "debug") as daemon:
        url = daemon.dashboard_url
        assert url.startswith("http://127.0.0.1:")  # a wildcard address is shown as loopback
        with grpc.insecure_channel(daemon.endpoint) as channel:
            export(channel, "traces", trace_request(3).SerializeToString())
        daemon.wait_for(lambda: json.loads(get(url + "api/v1/status")[2])["summary"]["traces"]["written_items"] == 3)
        assert post(url + "api/v1/rotation", {})[0] == 401
        assert not list((tmp_path / "data" / "traces").glob("*.arrow"))
        assert post(url + "api/v1/rotation", {}, token="wrong")[0] == 401
        status, body = post(url + "api/v1/rotation", {}, token=TOKEN)
        assert status == 200 and len(body["completed"]["traces"]) == 1
        outputs = [get(url + path)[2].decode() for path in ("api/v1/status", "metrics", "")]
        assert daemon.stop() == 0
    assert all(TOKEN not in output for output in outputs)
    assert TOKEN not in daemon.stderr
    assert TOKEN not in run_otlpd("--help").stdout


def test_with_two_workers_the_supervisor_serves_the_merged_status(tmp_path):
    with DaemonProcess(tmp_path / "data", "--receiver.workers", "2") as daemon:
        url = daemon.dashboard_url
        for i in range(20):
            with grpc.insecure_channel(daemon.endpoint) as channel:  # new connections spread over workers
                export(channel, "traces", trace_request(5, first=i * 5).SerializeToString())
        daemon.wait_for(lambda: json.loads(get(url + "api/v1/status")[2])["summary"]["traces"]["written_items"] == 100)
        status = json.loads(get(url + "api/v1/status")[2])
        assert status["daemon"]["workers"] == 2 and set(status["workers"]) == {"w1", "w2"}
        rotation = json.loads(get(url + "api/v1/rotation")[2])["signals"]["traces"]
        assert sum(item["rows"] for item in rotation["in_progress"]) == 100
        code, body = post(url + "api/v1/rotation", {"signal": "traces"})
        assert code == 200
        assert sorted(p.rsplit("/", 1)[1] for p in body["completed"]["traces"]) == \
            sorted(p.name for p in (tmp_path / "data" / "traces").glob("*.arrow"))
        # the first worker converts every worker's metrics and answers for them
        code, _, answer = get(url + "api/v1/temporality")
        assert code == 200 and json.loads(answer)["temporality"] == "cumulative"
        assert daemon.stop() == 0
