"""Build the Cython extensions in ext/ into the otlpd package.

Everything else about the package lives in pyproject.toml; this file exists
only because extension modules still need setup.py with setuptools.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILER_DIRECTIVES = {"language_level": "3", "embedsignature": True}

# cythonize() replaces each Extension's .pyx by the generated .c, so an sdist would carry
# only the .c: `depends` puts the Cython sources into it too (setuptools adds an
# Extension's depends to the sdist). ext/_decoder.pyx includes the parts in ext/decoder/;
# cythonize tracks those includes itself and regenerates the .c when one changes.
DECODER_PARTS = sorted(glob.glob("ext/decoder/*.pxi"))
ENCODER_PARTS = sorted(glob.glob("ext/encoder/*.pxi"))  # ext/_encoder.pyx includes them the same way

extensions = [
    Extension("otlpd._buffer", ["ext/_buffer.pyx"], depends=["ext/_buffer.pyx"]),
    Extension("otlpd._breaker", ["ext/_breaker.pyx"], depends=["ext/_breaker.pyx"]),
    Extension("otlpd._decoder", ["ext/_decoder.pyx"], depends=["ext/_decoder.pyx", *DECODER_PARTS]),
    Extension("otlpd._temporality", ["ext/_temporality.pyx"], depends=["ext/_temporality.pyx"]),
    Extension("otlpd._encoder", ["ext/_encoder.pyx"], depends=["ext/_encoder.pyx", *ENCODER_PARTS]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=COMPILER_DIRECTIVES,
        annotate=bool(os.environ.get("OTLPD_CYTHON_ANNOTATE")),
    ),
)
