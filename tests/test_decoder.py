"""The Cython decoder (otlpd._decoder) against the protobuf reference (otlpd.schema).

Every test applies one rule (``fuzz_decoder.check``): where the reference raises
DecodeError the Cython decoder raises DecodeError, otherwise both return identical
batches (same schema, bit-identical values, including children under null parents).
Inputs: hypothesis-generated requests, realistic requests, byte-level and
protobuf-aware mutations of both, and hand-written hostile or unusual encodings.

The extension must be built (``python setup.py build_ext --inplace``); with
``OTLPD_PURE_PYTHON=1`` the module is skipped, like the Cython buffer tests.
"""
from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
from fuzz_decoder import (
    batches_identical,
    byte_mutate,
    check,
    enc_varint,
    logs_request,
    metrics_request,
    realistic_requests,
    traces_request,
    wire_encode,
    wire_mutate,
    wire_parse,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import export_requests

from gil import main_thread_ran_during
from otlpd import attributes as lean
from otlpd import proto as pb
from otlpd import schema, sources
from otlpd.schema import SIGNALS, DecodeError

if os.environ.get("OTLPD_PURE_PYTHON") == "1":
    pytest.skip("OTLPD_PURE_PYTHON=1: Cython decoder disabled", allow_module_level=True)
try:
    from otlpd import _decoder
except ImportError as error:  # a missing extension must fail CI, not skip silently
    pytest.fail(f"otlpd._decoder is not importable ({error}); build it with "
                "`python setup.py build_ext --inplace`", pytrace=False)

ROOT = Path(__file__).resolve().parent.parent
REQUEST_NAMES = {"traces": "ExportTraceServiceRequest", "metrics": "ExportMetricsServiceRequest",
                 "logs": "ExportLogsServiceRequest"}
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(signal: str, data: bytes, *, fallback_ok: bool = False, nans: bool = False) -> pa.RecordBatch:
    """Both decoders succeed with identical batches; unless fallback_ok, natively.

    With `nans` the values may hold NaNs, which equals() never finds equal: only the
    bit-level comparison applies."""
    ref = schema.DECODERS[signal](data)
    native = _decoder.decode(signal, data, fallback=False)
    if not fallback_ok:
        assert not isinstance(native, str), f"unexpected fallback: {native}"
    got = _decoder.DECODERS[signal](data)
    got.validate(full=True)
    assert got.schema == ref.schema
    assert nans or got.equals(ref)
    assert batches_identical(got, ref)
    # what the receiver buffers: the stored rows and their sources, as otlpd.sources says
    item = _decoder.decode_chunk(signal, data)
    expected = sources.lean(ref)
    assert (item.source_ids, item.source_keys) == (expected.source_ids, expected.source_keys)
    if isinstance(item, _decoder.Chunk):
        assert batches_identical(item.sources_batch(), expected.sources)
        assert batches_identical(item.to_batch(), expected.rows)
    return got


def assert_both_reject(signal: str, data: bytes) -> str:
    with pytest.raises(DecodeError):
        schema.DECODERS[signal](data)
    with pytest.raises(DecodeError) as info:
        _decoder.DECODERS[signal](data)
    return str(info.value)


# ---------------------------------------------------------------- wire helpers


def fld(number: int, wire_type: int, payload: bytes = b"") -> bytes:
    return enc_varint(number << 3 | wire_type) + payload


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return fld(number, 2, enc_varint(len(payload)) + payload)


def vi(number: int, value: int) -> bytes:
    return fld(number, 0, enc_varint(value))


def f64(number: int, raw: bytes) -> bytes:
    return fld(number, 1, raw)


def f32(number: int, raw: bytes) -> bytes:
    return fld(number, 5, raw)


def traces(*spans: bytes, resource: bytes | None = None, scope: bytes | None = None) -> bytes:
    scope_group = (ld(1, scope) if scope is not None else b"") + b"".join(ld(2, s) for s in spans)
    resource_group = (ld(1, resource) if resource is not None else b"") + ld(2, scope_group)
    return ld(1, resource_group)


def logs(*records: bytes) -> bytes:
    return ld(1, ld(2, b"".join(ld(2, r) for r in records)))


def metrics(*ms: bytes) -> bytes:
    return ld(1, ld(2, b"".join(ld(2, m) for m in ms)))


def kv(key: bytes, value: bytes | None = None, strindex: int | None = None) -> bytes:
    out = ld(1, key)
    if value is not None:
        out += ld(2, value)
    if strindex is not None:
        out += vi(3, strindex)
    return out


def any_str(s: bytes) -> bytes:
    return ld(1, s)


def span_with_attr(value: bytes) -> bytes:
    return traces(ld(5, b"op") + ld(9, kv(b"k", value)))


# ---------------------------------------------------------------- generated requests


@pytest.mark.parametrize("signal", SIGNALS)
def test_generated_requests_and_their_mutations(signal):
    """Every generated request decodes identically (natively, no fallback), and so do
    byte-level and protobuf-aware mutations of it, or both decoders reject them.

    One test per signal so that the (slow) request generation is shared.
    """

    @SETTINGS
    @given(export_requests(signal), st.integers(0, 2**32 - 1))
    def run(request, seed):
        data = request.SerializeToString()
        assert_same(signal, data)
        rng = random.Random(seed)
        for _ in range(2):
            check(signal, byte_mutate(rng, data))
            check(signal, wire_mutate(rng, data))

    run()


@pytest.mark.parametrize("signal", SIGNALS)
def test_realistic_requests_match_reference(signal):
    for data in realistic_requests(scale=2)[signal]:
        batch = assert_same(signal, data)
        assert batch.num_rows > 0


def test_realistic_request_shapes():
    """The realistic requests cover what they claim: events, links, every metric type,
    every log body kind."""
    spans = _decoder.decode_traces(traces_request(100))
    assert pa.compute.sum(pa.compute.list_value_length(spans["events"])).as_py() > 0
    assert pa.compute.sum(pa.compute.list_value_length(spans["links"])).as_py() > 0
    points = _decoder.decode_metrics(metrics_request(12))
    assert set(points["metric_type"].to_pylist()) == {
        "gauge", "sum", "histogram", "exponential_histogram", "summary"}
    records = _decoder.decode_logs(logs_request(16))
    # schema v2: a string body in `body`, any other in `body_other`, an absent one in neither
    strings = records["body"].to_pylist()
    body_types = {1 if text is not None else (other["type"] if other else None)
                  for text, other in zip(strings, records["body_other"].to_pylist())}
    assert body_types == {None, 0, 1, 3, 4, 5, 6, 7}


def test_empty_request_is_an_empty_batch():
    for signal in SIGNALS:
        batch = _decoder.DECODERS[signal](b"")
        assert batch.num_rows == 0
        assert batch.schema == schema.schema_for(signal)
        assert batch.equals(schema.DECODERS[signal](b""))


def test_bytes_like_and_wrong_types():
    data = traces_request(3)
    expected = _decoder.decode_traces(data)
    assert _decoder.decode_traces(bytearray(data)).equals(expected)
    assert _decoder.decode_traces(memoryview(data)).equals(expected)
    with pytest.raises(DecodeError):
        _decoder.decode_traces("not bytes")
    with pytest.raises(DecodeError):
        schema.decode_traces("not bytes")


def test_validity_bitmaps_only_where_nulls():
    def walk(array):
        if array.null_count == 0:
            assert array.buffers()[0] is None, array.type
        if pa.types.is_struct(array.type):
            for i in range(array.type.num_fields):
                walk(array.field(i))
        elif pa.types.is_list(array.type):
            walk(array.values)

    # what the decoder exports itself (DECODERS join rows and sources with pyarrow)
    for signal, requests in realistic_requests().items():
        for data in requests:
            chunk = _decoder.decode_chunk(signal, data)
            assert chunk.sources_batch().num_rows >= 1
            for column in chunk.sources_batch().columns + chunk.to_batch().columns:
                walk(column)


# ---------------------------------------------------------------- mutation fuzzing
# (hypothesis-driven mutations: test_generated_requests_and_their_mutations above)


def test_mutations_of_realistic_requests_follow_the_rule():
    rng = random.Random(1234)
    outcomes = {"equal": 0, "error": 0}
    for signal, requests in realistic_requests().items():
        for data in requests:
            for i in range(60):
                mutated = wire_mutate(rng, data) if i % 2 else byte_mutate(rng, data)
                outcomes[check(signal, mutated)] += 1
    assert outcomes["equal"] > 50 and outcomes["error"] > 50, outcomes


def test_non_minimal_encodings():
    """Overlong (but accepted) tags, lengths and varints everywhere."""
    rng = random.Random(7)
    outcomes = {"equal": 0, "error": 0}
    for signal, requests in realistic_requests().items():
        for data in requests:
            for _ in range(5):
                padded = wire_encode(wire_parse(data), rng, pad_rate=0.3)
                assert padded != data
                # Padding may also hit string bytes that happen to parse as a message.
                outcomes[check(signal, padded)] += 1
    assert outcomes["equal"] >= 1, outcomes


# ---------------------------------------------------------------- hostile inputs


HOSTILE = {
    "huge length": ld(1, b"")[:1] + b"\xff\xff\xff\xff\x0f",
    "length 2**31": b"\x0a\x80\x80\x80\x80\x08" + b"x" * 10,
    "six-byte length": b"\x0a\x81\x80\x80\x80\x80\x00" + b"x",
    "negative length (10-byte varint)": b"\x0a" + b"\xff" * 9 + b"\x01",
    "length past the end of the enclosing message": ld(1, ld(2, b"\x0a\x05ab")),
    "eleven-byte varint": traces(b"\x30" + b"\xff" * 10 + b"\x01"),
    "truncated varint": traces(b"\x30\xff"),
    "truncated tag": b"\x0a\x02\x80\x80",
    "six-byte tag": b"\x88\x80\x80\x80\x80\x00\x01",
    "tag above 2**32": b"\xf8\xff\xff\xff\x1f\x01",
    "field number 0": b"\x00\x01",
    "field number 0 in a span": traces(b"\x02\x00"),
    "wire type 6": b"\x0e",
    "wire type 7": traces(b"\x0f"),
    "end group without start": traces(b"\x0c"),
    "unterminated group": traces(b"\x4b\x08\x01"),
    "mismatched end group": traces(b"\x4b\x08\x01\x54"),
    "truncated fixed64": traces(b"\x39\x01\x02"),
    "truncated fixed32": traces(b"\x85\x01\x01"),
    "invalid UTF-8 span name": traces(ld(5, b"\xff")),
    "surrogate in attribute key": span_with_attr(any_str(b"x"))[:0] + traces(ld(9, kv(b"\xed\xa0\x80"))),
    "overlong UTF-8 in string value": span_with_attr(any_str(b"\xc0\x80")),
    "code point above U+10FFFF": span_with_attr(any_str(b"\xf4\x90\x80\x80")),
    "truncated UTF-8": span_with_attr(any_str(b"ab\xe2\x82")),
    "invalid UTF-8 inside an array value": span_with_attr(ld(5, ld(1, any_str(b"\xff")))),
    "invalid UTF-8 inside a kvlist key": span_with_attr(ld(6, ld(1, kv(b"\xfe")))),
    "invalid UTF-8 in resource schema_url": ld(1, ld(3, b"\xff")),
    "invalid UTF-8 in entity ref id key": ld(1, ld(1, ld(3, ld(3, b"\x80")))),
    "invalid UTF-8 in scope version": traces(resource=b"", scope=ld(2, b"\xc3")),
    "packed fixed64 not a multiple of 8": metrics(ld(1, b"m") + ld(9, ld(1, ld(6, b"\x01\x02\x03")))),
    "truncated packed varint": metrics(ld(1, b"m") + ld(10, ld(1, ld(8, ld(2, b"\x81"))))),
    "invalid data in a replaced oneof member": metrics(ld(5, ld(1, b"\x02\x00")) + ld(7, b"")),
    "invalid UTF-8 in a metric without data": metrics(ld(1, b"\xff")),
    "invalid status message": traces(ld(15, ld(2, b"\xff"))),
    "invalid UTF-8 in a log body": logs(ld(5, any_str(b"\xff"))),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_raise_decode_error(name):
    signal = "metrics" if "metric" in name or "packed" in name or "oneof" in name else (
        "logs" if "log body" in name else "traces")
    message = assert_both_reject(signal, HOSTILE[name])
    assert re.fullmatch(rf"invalid {REQUEST_NAMES[signal]}: [^\n]+ at byte \d+", message), message


def test_error_message_is_readable():
    data = traces(b"\x30" + b"\xff" * 10 + b"\x01")
    with pytest.raises(DecodeError, match=r"^invalid ExportTraceServiceRequest: varint longer "
                                          r"than 10 bytes at byte \d+$"):
        _decoder.decode_traces(data)
    with pytest.raises(DecodeError, match="invalid UTF-8"):
        _decoder.decode_logs(logs(ld(5, any_str(b"\xff"))))


def test_garbage_and_truncations():
    rng = random.Random(99)
    for signal in SIGNALS:
        for n in (1, 2, 3, 7, 50, 300):
            check(signal, bytes(rng.randrange(256) for _ in range(n)))
    data = traces_request(3)
    for cut in range(0, len(data), 7):
        check("traces", data[:cut])


def nested_body(depth: int, kind: str) -> bytes:
    """A log body AnyValue nesting arrays (2 levels each) or kvlists (3 each)."""
    value = b""
    for _ in range(depth):
        if kind == "array":
            value = ld(5, ld(1, value))
        else:
            value = ld(6, ld(1, ld(2, value)))
    return value


@pytest.mark.parametrize("kind, levels, total", [("array", 48, 100), ("array", 49, 102),
                                                 ("kvlist", 32, 100), ("kvlist", 33, 103)])
def test_nesting_limit_matches_upb(kind, levels, total):
    """upb accepts 100 nested messages (the request is level 0) and rejects 101."""
    data = logs(ld(5, nested_body(levels, kind)))  # 3 + 1 + levels * (2|3) levels
    if total <= 100:
        assert_same("logs", data)
    else:
        assert "nested more than 100 deep" in assert_both_reject("logs", data)


@pytest.mark.parametrize("groups, ok", [(96, True), (97, False)])
def test_group_nesting_limit(groups, ok):
    body = b""
    for _ in range(groups):
        body = b"\x4b" + body + b"\x4c"  # an unknown group, field 9, in the log body (level 4)
    data = logs(ld(5, body))
    if ok:
        assert_same("logs", data)
    else:
        assert_both_reject("logs", data)


def test_deeply_nested_garbage_does_not_overflow_the_stack():
    data = b"\x0a\x7f" * 5000 + b"\x4b" * 5000
    for signal in SIGNALS:
        check(signal, data)


def test_request_too_large():
    old = _decoder._set_max_replicated(100)  # service_name is what a scope group replicates
    try:
        with pytest.raises(DecodeError, match="request too large"):
            _decoder.decode_traces(traces_request(50))
    finally:
        _decoder._set_max_replicated(old)
    assert_same("traces", traces_request(50))


# ---------------------------------------------------------------- protobuf semantics


SEMANTICS = {
    "singular scalar: last occurrence wins": traces(ld(5, b"a") + vi(6, 1) + ld(5, b"b") + vi(6, 3)),
    "unknown fields of every wire type": traces(
        vi(99, 1) + f64(98, b"\x00" * 8) + f32(97, b"\x00" * 4) + ld(96, b"\xff\xfe")
        + b"\xcb\x06\x08\x01\xcc\x06" + ld(5, b"op"), resource=vi(50, 7), scope=ld(60, b"\xff")),
    "largest field number": traces(fld(2**29 - 1, 0, b"\x01") + ld(5, b"op")),
    "known field with another wire type is unknown": traces(vi(5, 7) + f32(6, b"\x01\x00\x00\x00")
                                                           + ld(16, b"\x01\x02\x03\x04")),
    "unknown group with field 0 inside": traces(b"\x4b\x00\x01\x03\x04\x4c" + ld(5, b"op")),
    "string field as a group is an unknown group": traces(b"\x2b\x08\x01\x2c" + ld(5, b"op")),
    "negative and 64-bit enums truncate to int32": traces(b"\x30" + b"\xff" * 9 + b"\x01")
    + traces(b"\x30\xff\xff\xff\xff\x1f"),
    "10-byte varint drops bits above 64": traces(b"\x50" + b"\xff" * 9 + b"\x7f"),
    "resource and scope messages merge": ld(1, ld(1, ld(1, kv(b"service.name", vi(3, 1))))
                                            + ld(2, ld(1, ld(1, b"lib")) + ld(2, ld(5, b"op"))
                                                 + ld(1, ld(2, b"v1")))
                                            + ld(1, ld(1, kv(b"service.name", any_str(b"svc")))
                                                 + vi(2, 3))),
    "status messages merge": traces(ld(15, vi(3, 2)) + ld(15, ld(2, b"boom"))),
    "status present but empty": traces(ld(15, b"")),
    "KeyValue.value merges: last oneof member wins": traces(ld(9, kv(b"k", any_str(b"s")) + ld(2, vi(3, 5)))),
    "AnyValue: last oneof member wins": span_with_attr(vi(2, 1) + any_str(b"x") + vi(8, 2**32 - 1)),
    "array replaced by another member then set again": span_with_attr(
        ld(5, ld(1, vi(3, 1))) + vi(2, 1) + ld(5, ld(1, vi(3, 2)))),
    "KeyValue without value vs empty AnyValue": traces(ld(9, kv(b"a")) + ld(9, kv(b"b", b""))),
    "bool from varints other than 0/1": span_with_attr(vi(2, 2)) + span_with_attr(
        b"\x10" + b"\x80" * 9 + b"\x02"),
    "int32 strindex from a 5-byte varint": traces(ld(9, kv(b"k", None, 2**32 - 1))),
    "times at and above 2**63 wrap": traces(f64(7, (2**63).to_bytes(8, "little"))
                                            + f64(8, (2**64 - 1).to_bytes(8, "little"))),
    "service.name: first one, and only if a string": ld(1, ld(1, ld(1, kv(b"service.name", vi(3, 1)))
                                                              + ld(1, kv(b"service.name", any_str(b"x"))))
                                                        + ld(2, ld(2, b""))),
    "service.name is a string": ld(1, ld(1, ld(1, kv(b"service.name", any_str(b"x")))
                                         + ld(1, kv(b"service.name", any_str(b"y"))))
                                   + ld(2, ld(2, b""))),
    "service.name without value": ld(1, ld(1, ld(1, kv(b"service.name"))) + ld(2, ld(2, b""))),
    "resource and scope absent": ld(1, ld(2, ld(2, ld(5, b"op")))),
    "resource group without scopes": ld(1, ld(1, ld(1, kv(b"k")))) + traces(ld(5, b"op")),
    # ResourceSpans{scope_spans{spans{name: "x", kind: 2}}}, every varint one byte too long.
    "non-minimal tags, lengths and varints": ld(1, b"\x92\x00\x8e\x80\x00" + b"\x92\x00\x8a\x00"
                                                + b"\xaa\x00\x81\x00x" + b"\xb0\x00\x82\x80\x00"),
    "events and links with unknown fields": traces(ld(11, vi(9, 1) + ld(2, b"ev") + vi(4, 3))
                                                   + ld(13, f32(6, b"\x01\x00\x00\x00") + vi(9, 9))),
}


@pytest.mark.parametrize("name", sorted(SEMANTICS))
def test_semantics_match_reference(name):
    assert_same("traces", SEMANTICS[name])


def number_point(*fields: bytes) -> bytes:
    return b"".join(fields)


METRIC_SEMANTICS = {
    "oneof: a later member replaces the earlier one": metrics(
        ld(1, b"m") + ld(5, ld(1, f64(4, b"\x00" * 8))) + ld(7, ld(1, vi(8, 1)) + vi(2, 2))),
    "oneof: the same member merges": metrics(
        ld(7, ld(1, vi(8, 1)) + vi(2, 1)) + ld(1, b"m") + ld(7, ld(1, vi(8, 2)) + vi(3, 1))),
    "oneof: back to an earlier member starts afresh": metrics(
        ld(5, ld(1, b"")) + ld(7, ld(1, b"")) + ld(5, ld(1, vi(8, 5)))),
    "metric without data points": metrics(ld(1, b"m") + ld(9, vi(2, 1))),
    "metric without data at all": metrics(ld(1, b"m") + ld(12, kv(b"k"))),
    "number point: as_double then as_int": metrics(ld(5, ld(1, f64(4, b"\x00" * 7 + b"\x40")
                                                          + f64(6, b"\x07" + b"\x00" * 7)))),
    "histogram: packed and unpacked counts and bounds mixed": metrics(ld(9, ld(1, (
        ld(6, (1).to_bytes(8, "little") + (2).to_bytes(8, "little"))
        + f64(6, (3).to_bytes(8, "little")) + f64(7, b"\x00" * 8) + ld(7, b"")
        + f64(5, b"\x00" * 8) + f64(11, b"\x00" * 8))))),
    "exponential: buckets merge, sint32 edges": metrics(ld(10, ld(1, (
        ld(8, vi(1, 2**32 - 1) + ld(2, enc_varint(1) + enc_varint(2**64 - 1)))
        + ld(8, vi(2, 5) + vi(1, 0xFFFFFFFF1F)) + vi(6, 0xFFFFFFFE) + ld(9, b""))))),
    "summary: quantiles with unknown fields": metrics(ld(11, ld(1, (
        ld(6, f64(1, b"\x00" * 8) + vi(5, 1) + f64(2, b"\x00" * 7 + b"\x3f")) + f64(5, b"\x00" * 8))))),
    "exemplars: value oneof last wins": metrics(ld(5, ld(1, ld(5, f64(3, b"\x00" * 8) + f64(6, b"\x01" * 8))
                                                          + ld(5, ld(7, kv(b"k")))))),
    "data point flags as fixed32 is unknown": metrics(ld(5, ld(1, f32(8, b"\x01\x00\x00\x00")))),
}


@pytest.mark.parametrize("name", sorted(METRIC_SEMANTICS))
def test_metric_semantics_match_reference(name):
    assert_same("metrics", METRIC_SEMANTICS[name])


def test_log_semantics_match_reference():
    assert_same("logs", logs(ld(5, any_str(b"a")) + ld(5, vi(3, 1)) + vi(2, 2**64 - 1)))
    assert_same("logs", logs(ld(5, b"")))  # an empty body is {type: 0}, not null
    assert_same("logs", logs(b""))
    assert_same("logs", logs(ld(5, ld(6, ld(1, kv(b"k", vi(2, 1))))) + ld(5, vi(4, 0))))


# ---------------------------------------------------------------- schema v2: attribute sites
# otlpd.attributes.split(): map iff among the list's first 128 KeyValues, value of type
# 1..4 (not NaN), key_strindex 0, key not seen earlier in the list; else the side list.


def _d(x: float) -> pb.AnyValue:
    return pb.AnyValue(double_value=x)


def _bits(u: int) -> float:
    return struct.unpack("<d", u.to_bytes(8, "little"))[0]


def _kvs(*pairs) -> list:
    """pb.KeyValue from (key, AnyValue or None[, key_strindex])."""
    return [pb.KeyValue(key=p[0], value=p[1], key_strindex=p[2] if len(p) > 2 else 0) for p in pairs]


_S, _I, _B = (lambda v: pb.AnyValue(string_value=v)), (lambda v: pb.AnyValue(int_value=v)), (
    lambda v: pb.AnyValue(bool_value=v))
ATTRIBUTE_CASES = {
    "duplicate keys: the first in the map, later ones aside": _kvs(
        ("k", _S("a")), ("k", _S("b")), ("k", _I(1)), ("j", _I(2)), ("j", None)),
    "a key seen aside keeps later ones aside": _kvs(
        ("k", pb.AnyValue(bytes_value=b"x")), ("k", _S("s")), ("e", pb.AnyValue()), ("e", _I(1))),
    "key_strindex aside, its key counts as seen": _kvs(
        ("", _S("a"), 3), ("", _S("b")), ("x", _S("c"), -1), ("x", _S("d"))),
    "KeyValue without value, empty AnyValue, strindex value": _kvs(
        ("a", None), ("a", _S("x")), ("b", pb.AnyValue()), ("c", pb.AnyValue(string_value_strindex=7))),
    "empty keys and strings": _kvs(("", _S("")), ("", _S("")), ("x", _S(""))),
    "int64 extremes and bools": _kvs(
        ("min", _I(-(2**63))), ("max", _I(2**63 - 1)), ("zero", _I(0)), ("neg", _I(-1)),
        ("t", _B(True)), ("f", _B(False))),
    "NaNs aside (payloads and sign kept)": _kvs(
        ("nan", _d(float("nan"))), ("nan", _d(1.0)), ("qnan-", _d(_bits(0xFFF8000000000001))),
        ("snan", _d(_bits(0x7FF0000000000001))), ("ok", _d(2.5))),
    "doubles: fast path, %.17g fallback, specials": _kvs(*[
        (f"d{i}", _d(x)) for i, x in enumerate([
            0.1 + 0.2, 5e-324, 1e300, -0.0, 0.0, float("inf"), float("-inf"), 1.0, 0.25, -1.5,
            0.1, 1 / 3, 123456.789, 2.0**53, 2.0**53 - 1, -(2.0**53) + 1, 1e15 + 0.3, 1e-5, 1e-15,
            1.5e-15, 1e21, 1e22, 1.7976931348623157e308, 2.2250738585072014e-308, 100.0, 0.3,
            9007199254740.993, 4.35, 1.005, 2.675, -123.456e-10, 1e16, 12345678.9])]),
    "more than 128 attributes": _kvs(*[(f"k{i}", _S(str(i))) for i in range(200)]),
    "key first seen after the limit, duplicates across the limit": _kvs(
        *[(f"k{i}", _I(i)) for i in range(127)], ("last", _S("in")), ("late", _S("out")),
        ("k0", _S("dup")), ("late", _S("again"))),
}


def _every_site(kvs: list) -> dict:
    """One request per signal with `kvs` at every attribute site."""
    traces_req = pb.ExportTraceServiceRequest(resource_spans=[pb.ResourceSpans(
        resource=pb.Resource(attributes=kvs), scope_spans=[pb.ScopeSpans(
            scope=pb.InstrumentationScope(name="s", attributes=kvs), spans=[
                pb.Span(name="a", attributes=kvs, events=[pb.Span.Event(name="e", attributes=kvs)] * 2,
                        links=[pb.Span.Link(attributes=kvs), pb.Span.Link(attributes=kvs[:1])]),
                pb.Span(name="b", attributes=kvs[::-1])])])])
    exemplar = pb.Exemplar(filtered_attributes=kvs, as_int=1)
    points = [pb.NumberDataPoint(attributes=kvs, as_int=1, exemplars=[exemplar, exemplar]),
              pb.NumberDataPoint(attributes=kvs[1:], as_double=1.5)]
    metrics_req = pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource=pb.Resource(attributes=kvs), scope_metrics=[pb.ScopeMetrics(
            scope=pb.InstrumentationScope(attributes=kvs), metrics=[
                pb.Metric(name="g", metadata=kvs, gauge=pb.Gauge(data_points=points)),
                pb.Metric(name="h", metadata=kvs[::-1], histogram=pb.Histogram(data_points=[
                    pb.HistogramDataPoint(attributes=kvs, exemplars=[exemplar])]))])])])
    logs_req = pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
        resource=pb.Resource(attributes=kvs), scope_logs=[pb.ScopeLogs(
            scope=pb.InstrumentationScope(attributes=kvs), log_records=[
                pb.LogRecord(attributes=kvs, body=_S("text")), pb.LogRecord(attributes=kvs[:2])])])])
    return {"traces": traces_req.SerializeToString(), "metrics": metrics_req.SerializeToString(),
            "logs": logs_req.SerializeToString()}


