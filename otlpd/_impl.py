"""How every seam with a Cython extension and a pure-Python twin picks one.

``OTLPD_PURE_PYTHON=1`` selects the twins; otherwise an extension is used when
it imports, and a missing or unusable one falls back to its twin (logged).
"""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)


def pure_python_requested() -> bool:
    return os.environ.get("OTLPD_PURE_PYTHON") == "1"


def import_extension(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None if it is not built or cannot load here."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        log.debug("%s is not built", name)
        return None
    except ImportError as error:
        # Built but unusable (compiled for another Python, big-endian host...): say so.
        log.warning("cannot import the Cython extension %s: %s", name, error)
        return None
