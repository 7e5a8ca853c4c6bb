"""The native temporality converter against the reference, on random series: the same
stored rows, counters and saved state, and each goes on from the other's state."""
import json
import os

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from otlpd import decode, temporality
from otlpd.temporality import CUMULATIVE, DELTA, Settings
from test_temporality import S, kv, pb, request

if os.environ.get("OTLPD_PURE_PYTHON") == "1":
    pytest.skip("OTLPD_PURE_PYTHON=1: the native converter is disabled", allow_module_level=True)


_ATTRS = st.lists(st.sampled_from([("a", "1"), ("b", "2"), ("a", "2"), ("c", b"\x00raw"), ("d", 7)]),
                  max_size=3, unique_by=lambda kv_: kv_[0])


def _any_kv(key, value):
    if isinstance(value, bytes):  # bytes go to attributes_other
        return pb.KeyValue(key=key, value=pb.AnyValue(bytes_value=value))
    if isinstance(value, int):
        return pb.KeyValue(key=key, value=pb.AnyValue(int_value=value))
    return kv(key, value)


@st.composite
def _point(draw, kind):
    start = draw(st.integers(0, 6)) * 10
    time = start + draw(st.integers(0, 20))
    attrs = [_any_kv(k, v) for k, v in draw(st.permutations(draw(_ATTRS)))]
    flags = 1 if draw(st.integers(0, 15)) == 0 else 0
    common = dict(start_time_unix_nano=start * S, time_unix_nano=time * S, attributes=attrs, flags=flags)
    if kind == "sum":
        if draw(st.booleans()):
            return pb.NumberDataPoint(as_int=draw(st.integers(-5, 40) | st.just(2**63 - 1)), **common)
        return pb.NumberDataPoint(as_double=draw(st.floats(-5, 40, allow_nan=False) | st.just(-0.0)), **common)
    if kind == "histogram":
        buckets = draw(st.lists(st.integers(0, 9), min_size=draw(st.sampled_from([0, 2, 3])), max_size=3))
        bounds = draw(st.sampled_from([(), (1.0,), (1.0, 10.0)]))
        extra = {"min": draw(st.floats(0, 5)), "max": draw(st.floats(5, 9))} if draw(st.booleans()) else {}
        if draw(st.booleans()):
            extra["sum"] = draw(st.floats(0, 100))
        return pb.HistogramDataPoint(count=draw(st.integers(0, 30)), bucket_counts=buckets, explicit_bounds=bounds,
                                     **extra, **common)
    sides = {}
    for side in ("positive", "negative"):
        if draw(st.booleans()):
            sides[side] = pb.ExponentialHistogramDataPoint.Buckets(
                offset=draw(st.integers(-3, 3)), bucket_counts=draw(st.lists(st.integers(0, 5), max_size=4)))
    return pb.ExponentialHistogramDataPoint(count=draw(st.integers(0, 30)), scale=draw(st.sampled_from([1, 2])),
                                            zero_count=draw(st.integers(0, 3)), **sides, **common)


@st.composite
def _metric(draw):
    kind = draw(st.sampled_from(["sum", "histogram", "exponential_histogram", "gauge"]))
    points = draw(st.lists(_point("sum" if kind == "gauge" else kind), min_size=1, max_size=6))
    temporality_ = draw(st.sampled_from([DELTA, CUMULATIVE, DELTA, CUMULATIVE, 0]))
    name = draw(st.sampled_from(["m1", "m2"]))
    if kind == "sum":
        return pb.Metric(name=name, sum=pb.Sum(aggregation_temporality=temporality_, is_monotonic=draw(st.booleans()),
                                               data_points=points))
    if kind == "histogram":
        return pb.Metric(name=name, histogram=pb.Histogram(aggregation_temporality=temporality_, data_points=points))
    if kind == "gauge":
        return pb.Metric(name=name, gauge=pb.Gauge(data_points=points))
    return pb.Metric(name=name, exponential_histogram=pb.ExponentialHistogram(
        aggregation_temporality=temporality_, data_points=points))


def _batches(draw):
    return [request(draw(st.lists(_metric(), min_size=1, max_size=4)), service=draw(st.sampled_from(["a", "b"])))
            for _ in range(draw(st.integers(1, 4)))]