@pytest.mark.parametrize("name", sorted(ATTRIBUTE_CASES))
def test_attribute_sites_match_reference(name):
    for signal, data in _every_site(ATTRIBUTE_CASES[name]).items():
        assert_same(signal, data, nans="NaN" in name)


def test_attribute_rules_land_where_expected():
    kvs = ATTRIBUTE_CASES["key first seen after the limit, duplicates across the limit"]
    batch = _decoder.decode_traces(_every_site(kvs)["traces"])
    entries = batch["attributes"][0].as_py()
    assert len(entries) == 128 and entries[-1] == ("last", "in")
    assert batch["attributes_types"][0].as_py() == b"\x03" * 127 + b"\x01"
    assert [(o["index"], o["key"]) for o in batch["attributes_other"][0].as_py()] == [
        (128, "late"), (129, "k0"), (130, "late")]
    kvs = ATTRIBUTE_CASES["doubles: fast path, %.17g fallback, specials"]
    texts = dict(_decoder.decode_traces(_every_site(kvs)["traces"])["attributes"][0].as_py())
    assert texts["d0"] == "0.30000000000000004" and texts["d1"] == lean.double_text(5e-324) == "4.94065645841247e-324"
    assert (texts["d3"], texts["d4"], texts["d5"], texts["d6"], texts["d7"]) == ("-0", "0", "inf", "-inf", "1")


