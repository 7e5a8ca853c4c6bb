"""The BatchBuffer the daemon uses: the Cython one if available, else the pure-Python twin.

Both implement the same contract (specified, with docstrings, in
:mod:`otlpd.buffer_py`) and raise the same exception classes, so callers
import everything from here::

    from otlpd.buffer import BatchBuffer, BatchTooLarge, BufferFull

Selection, made once at import time:

* ``OTLPD_PURE_PYTHON=1`` in the environment: the pure-Python twin;
* otherwise ``otlpd._buffer`` (built by ``python setup.py build_ext --inplace``
  or by installing the package); if it is not importable, the pure-Python twin.

``IMPLEMENTATION`` says which one was chosen (``"cython"`` or ``"python"``);
``implementations()`` lists every importable one, whatever was chosen (for
tests and benchmarks).
"""
from __future__ import annotations

from otlpd import buffer_py
from otlpd._impl import import_extension, pure_python_requested
from otlpd.buffer_py import BatchTooLarge, BufferFull

__all__ = ["BatchBuffer", "BatchTooLarge", "BufferFull", "IMPLEMENTATION", "implementations"]


def _import_cython() -> type | None:
    """``otlpd._buffer.BatchBuffer``, or None if the extension cannot be imported."""
    module = import_extension("otlpd._buffer")
    return None if module is None else module.BatchBuffer


def implementations() -> dict[str, type]:
    """Every importable BatchBuffer implementation, by name ("python", "cython")."""
    found: dict[str, type] = {"python": buffer_py.BatchBuffer}
    cython_cls = _import_cython()
    if cython_cls is not None:
        found["cython"] = cython_cls
    return found


def _select() -> tuple[str, type]:
    if pure_python_requested():
        return "python", buffer_py.BatchBuffer
    cython_cls = _import_cython()
    if cython_cls is None:
        return "python", buffer_py.BatchBuffer
    return "cython", cython_cls


IMPLEMENTATION, BatchBuffer = _select()
