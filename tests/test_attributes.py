"""The lean attribute form (otlpd.attributes): lossless against the reference's attributes, never a
duplicate key in a map, and the one-expression queries in Polars and DuckDB on real IPC files."""
import math
import struct

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlpd import attributes as lean
from otlpd import proto as pb
from otlpd import schema
from otlpd.attributes import double_text
from otlpd.files import write_ipc_file
from strategies import attributes as attribute_lists


def canonical(attrs):
    """Attribute dicts with doubles as their bits, so NaN payloads compare."""
    def value(v):
        if v is None:
            return None
        return {k: (struct.pack("<d", x) if isinstance(x, float) else x) for k, x in v.items()}
    return [{**a, "value": value(a["value"])} for a in attrs]


def kv(key, value=None, key_strindex=0, **anyvalue):
    """A reference attribute dict built from a protobuf KeyValue."""
    message = pb.KeyValue(key=key, key_strindex=key_strindex)
    if value is not None or anyvalue:
        message.value.CopyFrom(value if value is not None else pb.AnyValue(**anyvalue))
    return schema._attrs([message])[0]


@settings(max_examples=300, deadline=None)
@given(attribute_lists(max_size=8, max_depth=1))
def test_split_then_join_is_the_identity(kvs):
    attrs = schema._attrs(kvs)
    entries, types, other = lean.split(attrs)
    assert canonical(lean.join(entries, types, other)) == canonical(attrs)
    keys = [key for key, _ in entries]
    assert len(keys) == len(set(keys)), "a map never holds a key twice"
    assert len(entries) + len(other) == len(attrs) and len(types) == len(entries)


@settings(max_examples=100, deadline=None)
@given(st.lists(attribute_lists(max_size=6, max_depth=1), min_size=1, max_size=20))
def test_the_arrow_columns_round_trip_through_an_ipc_file(tmp_path_factory, rows):
    reference = [schema._attrs(kvs) for kvs in rows]
    column = pa.array(reference, schema.ATTRS)
    maps, types, others = lean.split_column(column)
    table = pa.table({"attributes": maps, "attributes_types": types, "attributes_other": others})
    path = tmp_path_factory.mktemp("attrs") / "a.arrow"
    write_ipc_file(path, table.schema, table.to_batches(), pa.ipc.IpcWriteOptions(compression="zstd"))
    back = pa.ipc.open_file(pa.memory_map(str(path))).read_all().to_pylist()
    for row, attrs in zip(back, reference):
        rebuilt = lean.join(row["attributes"], row["attributes_types"], row["attributes_other"])
        assert canonical(rebuilt) == canonical(attrs)


def test_what_goes_where():
    attrs = [kv("http.route", string_value="/cart"), kv("code", int_value=-(2 ** 63)),
             kv("ratio", double_value=0.25), kv("hit", bool_value=True),
             kv("http.route", string_value="/again"),           # duplicate: side list
             kv("blob", bytes_value=b"\xff\x00"),                 # bytes: side list
             kv("nan", double_value=float("nan")),                # NaN: side list
             kv("missing"),                                       # no value: side list
             kv("empty", value=pb.AnyValue()),                    # empty AnyValue: side list
             kv("indexed", key_strindex=3, string_value="x"),     # key_strindex: side list
             kv("list", array_value=pb.ArrayValue(values=[pb.AnyValue(int_value=1)])),
             kv("neg", double_value=-0.0)]
    entries, types, other = lean.split(attrs)
    assert entries == [("http.route", "/cart"), ("code", "-9223372036854775808"), ("ratio", "0.25"),
                       ("hit", "true"), ("neg", "-0")]
    assert types == bytes([1, 3, 4, 2, 4])
    assert [side["index"] for side in other] == [4, 5, 6, 7, 8, 9, 10]
    assert canonical(lean.join(entries, types, other)) == canonical(attrs)


