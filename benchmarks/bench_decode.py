"""Decode time of 1000-item Export requests per signal, for every decoder that exists.

Decoders come from ``otlpd.schema.DECODERS`` (the pure-Python reference), the daemon's
``otlpd.decode.DECODERS`` and ``otlpd._decoder.DECODERS`` when that module is built.
"""
from __future__ import annotations

import functools
import importlib

import pytest

from benchmarks.requests import BUILDERS
from otlpd import decode, schema

ITEMS = 1000


def decoder_tables() -> dict[str, dict]:
    """Each distinct signal -> decoder table, by implementation name ("python" or its module)."""
    tables = [schema.DECODERS, decode.DECODERS]
    try:
        tables.append(importlib.import_module("otlpd._decoder").DECODERS)
    except ModuleNotFoundError as error:
        if error.name != "otlpd._decoder":
            raise
    found = {}
    for table in tables:
        module = table["traces"].__module__
        found.setdefault("python" if module == schema.__name__ else module, table)
    return found


@functools.cache
def request(signal: str, items: int = ITEMS) -> bytes:
    return BUILDERS[signal](items, seed=1)


@pytest.mark.parametrize("implementation", list(decoder_tables()))
@pytest.mark.parametrize("signal", list(BUILDERS))
def bench_decode(benchmark, signal, implementation):
    decoder = decoder_tables()[implementation][signal]
    data = request(signal)
    benchmark.group = f"decode {signal}"
    benchmark.extra_info.update(items=ITEMS, request_bytes=len(data))
    batch = benchmark(decoder, data)
    assert batch.num_rows == ITEMS
