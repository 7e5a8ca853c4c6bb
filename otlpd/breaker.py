"""The CircuitBreaker the forwarder uses: the Cython one if available, else the pure-Python twin.

Both implement the same contract (specified, with docstrings, in
:mod:`otlpd.breaker_py`; the state machine is drawn in docs/BREAKER.md)::

    from otlpd.breaker import CircuitBreaker, IMPLEMENTATION

Selection, made once at import time:

* ``OTLPD_PURE_PYTHON=1`` in the environment: the pure-Python twin;
* otherwise ``otlpd._breaker`` (built by ``python setup.py build_ext --inplace``
  or by installing the package); if it is not importable, the pure-Python twin.

``IMPLEMENTATION`` says which one was chosen (``"cython"`` or ``"python"``);
``implementations()`` lists every importable one, whatever was chosen (for
tests and benchmarks).
"""
from __future__ import annotations

from otlpd import breaker_py
from otlpd._impl import import_extension, pure_python_requested
from otlpd.breaker_py import CLOSED, HALF_OPEN, OPEN

__all__ = ["CircuitBreaker", "CLOSED", "HALF_OPEN", "OPEN", "IMPLEMENTATION", "implementations"]


EXTENSION = "otlpd._breaker"


def implementations() -> dict[str, type]:
    """Every importable CircuitBreaker implementation, by name ("python", "cython")."""
    extension = import_extension(EXTENSION)
    return {"python": breaker_py.CircuitBreaker,
            **({} if extension is None else {"cython": extension.CircuitBreaker})}


_extension = None if pure_python_requested() else import_extension(EXTENSION)
IMPLEMENTATION = "python" if _extension is None else "cython"
CircuitBreaker: type = breaker_py.CircuitBreaker if _extension is None else _extension.CircuitBreaker
