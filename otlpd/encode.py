"""The encoding seam: rows of a stored batch -> the bytes of OTLP Export requests (the mirror
of :mod:`otlpd.decode`), for the forwarder.

``encode(signal, rows, sources=None)`` returns one serialized ``Export<Signal>ServiceRequest``
for ``rows``: a RecordBatch or Table of the stored layout (``sources.rows_schema(signal)``)
with ``sources`` the batch of its sources, or of the full layout (``schema.schema_for``) with
``sources`` None. It is ``to_request(signal, rows, sources).SerializeToString()`` (rows
grouped by resource, then scope, then metric, in order of first appearance, docs/SCHEMA.md
"Converting back"), written directly from the Arrow buffers by the Cython encoder
(docs/ENCODER.md).

``requests(...)`` cuts the rows into requests of at most ``max_items`` records and, when a
record allows it, ``max_bytes`` bytes: each request takes the longest run of rows, from
where the previous one ended, within both limits; a record larger than ``max_bytes`` goes
alone.

Two implementations give the same bytes for the rows the decoders produce:

* ``"cython"``: :mod:`otlpd._encoder` (ext/_encoder.pyx);
* ``"python"``: the reference, :func:`reference`.

Selection, made once at import time (same convention as :mod:`otlpd.buffer`):
``OTLPD_PURE_PYTHON=1`` selects the reference; otherwise ``otlpd._encoder`` if it imports.
``IMPLEMENTATION`` says which one was chosen; ``implementations()`` lists every importable one.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable, Iterator, NamedTuple

import pyarrow as pa

from otlpd import schema
from otlpd._impl import import_extension, pure_python_requested

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ITEMS", "IMPLEMENTATION", "Implementation", "encode",
           "implementations", "reference", "requests"]

Rows = pa.RecordBatch | pa.Table
# The OpenTelemetry Collector's default batch size; gRPC's default limit on a received message is
# 4 MiB (4,194,304 bytes), so requests stay under it with room for the gRPC frame.
DEFAULT_MAX_ITEMS = 8192
DEFAULT_MAX_BYTES = 4_000_000


class Implementation(NamedTuple):
    """One encoder: ``encode(signal, rows, sources)`` and ``requests(signal, rows, sources,
    max_items, max_bytes)`` with the signatures of the module-level functions."""

    encode: Callable[..., bytes]
    requests: Callable[..., Iterator[tuple[bytes, int]]]


def reference(signal: str, rows: Rows, sources: Rows | None = None) -> bytes:
    """``to_request(signal, rows, sources).SerializeToString()``: the pure-Python twin."""
    return schema.to_request(signal, rows, sources).SerializeToString()


def _check_limits(max_items: int, max_bytes: int) -> None:
    if max_items < 1 or max_bytes < 1:
        raise ValueError(f"max_items ({max_items}) and max_bytes ({max_bytes}) must be at least 1")


def _reference_requests(signal: str, rows: Rows, sources: Rows | None = None,
                        max_items: int = DEFAULT_MAX_ITEMS,
                        max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[bytes, int]]:
    """The reference of the cut: for each request, the longest run of rows whose encoding
    fits, found by bisection (a request's size never shrinks when a row is added)."""
    total = rows.num_rows
    start = 0
    while start < total:
        limit = min(max_items, total - start)
        data = reference(signal, rows.slice(start, limit), sources)
        count = limit
        if len(data) > max_bytes and limit > 1:
            fits, fits_data = 0, b""  # the longest known run that fits, and its bytes
            first = reference(signal, rows.slice(start, 1), sources)
            if len(first) <= max_bytes:
                fits, fits_data = 1, first
                low, high = 1, limit  # fits(low), not fits(high)
                while high - low > 1:
                    middle = (low + high) // 2
                    attempt = reference(signal, rows.slice(start, middle), sources)
                    if len(attempt) <= max_bytes:
                        low, fits, fits_data = middle, middle, attempt
                    else:
                        high = middle
            if fits == 0:  # the first record alone is larger than max_bytes: it goes alone
                fits, fits_data = 1, first
            data, count = fits_data, fits
        yield data, count
        start += count


def _import_cython() -> ModuleType | None:
    """``otlpd._encoder``, or None if the extension cannot be imported."""
    return import_extension("otlpd._encoder")


PYTHON = Implementation(reference, _reference_requests)


def implementations() -> dict[str, Implementation]:
    """Every importable encoder by name ("python", "cython"), whatever was chosen."""
    found = {"python": PYTHON}
    module = _import_cython()
    if module is not None:
        found["cython"] = Implementation(module.encode, module.requests)
    return found


def _select() -> tuple[str, Implementation]:
    if not pure_python_requested():
        module = _import_cython()
        if module is not None:
            return "cython", Implementation(module.encode, module.requests)
    return "python", PYTHON


IMPLEMENTATION, _chosen = _select()


def encode(signal: str, rows: Rows, sources: Rows | None = None) -> bytes:
    """The serialized Export request of ``rows`` (stored layout with ``sources``, or full
    layout with ``sources`` None): the bytes of ``to_request(signal, rows, sources)``."""
    return _chosen.encode(signal, rows, sources)


def requests(signal: str, rows: Rows, sources: Rows | None = None, max_items: int = DEFAULT_MAX_ITEMS,
             max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[bytes, int]]:
    """``rows`` cut into Export requests of at most ``max_items`` records and, unless one
    record alone is larger, ``max_bytes`` bytes: (request bytes, number of records), in row
    order, every row in exactly one request. No rows, no requests."""
    schema.schema_for(signal)  # a clear error for an unknown signal, before the first request
    _check_limits(max_items, max_bytes)
    return _chosen.requests(signal, rows, sources, max_items, max_bytes)
