"""Temporality conversion: every rule of docs/TEMPORALITY.md against series computed by hand,
for both implementations (the reference otlpd.temporality.Converter and the native
NativeConverter: every test runs once with each), and the two against each other on random
series. Points are (start_time, time, value), times in seconds."""
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from otlpd import proto as pb
from otlpd import schema, temporality
from otlpd.temporality import CUMULATIVE, DELTA, Converter, Settings

S = 10**9  # a second, in ns


@pytest.fixture(autouse=True)
def implementation(converter_cls, monkeypatch):
    """Every test of this module with each converter: ``Converter`` is the one under test."""
    monkeypatch.setattr(sys.modules[__name__], "Converter", converter_cls)
    return converter_cls


def kv(key, value):
    return pb.KeyValue(key=key, value=pb.AnyValue(string_value=value))


def request(metrics, service="svc"):
    resource = pb.Resource(attributes=[kv("service.name", service)])
    return pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource=resource, scope_metrics=[pb.ScopeMetrics(scope=pb.InstrumentationScope(name="m"),
                                                         metrics=metrics)])])


def sum_metric(points, temporality_=CUMULATIVE, monotonic=True, attrs=(), name="requests"):
    return pb.Metric(name=name, sum=pb.Sum(aggregation_temporality=temporality_, is_monotonic=monotonic, data_points=[
        pb.NumberDataPoint(start_time_unix_nano=start * S, time_unix_nano=time * S, as_int=value,
                           attributes=[kv(k, v) for k, v in attrs], flags=flags)
        for start, time, value, *rest in points for flags in [rest[0] if rest else 0]]))


def histogram(points, temporality_=CUMULATIVE, bounds=(1.0, 10.0)):
    return pb.Metric(name="latency", histogram=pb.Histogram(aggregation_temporality=temporality_, data_points=[
        pb.HistogramDataPoint(start_time_unix_nano=start * S, time_unix_nano=time * S, count=sum(buckets),
                              sum=total, bucket_counts=buckets, explicit_bounds=points_bounds, min=0.5, max=20.0)
        for start, time, buckets, total, *rest in points for points_bounds in [rest[0] if rest else bounds]]))


def exponential(points, temporality_=CUMULATIVE):
    return pb.Metric(name="sizes", exponential_histogram=pb.ExponentialHistogram(
        aggregation_temporality=temporality_, data_points=[
            pb.ExponentialHistogramDataPoint(
                start_time_unix_nano=start * S, time_unix_nano=time * S, scale=scale, count=sum(counts),
                positive=pb.ExponentialHistogramDataPoint.Buckets(offset=offset, bucket_counts=counts))
            for start, time, scale, offset, counts in points]))


def convert(converter, *metrics, now=None):
    table = pa_table(*metrics)
    return converter.convert(table, now_ns=now).to_pylist()


def pa_table(*metrics):
    return schema.decode_metrics(request(list(metrics)).SerializeToString())


def series(rows, value="value_int"):
    return [(r["start_time"].timestamp() if r["start_time"] else 0, r["time"].timestamp(), r[value],
             r["aggregation_temporality"]) for r in rows]


def delta(**settings):
    return Converter(Settings(temporality="delta", **settings))


def cumulative(**settings):
    return Converter(Settings(temporality="cumulative", **settings))


# ---------------------------------------------------------------- to delta

def test_cumulative_sum_to_delta():
    rows = convert(delta(), sum_metric([(100, 110, 10), (100, 120, 15), (100, 130, 15), (100, 140, 22)]))
    # the first point is kept (auto: its start is after otlpd started and differs from its time)
    assert series(rows) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA), (120, 130, 0, DELTA), (130, 140, 7, DELTA)]


@pytest.mark.parametrize("initial_value, started_at, kept", [
    ("auto", 50, True),     # the stream started after otlpd: its first value is a delta since then
    ("auto", 105, False),   # it started before otlpd: its value holds what otlpd never saw
    ("keep", 105, True),
    ("drop", 50, False),
])
def test_the_first_point_of_a_stream_by_initial_value(initial_value, started_at, kept):
    converter = delta(initial_value=initial_value, started_at_ns=started_at * S)
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 15)]))
    assert series(rows) == ([(100, 110, 10, DELTA)] if kept else []) + [(110, 120, 5, DELTA)]
    assert converter.counters.dropped_points.get("baseline", 0) == (0 if kept else 1)