def test_double_texts_match_reference():
    """Many doubles (random bits, short decimals, integers): the map's text is double_text()'s."""
    rng = random.Random(7)
    values = [_bits(rng.getrandbits(64)) for _ in range(3000)]
    values += [round(rng.uniform(-1e6, 1e6), rng.randrange(0, 16)) for _ in range(3000)]
    values += [float(rng.getrandbits(rng.randrange(1, 64))) * rng.choice((1, -1)) for _ in range(1000)]
    values += [rng.randrange(1, 10**6) / 10 ** rng.randrange(0, 20) for _ in range(2000)]
    spans = [pb.Span(name="s", attributes=[pb.KeyValue(key="v", value=_d(v))]) for v in values]
    data = pb.ExportTraceServiceRequest(resource_spans=[pb.ResourceSpans(
        scope_spans=[pb.ScopeSpans(spans=spans)])]).SerializeToString()
    batch = assert_same("traces", data, nans=True)
    got = [dict(e).get("v") for e in batch["attributes"].to_pylist()]
    assert got == [lean.double_text(v) for v in values]


def test_log_bodies_string_other_absent():
    records = [pb.LogRecord(body=_S("text")), pb.LogRecord(body=_S("")), pb.LogRecord(),
               pb.LogRecord(body=pb.AnyValue()), pb.LogRecord(body=_I(3)), pb.LogRecord(body=_d(float("nan"))),
               pb.LogRecord(body=pb.AnyValue(bytes_value=b"\x00")), pb.LogRecord(body=_B(False))]
    data = pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(
        scope_logs=[pb.ScopeLogs(log_records=records)])]).SerializeToString()
    batch = assert_same("logs", data, nans=True)
    assert batch["body"].to_pylist() == ["text", "", None, None, None, None, None, None]
    assert [o and o["type"] for o in batch["body_other"].to_pylist()] == [None, None, None, 0, 3, 4, 7, 2]


