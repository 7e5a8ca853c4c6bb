"""What temporality conversion costs the metrics writer, per stored point, by setting.

Realistic cumulative streams: ``--series`` series of a counter, an up-down counter, a histogram and
an exponential histogram, reported ``--rounds`` times with increasing timestamps (each request one
report of every series, as an SDK's periodic reader sends them). Each request is decoded as the
receiver decodes it, then the metrics writer's stage (``otlpd.temporality.Stage``) runs on it as the
writer does; the figure is the stage's CPU per point, beside the decode's, for ``passthrough``,
``cumulative`` and ``delta``, with cumulative input (as most SDKs send) and delta input (as
.NET's and some agents' do), for each converter (the reference and the native one).

    python -m benchmarks.temporality [--series 200] [--rounds 20] [--per-write 1]
"""
from __future__ import annotations

import argparse
import time

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1 import resource_pb2

from otlpd.decode import BUFFER_DECODERS, IMPLEMENTATION
from otlpd.temporality import Settings, Stage, implementations

S = 10**9
T0 = time.time_ns() + 3600 * S  # after this process started: initial_value auto keeps first points


def _kv(key, value):
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def report(series: int, round_: int, delta: bool = False) -> bytes:
    """One report of every series: cumulative totals since T0, or (delta) this interval's."""
    start, now = T0, T0 + (round_ + 1) * 10 * S
    n = round_ + 1
    if delta:
        start, n = now - 10 * S, 1
    counter, updown, hist, exp = [], [], [], []
    for i in range(series):
        attrs = [_kv("http.route", f"/r{i % 50}"), _kv("instance", f"i{i}")]
        common = {"attributes": attrs, "start_time_unix_nano": start, "time_unix_nano": now}
        counter.append(m.NumberDataPoint(as_int=n * (i + 1), **common))
        updown.append(m.NumberDataPoint(as_int=(n * i) % 17, **common))
        hist.append(m.HistogramDataPoint(count=3 * n, sum=4.5 * n, bucket_counts=[n, n, n],
                                         explicit_bounds=[1.0, 5.0], **common))
        exp.append(m.ExponentialHistogramDataPoint(
            count=2 * n, sum=3.0 * n, scale=2, zero_count=0,
            positive=m.ExponentialHistogramDataPoint.Buckets(offset=1, bucket_counts=[n, n]), **common))
    cumulative = m.AGGREGATION_TEMPORALITY_DELTA if delta else m.AGGREGATION_TEMPORALITY_CUMULATIVE
    metrics = [
        m.Metric(name="requests", unit="1", sum=m.Sum(data_points=counter, is_monotonic=True,
                                                     aggregation_temporality=cumulative)),
        m.Metric(name="queue", unit="1", sum=m.Sum(data_points=updown, is_monotonic=False,
                                                  aggregation_temporality=cumulative)),
        m.Metric(name="latency", unit="ms", histogram=m.Histogram(data_points=hist, aggregation_temporality=cumulative)),
        m.Metric(name="size", unit="By", exponential_histogram=m.ExponentialHistogram(
            data_points=exp, aggregation_temporality=cumulative)),
    ]
    resource = resource_pb2.Resource(attributes=[_kv("service.name", "bench")])
    return ms.ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
        resource=resource, scope_metrics=[m.ScopeMetrics(metrics=metrics)])]).SerializeToString()


def measure(converter: type, mode: str, requests: list[bytes], per_write: int = 1) -> tuple[float, float, dict]:
    """CPU per point of decoding the requests and of the stage, which takes ``per_write``
    requests at a time (what the writer drains in one write interval)."""
    decode = BUFFER_DECODERS["metrics"]
    stage = Stage(converter(Settings(temporality=mode)))
    decode_cpu = stage_cpu = 0.0
    points = 0
    for first in range(0, len(requests), per_write):
        began = time.process_time()
        items = [decode(data) for data in requests[first:first + per_write]]
        decoded = time.process_time()
        stage.process(items)
        stage_cpu += time.process_time() - decoded
        decode_cpu += decoded - began
        points += sum(item.num_rows for item in items)
    return decode_cpu / points, stage_cpu / points, stage.converter.counters.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-write", type=int, default=1,
                        help="requests the stage takes at once (a write interval's; converted as one run)")
    args = parser.parse_args()
    print(f"decoder {IMPLEMENTATION}; {args.series} series x 4 metrics, {args.rounds} reports, "
          f"{args.per_write} a write; CPU per point, us")
    for delta in (False, True):
        requests = [report(args.series, r, delta) for r in range(args.rounds)]
        stage_by = {}
        for name, converter in implementations().items():
            for mode in ("passthrough", "cumulative", "delta"):
                decode_us, stage_us, counters = measure(converter, mode, requests, args.per_write)
                decode_us, stage_us = decode_us * 1e6, stage_us * 1e6
                stage_by[name, mode] = stage_us
                print(f"{'delta' if delta else 'cumulative'} input  {name:7} {mode:12} decode {decode_us:7.3f}  "
                      f"stage {stage_us:8.3f}  stage/decode {stage_us / decode_us:6.2f}x  "
                      f"converted {counters['converted_points']:,} passed {counters['passed_through_points']:,} "
                      f"dropped {sum(counters['dropped_points'].values()):,}")
        for mode in ("cumulative", "delta"):
            if ("cython", mode) in stage_by:
                print(f"  {mode}: the reference's stage / the native one's: "
                      f"{stage_by['python', mode] / stage_by['cython', mode]:.1f}x")


if __name__ == "__main__":
    main()