def test_only_the_first_128_keyvalues_may_go_to_the_map():
    attrs = [kv(f"k{i}", string_value=str(i)) for i in range(200)]
    entries, types, other = lean.split(attrs)
    assert [key for key, _ in entries] == [f"k{i}" for i in range(lean.MAP_LIMIT)]
    assert [side["index"] for side in other] == list(range(lean.MAP_LIMIT, 200))
    assert lean.join(entries, types, other) == attrs


@pytest.mark.parametrize("value", [0.1, 0.25, 1.0, -1.5, 1e300, 5e-324, -5e-324, 1 / 3, 2.0 ** 53, 2.0 ** 53 + 2,
                                   123.456, 1e-7, 1e15, 1e16, 1.7976931348623157e308, float("inf"), float("-inf"),
                                   -0.0, 0.0])
def test_double_text_parses_back_to_the_same_bits(value):
    text = double_text(value)
    assert struct.pack("<d", float(text)) == struct.pack("<d", value)
    assert struct.pack("<d", float(duckdb.sql(f"SELECT '{text}'::DOUBLE").fetchall()[0][0])) == struct.pack("<d", value)


def test_double_text_is_short():
    assert [double_text(x) for x in (0.1, 1.0, 100.0, 0.000001, 1e20, -0.0)] == \
        ["0.1", "1", "100", "0.000001", "1e+20", "-0"]
    assert double_text(float("nan")) is None
    assert math.isnan(struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0])


@pytest.fixture
def attribute_file(tmp_path):
    """Three rows, one of them holding a duplicated key, written as an IPC file."""
    rows = [
        [kv("http.route", string_value="/cart"), kv("http.response.status_code", int_value=200),
         kv("sampling.ratio", double_value=0.25), kv("cache.hit", bool_value=True)],
        [kv("http.route", string_value="/pay"), kv("http.route", string_value="/dup"),
         kv("http.response.status_code", int_value=500)],
        [kv("blob", bytes_value=b"\x00\xff")],
    ]
    maps, types, others = lean.split_column(pa.array(rows, schema.ATTRS))
    table = pa.table({"name": ["a", "b", "c"], "attributes": maps, "attributes_types": types,
                      "attributes_other": others})
    directory = tmp_path / "traces"
    directory.mkdir()
    write_ipc_file(directory / "t.arrow", table.schema, table.to_batches(), pa.ipc.IpcWriteOptions(compression="zstd"))
    return directory


def test_polars_reads_string_and_number_attributes_in_one_expression(attribute_file):
    frame = pl.scan_ipc(str(attribute_file / "*.arrow"))
    assert frame.collect_schema()["attributes"] == pl.Map(pl.String, pl.String)
    carts = frame.filter(pl.col("attributes").map.get("http.route") == "/cart").select("name").collect()
    assert carts["name"].to_list() == ["a"]
    failing = frame.filter(pl.col("attributes").map.get("http.response.status_code").cast(pl.Int64) >= 500)
    assert failing.select("name").collect()["name"].to_list() == ["b"]
    assert frame.collect().height == 3  # every row scans, side list included


def test_duckdb_reads_them_and_never_sees_a_duplicate_key(attribute_file):
    traces = ds.dataset(str(attribute_file), format="ipc")  # noqa: F841 (read by DuckDB)
    assert duckdb.sql("SELECT name FROM traces WHERE attributes['http.route'] = '/cart'").fetchall() == [("a",)]
    assert duckdb.sql("SELECT name FROM traces WHERE attributes['http.response.status_code']::BIGINT >= 500"
                      ).fetchall() == [("b",)]
    assert duckdb.sql("SELECT name, attributes['sampling.ratio']::DOUBLE FROM traces "
                      "WHERE attributes['cache.hit']::BOOLEAN").fetchall() == [("a", 0.25)]
    assert len(duckdb.sql("SELECT * FROM traces").fetchall()) == 3
    duplicate = duckdb.sql("SELECT o.value.str FROM (SELECT unnest(attributes_other) AS o FROM traces) "
                           "WHERE o.key = 'http.route'").fetchall()
    assert duplicate == [("/dup",)]