def test_auto_drops_a_first_point_whose_start_is_its_time():
    converter = delta()
    assert convert(converter, sum_metric([(110, 110, 10)])) == []
    assert converter.counters.dropped_points == {"baseline": 1}


def test_a_reset_with_a_new_start_time_is_a_new_baseline():
    converter = delta()
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 15), (125, 130, 4), (125, 140, 9)]))
    assert series(rows) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA), (125, 130, 4, DELTA), (130, 140, 5, DELTA)]


def test_a_decrease_without_a_new_start_is_a_baseline_but_no_delta():
    """Its value since the unknown reset cannot be told apart from what came before it."""
    converter = delta()
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 3), (100, 130, 8)]))
    assert series(rows) == [(100, 110, 10, DELTA), (120, 130, 5, DELTA)]
    assert converter.counters.dropped_points == {"baseline": 1}


def test_a_point_not_after_the_last_one_is_dropped_and_counted():
    converter = delta()
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 15), (100, 115, 12), (100, 120, 16),
                                          (100, 130, 20)]))
    assert series(rows) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA), (120, 130, 5, DELTA)]
    assert converter.counters.dropped_points == {"not_after_last_point": 2}


def test_streams_are_told_apart_by_attributes_in_any_order():
    converter = delta()
    a = sum_metric([(100, 110, 10), (100, 120, 15)], attrs=[("route", "/a"), ("code", "200")])
    b = sum_metric([(100, 110, 1), (100, 120, 2)], attrs=[("route", "/b")])
    a_again = sum_metric([(100, 130, 30)], attrs=[("code", "200"), ("route", "/a")])
    rows = convert(converter, a, b, a_again)
    assert [r["value_int"] for r in rows] == [10, 5, 1, 1, 15]
    assert converter.streams == 2


def test_non_monotonic_sums_stay_cumulative_in_delta_mode():
    converter = delta()
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 4)], monotonic=False))
    assert series(rows) == [(100, 110, 10, CUMULATIVE), (100, 120, 4, CUMULATIVE)]
    assert converter.counters.passed_through_points == 2


def test_no_recorded_value_passes_and_is_never_a_baseline():
    converter = delta()
    rows = convert(converter, sum_metric([(100, 110, 10), (100, 120, 0, temporality.NO_RECORDED_VALUE),
                                          (100, 130, 14)]))
    assert series(rows) == [(100, 110, 10, DELTA), (100, 120, 0, CUMULATIVE), (110, 130, 4, DELTA)]


def test_histogram_to_delta_with_a_reset_and_new_bounds():
    converter = delta()
    rows = convert(converter, histogram([
        (100, 110, [1, 2, 0], 15.0),
        (100, 120, [2, 5, 1], 60.0),
        (100, 130, [1, 1, 0], 3.0),                      # the count fell: a reset, no delta
        (100, 140, [3, 1, 0], 9.0),
        (100, 150, [4, 1, 0, 0], 12.0, (1.0, 5.0, 10.0)),  # new bounds: a new baseline
        (100, 160, [5, 2, 0, 1], 40.0, (1.0, 5.0, 10.0)),
    ]))
    assert [(r["start_time"].timestamp(), r["count"], r["sum"], r["bucket_counts"]) for r in rows] == [
        (100, 3, 15.0, [1, 2, 0]), (110, 5, 45.0, [1, 3, 1]), (130, 2, 6.0, [2, 0, 0]),
        (150, 3, 28.0, [1, 1, 0, 1])]
    assert all(r["min"] is None and r["max"] is None for r in rows)  # a cumulative min/max is not the interval's
    assert converter.counters.dropped_points == {"baseline": 2}


def test_after_a_histogram_reset_the_next_points_are_deltas_from_the_new_baseline():
    """The Collector's cumulativetodelta kept the pre-reset baseline after a histogram reset
    (contrib issue 50828; exponential histograms: 49869): the points below the old peak were
    dropped as further resets, and the first above it got a delta from the stale baseline."""
    for metric, counts in ((lambda points: histogram([(s, t, buckets + [0], float(sum(buckets)))
                                                      for s, t, buckets in points]), "bucket_counts"),
                           (lambda points: exponential([(s, t, 0, 0, buckets) for s, t, buckets in points]),
                            "positive_bucket_counts")):
        converter = delta()
        rows = convert(converter, metric([(100, 110, [5, 5]), (100, 120, [10, 10]),
                                          (100, 130, [1, 2]),     # the count fell: the new baseline
                                          (100, 140, [3, 4]),     # below the old peak: a delta from 3
                                          (100, 150, [15, 15])]))  # above it: a delta from 7, not from 20
        assert [(r["start_time"].timestamp(), r["time"].timestamp(), r["count"], r[counts][:2]) for r in rows] == [
            (100, 110, 10, [5, 5]), (110, 120, 10, [5, 5]), (130, 140, 4, [2, 2]), (140, 150, 23, [12, 11])]
        assert converter.counters.dropped_points == {"baseline": 1}


