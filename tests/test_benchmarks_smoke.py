"""Smoke test of benchmarks/: the load generator, the end-to-end comparison and the micro
benchmarks run and report sensible figures. Timings are never asserted."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks/ is a package at the repository root, not installed

from benchmarks.loadgen import run_load  # noqa: E402
from benchmarks.null_server import SERVICES, start_null_server  # noqa: E402

ROTEL_INSTALLED = importlib.util.find_spec("rotel") is not None


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def null_server():
    server, port = start_null_server("127.0.0.1:0", threads=4)
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def unavailable_server():
    """Answers every Export with UNAVAILABLE, like a full otlpd."""
    def export(request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, "buffer full")

    handler = grpc.unary_unary_rpc_method_handler(export, request_deserializer=None,
                                                  response_serializer=None)
    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[
        grpc.method_handlers_generic_handler(SERVICES["traces"], {"Export": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_loadgen_saturates_the_null_server(null_server):
    result = run_load(null_server, signal="logs", items_per_request=50, duration=1.0,
                      processes=1, channels_per_process=2, concurrency=2)
    assert result["errors"] == {} and result["warmup_ok"] == 2
    assert result["requests_ok"] > 10
    assert result["items_ok"] == result["requests_ok"] * 50
    assert 0.9 < result["elapsed_s"] < 10
    assert result["items_per_s"] == pytest.approx(result["requests_per_s"] * 50)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_loadgen_cli_holds_a_fixed_rate(null_server):
    done = _run("-m", "benchmarks.loadgen", "--endpoint", null_server, "--signal", "metrics",
                "--items-per-request", "20", "--duration", "1", "--rate", "40",
                "--processes", "1", "--channels-per-process", "1", "--concurrency", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert 36 <= result["requests_ok"] <= 40
    assert result["errors"] == {}
    assert result["p50_ms"] > 0


def test_loadgen_counts_unavailable_as_errors(unavailable_server):
    result = run_load(unavailable_server, signal="traces", items_per_request=10, duration=0.5,
                      processes=1, channels_per_process=1, concurrency=1)
    assert result["requests_ok"] == 0 and result["p50_ms"] is None
    assert result["warmup_errors"] == {"UNAVAILABLE": 1}
    assert set(result["errors"]) == {"UNAVAILABLE"} and result["errors"]["UNAVAILABLE"] > 0


@pytest.fixture(scope="module")
def run_all_quick(tmp_path_factory):
    """``run_all --quick`` on the 100-span traces scenario, with rotel if it is installed."""
    report = tmp_path_factory.mktemp("run_all") / "results.json"
    targets = "null,otlpd,rotel" if ROTEL_INSTALLED else "null,otlpd"
    done = _run("-m", "benchmarks.run_all", "--quick", "--scenarios", "traces-100",
                "--targets", targets, "--processes", "1", "--channels", "2", "--concurrency", "2",
                "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["target"]: row for row in json.loads(report.read_text())["rows"]}
    return done.stdout, rows


@pytest.mark.slow
def test_run_all_quick_measures_null_and_otlpd(run_all_quick):
    stdout, rows = run_all_quick
    assert "otlpd/null" in stdout and "cpu_model" in stdout
    for target in ("null", "otlpd"):
        row = rows[target]
        assert row["throughput"] > 0 and row["errors"] == {}
        assert row["cpu_s"] > 0 and row["items_per_cpu_s"] > 0 and row["peak_rss_mib"] > 10
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    otlpd = rows["otlpd"]
    assert otlpd["stored_ok"] and otlpd["exit_code"] == 0
    assert otlpd["stored_items"] == otlpd["accepted_items"] > 0
    assert otlpd["vs_null"] > 0
    latency = rows["otlpd@half"]
    assert latency["rate"] == pytest.approx(otlpd["requests_per_s"] / 2)
    assert latency["requests_ok"] > 0 and latency["p50_ms"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not ROTEL_INSTALLED, reason="the rotel package is not installed")
def test_run_all_quick_measures_rotel(run_all_quick):
    _, rows = run_all_quick
    rotel = rows["rotel"]
    assert rotel["throughput"] > 0 and rotel["errors"] == {} and rotel["cpu_s"] > 0
    assert rows["otlpd"]["vs_rotel"] > 0 and rows["otlpd"]["vs_rotel_cpu"] > 0


def test_run_all_summarizes_ratios_round_by_round():
    from benchmarks.run_all import _add_ratios, summarize_rounds

    rows = []
    for number, (null, otlpd, rotel) in enumerate([(1000, 300, 150), (500, 250, 100), (1000, 400, 200)], 1):
        round_rows = [{"round": number, "scenario": "traces-1000", "target": target, "throughput": value,
                       "items_per_cpu_s": value / 2, "peak_rss_mib": 100.0 * number}
                      for target, value in (("null", null), ("otlpd", otlpd), ("rotel", rotel))]
        _add_ratios(round_rows)
        rows += round_rows
    # the second round is slow for every target: within it the ratios still hold
    assert summarize_rounds(rows) == [
        "traces-1000: otlpd/null 0.40x (0.30/0.50/0.40), otlpd/rotel 2.00x (2.00/2.50/2.00), "
        "otlpd/rotel CPU 2.00x (2.00/2.50/2.00), otlpd peak RSS up to 300 MiB"]


def test_micro_benchmarks_run_once():
    done = _run("-m", "pytest", "benchmarks", "-q", "--benchmark-disable", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_cost_model_prints_every_stage_and_the_ceiling():
    done = _run("-m", "benchmarks.cost_model", "--quick", "--grpc-us", "0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    for signal in ("traces", "metrics", "logs"):
        assert f"{signal} (20 items/request" in done.stdout
    for stage in ("decode", "coalesce", "pyarrow's concatenation", "write zstd", "write  lz4", "write none"):
        assert stage in done.stdout
    ceilings = [line for line in done.stdout.splitlines() if "+ gRPC 0.500 us/item" in line]
    assert len(ceilings) == 3 and all("items per CPU-second" in line for line in ceilings)
    lean = [line for line in done.stdout.splitlines() if "full layout (resource+scope on every row" in line]
    assert len(lean) == 3 and all("write zstd" in line and "B/item" in line for line in lean)


def test_attribute_form_measures_both_forms():
    done = _run("-m", "benchmarks.attribute_form", "--items", "2000")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"traces", "metrics", "logs"}
    for today, lean_form, *_ in rows.values():
        assert 0 < lean_form < today  # the lean form is smaller decoded


def test_lean_layout_measures_both_layouts():
    done = _run("-m", "benchmarks.lean_layout", "--items", "1000")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"traces", "metrics", "logs"}
    for v1, v2, lean_form, *_, source_rows in rows.values():
        assert 0 < lean_form < v2 < v1 and source_rows >= 1


def test_ab_variant_parsing():
    from benchmarks.ab import parse_variant

    assert parse_variant("base=") == ("base", {}, [])
    assert parse_variant("lz4=--writer.compression lz4") == ("lz4", {}, ["--writer.compression", "lz4"])
    assert parse_variant("a1=MALLOC_ARENA_MAX=1 --receiver.threads 8") == (
        "a1", {"MALLOC_ARENA_MAX": "1"}, ["--receiver.threads", "8"])
    with pytest.raises(ValueError):
        parse_variant("--writer.compression lz4")


@pytest.mark.slow
def test_ab_alternates_variants_and_compares_them():
    done = _run("-m", "benchmarks.ab", "--rounds", "2", "--duration", "1", "--settle", "0.5",
                "--scenario", "logs-1000", "--processes", "1", "--channels", "1", "--concurrency", "2",
                "zstd=", "lz4=--writer.compression lz4", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    order = [line.split("]")[1].split(":")[0].strip() for line in done.stderr.splitlines()
             if line.startswith("[round")]
    assert order == ["zstd", "lz4", "zstd", "lz4"]
    assert done.stdout.count(" yes") == 4  # stored = accepted in every run
    summary = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith(("zstd:", "lz4:"))}
    assert "stored items/s" in summary["zstd"] and " x zstd)" in summary["lz4"]


def test_ab_killed_with_sigterm_stops_the_daemon_it_started():
    """SIGTERM to the benchmark script stops the otlpd it runs instead of orphaning it."""
    import signal
    import time

    import psutil

    ab = subprocess.Popen([sys.executable, "-m", "benchmarks.ab", "--rounds", "1", "--duration", "60",
                           "--processes", "1", "--channels", "1", "--concurrency", "1", "only="],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        daemons = []
        while not daemons and time.monotonic() < deadline and ab.poll() is None:
            time.sleep(0.2)
            daemons = [child for child in psutil.Process(ab.pid).children(recursive=True)
                       if "otlpd" in " ".join(child.cmdline()) and "-m" in child.cmdline()]
        assert daemons, "ab did not start otlpd"
        ab.send_signal(signal.SIGTERM)
        assert ab.wait(60) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(daemons, timeout=30)
        assert not alive, f"otlpd left running: {[p.pid for p in alive]}"
    finally:
        if ab.poll() is None:
            ab.kill()


def test_temporality_benchmark_measures_every_setting():
    done = _run("-m", "benchmarks.temporality", "--series", "5", "--rounds", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {tuple(line.split()[:4]): line for line in done.stdout.splitlines() if " input " in line}
    assert set(lines) == {(given, "input", impl, mode) for given in ("cumulative", "delta")
                          for impl in ("python", "cython") for mode in ("passthrough", "cumulative", "delta")}
    for impl in ("python", "cython"):
        assert "converted 0 " in lines["cumulative", "input", impl, "passthrough"]
        assert "converted 0 " in lines["cumulative", "input", impl, "cumulative"]
        # 5 series x 3 metrics convertible to delta (the up-down counter stays) x 3 reports
        assert "converted 45 " in lines["cumulative", "input", impl, "delta"]
        assert "dropped 0" in lines["cumulative", "input", impl, "delta"]
        # delta input to cumulative: every sum and histogram, 5 series x 4 metrics x 3 reports
        assert "converted 60 " in lines["delta", "input", impl, "cumulative"]
        assert "dropped 0" in lines["delta", "input", impl, "cumulative"]
    assert done.stdout.count("the reference's stage / the native one's") == 4


def test_forward_benchmark_ships_a_backlog():
    done = _run("-m", "benchmarks.forward", "--items", "3000", "--signals", "traces,logs", "--compression", "none",
                "--max-in-flight", "1,2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()[1:]]
    assert [(row["signal"], row["max_in_flight"], row["records"]) for row in rows] == [
        ("traces", 1, 3000), ("traces", 2, 3000), ("logs", 1, 3000), ("logs", 2, 3000)]
    assert all(row["records_per_second"] > 0 and row["cpu_us_per_record"] > 0 for row in rows)
    assert [row["records_per_second_vs_first"] for row in rows][::2] == [1.0, 1.0]


def test_stream_requests_move_every_series_forward():
    """Each send of a StreamRequest is the next report of the same distinct cumulative series:
    later times, the same start, counters that grew, every metric type."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from benchmarks.requests import BASE_TIME, StreamPool

    def points(data):
        request = ExportMetricsServiceRequest.FromString(data)
        found = {}
        for metric in request.resource_metrics[0].scope_metrics[0].metrics:
            kind = metric.WhichOneof("data")
            data_points = getattr(metric, kind).data_points
            if kind == "sum":
                kind = "sum" if metric.sum.is_monotonic else "updown_sum"
            for point in data_points:
                series = (metric.name, tuple((kv.key, str(kv.value)) for kv in point.attributes))
                assert series not in found, "a series twice in one request"
                found[series] = (kind, point)
        return request.resource_metrics[0].resource, found

    pool = StreamPool(60, 2, "test", seed=1)
    first_resource, first = points(pool.next())
    other_resource, other = points(pool.next())
    assert first_resource != other_resource  # the pool's requests carry series of their own
    _, second = points(pool.next())
    assert len(first) == 60 and second.keys() == first.keys()
    assert {kind for kind, _ in first.values()} == {
        "gauge", "sum", "updown_sum", "histogram", "exponential_histogram", "summary"}
    times = {point.time_unix_nano for _, point in first.values()}
    assert len(times) == 1 and abs(times.pop() - time.time_ns()) < 60 * 10**9  # one report, now
    for series, (kind, before) in first.items():
        after = second[series][1]
        assert after.time_unix_nano > before.time_unix_nano
        assert after.start_time_unix_nano == before.start_time_unix_nano == BASE_TIME
        if kind == "sum":
            assert after.as_int > before.as_int
        elif kind in ("updown_sum", "histogram"):
            assert after == type(after)(**{**{f.name: v for f, v in before.ListFields()},
                                           "time_unix_nano": after.time_unix_nano})


