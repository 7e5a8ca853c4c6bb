"""Differential fuzzing of the Cython decoder (otlpd._decoder) against the reference.

The rule, for any bytes and each signal: if the reference (``otlpd.schema.decode_*``)
raises DecodeError, the Cython decoder must raise DecodeError; if the reference
returns a batch, the Cython decoder must return an identical one (same schema, same
values, even under null parents). Anything else (another exception, a crash) is a bug.

Run the atheris harness (not collected by pytest; atheris is not a project
dependency, install it locally with ``pip install atheris``)::

    cd /work/main && python setup.py build_ext --inplace
    python tests/fuzz_decoder.py -max_total_time=30 -rss_limit_mb=4096

Other libFuzzer flags work too (``-runs=N``, a corpus directory as positional
argument, ``-seed=N``). The first input byte selects the signal; the harness
seeds itself with realistic requests of every signal and, half of the time,
mutates at the protobuf wire level (duplicate/reorder/insert fields, change wire
types, wrap fields in groups, non-minimal varints) instead of libFuzzer's byte
mutations, so that most inputs stay parseable and reach the decoding logic.

tests/test_decoder.py imports the helpers below (``check``, ``wire_mutate``,
``realistic_requests``...) for its hypothesis-driven mutation tests.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pyarrow as pa

if __name__ == "__main__":  # run from a checkout: import this checkout's otlpd
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otlpd import proto as pb  # noqa: E402
from otlpd import schema, sources  # noqa: E402
from otlpd.schema import SIGNALS, DecodeError  # noqa: E402

# ---------------------------------------------------------------- batch comparison


def _bits_type(t: pa.DataType) -> pa.DataType:
    """`t` with float64/timestamp replaced by int64, to compare values bit for bit (NaN, -0.0)."""
    if pa.types.is_timestamp(t) or pa.types.is_float64(t):
        return pa.int64()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _bits_type(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_bits_type(t.value_type))
    return t


def arrays_identical(a: pa.Array, b: pa.Array) -> bool:
    """Same type, validity, offsets and values, including children under null parents."""
    if a.type != b.type or len(a) != len(b) or a.null_count != b.null_count:
        return False
    if a.null_count and not a.is_valid().equals(b.is_valid()):
        return False
    t = a.type
    if pa.types.is_struct(t):
        return all(arrays_identical(a.field(i), b.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t):
        return a.offsets.equals(b.offsets) and arrays_identical(a.values, b.values)
    bits = _bits_type(t)
    return a.view(bits).equals(b.view(bits))


def batches_identical(got: pa.RecordBatch, ref: pa.RecordBatch) -> bool:
    """`got` is `ref`: same schema and bit-identical columns (see arrays_identical).

    Stricter than ``got.equals(ref)`` (which it implies, except that a NaN never
    equals itself under equals()).
    """
    if got.schema != ref.schema or got.num_rows != ref.num_rows:
        return False
    return all(arrays_identical(x, y) for x, y in zip(got.columns, ref.columns))


# ---------------------------------------------------------------- the rule


def cython_decoders():
    from otlpd import _decoder

    return _decoder.DECODERS


def check(signal: str, data: bytes) -> str:
    """Apply the differential rule to one input; returns "equal" or "error".

    Raises AssertionError on a disagreement (and lets any unexpected exception out).
    """
    try:
        ref = schema.DECODERS[signal](data)
    except DecodeError:
        ref = None
    try:
        got = cython_decoders()[signal](data)
    except DecodeError as error:
        if ref is not None:
            raise AssertionError(f"{signal}: reference decodes {data.hex()} but Cython raises {error}")
        return "error"
    if ref is None:
        raise AssertionError(f"{signal}: reference rejects {data.hex()} but Cython decodes it")
    got.validate(full=True)
    if not batches_identical(got, ref):
        raise AssertionError(f"{signal}: batches differ for {data.hex()}")
    from otlpd import _decoder

    item = _decoder.decode_chunk(signal, data)
    if item.source_ids != sources.lean(ref).source_ids:
        raise AssertionError(f"{signal}: source ids differ for {data.hex()}")
    return "equal"


# ---------------------------------------------------------------- byte-level mutations


def byte_mutate(rng: random.Random, data: bytes, n: int | None = None) -> bytes:
    """Flip, overwrite, insert, delete bytes or truncate (1-3 mutations)."""
    d = bytearray(data)
    for _ in range(n or rng.randint(1, 3)):
        if not d:
            d.append(rng.randrange(256))
            continue
        i = rng.randrange(len(d))
        op = rng.randrange(6)
        if op == 0:
            d[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            d[i] = rng.randrange(256)
        elif op == 2:
            d.insert(i, rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)]))
        elif op == 3:
            del d[i]
        elif op == 4:
            del d[i:]
        else:  # interesting bytes: continuation, groups (wt 3/4), wire types 6/7
            d[i] = rng.choice([0x80, 0xFF, 0x00, 0x7F, 0x0B, 0x0C, 0x0E, 0x0F])
    return bytes(d)


# ---------------------------------------------------------------- wire-level mutations
# A generic tree: [field number, wire type, value]; wt 2 payloads that parse as a
# message are kept as a list of fields, so mutations reach nested messages and
# lengths are re-encoded correctly.

_INTERESTING = [0, 1, 2, 0x7F, 0x80, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
                2**64 - 1]


def enc_varint(v: int, pad: int = 0) -> bytes:
    """Varint of v (mod 2**64), with `pad` extra non-minimal 0x80.. bytes."""
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            break
    for _ in range(pad):
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


def _dec_varint(b: bytes, i: int):
    v = shift = 0
    for _ in range(10):
        if i >= len(b):
            return None
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v & ((1 << 64) - 1), i
    return None


def wire_parse(b: bytes, depth: int = 0):
    """The fields of `b` as a tree, or None if `b` is not a (group-free) message."""
    out = []
    i = 0
    while i < len(b):
        r = _dec_varint(b, i)
        if r is None:
            return None
        tag, i = r
        fn, wt = tag >> 3, tag & 7
        if fn == 0 or tag > 0xFFFFFFFF:
            return None
        if wt == 0:
            r = _dec_varint(b, i)
            if r is None:
                return None
            v, i = r
        elif wt in (1, 5):
            size = 8 if wt == 1 else 4
            if i + size > len(b):
                return None
            v, i = b[i:i + size], i + size
        elif wt == 2:
            r = _dec_varint(b, i)
            if r is None or r[1] + r[0] > len(b):
                return None
            n, i = r
            v, i = b[i:i + n], i + n
            if v and depth < 40:
                sub = wire_parse(v, depth + 1)
                if sub is not None:
                    v = sub
        else:
            return None
        out.append([fn, wt, v])
    return out


def wire_encode(fields, rng: random.Random | None = None, pad_rate: float = 0.0) -> bytes:
    """Serialize a tree; with `rng` and pad_rate > 0, some varints are non-minimal."""

    def pad(size_now: int, limit: int) -> int:
        if rng is None or rng.random() >= pad_rate:
            return 0
        return min(rng.choice([1, 2, 3]), max(0, limit - size_now))

    out = bytearray()
    for fn, wt, v in fields:
        tag = fn << 3 | wt
        out += enc_varint(tag, pad(len(enc_varint(tag)), 5))
        if wt == 0:
            out += enc_varint(v, pad(len(enc_varint(v)), 10))
        elif wt in (1, 5):
            out += v
        elif wt == 2:
            payload = wire_encode(v, rng, pad_rate) if isinstance(v, list) else v
            out += enc_varint(len(payload), pad(len(enc_varint(len(payload))), 5)) + payload
        elif wt == 3:
            out += wire_encode(v, rng, pad_rate) + enc_varint(fn << 3 | 4)
    return bytes(out)


def _field_lists(fields, acc):
    acc.append(fields)
    for f in fields:
        if isinstance(f[2], list):
            _field_lists(f[2], acc)
    return acc


def _random_field(rng: random.Random):
    fn = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 99, 2**29 - 1])
    wt = rng.choice([0, 1, 2, 5, 3])
    if wt == 0:
        v = rng.choice(_INTERESTING)
    elif wt == 1:
        v = bytes(rng.randrange(256) for _ in range(8))
    elif wt == 5:
        v = bytes(rng.randrange(256) for _ in range(4))
    elif wt == 2:
        v = rng.choice([b"", b"a", "é".encode(), b"\xff", bytes([rng.randrange(256)] * 3)])
    else:
        v = [[rng.randint(0, 5), 0, 1]] if rng.random() < 0.5 else []
    return [fn, wt, v]


def wire_mutate(rng: random.Random, data: bytes, n: int | None = None) -> bytes:
    """1-3 protobuf-aware mutations of a serialized message (or byte mutations if it
    does not parse as one)."""
    tree = wire_parse(data)
    if tree is None:
        return byte_mutate(rng, data, n)
    lists = _field_lists(tree, [])
    for _ in range(n or rng.randint(1, 3)):
        fields = rng.choice(lists)
        op = rng.randrange(11)
        if op == 0 and fields:  # duplicate a field: last-wins, merges, repeated
            f = rng.choice(fields)
            fields.insert(rng.randint(0, len(fields)), list(f))
        elif op == 1 and fields:
            del fields[rng.randrange(len(fields))]
        elif op == 2 and len(fields) > 1:  # reorder
            i, j = rng.randrange(len(fields)), rng.randrange(len(fields))
            fields[i], fields[j] = fields[j], fields[i]
        elif op == 3:  # an unknown field, or a known number with another wire type
            fields.insert(rng.randint(0, len(fields)), _random_field(rng))
        elif op == 4 and fields:  # edge values
            f = rng.choice(fields)
            if f[1] == 0:
                f[2] = rng.choice(_INTERESTING) if rng.random() < 0.7 else rng.getrandbits(64)
        elif op == 5 and fields:  # change the wire type, keeping the value bytes
            f = rng.choice(fields)
            if f[1] == 0:
                f[1], f[2] = 2, enc_varint(f[2])
            elif f[1] == 2 and not isinstance(f[2], list) and len(f[2]) in (4, 8):
                f[1] = 5 if len(f[2]) == 4 else 1
        elif op == 6 and fields:  # strings: invalid UTF-8, surrogates, NUL
            f = rng.choice(fields)
            if f[1] == 2:
                f[2] = rng.choice([b"", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                   "日本".encode(), b"\x00", b"\xc0\x80"])
        elif op == 7 and fields:  # wrap a field into a group
            i = rng.randrange(len(fields))
            fields[i] = [rng.choice([fields[i][0], 50]), 3, [fields[i]]]
        elif op == 8 and fields:  # packed <-> unpacked
            f = rng.choice(fields)
            if f[1] == 1:
                f[1], f[2] = 2, f[2] * rng.randint(0, 2)
            elif f[1] == 0:
                f[1] = 2
                f[2] = b"".join(enc_varint(rng.choice(_INTERESTING)) for _ in range(rng.randint(0, 3)))
        elif op == 9:  # a sibling copy of a submessage (singular ones merge)
            subs = [f for f in fields if isinstance(f[2], list)]
            if subs:
                f = rng.choice(subs)
                fields.append([f[0], 2, [list(x) for x in f[2]]])
        elif op == 10 and fields:  # switch a oneof-ish member: change the field number
            f = rng.choice(fields)
            f[0] = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    return wire_encode(tree, rng, pad_rate=0.05 if rng.random() < 0.3 else 0.0)


# ---------------------------------------------------------------- realistic requests


def _kv(key, value) -> pb.KeyValue:
    if isinstance(value, bool):
        v = pb.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = pb.AnyValue(int_value=value)
    elif isinstance(value, float):
        v = pb.AnyValue(double_value=value)
    elif isinstance(value, bytes):
        v = pb.AnyValue(bytes_value=value)
    elif isinstance(value, list):
        v = pb.AnyValue(array_value=pb.ArrayValue(values=[_kv("", x).value for x in value]))
    elif isinstance(value, dict):
        v = pb.AnyValue(kvlist_value=pb.KeyValueList(values=[_kv(k, x) for k, x in value.items()]))
    else:
        v = pb.AnyValue(string_value=value)
    return pb.KeyValue(key=key, value=v)


T0 = 1_714_564_800_000_000_000


def resource(service: str = "checkout") -> pb.Resource:
    return pb.Resource(
        attributes=[
            _kv("service.name", service), _kv("service.version", "1.2.3"),
            _kv("host.name", "host-1"), _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"), _kv("telemetry.sdk.version", "1.27.0"),
            _kv("process.pid", 4242), _kv("process.command_args", ["python", "-m", "app"]),
        ],
        entity_refs=[pb.EntityRef(type="service", id_keys=["service.name"],
                               description_keys=["service.version"])],
    )


def traces_request(n: int = 1000, resources: int = 1) -> bytes:
    """`n` spans per resource with attributes, events and links."""
    groups = []
    for r in range(resources):
        spans = []
        for i in range(n):
            spans.append(pb.Span(
                trace_id=(i // 10).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if i % 10 == 0 else (i // 10 * 10 + 1).to_bytes(8, "big"),
                name=f"GET /cart/{i % 7}", kind=2 + i % 3, flags=0x101,
                start_time_unix_nano=T0 + i * 1000, end_time_unix_nano=T0 + i * 1000 + 5_000_000,
                attributes=[
                    _kv("http.request.method", "GET"), _kv("http.route", "/cart"),
                    _kv("http.response.status_code", 200 if i % 13 else 500),
                    _kv("url.full", f"https://shop.example.com/cart/{i}"),
                    _kv("server.address", "shop.example.com"), _kv("server.port", 443),
                    _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                    _kv("app.cart.items", i % 5), _kv("app.ratio", i / 7), _kv("app.cached", i % 2 == 0),
                ],
                events=[pb.Span.Event(time_unix_nano=T0 + i * 1000 + 10, name="exception",
                                   attributes=[_kv("exception.type", "ValueError"),
                                               _kv("exception.message", f"bad item {i}")])]
                if i % 13 == 0 else [],
                links=[pb.Span.Link(trace_id=bytes(16), span_id=bytes(8), trace_state="k=v",
                                 attributes=[_kv("link.kind", "follows")], flags=1)]
                if i % 17 == 0 else [],
                status=pb.Status(code=2, message="boom") if i % 13 == 0 else pb.Status(code=1),
            ))
        groups.append(pb.ResourceSpans(resource=resource(f"svc-{r}"), schema_url="https://opentelemetry.io/schemas/1.26.0",
                                    scope_spans=[pb.ScopeSpans(scope=pb.InstrumentationScope(
                                        name="opentelemetry.instrumentation.flask", version="0.48b0",
                                        attributes=[_kv("lib", "flask")]), spans=spans)]))
    return pb.ExportTraceServiceRequest(resource_spans=groups).SerializeToString()


def logs_request(n: int = 1000) -> bytes:
    """Logs with every kind of body (string, map, array, bytes, none) and attributes."""
    bodies = [pb.AnyValue(string_value="user added item to cart"),
              _kv("", {"event": "checkout", "items": [1, 2, 3], "ok": True}).value,
              _kv("", ["a", 1, 2.5, False, b"\x00"]).value, pb.AnyValue(bytes_value=b"\x01\x02"),
              None, pb.AnyValue(), pb.AnyValue(int_value=-7), pb.AnyValue(double_value=-0.0)]
    records = [pb.LogRecord(
        time_unix_nano=T0 + i, observed_time_unix_nano=T0 + i + 5, severity_number=1 + i % 24,
        severity_text=["DEBUG", "INFO", "WARN", "ERROR"][i % 4], body=bodies[i % len(bodies)],
        attributes=[_kv("http.route", "/cart"), _kv("user.id", i), _kv("enduser.roles", ["a", "b"])],
        dropped_attributes_count=i % 3, flags=1, trace_id=(i // 4).to_bytes(16, "big"),
        span_id=(i + 1).to_bytes(8, "big"), event_name="app.cart" if i % 5 == 0 else "",
    ) for i in range(n)]
    return pb.ExportLogsServiceRequest(resource_logs=[pb.ResourceLogs(resource=resource(), scope_logs=[
        pb.ScopeLogs(scope=pb.InstrumentationScope(name="app.logger"), log_records=records)])]).SerializeToString()


def metrics_request(n_metrics: int = 100) -> bytes:
    """Every metric type, several points each, with exemplars and optional fields."""
    metrics = []
    for i in range(n_metrics):
        attrs = [_kv("http.route", f"/r{i % 7}"), _kv("http.response.status_code", 200)]
        exemplars = [pb.Exemplar(filtered_attributes=[_kv("user", "u1")], time_unix_nano=T0, as_double=0.5,
                              span_id=bytes(8), trace_id=bytes(16)),
                     pb.Exemplar(time_unix_nano=T0, as_int=3)]
        kind = i % 6
        if kind == 0:
            metrics.append(pb.Metric(name=f"queue.depth.{i}", unit="1", gauge=pb.Gauge(data_points=[
                pb.NumberDataPoint(attributes=attrs, time_unix_nano=T0 + j, as_int=j, exemplars=exemplars)
                for j in range(5)])))
        elif kind == 1:
            metrics.append(pb.Metric(name=f"http.requests.{i}", description="requests", unit="{request}",
                                  sum=pb.Sum(aggregation_temporality=2, is_monotonic=True, data_points=[
                                      pb.NumberDataPoint(attributes=attrs, start_time_unix_nano=T0,
                                                      time_unix_nano=T0 + j, as_double=j * 1.5)
                                      for j in range(5)])))
        elif kind == 2:
            metrics.append(pb.Metric(name=f"http.duration.{i}", unit="ms", histogram=pb.Histogram(
                aggregation_temporality=1, data_points=[pb.HistogramDataPoint(
                    attributes=attrs, start_time_unix_nano=T0, time_unix_nano=T0 + j, count=10 + j,
                    sum=123.5, min=0.5, max=99.0, bucket_counts=[1, 2, 3, 4], explicit_bounds=[1, 10, 100],
                    exemplars=exemplars, flags=j % 2) for j in range(5)])))
        elif kind == 3:
            metrics.append(pb.Metric(name=f"rpc.size.{i}", unit="By", exponential_histogram=pb.ExponentialHistogram(
                aggregation_temporality=2, data_points=[pb.ExponentialHistogramDataPoint(
                    attributes=attrs, time_unix_nano=T0 + j, count=20, sum=1000.0 if j % 2 else None,
                    scale=-3 + j, zero_count=1, zero_threshold=1e-9,
                    positive=pb.ExponentialHistogramDataPoint.Buckets(offset=-2, bucket_counts=[1, 0, 5, 2**40]),
                    negative=None if j % 2 else pb.ExponentialHistogramDataPoint.Buckets(offset=3),
                    exemplars=exemplars[:1]) for j in range(5)])))
        elif kind == 4:
            metrics.append(pb.Metric(name=f"gc.pause.{i}", unit="s", summary=pb.Summary(data_points=[
                pb.SummaryDataPoint(attributes=attrs, time_unix_nano=T0 + j, count=4, sum=2.5,
                                 quantile_values=[pb.SummaryDataPoint.ValueAtQuantile(quantile=q, value=q * 2)
                                                  for q in (0.5, 0.9, 0.99)]) for j in range(5)])))
        else:
            metrics.append(pb.Metric(name=f"empty.{i}", metadata=[_kv("note", "no data")]))
    return pb.ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(resource=resource(), scope_metrics=[
        pb.ScopeMetrics(scope=pb.InstrumentationScope(name="app.meter", version="1"), metrics=metrics)])]).SerializeToString()


def realistic_requests(scale: int = 1) -> dict[str, list[bytes]]:
    """A few realistic requests per signal (`scale` multiplies their sizes)."""
    return {
        "traces": [traces_request(50 * scale), traces_request(10 * scale, resources=3)],
        "metrics": [metrics_request(12 * scale)],
        "logs": [logs_request(40 * scale)],
    }


# ---------------------------------------------------------------- atheris harness


def main() -> None:
    import atheris  # not a project dependency: pip install atheris

    small = {"traces": [traces_request(4), traces_request(2, resources=2)],
             "metrics": [metrics_request(6)], "logs": [logs_request(8)]}
    seeds = [(SIGNALS.index(signal), data) for signal, requests in small.items() for data in requests]
    seeds += [(i, b"") for i in range(3)]

    def test_one_input(buf: bytes) -> None:
        if not buf:
            return
        check(SIGNALS[buf[0] % 3], buf[1:])

    def custom_mutator(buf: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if not buf or rng.random() < 0.05:
            sig, data = rng.choice(seeds)
            buf = bytes([sig]) + data
        if rng.random() < 0.5:
            out = buf[:1] + wire_mutate(rng, buf[1:])
        else:
            out = atheris.Mutate(buf, max(max_size, len(buf)))
        return out[:max(max_size, 1)]

    # Coverage feedback comes from Python code only (the extension is not built
    # with libFuzzer instrumentation): the reference's row builders and this
    # module's checks tell libFuzzer which inputs reach new kinds of values.
    atheris.instrument_func(check)
    for module in (schema,):
        for name in dir(module):
            obj = getattr(module, name)
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__ \
                    and hasattr(obj, "__code__"):
                atheris.instrument_func(obj)

    argv = list(sys.argv)
    if not any(a.startswith("-max_len") for a in argv):
        argv.append("-max_len=200000")
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