def _stored(converter, message, now):
    """What the writer's stage does: the decoded stored rows with their sources' keys."""
    item = decode.BUFFER_DECODERS["metrics"](message.SerializeToString())
    rows = decode.as_batch(item)
    return converter.convert(rows, now_ns=now, source_keys=dict(zip(item.source_ids, item.source_keys)))


def _same(a, b):
    """Rows equal, NaN-free by construction; -0.0 and 0.0 told apart."""
    assert a.schema == b.schema
    left, right = a.to_pylist(), b.to_pylist()
    assert left == right
    for x, y in zip(left, right):
        for name in ("value_double", "sum"):
            if x[name] is not None:
                assert str(x[name]) == str(y[name]), name


@hsettings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_native_converter_agrees_with_the_reference(data):
    """Random series of every convertible kind (resets, out of order, new buckets and scales,
    NoRecordedValue, attributes in any order, attributes_other), random settings and clocks:
    the same rows, counters and saved state, and each can go on from the other's state."""
    if "cython" not in temporality.implementations():
        pytest.fail("otlpd._temporality is not built", pytrace=False)
    draw = data.draw
    options = Settings(temporality=draw(st.sampled_from(["delta", "cumulative"])),
                       initial_value=draw(st.sampled_from(["auto", "keep", "drop"])),
                       max_streams=draw(st.sampled_from([2, 5, 100])), max_stale_ns=draw(st.sampled_from([0, 50 * S])),
                       started_at_ns=draw(st.sampled_from([0, 25 * S])))
    reference, native = temporality.Converter(options), temporality.NativeConverter(options)
    assert reference.dump_changes() is None and native.dump_changes() is None  # nothing saved yet: only whole
    reference.mark_saved()
    native.mark_saved()
    # what a restart would rebuild from the saved changes (TemporalityControl's log)
    mirrors = temporality.Converter(options), temporality.NativeConverter(options)
    now = 1000 * S
    for message in _batches(draw):
        now += draw(st.integers(0, 40)) * S
        _same(_stored(reference, message, now), _stored(native, message, now))
        assert reference.counters.snapshot() == native.counters.snapshot()
        assert reference.streams == native.streams
        changes = reference.dump_changes()
        assert native.dump_changes() == changes  # the same saved bytes
        whole = reference.dump()
        assert native.dump() == whole
        for mirror in mirrors:
            mirror.load_dump(changes, replace=False)
            assert mirror.dump() == whole
    state = json.loads(json.dumps(reference.state()))
    assert json.loads(json.dumps(native.state())) == state
    swapped = temporality.NativeConverter(options), temporality.Converter(options)
    swapped[0].load_dump(reference.dump())
    swapped[1].load_dump(native.dump())
    with pytest.raises(ValueError):
        temporality.NativeConverter(options).load_dump(reference.dump()[:-1] + b"" if reference.streams else b"\x01")
    for message in _batches(draw):
        now += draw(st.integers(0, 40)) * S
        expected = _stored(reference, message, now)
        _same(expected, _stored(swapped[0], message, now))
        _same(expected, _stored(swapped[1], message, now))


def test_the_next_row_guess_never_takes_another_stream():
    """The native table guesses each row's stream from the one that followed the last row's
    stream last time (reports list their series in one order). Reports in that order, then in
    another, with streams expired and their slots taken by new ones between them: every row
    gets its own stream, exactly as the reference's lookup by identity."""
    from test_temporality import sum_metric

    options = Settings(temporality="delta", initial_value="keep", max_stale_ns=30 * S)
    reference, native = temporality.Converter(options), temporality.NativeConverter(options)

    def report(t, names, value):
        return request([sum_metric([(1, t, value * (i + 1))], attrs=[("series", name)]) for i, name in enumerate(names)])

    now = 1000 * S
    plan = [("abc", 1), ("abc", 2), ("abc", 3), ("cba", 4), ("ad", 5), ("adc", 6), ("dab", 7), ("abc", 8), ("bca", 9)]
    for t, (names, value) in enumerate(plan, start=2):
        now += 20 * S  # b and c, left out of a report, expire after the next: their slots go to new streams
        message = report(t * 10, names, value)
        _same(_stored(reference, message, now), _stored(native, message, now))
        assert reference.counters.snapshot() == native.counters.snapshot()
        assert native.dump() == reference.dump()
    assert native.counters.converted_points > 10  # the deltas were computed, not all baselines


