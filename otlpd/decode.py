"""The decoding seam: Export request bytes -> one pyarrow.RecordBatch per request.

The receiver calls ``DECODERS[signal](data)`` and catches ``DecodeError``.
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

from types import ModuleType
from typing import Callable

import pyarrow as pa

from otlpd import schema
from otlpd._impl import import_extension, pure_python_requested
from otlpd.schema import DecodeError

__all__ = ["DECODERS", "DecodeError", "IMPLEMENTATION", "implementations", "stats"]


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


def _select() -> tuple[str, dict[str, Decoder], Callable[[], dict]]:
    if not pure_python_requested():
        module = _import_cython()
        if module is not None:
            return "cython", dict(module.DECODERS), module.stats
    return "protobuf", dict(schema.DECODERS), dict


IMPLEMENTATION, DECODERS, _stats = _select()


def stats() -> dict:
    """The chosen decoder's counters (the Cython one: requests decoded, fallbacks by
    reason, bytes mapped for batches and cached for reuse); empty for protobuf."""
    return {"implementation": IMPLEMENTATION, **_stats()}