_v2_keys = st.sampled_from(["k", "j", "", "service.name", "http.route", "ü"])
_v2_values = st.one_of(
    st.none(), st.just(pb.AnyValue()), st.text(max_size=4).map(_S), st.booleans().map(_B),
    st.integers(-(2**63), 2**63 - 1).map(_I), st.floats().map(_d),
    st.integers(0, 2**64 - 1).map(lambda u: _d(_bits(u))),
    st.binary(max_size=3).map(lambda b: pb.AnyValue(bytes_value=b)),
    st.integers(-3, 3).map(lambda i: pb.AnyValue(string_value_strindex=i)))
_v2_kv = st.builds(lambda k, v, si: pb.KeyValue(key=k, value=v, key_strindex=si), _v2_keys, _v2_values,
                   st.sampled_from([0, 0, 0, 0, 1, -1]))
_v2_lists = st.one_of(st.lists(_v2_kv, max_size=8), st.lists(_v2_kv, min_size=120, max_size=140))


@SETTINGS
@given(_v2_lists)
def test_generated_attribute_lists_match_reference(kvs):
    for signal, data in _every_site(kvs).items():
        assert_same(signal, data, nans=True)


# ---------------------------------------------------------------- fallbacks


FALLBACKS = {
    # The reference stores upb's re-serialization of array/kvlist values.
    "unknown field before a known one": ld(5, vi(9, 1) + ld(1, any_str(b"x"))),
    "non-minimal length inside the array": ld(5, b"\x0a\x83\x00" + any_str(b"x")),
    "empty key written explicitly": ld(6, ld(1, ld(1, b"") + ld(2, vi(3, 1)))),
    "KeyValue fields out of order": ld(6, ld(1, ld(2, vi(3, 1)) + ld(1, b"k"))),
    "bool encoded as 2": ld(5, ld(1, vi(2, 2))),
    "int32 strindex encoded in 5 bytes": ld(6, ld(1, ld(1, b"k") + b"\x18\xff\xff\xff\xff\x0f")),
    "two oneof members in a nested AnyValue": ld(5, ld(1, vi(3, 1) + vi(2, 1))),
    "array value set twice (merged)": ld(5, ld(1, b"")) + ld(5, ld(1, vi(3, 2))),
}


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_fallbacks_give_the_reference_result(name):
    data = span_with_attr(FALLBACKS[name])
    reason = _decoder.decode("traces", data, fallback=False)
    assert isinstance(reason, str) and reason, reason
    before = _decoder.stats()["fallbacks"]
    assert_same("traces", data, fallback_ok=True)
    assert _decoder.stats()["fallbacks"] == before + 2  # assert_same: DECODERS and decode_chunk