def test_exponential_histogram_to_delta_aligns_buckets_and_resets_on_a_new_scale():
    converter = delta()
    rows = convert(converter, exponential([
        (100, 110, 2, 3, [1, 2]),
        (100, 120, 2, 2, [4, 1, 3]),   # buckets 2..4: [4, 1, 3] - [0, 1, 2]
        (100, 130, 1, 1, [5, 5]),      # another scale: a new baseline, no delta
        (100, 140, 1, 1, [6, 5]),
    ]))
    assert [(r["count"], r["positive_offset"], r["positive_bucket_counts"]) for r in rows] == [
        (3, 3, [1, 2]), (5, 2, [4, 0, 1]), (1, 1, [1, 0])]


# ---------------------------------------------------------------- to cumulative

def test_delta_sum_to_cumulative():
    converter = cumulative()
    rows = convert(converter, sum_metric([(100, 110, 5), (110, 120, 3), (120, 130, 0), (135, 140, 2)],
                                         temporality_=DELTA))
    assert series(rows) == [(100, 110, 5, CUMULATIVE), (100, 120, 8, CUMULATIVE), (100, 130, 8, CUMULATIVE),
                            (100, 140, 10, CUMULATIVE)]


def test_old_and_overlapping_deltas_are_dropped_and_counted():
    converter = cumulative()
    rows = convert(converter, sum_metric([(100, 110, 5), (105, 115, 1), (100, 105, 1), (110, 120, 3)],
                                         temporality_=DELTA))
    assert series(rows) == [(100, 110, 5, CUMULATIVE), (100, 120, 8, CUMULATIVE)]
    assert converter.counters.dropped_points == {"overlapping": 1, "not_after_last_point": 1}


def test_delta_histogram_to_cumulative_resets_on_new_bounds():
    converter = cumulative()
    rows = convert(converter, histogram([
        (100, 110, [1, 2, 0], 15.0), (110, 120, [1, 0, 1], 30.0),
        (120, 130, [1, 1], 2.0, (5.0,)),
    ], temporality_=DELTA))
    assert [(r["start_time"].timestamp(), r["count"], r["sum"], r["bucket_counts"]) for r in rows] == [
        (100, 3, 15.0, [1, 2, 0]), (100, 5, 45.0, [2, 2, 1]), (120, 2, 2.0, [1, 1])]
    assert (rows[1]["min"], rows[1]["max"]) == (0.5, 20.0)  # the least and greatest of the intervals


def test_cumulative_points_pass_in_cumulative_mode_and_gauges_everywhere():
    converter = cumulative()
    gauge = pb.Metric(name="t", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(time_unix_nano=110 * S, as_double=1.5)]))
    rows = convert(converter, sum_metric([(100, 110, 10)]), gauge)
    assert [r["value_int"] for r in rows] == [10, None] and rows[1]["value_double"] == 1.5
    assert converter.counters.passed_through_points == 2 and converter.streams == 0


def test_passthrough_stores_everything_as_it_came():
    converter = Converter(Settings(temporality="passthrough"))
    table = pa_table(sum_metric([(100, 110, 5), (110, 120, 3)], temporality_=DELTA), sum_metric([(100, 110, 7)]))
    assert converter.convert(table).equals(pa.Table.from_batches([table]))
    assert converter.counters.passed_through_points == 3 and converter.streams == 0


# ---------------------------------------------------------------- limits and state

def test_streams_beyond_max_streams_pass_through_unconverted_and_counted():
    converter = cumulative(max_streams=1)
    rows = convert(converter, sum_metric([(100, 110, 5), (110, 120, 3)], temporality_=DELTA, attrs=[("a", "1")]),
                   sum_metric([(100, 110, 2), (110, 120, 2)], temporality_=DELTA, attrs=[("a", "2")]))
    assert [(r["value_int"], r["aggregation_temporality"]) for r in rows] == [
        (5, CUMULATIVE), (8, CUMULATIVE), (2, DELTA), (2, DELTA)]
    assert converter.counters.streams_over_limit == 2 and converter.streams == 1


