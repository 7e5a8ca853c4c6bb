"""Build the Cython extensions in ext/ into the otlpd package.

Everything else about the package lives in pyproject.toml; this file exists
only because extension modules still need setup.py with setuptools.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILER_DIRECTIVES = {"language_level": "3", "embedsignature": True}

extensions = [
    Extension("otlpd._buffer", ["ext/_buffer.pyx"]),
    Extension("otlpd._decoder", ["ext/_decoder.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=COMPILER_DIRECTIVES,
        annotate=bool(os.environ.get("OTLPD_CYTHON_ANNOTATE")),
    ),
)