def test_canonical_nested_values_are_copied_natively():
    value = ld(6, ld(1, kv(b"a", vi(3, 2**63))) + ld(1, kv(b"b", ld(5, ld(1, any_str(b"x")) + ld(1, b"")),
                                                            strindex=-1)))
    assert_same("traces", span_with_attr(value))


# ---------------------------------------------------------------- memory and threads


def _rss() -> int:
    return psutil.Process().memory_info().rss


def test_repeated_calls_do_not_leak():
    inputs = [("traces", traces_request(200)), ("metrics", metrics_request(30)),
              ("logs", logs_request(100)),
              ("traces", traces_request(20)[:-3]),  # error path
              ("traces", span_with_attr(FALLBACKS["bool encoded as 2"]))]  # fallback path

    def run(n):
        for _ in range(n):
            for signal, data in inputs:
                try:
                    _decoder.DECODERS[signal](data)
                except DecodeError:
                    pass

    run(30)  # warm up allocators and the template pool
    before = _rss()
    run(300)
    growth = _rss() - before
    # 300 rounds decode ~1.5 GB of batches: a leak of even 1% would show.
    assert growth < 24 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_released_batches_give_their_memory_back():
    """A batch's block is its own mapping (docs/DECODER.md, "Memory"): holding
    batches costs their bytes, releasing them returns those bytes to the kernel
    (beyond a bounded cache) instead of leaving free chunks in the allocator."""
    data = traces_request(1000)
    _decoder.decode_chunk("traces", data).to_batch()  # warm up the pooled trees
    before = _rss()
    batches = [_decoder.decode_chunk("traces", data).to_batch() for _ in range(144)]
    held = sum(batch.nbytes for batch in batches)
    assert held > 64 * 2**20
    grown = _rss() - before
    assert grown > 0.8 * held, f"holding {held / 2**20:.0f} MiB grew RSS by {grown / 2**20:.0f} MiB"
    columns = [batches[0].column("name"), batches[-1].column("attributes")]
    del batches
    kept = _rss() - before
    # what may stay: the bounded cache of released mappings kept for reuse
    cache = _decoder.stats()["map_cache_bytes"]
    assert 0 < cache <= _decoder.stats()["map_cache_limit"] < held / 4
    assert kept < cache + 0.1 * held, f"{kept / 2**20:.0f} MiB of {held / 2**20:.0f} MiB still resident"
    # the two columns kept their batches' blocks alive and readable
    assert columns[0].to_pylist() == _decoder.decode_traces(data).column("name").to_pylist()
    assert len(columns[1]) == 1000


