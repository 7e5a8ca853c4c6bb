"""Temporality in the running daemon: the metrics writer converts in arrival order, the REST API
changes the setting at run time (in order with the requests) and the value set over the API
survives a restart. Real daemons on loopback, real gRPC, real files."""
import json
import time

import polars as pl
import pytest

from otlpd import files, temporality
from otlpd.temporality import CUMULATIVE, DELTA, STATE_FILE, STREAMS_FILE
from test_temporality import S, request, sum_metric
from web_stack import Stack

TOKEN = "s3cret-token"
# times in seconds after B, which is after every daemon here started (initial_value auto keeps
# the first point of a stream that started after otlpd did)
B = int(time.time()) + 1000


def stored_rows(stack) -> list[dict]:
    """Every stored metric point after a rotation, in file order, times as int ns (SDK times
    are not whole microseconds)."""
    stack.daemon.rotate("metrics")
    return [row for file in files.completed_files(stack.output_dir / "metrics")
            for row in pl.from_arrow(files.read_table(file.path)).with_columns(
                pl.col("start_time", "time").cast(pl.Int64)).to_dicts()]


def stored_points(stack):
    """(start s after B, time s after B, value, temporality) of every stored point, in file order."""
    return [(r["start_time"] // S - B, r["time"] // S - B, r["value_int"], r["aggregation_temporality"])
            for r in stored_rows(stack)]


def send_points(stack, points, temporality_=CUMULATIVE):
    for start, end, value in points:
        stack.send("metrics", request([sum_metric([(B + start, B + end, value)], temporality_=temporality_)]))


@pytest.fixture
def delta_stack(tmp_path):
    stack = Stack(tmp_path, admin_token=TOKEN, **{"metrics.temporality": "delta"})
    yield stack
    stack.close()


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def test_cumulative_points_are_stored_as_deltas(delta_stack):
    send_points(delta_stack, [(100, 110, 10), (100, 120, 15), (100, 130, 22)])
    assert stored_points(delta_stack) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA), (120, 130, 7, DELTA)]
    state = delta_stack.client.get("/api/v1/temporality").get_json()
    assert state["temporality"] == state["configured"] == "delta" and state["source"] == "config"
    assert state["streams"] == 1 and state["converted_points"] == 3


def test_put_applies_to_requests_after_it_and_resets_the_state(delta_stack):
    client = delta_stack.client
    send_points(delta_stack, [(100, 110, 10), (100, 120, 15)])
    answer = client.put("/api/v1/temporality", json={"temporality": "cumulative"}, headers=auth())
    assert answer.status_code == 200
    assert answer.get_json()["temporality"] == "cumulative" and answer.get_json()["source"] == "api"
    # acknowledged before the PUT, possibly still in the buffer: stored as deltas
    send_points(delta_stack, [(120, 130, 4), (130, 140, 6)], temporality_=DELTA)
    assert stored_points(delta_stack) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA),
                                          (120, 130, 4, CUMULATIVE), (120, 140, 10, CUMULATIVE)]
    assert client.get("/api/v1/temporality").get_json()["streams"] == 1  # the new setting's stream only


def test_bad_changes_change_nothing(delta_stack):
    client = delta_stack.client
    bad = client.put("/api/v1/temporality", json={"temporality": "gauge"}, headers=auth())
    assert bad.status_code == 400 and "error" in bad.get_json()
    assert client.put("/api/v1/temporality", json={"temporality": "cumulative"}).status_code == 401
    assert client.put("/api/v1/temporality", data="temporality=cumulative", headers=auth()).status_code == 415
    assert client.get("/api/v1/temporality").get_json()["temporality"] == "delta"
    assert not (delta_stack.output_dir / STATE_FILE).exists()


def test_the_value_set_over_the_api_survives_a_restart_until_deleted(tmp_path):
    stack = Stack(tmp_path, admin_token=TOKEN)
    try:
        assert stack.client.put("/api/v1/temporality", json={"temporality": "delta"},
                                headers=auth()).status_code == 200
        saved = json.loads((stack.output_dir / STATE_FILE).read_text())
        assert saved["temporality"] == "delta"
    finally:
        stack.close()
    stack = Stack(tmp_path, admin_token=TOKEN)
    try:
        state = stack.client.get("/api/v1/temporality").get_json()
        assert (state["temporality"], state["configured"], state["source"]) == ("delta", "cumulative", "api")
        send_points(stack, [(100, 110, 10), (100, 120, 15)])
        assert stored_points(stack) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA)]
        back = stack.client.delete("/api/v1/temporality", headers=auth())
        assert back.status_code == 200
        assert (back.get_json()["temporality"], back.get_json()["source"]) == ("cumulative", "config")
        assert not (stack.output_dir / STATE_FILE).exists()
    finally:
        stack.close()