def test_rows_of_many_sources_find_theirs_and_an_unknown_source_changes_nothing():
    """Each row's source is found by its source_id natively (a hash table of the batch's
    ids): rows of many sources, interleaved, convert as the reference converts them; a row
    whose source_id has no canonical key is refused before any stream changes."""
    import pyarrow as pa

    from test_temporality import sum_metric

    items = [decode.BUFFER_DECODERS["metrics"](request([sum_metric([(100, 110 + t, 5 * t + n)], attrs=[("n", str(n))])],
                                                       service=f"svc{n}").SerializeToString())
             for t in range(3) for n in range(40)]
    keys = {}
    for item in items:
        keys.update(zip(item.source_ids, item.source_keys))
    rows = pa.Table.from_batches([decode.as_batch(item) for item in items]).combine_chunks().to_batches()[0]
    rows = pa.Table.from_batches([rows.take(pa.array(list(range(0, 120, 2)) + list(range(1, 120, 2))))]).to_batches()[0]
    options = Settings(temporality="delta", initial_value="keep")
    native, reference = temporality.NativeConverter(options), temporality.Converter(options)
    assert native.convert(rows, now_ns=10**12, source_keys=keys).equals(
        reference.convert(rows, now_ns=10**12, source_keys=keys))
    assert native.streams == reference.streams == 40
    before = native.dump()
    known = dict(list(keys.items())[1:])  # the first source's key missing
    with pytest.raises(ValueError, match=f"source_id {next(iter(keys))} has no canonical key"):
        native.convert(rows, now_ns=2 * 10**12, source_keys=known)
    assert native.dump() == before and native.streams == 40


def test_output_blocks_are_reused_only_once_arrow_is_done_with_them():
    """The native converter keeps the large blocks freed by one conversion (its output
    columns, lists, scratch and dumps) for the next (ext/_temporality.pyx, "spare blocks"):
    a block goes back only when the last Arrow buffer over it is gone, so results kept
    across later conversions keep their values; once they are dropped, blocks are kept and
    reused, within the bound, and release_spares frees them."""
    from otlpd import _temporality
    from test_temporality import histogram, sum_metric

    def report(t):  # 3000 counter series and 500 histograms: blocks well over 64 KiB
        series = [sum_metric([(1, t, t * (n + 1))], attrs=[("n", str(n))], name="c") for n in range(3000)]
        hists = [histogram([(1, t, [t, 2 * t, n], 3.0 * t)]) for n in range(500)]
        return request(series + hists)

    options = Settings(temporality="delta", initial_value="keep")
    native, reference = temporality.NativeConverter(options), temporality.Converter(options)
    _temporality.release_spares()
    kept = []
    for t in range(10, 16):
        message = report(t)
        expected = _stored(reference, message, t * 1000 * S)
        got = _stored(native, message, t * 1000 * S)
        _same(got, expected)
        kept.append((got, expected))
        native.dump()
    assert native.counters.converted_points == reference.counters.converted_points > 5 * 3000
    for got, expected in kept:  # nothing written over by the conversions after each
        _same(got, expected)
    del kept, got, expected
    held = _temporality.spare_bytes()
    assert 0 < held <= 64 * 1024 * 1024
    for t in range(16, 20):  # a steady state: blocks taken and given back, the spares within bounds
        message = report(t)
        _same(_stored(native, message, t * 1000 * S), _stored(reference, message, t * 1000 * S))
        assert 0 < _temporality.spare_bytes() <= 64 * 1024 * 1024
    assert _temporality.release_spares() > 0 and _temporality.spare_bytes() == 0


def test_a_daemon_stopped_frees_the_converters_spare_blocks(tmp_path):
    """An application that embeds otlpd gets the converter's spare blocks back when it stops
    the daemon."""
    from otlpd import _temporality
    from otlpd.daemon import Daemon
    from test_temporality import sum_metric

    message = request([sum_metric([(1, 10, n)], attrs=[("n", str(n))]) for n in range(5000)])
    with Daemon.embedded(tmp_path / "data", **{"metrics.temporality": "delta"}):
        _stored(temporality.NativeConverter(Settings(temporality="delta", initial_value="keep")), message, 10**12)
        assert _temporality.spare_bytes() > 0
    assert _temporality.spare_bytes() == 0
