"""One thread per signal: read the next batch from the files, send it, save the checkpoint.

Each signal's thread walks every writer instance's files in sequence order (:mod:`.log`),
turns the rows from its checkpoint on into Export requests (``encode.requests``, cut by
``forward.max_request_items`` and ``forward.max_request_bytes``) and hands them to up to
``forward.max_in_flight`` sender threads (:mod:`.inflight`), so that encoding, sending and the
remote's work overlap; with 1 it sends them itself, one at a time, in order. A request
acknowledged by the remote, or refused for good (its code is counted), is finished; the
checkpoint moves past the finished requests only as far as they are contiguous from the oldest
one, so it never passes a request still unacknowledged. One that failed in a retryable way is
sent again after a backoff, for as long as it takes: the files keep it meanwhile. Every send
asks the circuit breaker first, shared by the three signals (one remote), and waits while it is
open; in half-open only its probes go.

The threads only read files and never take a lock of the ingest path, so forwarding cannot
slow ingestion down (beyond sharing the GIL and the disk).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import grpc

from otlpd import encode, schema
from otlpd.breaker import IMPLEMENTATION as BREAKER_IMPLEMENTATION
from otlpd.breaker import CircuitBreaker
from otlpd.forward.checkpoint import Checkpoint, Position, checkpoint_path, read_dropped
from otlpd.forward.client import ExportClient
from otlpd.forward.inflight import Pending, Senders, Window
from otlpd.forward.log import DataFile, OpenedFile, RowCounts, list_files, unshipped_rows
from otlpd.forward.retry import MAYBE_DELIVERED, Backoff, classify
from otlpd.forward.settings import ForwardSettings, forward_settings
from otlpd.status import Counters

log = logging.getLogger(__name__)

BACKLOG_INTERVAL = 1.0  # seconds between two backlog counts
RATE_WINDOW = 10.0  # the send rate is over the last this many seconds
REFUSED_WAIT = 0.1  # the breaker refused while half-open (a probe is out): look again this soon
SKIP_LOG_INTERVAL = 60.0  # a refused-for-good code (or a read error) is logged at most once a minute


def disabled_snapshot() -> dict[str, Any]:
    return {"enabled": False}


class _Stop(Exception):
    """Forwarding ends (stop() or UNAUTHENTICATED) before a send was acknowledged."""


class SignalForwarder:
    """Ships one signal's files; runs on its own thread."""

    def __init__(self, signal: str, directory: Path, checkpoint: Checkpoint, client: ExportClient,
                 breaker, settings: ForwardSettings, stopping: threading.Event,
                 halt: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.signal = signal
        self.directory = Path(directory)
        self.checkpoint = checkpoint
        self.client = client
        self.breaker = breaker
        self.settings = settings
        self.counters = Counters()
        self._stopping = stopping
        self._halt = halt
        self._clock = clock
        self._opened: dict[str, OpenedFile] = {}
        self._row_counts = RowCounts()
        self._backlog: dict[str, Any] = {"records": None, "bytes": None, "files": None, "lag_seconds": None}
        self._backlog_at = float("-inf")
        self._rates: deque[tuple[float, int]] = deque()
        self._sent_records = 0
        self._last_error: dict[str, Any] | None = None
        self._last_partial: str | None = None
        self._skip_logged: dict[str, float] = {}
        self._failing_since: float | None = None  # an outage, logged once when it starts and once when it ends
        self._sent_lock = threading.Lock()  # _sent_records: the sender threads add to it
        self._window = Window(settings.max_in_flight)
        self._save_failed = False  # a checkpoint save failed: what followed it is sent again too
        self._cursor: dict[str, Position] = {}  # per instance: where the next request starts (ahead of the checkpoint)
        self._senders = (Senders(f"otlpd-forward-{signal}-send", settings.max_in_flight, self._send)
                         if settings.max_in_flight > 1 else None)
        self._thread = threading.Thread(target=self._run, name=f"otlpd-forward-{signal}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    shipped = self._pass()
                except _Stop:
                    break
                except Exception as error:  # noqa: BLE001 - a bad file must not end forwarding silently
                    self._settle()
                    self._error("LOCAL", f"{type(error).__name__}: {error}")
                    if self._due_to_log("LOCAL"):
                        log.exception("forward %s: reading or encoding the stored files, or saving the "
                                      "checkpoint, failed; trying again (logged at most once a minute)", self.signal)
                    shipped = False
                if not shipped:
                    self._wait(self.settings.poll_interval)
        finally:
            self._settle()
            if self._senders is not None:
                self._senders.close()
            self._refresh_backlog(force=True)

    def _pass(self) -> bool:
        """One request-sized step or more for every instance with something to send; False
        when there was nothing."""
        listing = list_files(self.directory)
        shipped = False
        for instance in sorted(listing):
            try:
                position, opened = self._locate(instance, listing[instance])
            except FileNotFoundError:
                # renamed (completed) or deleted since it was listed: list again at once
                shipped = True
                continue
            if opened is not None:
                self._ship(instance, position, opened)
                shipped = True
        if not shipped and len(self._window):
            # nothing new to send: wait for the oldest request in flight (or up to a second)
            self._window.oldest.done.wait(BACKLOG_INTERVAL)
            self._record()
            shipped = True
        self._refresh_backlog(listing)
        return shipped

    def _locate(self, instance: str, found: list[DataFile]) -> tuple[Position | None, OpenedFile | None]:
        """The position of the next unsent batch of ``instance`` and its opened file, or None
        when everything there is has been shipped (or is in flight)."""
        position = self._cursor.get(instance) or self.checkpoint.get(instance)
        if position is None:
            position = Position(found[0].seq)
        while True:
            current = next((file for file in found if file.seq >= position.seq), None)
            if current is None:
                return position, None
            if current.seq != position.seq:
                # the checkpoint's file is gone (retention forced by retention.max_total_bytes
                # counts its rows as dropped) or held no batch: go on with the next one
                position = Position(current.seq)
                self._step(Pending(instance, position))
            opened = self._open(instance, current)
            if position.batch < opened.batches:
                return position, opened
            if not current.complete:
                return position, None  # shipped up to what the writer has written so far
            later = next((file for file in found if file.seq > current.seq), None)
            if later is None:
                return position, None
            position = Position(later.seq)
            self._step(Pending(instance, position))

    def _open(self, instance: str, file: DataFile) -> OpenedFile:
        """The file opened, reusing the last opening unless the file changed since."""
        opened = self._opened.get(instance)
        if opened is None or opened.file.path != file.path or (not file.complete and opened.file.size != file.size):
            opened = self._opened[instance] = OpenedFile(file)
        return opened

    def _ship(self, instance: str, position: Position, opened: OpenedFile) -> None:
        """Send the rest of one record batch, one request after another into the window."""
        batch = opened.batch(position.batch)
        row = position.row
        if row < batch.num_rows:
            requests = encode.requests(self.signal, batch.slice(row), opened.sources(),
                                       max_items=self.settings.max_request_items,
                                       max_bytes=self.settings.max_request_bytes)
            for data, count in requests:
                row += count
                after = Position(position.seq, position.batch, row) if row < batch.num_rows \
                    else Position(position.seq, position.batch + 1)
                self._step(Pending(instance, after, count, data))
        else:  # nothing left in this batch (an empty one): move past it
            self._step(Pending(instance, Position(position.seq, position.batch + 1)))

    # -- the window: requests in flight and the checkpoint ------------------------------

    def _step(self, step: Pending) -> None:
        """Take one step: send a request (on this thread with max_in_flight 1, else on a sender
        thread once the window has room) or move past data with nothing to send; then record
        what finished. Raises what ended the oldest step unfinished (_Stop, an error)."""
        self._cursor[step.instance] = step.after
        if step.data is not None:
            if self._senders is None:
                self._send(step.data, step.count)  # raises _Stop: nothing recorded
                step.data = None
                step.done.set()
            else:
                while self._window.full:
                    self._window.oldest.done.wait(BACKLOG_INTERVAL)
                    self._record()
                    self._refresh_backlog()
                self._window.add(step)
                self._senders.submit(step)
                self._record()
                return
        self._window.add(step)
        self._record()

    def _record(self) -> None:
        """Move the checkpoint past the finished steps at the head of the window (one write for
        all of them), then raise what ended the oldest remaining step, if it ended unfinished."""
        prefix = self._window.take_finished_prefix()
        if prefix.positions:
            try:
                self.checkpoint.update(prefix.positions)
            except OSError:
                # acknowledged but not recorded (a full disk?): they will be sent again, and so
                # will everything after them (_settle must not move the checkpoint past them)
                self.counters.add(duplicates_suspected_requests=prefix.requests,
                                  duplicates_suspected_records=prefix.records)
                self._save_failed = True
                raise
        error = self._window.failed_head()
        if error is not None:
            raise error

    def _settle(self) -> None:
        """Wait until every step in the window has ended, record the finished prefix and forget
        the rest, so the next pass starts from the checkpoint again. A request acknowledged after
        one that did not finish (stop() cancelled it) will be sent again: a suspected duplicate."""
        for step in self._window:
            step.done.wait()
        try:
            prefix = self._window.take_finished_prefix()
            if prefix.positions and self._save_failed:  # not past what the failed save left behind
                self.counters.add(duplicates_suspected_requests=prefix.requests,
                                  duplicates_suspected_records=prefix.records)
            elif prefix.positions:
                try:
                    self.checkpoint.update(prefix.positions)
                except OSError as error:
                    self.counters.add(duplicates_suspected_requests=prefix.requests,
                                      duplicates_suspected_records=prefix.records)
                    log.warning("forward %s: cannot save the checkpoint (%s); %d acknowledged records will be "
                                "sent again", self.signal, error, prefix.records)
        finally:
            again = [step for step in self._window.clear() if step.finished and step.count]
            if again:
                self.counters.add(duplicates_suspected_requests=len(again),
                                  duplicates_suspected_records=sum(step.count for step in again))
            self._cursor.clear()
            self._save_failed = False

    def _send(self, data: bytes, count: int) -> None:
        """Deliver one request, or give it up when the remote refuses it for good. Raises _Stop
        when forwarding ends first (the checkpoint stays before the request)."""
        backoff = Backoff(self.settings.initial_backoff, self.settings.max_backoff)
        maybe_delivered = 0  # attempts that may have been stored although they failed (timed out)
        while True:
            if self._stopping.is_set():
                raise _Stop
            ticket = self.breaker.allow()
            if not ticket:
                self._pause(max(self.breaker.retry_after(), REFUSED_WAIT))
                continue
            try:
                rejected, message = self.client.export(self.signal, data)
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    raise _Stop from None
                failure = classify(error)
                name = failure.code.name
                if failure.code == grpc.StatusCode.UNAUTHENTICATED:
                    self.breaker.record_success(ticket)  # the remote answered; the credentials are wrong
                    self._error(name, failure.message)
                    self._halt(f"UNAUTHENTICATED: {failure.message or 'the remote refused the credentials'}; "
                               "check the forward.* authentication settings, then restart otlpd")
                    raise _Stop from None
                if not failure.retryable:
                    self.breaker.record_success(ticket)
                    self._skip(name, failure.message, count)
                    return
                self.breaker.record_failure(ticket, reason=name)
                self._error(name, failure.message)
                if self._failing_since is None:
                    self._failing_since = self._clock()
                    log.warning("forward %s: %s (%s); retrying with backoff, the files keep the data",
                                self.signal, name, failure.message)
                maybe_delivered += failure.code in MAYBE_DELIVERED
                self.counters.add(retries=1, **{f"retries_{name}": 1})
                self._pause(backoff.next_delay(failure.retry_delay))
                continue
            except ValueError:
                if self._stopping.is_set():  # the channel was closed under the call
                    raise _Stop from None
                raise
            self.breaker.record_success(ticket)
            if self._failing_since is not None:
                log.info("forward %s: delivering again after %.1f s", self.signal, self._clock() - self._failing_since)
                self._failing_since = None
            with self._sent_lock:
                self._sent_records += count
            self.counters.add(sent_requests=1, sent_records=count, sent_bytes=len(data))
            if maybe_delivered:
                self.counters.add(duplicates_suspected_requests=maybe_delivered,
                                  duplicates_suspected_records=maybe_delivered * count)
            if rejected or message:
                self.counters.add(partial_success_requests=1, partial_success_rejected=rejected)
                self._last_partial = message
                if self._due_to_log("partial_success"):
                    log.warning("forward %s: the remote accepted a request but rejected %d of its %d records: %s "
                                "(counted as partial_success; logged at most once a minute)",
                                self.signal, rejected, count, message)
            return

    def _skip(self, code: str, message: str, count: int) -> None:
        self.counters.add(**{f"skipped_{code}": count})
        self._error(code, message)
        if self._due_to_log(code):
            log.warning("forward %s: the remote refused a request of %d records for good (%s: %s); "
                        "skipped, counted as skipped_by_code.%s (logged at most once a minute)",
                        self.signal, count, code, message, code)

    def _due_to_log(self, what: str) -> bool:
        """True at most once a minute per ``what``: a repeated problem is logged, not a flood."""
        now = self._clock()
        if now - self._skip_logged.get(what, float("-inf")) < SKIP_LOG_INTERVAL:
            return False
        self._skip_logged[what] = now
        return True

    def _error(self, code: str, message: str) -> None:
        self._last_error = {"at": time.time(), "code": code, "message": message[:500]}

    def _pause(self, seconds: float) -> None:
        """A wait inside a send: on a sender thread it only waits (the backlog is the signal
        thread's to count)."""
        if self._senders is None:
            self._wait(seconds)
        else:
            self._stopping.wait(seconds)

    def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (less when stopping), counting the backlog meanwhile."""
        deadline = self._clock() + seconds
        while not self._stopping.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            self._stopping.wait(min(remaining, BACKLOG_INTERVAL))
            self._refresh_backlog()

    # -- status --------------------------------------------------------------------

    def _refresh_backlog(self, listing: dict[str, list[DataFile]] | None = None, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._backlog_at < BACKLOG_INTERVAL:
            return
        self._backlog_at = now
        listing = list_files(self.directory) if listing is None else listing
        records = files_left = 0
        size = 0.0
        oldest = None
        for instance, found in listing.items():
            position = self.checkpoint.get(instance)
            for file in found:
                try:
                    counts = self._row_counts.of(file)
                except (FileNotFoundError, OSError):
                    continue  # deleted or renamed while listed: the next count sees it
                left = unshipped_rows(counts, file.seq, position)
                if not left:
                    continue
                records += left
                files_left += 1
                size += file.size * left / max(1, sum(counts))
                oldest = file.start if oldest is None else min(oldest, file.start)
        self._row_counts.forget_missing({file.path for found in listing.values() for file in found})
        self._backlog = {"records": records, "bytes": int(size), "files": files_left,
                         "lag_seconds": 0.0 if oldest is None else max(0.0, time.time() - oldest)}
        self._rates.append((now, self._sent_records))
        while self._rates and now - self._rates[0][0] > RATE_WINDOW:
            self._rates.popleft()

    def snapshot(self) -> dict[str, Any]:
        counters = self.counters.snapshot()
        rates = list(self._rates)
        rate = 0.0
        if len(rates) >= 2 and rates[-1][0] > rates[0][0]:
            rate = (rates[-1][1] - rates[0][1]) / (rates[-1][0] - rates[0][0])
        prefixed = {prefix: {key[len(prefix):]: value for key, value in counters.items() if key.startswith(prefix)}
                    for prefix in ("skipped_", "retries_")}
        return {
            "running": self._thread.is_alive(),
            "in_flight_requests": sum(1 for step in self._window if step.count and not step.done.is_set()),
            "backlog": dict(self._backlog),
            "send_rate_records_per_second": rate,
            "sent_requests": counters.get("sent_requests", 0),
            "sent_records": counters.get("sent_records", 0),
            "sent_bytes": counters.get("sent_bytes", 0),
            "retries": counters.get("retries", 0),
            "retries_by_code": prefixed["retries_"],
            "skipped_records": sum(prefixed["skipped_"].values()),
            "skipped_by_code": prefixed["skipped_"],
            "partial_success": {"requests": counters.get("partial_success_requests", 0),
                                "rejected": counters.get("partial_success_rejected", 0),
                                "last_message": self._last_partial},
            "duplicates_suspected": {"requests": counters.get("duplicates_suspected_requests", 0),
                                     "records": counters.get("duplicates_suspected_records", 0)},
            "last_error": self._last_error,
            "checkpoint": self.checkpoint.snapshot(),
        }


class Forwarder:
    """The three signals' forwarders, one remote, one breaker; owned by the Daemon (or, with
    several workers, the Supervisor)."""

    def __init__(self, output_dir: Path | str, settings: ForwardSettings,
                 signals: tuple[str, ...] = schema.SIGNALS, breaker=None, client: ExportClient | None = None):
        self.output_dir = Path(output_dir)
        self.settings = settings
        self.breaker = breaker or CircuitBreaker(**settings.breaker)
        self._stopping = threading.Event()
        self._halted: str | None = None
        self._started = False
        checkpoints = {signal: Checkpoint(checkpoint_path(self.output_dir, signal), settings.fsync)
                       for signal in signals}  # a damaged one is a ConfigError now, not later
        self.client = client or ExportClient(settings.client, channels=settings.max_in_flight)
        self.signals = {signal: SignalForwarder(signal, self.output_dir / signal, checkpoints[signal],
                                                self.client, self.breaker, settings, self._stopping, self._halt)
                        for signal in signals}

    @classmethod
    def from_config(cls, config, output_dir: Path | str) -> "Forwarder":
        return cls(output_dir, forward_settings(config))

    def start(self) -> None:
        self._started = True
        for forwarder in self.signals.values():
            forwarder.start()
        log.info("forwarding to %s (%s)", self.settings.client.endpoint,
                 "plain text" if self.settings.client.insecure else "TLS")

    def _halt(self, reason: str) -> None:
        """Stop every signal for a reason only a change of configuration mends."""
        if self._halted is None:
            self._halted = reason
            log.error("forwarding stopped: %s", reason)
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        """End every thread; a send in flight is cancelled and sent again after a restart."""
        self._stopping.set()
        self.client.close()
        deadline = time.monotonic() + timeout
        for forwarder in self.signals.values():
            forwarder.join(max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> dict[str, Any]:
        """The forwarding part of the status."""
        breaker = self.breaker.snapshot()
        wall_offset = time.time() - time.monotonic()  # the breaker's clock is monotonic
        breaker["transitions"] = [{**transition, "at": transition["at"] + wall_offset}
                                  for transition in breaker["transitions"]][-10:]
        breaker["implementation"] = BREAKER_IMPLEMENTATION
        signals = {}
        for signal, forwarder in self.signals.items():
            dropped = read_dropped(self.output_dir, signal)  # retention's ledger, since ever
            signals[signal] = {**forwarder.snapshot(), "dropped_by_retention": dropped["records"],
                               "dropped_files_by_retention": dropped["files"]}
        if self._halted:
            state = "stopped"
        elif not self._started or self._stopping.is_set():
            state = "not running"
        elif breaker["state"] != "closed":
            state = "waiting for the remote"
        else:
            state = "forwarding"
        return {"enabled": True, "state": state, "stopped_reason": self._halted,
                "remote": self.settings.client.public(),
                "max_request_items": self.settings.max_request_items,
                "max_request_bytes": self.settings.max_request_bytes,
                "max_in_flight": self.settings.max_in_flight,
                "breaker": breaker, "signals": signals}