def test_idle_streams_are_forgotten_after_max_stale():
    converter = cumulative(max_stale_ns=60 * S)
    convert(converter, sum_metric([(100, 110, 5)], temporality_=DELTA), now=1000 * S)
    rows = convert(converter, sum_metric([(110, 120, 3)], temporality_=DELTA), now=1030 * S)
    assert rows[0]["value_int"] == 8
    rows = convert(converter, sum_metric([(120, 130, 4)], temporality_=DELTA), now=1100 * S)  # 70 s idle
    assert series(rows) == [(120, 130, 4, CUMULATIVE)]


def test_reset_forgets_every_stream():
    converter = delta()
    convert(converter, sum_metric([(100, 110, 10)]))
    converter.reset()
    assert converter.streams == 0
    assert series(convert(converter, sum_metric([(100, 120, 15)]))) == [(100, 120, 15, DELTA)]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="metrics.temporality: must be one of cumulative, delta, passthrough"):
        Settings(temporality="gauge")
    with pytest.raises(ValueError, match="metrics.initial_value"):
        Settings(initial_value="maybe")


def test_the_worked_examples_of_temporality_md():
    rows = convert(delta(started_at_ns=50 * S), sum_metric(
        [(100, 110, 10), (100, 120, 15), (100, 115, 12), (125, 130, 4), (125, 140, 9), (125, 150, 3)]))
    assert series(rows) == [(100, 110, 10, DELTA), (110, 120, 5, DELTA), (125, 130, 4, DELTA), (130, 140, 5, DELTA)]
    rows = convert(cumulative(), sum_metric([(100, 110, 5), (105, 115, 1), (110, 120, 3), (135, 140, 2)],
                                            temporality_=DELTA))
    assert series(rows) == [(100, 110, 5, CUMULATIVE), (100, 120, 8, CUMULATIVE), (100, 140, 10, CUMULATIVE)]


def test_saved_state_goes_on_where_it_left_off():
    """state() is plain JSON; a converter loading it continues every kind of stream."""
    import json

    first = delta()
    convert(first, sum_metric([(100, 110, 10)], attrs=[("route", "/a")]),
            histogram([(100, 110, [1, 2, 0], 15.0)]), exponential([(100, 110, 2, 3, [1, 2])]))
    state = json.loads(json.dumps(first.state()))
    second = delta()
    second.load(state)
    assert second.streams == 3
    rows = convert(second, sum_metric([(100, 120, 12)], attrs=[("route", "/a")]),
                   histogram([(100, 120, [1, 3, 1], 40.0)]), exponential([(100, 120, 2, 3, [2, 2])]))
    assert [r["value_int"] for r in rows[:1]] == [2]
    assert (rows[1]["count"], rows[1]["bucket_counts"]) == (2, [0, 1, 1])
    assert (rows[2]["count"], rows[2]["positive_offset"], rows[2]["positive_bucket_counts"]) == (1, 3, [1, 0])
    other = cumulative()
    other.load(state)  # saved under another setting: not taken
    assert other.streams == 0


def test_the_decoder_tells_which_temporalities_a_request_holds():
    """Chunk.temporalities: the writer's stage skips a chunk with nothing to convert without
    importing it, so it stays a chunk (merged natively)."""
    from otlpd import _decoder

    def mask(*metrics):
        return _decoder.decode_chunk("metrics", request(list(metrics)).SerializeToString()).temporalities

    gauge = pb.Metric(name="t", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(time_unix_nano=110 * S, as_double=1.5)]))
    assert mask(gauge) == 0
    assert mask(sum_metric([(100, 110, 5)], temporality_=DELTA)) == 1 << DELTA
    assert mask(histogram([(100, 110, [1, 2, 0], 15.0)]), gauge) == 1 << CUMULATIVE
    assert mask(sum_metric([(100, 110, 5)], temporality_=0), sum_metric([(100, 110, 5)], temporality_=DELTA)) == 0b11
    assert mask(pb.Metric(name="empty", sum=pb.Sum(aggregation_temporality=DELTA))) == 0  # no points

    stage = temporality.Stage(cumulative())
    chunk = _decoder.decode_chunk("metrics", request([sum_metric([(100, 110, 5)])]).SerializeToString())
    assert stage.process([chunk]) == [chunk]  # cumulative already: untouched
    delta_chunk = _decoder.decode_chunk("metrics", request([sum_metric([(100, 110, 5), (110, 120, 2)],
                                                                       temporality_=DELTA)]).SerializeToString())
    [converted] = stage.process([delta_chunk])
    assert converted.to_batch().column("value_int").to_pylist() == [5, 7]


