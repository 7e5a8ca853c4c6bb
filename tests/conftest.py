"""Shared pytest fixtures."""
import os

import pytest


@pytest.fixture(params=["python", "cython"], ids=["python", "cython"])
def buffer_cls(request):
    """Each BatchBuffer implementation in turn: the pure-Python twin, then Cython.

    The Cython one must be built (``python setup.py build_ext --inplace``): a
    missing extension FAILS the test, so CI cannot silently test only the
    twin. With ``OTLPD_PURE_PYTHON=1`` the Cython parameter is skipped instead.
    """
    if request.param == "python":
        from otlpd.buffer_py import BatchBuffer

        return BatchBuffer
    if os.environ.get("OTLPD_PURE_PYTHON") == "1":
        pytest.skip("OTLPD_PURE_PYTHON=1: Cython BatchBuffer disabled")
    try:
        from otlpd._buffer import BatchBuffer
    except ImportError as error:
        pytest.fail(
            f"Cython extension otlpd._buffer is not importable ({error}); build it with "
            "`python setup.py build_ext --inplace`, or set OTLPD_PURE_PYTHON=1 to test "
            "only the pure-Python implementation",
            pytrace=False,
        )
    return BatchBuffer


@pytest.fixture(params=["python", "cython"], ids=["python", "cython"])
def converter_cls(request):
    """Each temporality converter in turn: the reference, then the native one (a missing
    extension FAILS, as for buffer_cls; OTLPD_PURE_PYTHON=1 skips it)."""
    from otlpd import temporality

    if request.param == "python":
        return temporality.Converter
    if os.environ.get("OTLPD_PURE_PYTHON") == "1":
        pytest.skip("OTLPD_PURE_PYTHON=1: the native converter is disabled")
    if "cython" not in temporality.implementations():
        pytest.fail("Cython extension otlpd._temporality is not importable; build it with "
                    "`python setup.py build_ext --inplace`", pytrace=False)
    return temporality.NativeConverter


def _twin_or_extension(request, twin_module: str, extension_module: str, name: str):
    """``name`` from the pure-Python twin or from the built extension, per ``request.param``.

    A missing extension FAILS the test (CI must not silently test only the
    twin); with ``OTLPD_PURE_PYTHON=1`` its parameter is skipped instead.
    """
    import importlib

    if request.param == "python":
        return getattr(importlib.import_module(twin_module), name)
    if os.environ.get("OTLPD_PURE_PYTHON") == "1":
        pytest.skip(f"OTLPD_PURE_PYTHON=1: Cython {name} disabled")
    try:
        module = importlib.import_module(extension_module)
    except ImportError as error:
        pytest.fail(
            f"Cython extension {extension_module} is not importable ({error}); build it with "
            "`python setup.py build_ext --inplace`, or set OTLPD_PURE_PYTHON=1 to test "
            "only the pure-Python implementation",
            pytrace=False,
        )
    return getattr(module, name)


@pytest.fixture(params=["python", "cython"], ids=["python", "cython"])
def breaker_cls(request):
    """Each CircuitBreaker implementation in turn: the pure-Python twin, then Cython."""
    return _twin_or_extension(request, "otlpd.breaker_py", "otlpd._breaker", "CircuitBreaker")
