"""Load generator, null server, end-to-end comparison and micro benchmarks for otlpd.

A package so its modules run as ``python -m benchmarks.<name>`` from the repository
root; that keeps ``benchmarks/requests.py`` from shadowing the ``requests`` library.
"""