@pytest.mark.parametrize("mask", [None, 0], ids=["distinct ids", "every id collides"])
def test_the_stage_converts_consecutive_requests_as_one_run(mask, monkeypatch):
    """What the writer drains in one write interval: the requests that need converting are
    converted in one call, with their sources together, exactly as one at a time would; when
    two requests give one id to two different sources, each is converted alone."""
    from otlpd import _decoder, decode, sources

    def drained():
        return [decode.BUFFER_DECODERS["metrics"](request([sum_metric(
            [(100, 110 + 10 * i, 5 * i + n)], attrs=[("n", str(n))])], service=f"svc{n % 3}").SerializeToString())
            for i in range(4) for n in range(5)]

    if mask is not None:
        monkeypatch.setattr(sources, "ID_MASK", mask)
        old = _decoder._set_source_id_mask(mask)
    try:
        together, alone = temporality.Stage(delta(initial_value="keep")), temporality.Stage(delta(initial_value="keep"))
        run = together.process(drained())
        one_by_one = [out for item in drained() for out in alone.process([item])]
    finally:
        if mask is not None:
            _decoder._set_source_id_mask(old)
    assert len(run) == (20 if mask is not None else 1) and len(one_by_one) == 20

    def stored(items):
        return [sources.join(item.to_batch(), item.sources_batch()).to_pylist() for item in items]

    assert sum(stored(run), []) == sum(stored(one_by_one), [])
    assert together.converter.counters.snapshot() == alone.converter.counters.snapshot()
    assert together.converter.counters.converted_points == 20
    # every stream in the same state (but for the wall clock time it was last seen)
    assert [stream[:-1] for stream in together.converter.state()["streams"]] == \
        [stream[:-1] for stream in alone.converter.state()["streams"]]



def test_a_run_is_bounded_by_the_writers_batch():
    """The metrics writer bounds a run by its own batch (rows and bytes): each converted run
    is then written as it is, never concatenated again."""
    from otlpd import decode
    from otlpd.writer import COALESCE_ROWS, SignalWriter, WriterSettings

    def drained(call=0):  # (each call later than the last: no point is dropped)
        return [decode.BUFFER_DECODERS["metrics"](request([sum_metric(
            [(100, 1000 * call + 110 + 10 * i + p, 1000 * call + 5 * i + p) for p in range(2)],
            attrs=[("i", str(i))])]).SerializeToString()) for i in range(5)]

    stage = temporality.Stage(delta(initial_value="keep"))
    assert (stage.run_rows, stage.run_bytes) == (temporality.RUN_ROWS, temporality.RUN_BYTES)
    assert [item.num_rows for item in stage.process(drained())] == [10]
    stage.limit_runs(rows=4, nbytes=1 << 30)
    assert [item.num_rows for item in stage.process(drained(1))] == [4, 4, 2]
    one = drained()[0].nbytes
    stage.limit_runs(rows=1000, nbytes=3 * one)
    assert [item.num_rows for item in stage.process(drained(2))] == [6, 4]
    SignalWriter("metrics", None, None, Path("unused"), WriterSettings(coalesce_bytes=12345), stage=stage)
    assert (stage.run_rows, stage.run_bytes) == (COALESCE_ROWS, 12345)


