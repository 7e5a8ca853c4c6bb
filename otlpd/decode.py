"""The decoding seam: Export request bytes -> one pyarrow.RecordBatch per request.

``DECODERS[signal](data)`` returns a RecordBatch of the full layout
(``schema.schema_for``). The receiver uses ``BUFFER_DECODERS[signal](data)``
instead, whose result goes into the buffer as it is: the rows in the stored
layout with the sources they refer to (otlpd.sources), as an
:class:`otlpd.sources.Lean` or, from the Cython decoder, a ``Chunk`` (the rows
in the decoder's export form, not yet imported into pyarrow). Both answer
``num_rows``/``nbytes``/``get_total_buffer_size()``/``to_batch()`` and
``source_ids``/``source_keys``/``sources_batch()``. The writer turns what it
drains into batches with :func:`concat` (native merge of chunks) and
:func:`as_batch`. Both raise only ``DecodeError`` for malformed input.

Two implementations produce identical batches (same schema, same values):

* ``"cython"``: :mod:`otlpd._decoder`, a wire-format parser that runs without
  the GIL and builds the batch through the Arrow C Data Interface
  (docs/DECODER.md);
* ``"protobuf"``: the reference path in :mod:`otlpd.schema` (protobuf message
  objects, then ``pa.array`` per column).

Selection, made once at import time (same convention as :mod:`otlpd.buffer`):

* ``OTLPD_PURE_PYTHON=1`` in the environment: the protobuf path;
* otherwise ``otlpd._decoder`` (built by ``python setup.py build_ext --inplace``
  or by installing the package); if it is not importable, the protobuf path.

``IMPLEMENTATION`` says which one was chosen; ``implementations()`` lists every
importable one (for tests and benchmarks). Both raise only
:class:`otlpd.schema.DecodeError` for malformed input.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable

import pyarrow as pa

from otlpd import schema, sources
from otlpd._impl import import_extension, pure_python_requested
from otlpd.schema import DecodeError

__all__ = ["BUFFER_DECODERS", "DECODERS", "DecodeError", "IMPLEMENTATION", "as_batch", "as_item",
           "concat", "implementations", "stats"]


Decoder = Callable[[bytes], pa.RecordBatch]


def _import_cython() -> ModuleType | None:
    """``otlpd._decoder``, or None if the extension cannot be imported."""
    return import_extension("otlpd._decoder")


def implementations() -> dict[str, dict[str, Decoder]]:
    """Every importable decoder set by name ("protobuf", "cython"), whatever was chosen."""
    found: dict[str, dict[str, Decoder]] = {"protobuf": dict(schema.DECODERS)}
    module = _import_cython()
    if module is not None:
        found["cython"] = dict(module.DECODERS)
    return found


def _select() -> tuple[str, ModuleType | None]:
    if not pure_python_requested():
        module = _import_cython()
        if module is not None:
            return "cython", module
    return "protobuf", None


IMPLEMENTATION, _native = _select()
if _native is not None:
    DECODERS: dict[str, Decoder] = dict(_native.DECODERS)
    BUFFER_DECODERS: dict[str, Callable[[bytes], object]] = {
        signal: functools.partial(_native.decode_chunk, signal) for signal in schema.SIGNALS}
    _Chunk: type | tuple = _native.Chunk
    _stats: Callable[[], dict] = _native.stats
else:
    DECODERS = dict(schema.DECODERS)
    BUFFER_DECODERS = {signal: (lambda decode: lambda data: sources.lean(decode(data)))(schema.DECODERS[signal])
                       for signal in schema.SIGNALS}
    _Chunk = ()  # no chunks without the extension: isinstance(x, ()) is False
    _stats = dict


def as_item(item):
    """A buffered item (a Chunk or a Lean), or rows of the full layout made one."""
    return sources.lean_or_plain(item) if isinstance(item, (pa.RecordBatch, pa.Table)) else item


def is_chunk(item) -> bool:
    """Whether ``item`` is the Cython decoder's Chunk (whose to_batch() moves its memory)."""
    return isinstance(item, _Chunk)


def as_batch(item) -> pa.RecordBatch:
    """A buffered item's rows, in the stored layout, as a RecordBatch (a Chunk is
    converted: once only)."""
    return item.to_batch()


def concat(items: list) -> pa.RecordBatch:
    """The rows of ``items`` (buffered items of one signal, in order) as one RecordBatch.

    Chunks only: merged natively into one block (docs/DECODER.md, "Merging").
    Otherwise, or where the native merge does not apply: pyarrow's concatenation.
    """
    if _native is not None and all(isinstance(item, _Chunk) for item in items):
        merged = _native.merge(items)
        if merged is not None:
            return merged
    batches = [as_batch(item) for item in items]
    combined = pa.Table.from_batches(batches).combine_chunks().to_batches()
    return combined[0] if combined else batches[0]  # no rows at all: any of them


def stats() -> dict:
    """The chosen decoder's counters (the Cython one: requests decoded, fallbacks by
    reason, merges, bytes mapped for batches and cached for reuse); empty for protobuf."""
    return {"implementation": IMPLEMENTATION, **_stats()}
