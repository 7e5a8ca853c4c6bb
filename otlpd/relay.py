"""With ``receiver.workers`` > 1, every worker's metrics reach one converter: the first worker's.

Temporality conversion keeps state per stream, and a stream's points may reach any worker (the
kernel spreads connections, not streams). So the first worker (``w1``) owns the metrics: its
buffer, converter and writer take every metrics request. Every other worker hands each metrics
request it receives, as the bytes it got, to ``w1`` over a Unix socket (:class:`Relay`) and
answers its client with ``w1``'s verdict: acknowledged only once ``w1`` has accepted the request
into its buffer, refused with the status ``w1`` gave (a full buffer: UNAVAILABLE with RetryInfo).
``w1`` serves those requests (:class:`RelayServer`) through the same checks, decoder, buffer and
counters as its own gRPC requests. So the order in which ``w1``'s buffer takes requests is the
one order of all metrics, and a change of ``metrics.temporality`` (a marker in that buffer)
falls between the requests acknowledged before it and those received after it, whichever
worker received them.

Each request costs a round trip over the socket (tens of microseconds, against milliseconds of
decoding for a request of a thousand points). A relaying worker keeps one connection per thread
that is sending, so concurrent requests do not queue behind each other. While ``w1`` is down (a
restart), a relaying worker answers UNAVAILABLE, which clients retry.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from multiprocessing.connection import Client, Listener
from typing import Callable

import grpc

from otlpd.receiver import IngestError

log = logging.getLogger(__name__)

OK = "OK"


class RelayServer:
    """In the first worker: takes the metrics requests other workers relay."""

    def __init__(self, address: str, authkey: bytes, ingest: Callable[[bytes], None]):
        self.address = address
        self._authkey = authkey
        self._ingest = ingest
        self._listener: Listener | None = None
        self._connections: set = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        if os.path.exists(self.address):  # left by a worker that died
            os.unlink(self.address)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self._authkey)
        threading.Thread(target=self._accept, name="otlpd-relay-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection = self._listener.accept()
            except (OSError, EOFError):
                return  # closed by stop(), or a handshake that failed
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=self._serve, args=(connection,), name="otlpd-relay", daemon=True).start()

    def _serve(self, connection) -> None:
        try:
            while True:
                request = connection.recv_bytes()
                try:
                    self._ingest(request)
                    connection.send((OK, ""))
                except IngestError as error:
                    connection.send((error.code.name, str(error)))
        except (EOFError, OSError):
            pass  # the relaying worker closed it, or stop() did
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()


class Relay:
    """In every other worker: one metrics request to the first worker, and its verdict."""

    def __init__(self, address: str, authkey: bytes):
        self.address = address
        self._authkey = authkey
        self._idle: queue.SimpleQueue = queue.SimpleQueue()  # connections no thread is using

    def __call__(self, request: bytes) -> None:
        """Returns once the first worker accepted ``request``; raises IngestError with its
        refusal (or UNAVAILABLE when it cannot be reached)."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = None
        try:
            if connection is None:
                connection = Client(self.address, family="AF_UNIX", authkey=self._authkey)
            connection.send_bytes(request)
            code, message = connection.recv()
        except (OSError, EOFError) as error:
            if connection is not None:
                connection.close()
            log.warning("metrics relay to the first worker failed (%s); answered UNAVAILABLE", error)
            raise IngestError(grpc.StatusCode.UNAVAILABLE, "otlpd's metrics worker is restarting, retry later") from None
        self._idle.put(connection)
        if code != OK:
            raise IngestError(grpc.StatusCode[code], message)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