@pytest.mark.parametrize("cached", [2, 4096], ids=["sources forgotten", "sources remembered"])
def test_the_stage_finds_each_runs_sources_across_runs(cached, monkeypatch):
    """The stage remembers the sources it saw (a request's sources are imported only when it
    brings a new one); every converted run still refers to the right sources, when a source
    comes back in a later run, when the stage has forgotten it, and when a later run gives a
    known id to another source."""
    from otlpd import _decoder, decode, sources

    monkeypatch.setattr(temporality, "SOURCES_CACHED", cached)

    def drained(i, services):
        return [decode.BUFFER_DECODERS["metrics"](request([sum_metric(
            [(100, 110 + 10 * i, 5 * i + n)], attrs=[("n", str(n))])], service=service).SerializeToString())
            for n, service in enumerate(services)]

    def stored(items):
        return sum((sources.join(item.to_batch(), item.sources_batch()).to_pylist() for item in items), [])

    drains = [["a", "b", "c"], ["c", "d", "a", "e"], ["b"], ["e", "a", "b", "c", "d"]]
    together, alone = temporality.Stage(delta(initial_value="keep")), temporality.Stage(delta(initial_value="keep"))
    for i, services in enumerate(drains):
        run = together.process(drained(i, services))
        assert len(run) == 1
        assert stored(run) == stored([out for item in drained(i, services) for out in alone.process([item])])
        assert sorted(dict(row["resource_attributes"])["service.name"] for row in stored(run)) == sorted(services)
    # one id, two sources, in two runs (every id 0): the second run's source is its own
    old = _decoder._set_source_id_mask(0)
    monkeypatch.setattr(sources, "ID_MASK", 0)
    try:
        first, second = together.process(drained(9, ["x"])), together.process(drained(10, ["y"]))
    finally:
        _decoder._set_source_id_mask(old)
    assert first[0].source_ids == second[0].source_ids == (0,)
    assert [dict(row["resource_attributes"])["service.name"] for row in stored(first + second)] == ["x", "y"]

def test_a_saved_change_names_a_saved_stream_by_its_serial_alone():
    """A stream's identity (431 bytes a series in the benchmark, most of it the resource) is
    saved once: a later change of it is its serial and its values. A change that names a
    stream no saved state holds is refused as damaged, and nothing of it is taken."""
    import struct

    from otlpd import decode

    converter = delta(initial_value="keep")

    def convert(*metrics):
        item = decode.BUFFER_DECODERS["metrics"](request(list(metrics)).SerializeToString())
        converter.convert(decode.as_batch(item), now_ns=1000 * S, source_keys=dict(zip(item.source_ids, item.source_keys)))

    convert(sum_metric([(100, 110, 1)], attrs=[("a", "1")]), sum_metric([(100, 110, 1)], attrs=[("a", "2")]))
    whole = converter.dump()
    converter.mark_saved()
    convert(sum_metric([(100, 120, 5)], attrs=[("a", "1")]), sum_metric([(100, 120, 1)], attrs=[("a", "3")]))
    changes = bytes(converter.dump_changes())  # (bytes-like: the native one hands its buffer over)
    removed, count = struct.unpack_from("<II", changes)
    assert (removed, count) == (0, 2)
    first = struct.unpack_from("<QB", changes, 8)
    assert first == (0, 0)  # stream 0 ("a"="1"), saved before: by its serial alone
    assert struct.unpack_from("<QB", changes, 8 + 9 + 1 + 24 + 17) == (2, 1)  # "a"="3" is new: with its identity
    assert b"svc" not in changes[:8 + 9 + 1 + 24 + 17] and b"svc" in changes[8 + 9 + 1 + 24 + 17:]

    restarted = delta(initial_value="keep")
    restarted.load_dump(whole)
    restarted.load_dump(changes, replace=False)
    assert restarted.dump() == converter.dump()
    unknown = struct.pack("<IIQB", 0, 1, 7, 0) + changes[8 + 9:8 + 9 + 1 + 24 + 17]  # serial 7: no such stream
    with pytest.raises(ValueError, match="no known stream"):
        restarted.load_dump(unknown, replace=False)
    assert restarted.dump() == converter.dump()


def test_the_state_is_saved_at_most_once_an_interval_and_always_at_stop():
    """Stage.commit saves after a write that changed the state once the last save is
    save_interval old; save_in tells the writer when the unsaved state is due (it wakes by
    then, so the saved state is never more than an interval behind); force (the writer's
    last write, at stop) saves at once."""
    from otlpd import decode

    now, saves = [100.0], []
    stage = temporality.Stage(delta(initial_value="keep"), save=lambda converter: saves.append(now[0]),
                              save_interval=1.0, clock=lambda: now[0])

    def write(value):
        stage.process([decode.BUFFER_DECODERS["metrics"](request([sum_metric([(100, 100 + value, value)])]).SerializeToString())])
        stage.commit()

    assert stage.save_in() is None  # nothing to save
    write(1)
    assert saves == [100.0] and stage.save_in() is None  # the first save at once
    now[0] = 100.4
    write(2)
    assert saves == [100.0]  # within the interval: not yet
    assert stage.save_in() == pytest.approx(0.6)
    now[0] = 100.9
    stage.commit()  # a write with nothing new (the writer woke for the save): still early
    assert saves == [100.0]
    now[0] = 101.0
    stage.commit()
    assert saves == [100.0, 101.0] and stage.save_in() is None
    now[0] = 101.2
    write(3)
    stage.commit(force=True)  # the writer's last write, at stop
    assert saves == [100.0, 101.0, 101.2] and not stage.dirty