def test_a_broken_saved_value_is_one_clear_line_at_start(tmp_path):
    from daemon_process import assert_one_line_error, run_otlpd

    output = tmp_path / "data"
    output.mkdir()
    (output / STATE_FILE).write_text('{"temporality": "sideways"}')
    result = run_otlpd("--output-dir", str(output), "--grpc-endpoint", "127.0.0.1:0")
    line = assert_one_line_error(result, "temporality must be one of cumulative, delta, passthrough")
    assert STATE_FILE in line


def test_the_setting_is_checked_at_start(tmp_path):
    from daemon_process import assert_one_line_error, run_otlpd

    result = run_otlpd("--output-dir", str(tmp_path / "d"), "--metrics.temporality", "sideways")
    assert_one_line_error(result, "metrics.temporality: must be one of cumulative, delta, passthrough")


def test_sdk_cumulative_metrics_are_stored_as_the_right_deltas(delta_stack):
    """The OpenTelemetry SDK's default (cumulative) temporality into a daemon with
    metrics.temporality delta: a counter and a histogram become deltas, an up-down counter stays
    cumulative (docs/TEMPORALITY.md)."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://{delta_stack.daemon.endpoint}", insecure=True),
        export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("temporality.e2e")
    orders = meter.create_counter("orders")
    queue = meter.create_up_down_counter("queue")
    latency = meter.create_histogram("latency")
    orders.add(5)
    queue.add(4)
    latency.record(1.0)
    latency.record(7.0)
    assert provider.force_flush(30_000)
    orders.add(3)
    queue.add(-1)
    latency.record(20.0)
    assert provider.force_flush(30_000)
    provider.shutdown()  # exports once more: nothing changed
    by_name = {}
    for row in stored_rows(delta_stack):
        by_name.setdefault(row["metric_name"], []).append(row)
    assert [(r["value_int"], r["aggregation_temporality"]) for r in by_name["orders"]] == [
        (5, DELTA), (3, DELTA), (0, DELTA)]
    assert [(r["value_int"], r["aggregation_temporality"]) for r in by_name["queue"]] == [
        (4, CUMULATIVE), (3, CUMULATIVE), (3, CUMULATIVE)]
    assert [(r["count"], r["sum"], r["aggregation_temporality"]) for r in by_name["latency"]] == [
        (2, 8.0, DELTA), (1, 20.0, DELTA), (0, 0.0, DELTA)]
    # each delta covers the time since the stream's previous point
    orders_rows = by_name["orders"]
    assert all(later["start_time"] == earlier["time"] for earlier, later in zip(orders_rows, orders_rows[1:]))


def test_a_restart_goes_on_from_the_saved_state_without_a_spike(tmp_path):
    """The Collector's processors keep state in memory only: after a restart the next cumulative
    point is taken as a first point (contrib issues 18053, 17190, 36551). otlpd saves every
    stream's state beside the files and goes on from it."""
    settings = {"metrics.temporality": "delta"}
    stack = Stack(tmp_path, **settings)
    try:
        send_points(stack, [(100, 110, 10), (100, 120, 15)])
        assert stored_points(stack) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA)]
    finally:
        stack.close()  # a clean stop saves the state
    header, saved = temporality._split_whole((stack.output_dir / STREAMS_FILE).read_bytes())
    assert header["temporality"] == "delta" and saved[:4] == (1).to_bytes(4, "little")  # one stream
    stack = Stack(tmp_path, **settings)
    try:
        send_points(stack, [(100, 130, 22)])
        # the delta since the last point before the restart, not 22 since the stream's start
        assert stored_points(stack)[-1] == (120, 130, 7, DELTA)
        assert stack.client.get("/api/v1/temporality").get_json()["streams"] == 1
    finally:
        stack.close()


