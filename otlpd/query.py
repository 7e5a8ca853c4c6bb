"""Rows joined with their resource and scope: one expression for a resource attribute.

A data file stores ``service_name`` and ``source_id`` per row and each distinct resource and
scope once, in its sources file (docs/SCHEMA.md, "Sources"). ``service_name`` and every other
column need no helper; for the other resource and scope columns these functions do the join:

    from otlpd import query
    spans = query.scan("otlpd-data", "traces")              # a Polars LazyFrame
    spans.filter(pl.col("resource_attributes").map.get("deployment.environment") == "prod")

    con = duckdb.connect()
    query.register_duckdb(con, "otlpd-data")                 # views traces, metrics, logs
    con.sql("SELECT count(*) FROM traces WHERE resource_attributes['k8s.pod.name'] = 'cart-1'")

Both read completed files only (``*.arrow``, never the ``.part`` in progress) and give the
full layout (``otlpd.schema.schema_for``). Sources are joined by ``source_id`` across files,
one row per id: ids are FNV-1a 64 hashes of the values, so two different sources share one
only by a collision (about n^2 / 2^65 for n distinct sources ever stored), which the writer
keeps out of any single file; :func:`otlpd.files.read_table` joins within one file exactly.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds

from otlpd import schema
from otlpd.sources import SOURCES_SCHEMA, rows_schema, sources_directory


def _paths(output_dir: Path | str, signal: str) -> tuple[list[str], list[str]]:
    root = Path(output_dir)
    rows = sorted(str(path) for path in (root / signal).glob("*.arrow"))
    found = sorted(str(path) for path in sources_directory(root / signal).glob("*.arrow"))
    return rows, found


def scan(output_dir: Path | str, signal: str):
    """A Polars LazyFrame of ``signal``'s stored rows with their resource and scope columns,
    in the full layout's column order."""
    import polars as pl

    names = schema.schema_for(signal).names
    rows, found = _paths(output_dir, signal)
    if not rows:
        return pl.from_arrow(schema.schema_for(signal).empty_table()).lazy()
    frame = pl.scan_ipc(rows)
    table_of_sources = (pl.scan_ipc(found) if found
                        else pl.from_arrow(SOURCES_SCHEMA.empty_table()).lazy())
    return (frame.join(table_of_sources.unique("source_id", keep="first", maintain_order=True),
                       on="source_id", how="left", maintain_order="left")
            .select(names))


def register_duckdb(con, output_dir: Path | str, signals=schema.SIGNALS) -> None:
    """Views ``traces``, ``metrics`` and ``logs`` (full layout) on a DuckDB connection, and
    ``<signal>_rows`` / ``<signal>_sources`` for the stored tables themselves."""
    for signal in signals:
        rows, found = _paths(output_dir, signal)
        rows_data = ds.dataset(rows, format="ipc", schema=rows_schema(signal))
        sources_data = ds.dataset(found, format="ipc", schema=SOURCES_SCHEMA)
        con.register(f"{signal}_rows", rows_data)
        con.register(f"{signal}_sources", sources_data)
        columns = ", ".join(f'"{name}"' for name in schema.schema_for(signal).names)
        con.execute(
            f"CREATE OR REPLACE VIEW {signal} AS SELECT {columns} FROM {signal}_rows "
            f"LEFT JOIN (SELECT DISTINCT ON (source_id) * FROM {signal}_sources) USING (source_id)")
