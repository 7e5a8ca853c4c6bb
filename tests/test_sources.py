"""Resource and scope once per file (otlpd.sources): lossless, one row per distinct source, the
same id for the same source however it was encoded, and a join that works across files."""
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings

from otlpd import proto as pb
from otlpd import decode, files, query, schema, sources
from otlpd.files import write_ipc_file
from otlpd.writer import SignalWriter, WriterSettings
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


# ---------------------------------------------------------------- the files the writer keeps

def full_rows(*requests):
    return pa.Table.from_batches([schema.decode_traces(r.SerializeToString()) for r in requests])


def two_services():
    checkout = trace_request(3, service="checkout")
    billing = trace_request(2, service="billing", first=10)
    return checkout, billing


def run_writer(directory, buffer_cls, items, **settings):
    writer = SignalWriter("traces", sources.rows_schema("traces"), buffer_cls(1 << 26, 1 << 20), directory,
                          WriterSettings(write_interval=0.02, fsync=False, **settings))
    writer.prepare()
    writer.start()
    for item in items:
        writer.buffer.push(item, item.nbytes, item.num_rows)
    writer.stop()
    return writer


def test_each_source_is_written_once_per_file_and_joins_back(tmp_path, buffer_cls):
    checkout, billing = two_services()
    requests = [checkout, billing, checkout, checkout]
    items = [decode.BUFFER_DECODERS["traces"](r.SerializeToString()) for r in requests]
    assert all(item.source_ids for item in items)
    run_writer(tmp_path / "traces", buffer_cls, items)
    [path] = sorted((tmp_path / "traces").glob("*.arrow"))
    sources_file = sources.sources_path(path)
    assert sources_file == tmp_path / "sources" / "traces" / path.name
    with pa.memory_map(str(sources_file)) as source:
        table_of_sources = pa.ipc.open_file(source).read_all()
    assert table_of_sources.num_rows == 2  # checkout once, billing once
    assert table_of_sources.schema.metadata[b"otlpd.schema_version"] == schema.SCHEMA_VERSION.encode()
    assert files.read_table(path).equals(full_rows(*requests))
    # the plain scan has service_name and source_id, the helpers the whole layout
    plain = pl.scan_ipc(str(tmp_path / "traces" / "*.arrow")).collect()
    assert plain.columns[:2] == ["service_name", "source_id"] and "resource_attributes" not in plain.columns
    frame = query.scan(tmp_path, "traces").collect()
    assert frame.columns == schema.TRACES_SCHEMA.names
    assert frame.filter(pl.col("resource_attributes").map.get("service.name") == "billing").height == 2
    con = duckdb.connect()
    query.register_duckdb(con, tmp_path)
    assert con.sql("SELECT count(*) FROM traces WHERE resource_attributes['service.name'] = 'checkout'"
                   ).fetchall() == [(9,)]
    assert con.sql("SELECT count(*) FROM traces_sources").fetchall() == [(2,)]


def test_the_helpers_read_an_empty_directory(tmp_path):
    assert query.scan(tmp_path, "logs").collect().height == 0
    con = duckdb.connect()
    query.register_duckdb(con, tmp_path)
    assert con.sql("SELECT count(*) FROM metrics").fetchall() == [(0,)]


def test_a_source_id_collision_across_requests_starts_a_new_file(tmp_path, buffer_cls, monkeypatch):
    monkeypatch.setattr(sources, "ID_MASK", 0)  # every source's id is 0
    checkout, billing = two_services()
    items = [sources.lean(full_rows(r)) for r in (checkout, checkout, billing, billing)]
    assert {item.source_ids for item in items} == {(0,)}
    writer = run_writer(tmp_path / "traces", buffer_cls, items)
    paths = sorted((tmp_path / "traces").glob("*.arrow"))
    assert len(paths) == 2 and writer.status()["source_id_collisions"] == 1
    assert files.read_table(paths[0]).equals(full_rows(checkout, checkout))
    assert files.read_table(paths[1]).equals(full_rows(billing, billing))


def test_native_collisions_follow_the_reference(monkeypatch):
    """Ids narrowed to two bits: most sources of a request collide; the decoder and
    otlpd.sources resolve them the same way, into distinct ids."""
    from otlpd import _decoder

    monkeypatch.setattr(sources, "ID_MASK", 3)
    old = _decoder._set_source_id_mask(3)
    try:
        request = trace_request(2, service="s0")
        for number in range(1, 7):
            request.resource_spans.extend(trace_request(1 + number % 3, service=f"s{number}",
                                                        first=10 * number).resource_spans)
        request.resource_spans.extend(trace_request(2, service="s0", first=99).resource_spans)
        data = request.SerializeToString()
        chunk = _decoder.decode_chunk("traces", data)
        expected = sources.lean(schema.decode_traces(data))
        assert isinstance(chunk, _decoder.Chunk)
        assert chunk.source_ids == expected.source_ids and len(set(chunk.source_ids)) == 7
        assert chunk.source_keys == expected.source_keys
        assert chunk.to_batch().equals(expected.rows)
        assert chunk.sources_batch().equals(expected.sources)
    finally:
        _decoder._set_source_id_mask(old)


def write_part(path, table, batches=None):
    """A file in progress as a killed writer leaves it: no footer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file(sink, table.schema)
        for batch in (table.to_batches() if batches is None else batches):
            writer.write_batch(batch)


def test_recovery_completes_sources_with_their_files_and_drops_orphans(tmp_path):
    directory = tmp_path / "traces"
    item = sources.lean(full_rows(*two_services()))
    name = files.file_name("traces", 1_700_000_000, 3)
    write_part(directory / (name + ".part"), pa.Table.from_batches([item.rows]))
    write_part(sources.sources_path(directory / (name + ".part")), pa.Table.from_batches([item.sources]))
    empty = files.file_name("traces", 1_700_000_100, 4)  # killed before its first batch
    write_part(directory / (empty + ".part"), pa.Table.from_batches([item.rows]), batches=[])
    write_part(sources.sources_path(directory / (empty + ".part")), pa.Table.from_batches([item.sources]))
    orphan = sources.sources_path(directory / (files.file_name("traces", 1_700_000_200, 5) + ".part"))
    write_part(orphan, pa.Table.from_batches([item.sources]))
    recovered = files.recover_directory(directory, pa.ipc.IpcWriteOptions(), fsync=False)
    assert [path.name for path, _ in recovered] == [name]
    assert files.read_table(directory / name).equals(full_rows(*two_services()))
    assert sorted(p.name for p in (tmp_path / "sources" / "traces").iterdir()) == [name]


def test_retention_deletes_a_file_with_its_sources(tmp_path, buffer_cls):
    checkout, _ = two_services()
    item = decode.BUFFER_DECODERS["traces"](checkout.SerializeToString())
    run_writer(tmp_path / "traces", buffer_cls, [item])
    [path] = sorted((tmp_path / "traces").glob("*.arrow"))
    [listed] = files.completed_files(tmp_path / "traces")
    assert listed.size == path.stat().st_size + sources.sources_path(path).stat().st_size
    assert files.apply_retention(tmp_path / "traces", max_age=0, max_total_bytes=1) == (1, listed.size)
    assert not path.exists() and not sources.sources_path(path).exists()