@pytest.mark.slow
def test_temporality_e2e_converts_and_compares_to_passthrough(tmp_path):
    report = tmp_path / "runs.json"
    done = _run("-m", "benchmarks.temporality_e2e", "--rounds", "1", "--duration", "1", "--settle", "0.5",
                "--processes", "1", "--channels", "1", "--concurrency", "2", "--json", str(report),
                timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # stored + dropped = accepted, temporality right
    runs = {row["mode"]: row for row in json.loads(report.read_text())["runs"]}
    assert set(runs) == {"passthrough", "delta", "cumulative"}
    assert runs["passthrough"]["counters"]["converted_points"] == 0
    assert runs["cumulative"]["counters"]["converted_points"] == 0  # the input is cumulative already
    delta = runs["delta"]
    assert delta["counters"]["converted_points"] > 0
    # the first point of each converted series (started before otlpd) is the baseline, and only that
    assert delta["counters"]["dropped_points"] == {"baseline": 2 * 2 * 500}
    assert delta["stored_temporality"]["sum/True/1"] > 0 and delta["stored_temporality"]["sum/False/2"] > 0
    assert delta["stored_temporality"]["histogram/None/1"] > 0
    assert all(key.endswith(("/2", "/None")) for key in runs["passthrough"]["stored_temporality"])
    for mode in ("delta", "cumulative"):
        assert f"{mode}/passthrough stored pts/s: median" in done.stdout


def test_forward_e2e_slope_and_summary():
    from benchmarks.forward_e2e import forward_summary, slope

    assert slope([(0, 5), (1, 7), (2, 9)]) == pytest.approx(2.0)
    assert slope([(0, 5)]) is None
    samples = [{"t": t, "a_stored": 1000 * t, "sent": 800 * t, "b_stored": 800 * t, "backlog": 200 * t,
                "backlog_files": 0} for t in range(11)]
    summary = forward_summary(samples + [{"t": 20, "a_stored": 0, "sent": 0, "b_stored": 0, "backlog": 0}],
                              ended=10, elapsed=10)
    # the sample after the load's end is left out; the backlog grows 200 spans/s
    assert summary["forward_spans_per_s"] == pytest.approx(800)
    assert summary["backlog_end"] == 2000 and summary["backlog_slope_per_s"] == pytest.approx(200)


@pytest.mark.slow
def test_forward_e2e_quick_keeps_up_and_drains(tmp_path):
    report = tmp_path / "forward.json"
    # 4 s of load: the forwarder looks for new data once a forward.poll_interval (1 s) and its first
    # send waits for the remote's connection; 1.5 s once saw nothing acknowledged on a loaded machine
    done = _run("-m", "benchmarks.forward_e2e", "--quick", "--rounds", "1", "--duration", "4",
                "--drain-spans", "5000", "--processes", "1", "--channels", "1", "--concurrency", "1",
                "--json", str(report), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(report.read_text())
    assert figures["environment"]["otlpd_encoder"] and figures["environment"]["otlpd_breaker"]
    off, on = figures["keep_up"]
    assert not off["forwarding"] and on["forwarding"]
    assert off["stored_ok"] and on["stored_ok"] and off["stored_items_per_s"] > 0
    assert on["forward_spans_per_s"] > 0 and on["backlog_series"]
    [drained] = figures["drain"]
    assert drained["backlog_spans"] >= 5000 and drained["remote_stored"] >= drained["backlog_spans"]
    assert drained["drain_spans_per_s"] > 0
    assert "ingest on/off (per round)" in done.stdout and "drain / ingest off" in done.stdout