def test_batches_outlive_the_request_bytes():
    data = bytearray(traces_request(20))
    batch = _decoder.decode_traces(data)  # decoded from a temporary bytes copy
    expected = {name: batch[name].to_pylist() for name in ("name", "span_id", "attributes")}
    data[:] = b"\x00" * len(data)
    del data
    assert {name: batch[name].to_pylist() for name in expected} == expected


def test_decoding_releases_the_gil():
    """While a long decode runs in a thread, this thread keeps running Python code.

    (C code holding the GIL would block us for the whole call, whatever the switch
    interval; only the middle of the call is checked, to ignore the GIL-held edges.)
    """
    data = traces_request(200) * 20  # concatenated requests merge: 4000 spans
    _decoder.decode_traces(data)  # warm up
    assert main_thread_ran_during(lambda: _decoder.decode_traces(data)), \
        "the main thread never ran while the decoder worked"


def test_concurrent_decoding_is_consistent():
    requests = [traces_request(50), traces_request(5, resources=3)]
    expected = [_decoder.decode_traces(d) for d in requests]
    errors = []

    def work(k):
        try:
            for i in range(40):
                j = (i + k) % 2
                assert _decoder.decode_traces(requests[j]).equals(expected[j])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------- the seam


def _implementation(env_extra: dict) -> str:
    env = dict(os.environ)
    env.pop("OTLPD_PURE_PYTHON", None)
    env.update(env_extra)
    code = ("import otlpd.decode as d, otlpd._decoder as c, otlpd.schema as s;"
            "print(d.IMPLEMENTATION, d.DECODERS['traces'] is c.decode_traces,"
            " d.DECODERS['logs'] is s.decode_logs, d.DecodeError is s.DecodeError)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_seam_selects_cython_when_built():
    assert _implementation({}) == "cython True False True"


def test_seam_selects_protobuf_with_pure_python():
    assert _implementation({"OTLPD_PURE_PYTHON": "1"}) == "protobuf False True True"


def test_seam_lists_implementations():
    from otlpd import decode

    found = decode.implementations()
    assert set(found) == {"protobuf", "cython"}
    assert found["cython"]["metrics"] is _decoder.decode_metrics
    assert found["protobuf"]["metrics"] is schema.decode_metrics


# ---------------------------------------------------------------- chunks and merge


def reference_concat(signal: str, requests: list[bytes]) -> pa.RecordBatch:
    """The reference's stored rows of the requests, concatenated."""
    batches = [sources.lean(schema.DECODERS[signal](data)).rows for data in requests]
    combined = pa.Table.from_batches(batches).combine_chunks().to_batches()
    return combined[0] if combined else batches[0]  # no rows at all


def assert_merge_is_concat(signal: str, requests: list[bytes]) -> pa.RecordBatch:
    """merge() of the requests' chunks is the reference batches concatenated, bit for
    bit, and leaves the chunks as they were (a second merge gives the same)."""
    chunks = [_decoder.decode_chunk(signal, data) for data in requests]
    assert all(isinstance(chunk, _decoder.Chunk) for chunk in chunks)
    merged = _decoder.merge(chunks)
    merged.validate(full=True)
    expected = reference_concat(signal, requests)
    assert merged.schema == expected.schema
    assert batches_identical(merged, expected)
    assert batches_identical(_decoder.merge(chunks), expected)
    return merged


@pytest.mark.parametrize("signal", SIGNALS)
def test_merged_chunks_are_the_concatenated_reference_batches(signal):
    """Generated requests of odd sizes put every source at an unaligned bit offset of
    the merged validity and boolean bitmaps; empty requests are merged too."""

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(export_requests(signal), min_size=1, max_size=4))
    def run(requests):
        assert_merge_is_concat(signal, [request.SerializeToString() for request in requests])

    run()


