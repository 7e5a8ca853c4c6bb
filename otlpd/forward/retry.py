"""Which failed Export calls are retried, and how long to wait (OTLP specification, "OTLP/gRPC
Response": retryable codes, RESOURCE_EXHAUSTED only with RetryInfo, RetryInfo's delay honoured).

Waits grow exponentially with full jitter (a uniformly random wait from 0 to the ceiling,
AWS Architecture Blog "Exponential Backoff And Jitter"), so many senders that failed together
do not retry together.
"""
from __future__ import annotations

import random
from typing import NamedTuple

import grpc

RETRYABLE = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})
# A send that ended this way may have been stored by the remote anyway: resending it may
# store it twice (counted as a suspected duplicate once the resend is acknowledged).
MAYBE_DELIVERED = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


class Failure(NamedTuple):
    code: grpc.StatusCode
    message: str
    retryable: bool
    retry_delay: float | None  # seconds a RetryInfo asked for


def retry_info_delay(error: grpc.RpcError) -> float | None:
    """The delay of a ``google.rpc.RetryInfo`` in the error's status details, if there is one."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError, TypeError):
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def classify(error: grpc.RpcError) -> Failure:
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    delay = retry_info_delay(error)
    retryable = code in RETRYABLE or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None)
    return Failure(code, details or "", retryable, delay)


class Backoff:
    """Waits before the retries of one send: ``uniform(0, min(max, initial * 2**n))`` for the
    n-th retry, or the remote's RetryInfo delay (up to ``max``) when it gave one."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self, retry_delay: float | None = None) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt, 62))
        self.attempt += 1
        if retry_delay is not None:
            return min(self.maximum, max(0.0, retry_delay))
        return self._rng.uniform(0.0, ceiling)
