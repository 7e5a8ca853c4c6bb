"""Resource and scope once per file (otlpd.sources): lossless, one row per distinct source, the
same id for the same source however it was encoded, and a join that works across files."""
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings

from otlpd import proto as pb
from otlpd import schema, sources
from otlpd.files import write_ipc_file
from otlp_client import trace_request
from strategies import export_requests, records_multiset

ROUND_TRIP = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def reference(signal, request):
    return pa.Table.from_batches([schema.DECODERS[signal](request.SerializeToString())])


@pytest.mark.parametrize("signal", schema.SIGNALS)
def test_split_then_join_is_the_identity(signal):
    @ROUND_TRIP
    @given(export_requests(signal))
    def check(request):
        table = reference(signal, request)
        rows, table_of_sources, collisions = sources.split(table)
        assert collisions == 0
        assert not set(sources.SOURCE_COLUMNS) & set(rows.column_names)
        assert rows.column_names[rows.column_names.index("service_name") + 1] == "source_id"
        distinct = {sources.canonical_bytes(values) for values in
                    zip(*(table[name].to_pylist() for name in sources.SOURCE_COLUMNS))}
        assert table_of_sources.num_rows == len(distinct)
        rebuilt = sources.join(rows, table_of_sources, schema.schema_for(signal))
        assert rebuilt.equals(table)
        assert records_multiset(signal, schema.to_request(signal, rebuilt)) == records_multiset(signal, request)

    check()


def test_the_same_resource_encoded_differently_gets_the_same_id():
    request = trace_request(3, service="checkout")
    resource = request.resource_spans[0].resource
    # the same attribute written with its fields in the other order, and an unknown field
    value = pb.AnyValue(string_value="checkout").SerializeToString()
    reordered_kv = b"\x12" + bytes([len(value)]) + value + b"\x0a\x0cservice.name"
    reordered = b"\x0a" + bytes([len(reordered_kv)]) + reordered_kv + b"\xa0\x06\x01"  # field 100: unknown
    assert pb.Resource.FromString(reordered).attributes[0].key == "service.name"
    other = trace_request(2, service="checkout")
    other.resource_spans[0].resource.ParseFromString(reordered)
    assert other.resource_spans[0].resource.SerializeToString() != resource.SerializeToString()
    first = sources.split(reference("traces", request))[0]["source_id"].to_pylist()
    second = sources.split(reference("traces", other))[0]["source_id"].to_pylist()
    assert len(set(first)) == 1 and set(first) == set(second)


def test_a_collision_never_merges_two_sources(monkeypatch):
    monkeypatch.setattr(sources, "fnv1a64", lambda data: 42)
    request = trace_request(2, service="checkout")
    request.resource_spans.extend(trace_request(2, service="billing", first=10).resource_spans)
    table = reference("traces", request)
    rows, table_of_sources, collisions = sources.split(table)
    assert collisions == 1
    assert table_of_sources["source_id"].to_pylist() == [42, 43]
    assert sources.join(rows, table_of_sources, schema.TRACES_SCHEMA).equals(table)


def test_a_missing_source_is_a_clear_error():
    rows, table_of_sources, _ = sources.split(reference("traces", trace_request(2)))
    with pytest.raises(ValueError, match="not in the sources table"):
        sources.join(rows, table_of_sources.slice(0, 0), schema.TRACES_SCHEMA)


def test_duckdb_joins_rows_and_sources_across_files(tmp_path):
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    for number, service in enumerate(("checkout", "billing", "checkout")):
        request = trace_request(4, service=service, first=number * 4)
        request.resource_spans[0].resource.attributes.add(key="deployment.environment").value.string_value = "prod"
        rows, table_of_sources, _ = sources.split(reference("traces", request))
        for directory, table in (("traces", rows), ("sources", table_of_sources)):
            (tmp_path / directory).mkdir(exist_ok=True)
            write_ipc_file(tmp_path / directory / f"{number}.arrow", table.schema, table.to_batches(), options)
    traces = ds.dataset(str(tmp_path / "traces"), format="ipc")  # noqa: F841 (read by DuckDB)
    all_sources = ds.dataset(str(tmp_path / "sources"), format="ipc")  # noqa: F841
    assert duckdb.sql("SELECT count(*) FROM all_sources").fetchall() == [(3,)]
    joined = duckdb.sql(
        "SELECT t.service_name, count(*) FROM traces t "
        "JOIN (SELECT source_id, any_value(resource_attributes) AS resource_attributes "
        "      FROM all_sources GROUP BY source_id) s USING (source_id) "
        "WHERE s.resource_attributes['deployment.environment'] = 'prod' "
        "GROUP BY ALL ORDER BY 1").fetchall()
    assert joined == [("billing", 4), ("checkout", 8)]