def test_a_saved_state_of_another_setting_or_unreadable_is_not_used(tmp_path):
    stack = Stack(tmp_path, **{"metrics.temporality": "delta"})
    try:
        send_points(stack, [(100, 110, 10)])
        stored_points(stack)
    finally:
        stack.close()
    stack = Stack(tmp_path, **{"metrics.temporality": "cumulative"})  # another setting: start afresh
    try:
        assert stack.client.get("/api/v1/temporality").get_json()["streams"] == 0
    finally:
        stack.close()
    (stack.output_dir / STREAMS_FILE).write_bytes(b"{not a state")
    stack = Stack(tmp_path, **{"metrics.temporality": "delta"})
    try:
        assert stack.client.get("/api/v1/temporality").get_json()["streams"] == 0
        send_points(stack, [(100, 140, 30)])  # a first point again
        assert stored_points(stack)[-1] == (100, 140, 30, DELTA)
    finally:
        stack.close()


def test_sdk_deltas_through_a_put_and_a_restart(tmp_path):
    """The SDK sends a delta counter. Stored cumulative, then delta after a PUT, cumulative again
    (a fresh total: no value is computed across a change), and after a restart the total goes on
    from the saved state, and GET still says what the API set."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    def sdk(stack):
        exporter = OTLPMetricExporter(endpoint=f"http://{stack.daemon.endpoint}", insecure=True,
                                      preferred_temporality={Counter: AggregationTemporality.DELTA})
        provider = MeterProvider(resource=Resource({"service.name": "shop"}),
                                 metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
        return provider, provider.get_meter("shop").create_counter("orders")

    def values(stack):
        return [(row["value_int"], row["aggregation_temporality"]) for row in stored_rows(stack)]

    stack = Stack(tmp_path)
    try:
        provider, orders = sdk(stack)
        for amount in (5, 3):
            orders.add(amount)
            assert provider.force_flush(10_000)
        assert stack.client.put("/api/v1/temporality", json={"temporality": "delta"}).status_code == 200
        orders.add(2)
        assert provider.force_flush(10_000)
        assert stack.client.put("/api/v1/temporality", json={"temporality": "cumulative"}).status_code == 200
        orders.add(4)
        assert provider.force_flush(10_000)
        provider.shutdown()
        assert values(stack) == [(5, CUMULATIVE), (8, CUMULATIVE), (2, DELTA), (4, CUMULATIVE)]
    finally:
        stack.close()
    stack = Stack(tmp_path)
    try:
        state = stack.client.get("/api/v1/temporality").get_json()
        assert (state["temporality"], state["source"], state["streams"]) == ("cumulative", "api", 1)
        provider, orders = sdk(stack)
        orders.add(6)
        assert provider.force_flush(10_000)
        provider.shutdown()
        assert values(stack)[-1] == (10, CUMULATIVE)  # 4 before the restart + 6
    finally:
        stack.close()


def test_eight_client_threads_sending_delta_points_of_the_same_streams(tmp_path):
    """8 threads, each on its own channel, send the delta points of the same 8 streams at once,
    8 requests in flight: each stream's points in time order (as its SDK would send them; a
    later point may not overtake an earlier one: docs/TEMPORALITY.md), the next one from any
    thread. Every stream's last stored cumulative value equals the sum of all its deltas, and
    nothing is dropped."""
    import random
    import threading

    import grpc

    from otlp_client import export

    stack = Stack(tmp_path, **{"metrics.temporality": "cumulative"})
    streams = [{"lock": threading.Lock(), "next": 0, "sent": 0} for _ in range(8)]
    rounds = 40  # requests per thread

    def client(number):
        rng = random.Random(number)
        with grpc.insecure_channel(stack.daemon.endpoint) as channel:
            for i in range(rounds):
                index = (number + i) % len(streams)
                stream = streams[index]
                value = rng.randint(1, 1000)
                with stream["lock"]:  # this stream's interval, and its send, in order
                    start, stream["next"] = stream["next"], stream["next"] + 1
                    export(channel, "metrics", request([sum_metric(
                        [(B + start, B + start + 1, value)], temporality_=DELTA, attrs=[("stream", str(index))])]
                    ).SerializeToString())
                    stream["sent"] += value

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        stack.wait_written("metrics", 8 * rounds)
        rows = stored_rows(stack)
        snapshot = stack.daemon.temporality.snapshot()
    finally:
        stack.close()
    assert len(rows) == 8 * rounds and snapshot["dropped_points"] == {}
    assert snapshot["converted_points"] == 8 * rounds and snapshot["streams"] == 8
    last = {}
    for row in rows:  # file order is arrival order: the last row of a stream is its total
        assert row["aggregation_temporality"] == CUMULATIVE and row["start_time"] // S == B
        last[row["attributes"]["stream"]] = row["value_int"]
    assert last == {str(i): streams[i]["sent"] for i in range(8)}