@pytest.mark.parametrize("signal", SIGNALS)
def test_merged_realistic_requests_of_mixed_sizes(signal):
    build = {"traces": traces_request, "metrics": metrics_request, "logs": logs_request}[signal]
    requests = [build(n) for n in (1, 3, 50, 7, 200, 1)] + realistic_requests(scale=2)[signal]
    merged = assert_merge_is_concat(signal, requests)
    assert merged.num_rows > 200


def test_chunk_answers_like_a_batch_and_converts_once():
    # 300 rows: each block also holds a fixed ~100 bytes of metadata per Arrow node (some
    # 200 nodes), which dominates a request of a few dozen lean rows
    data = traces_request(300)
    chunk = _decoder.decode_chunk("traces", data)
    assert (chunk.num_rows, chunk.signal, chunk.schema) == (300, "traces", sources.rows_schema("traces"))
    lean = sources.lean(_decoder.decode_traces(data))
    # nbytes is the chunk's memory blocks (rows and sources): the buffers plus alignment
    # and node metadata
    assert lean.get_total_buffer_size() <= chunk.nbytes == chunk.get_total_buffer_size()
    assert chunk.nbytes < 2 * lean.get_total_buffer_size()
    assert batches_identical(chunk.to_batch(), lean.rows)
    assert batches_identical(chunk.sources_batch(), lean.sources)
    assert chunk.sources_batch() is chunk.sources_batch()  # imported once
    with pytest.raises(ValueError, match="already converted"):
        chunk.to_batch()
    with pytest.raises(ValueError, match="already converted"):
        _decoder.merge([chunk])
    assert chunk.num_rows == 300