def test_the_writer_saves_the_conversion_state_at_stop(tmp_path):
    """With a long write interval, the daemon's metrics writer still leaves the state of
    what it wrote on disk when it stops (its last write forces the save)."""
    from otlpd.config import resolve
    from otlpd.daemon import Daemon

    with Daemon.embedded(tmp_path, **{"metrics.temporality": "delta", "metrics.initial_value": "keep",
                                      "writer.write_interval": "1h"}) as daemon:
        daemon.ingest("metrics", request([sum_metric([(100, 110, 1)])]).SerializeToString())
        daemon.ingest("metrics", request([sum_metric([(100, 120, 4)])]).SerializeToString())
    restarted = temporality.TemporalityControl(resolve({}, {}, {
        "output_dir": str(tmp_path), "metrics.temporality": "delta"}), tmp_path)
    [stream] = restarted.stage.converter.state()["streams"]
    assert stream[2] == 120 * S  # the last point's time: nothing written was left unsaved


def test_saving_logs_only_the_streams_that_changed(tmp_path, monkeypatch):
    """TemporalityControl saves the whole state once, then a frame of changes a write (the
    streams converted since, those expired); a restart takes the whole state and the frames
    of its generation, and stops at a frame cut short by a crash."""
    import struct
    import zlib

    from otlpd import decode
    from otlpd.config import resolve

    monkeypatch.setattr(temporality, "DEFAULT_CONVERTER", Converter)  # the one under test

    now = [0.0]  # the stage's clock: a save at most once a writer.write_interval (1 s)

    def control():
        return temporality.TemporalityControl(resolve({}, {}, {
            "output_dir": str(tmp_path), "metrics.temporality": "delta", "metrics.initial_value": "keep",
            "metrics.max_stale": "1h"}), tmp_path, clock=lambda: now[0])

    def write(stage, *metrics):
        now[0] += 1.0
        stage.process([decode.BUFFER_DECODERS["metrics"](request(list(metrics)).SerializeToString())])
        stage.commit()

    def frames():
        data, at, found = (tmp_path / temporality.CHANGES_FILE).read_bytes(), 0, []
        while at < len(data):
            length, _ = struct.unpack_from("<II", data, at)
            found.append(struct.unpack_from("<QII", data, at + 8))  # generation, removed, and the changed count
            at += 8 + length
        return found

    first = control()
    assert isinstance(first.stage.converter, Converter)
    write(first.stage, sum_metric([(100, 110, 1)], attrs=[("a", "1")]), sum_metric([(100, 110, 1)], attrs=[("a", "2")]))
    header, _ = temporality._split_whole((tmp_path / temporality.STREAMS_FILE).read_bytes())
    assert header == {"version": temporality.STATE_VERSION, "temporality": "delta", "generation": 1}
    assert not (tmp_path / temporality.CHANGES_FILE).exists()  # the first save is whole
    write(first.stage, sum_metric([(100, 120, 5)], attrs=[("a", "1")]))
    write(first.stage, sum_metric([(100, 130, 9)], attrs=[("a", "1")]))
    assert frames() == [(1, 0, 1), (1, 0, 1)]  # one stream changed a write
    expected = first.stage.converter.dump()

    assert control().stage.converter.dump() == expected
    with open(tmp_path / temporality.CHANGES_FILE, "ab") as log_file:  # a crash in the middle of a frame
        log_file.write(struct.pack("<II", 40, 0) + b"\x01" * 7)
    assert control().stage.converter.dump() == expected
    (tmp_path / temporality.CHANGES_FILE).unlink()  # a frame of an older generation is not this state's
    stale = struct.pack("<Q", 0) + struct.pack("<II", 0, 0)
    (tmp_path / temporality.CHANGES_FILE).write_bytes(struct.pack("<II", len(stale), zlib.crc32(stale)) + stale)
    assert control().stage.converter.streams == 2
