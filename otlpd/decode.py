"""The decoding seam: Export request bytes -> one pyarrow.RecordBatch per request.

The receiver calls ``DECODERS[signal](data)``. Today every decoder is the
protobuf reference path in :mod:`otlpd.schema`; a native decoder replaces the
entries here without the receiver noticing.
"""
from otlpd.schema import DECODERS, DecodeError

__all__ = ["DECODERS", "DecodeError"]