def test_merge_rejects_what_it_cannot_merge():
    traces = _decoder.decode_chunk("traces", traces_request(3))
    logs = _decoder.decode_chunk("logs", logs_request(3))
    with pytest.raises(ValueError, match="one signal"):
        _decoder.merge([traces, logs])
    with pytest.raises(TypeError, match="Chunks, not RecordBatch"):
        _decoder.merge([traces, _decoder.decode_traces(traces_request(3))])
    with pytest.raises(ValueError, match="1 to"):
        _decoder.merge([])
    # where the reference path decodes a request, the result is its otlpd.sources.Lean
    assert isinstance(_decoder.decode_chunk("traces", span_with_attr(FALLBACKS["bool encoded as 2"])),
                      sources.Lean)
    with pytest.raises(DecodeError):
        _decoder.decode_chunk("traces", traces_request(20)[:-3])


def test_merges_reuse_one_mapping_per_signal():
    """A merged batch's mapping is kept for the signal's next merge (docs/DECODER.md,
    "Merging"): repeated merges map no new memory."""
    chunks = [_decoder.decode_chunk("logs", logs_request(1000)) for _ in range(8)]
    _decoder.merge(chunks)  # released at once: its mapping is kept
    kept = _decoder.stats()["merge_cache_bytes"]
    assert kept >= sum(chunk.nbytes for chunk in chunks) * 0.8
    mapped = _decoder.stats()["mapped_bytes"]
    for _ in range(5):
        merged = _decoder.merge(chunks)
        assert merged.num_rows == 8000
        del merged
    assert _decoder.stats()["mapped_bytes"] == mapped
    assert _decoder.stats()["merge_cache_bytes"] == kept
    # merging only read the chunks: each still converts, once
    assert batches_identical(chunks[0].to_batch(), sources.lean(_decoder.decode_logs(logs_request(1000))).rows)
