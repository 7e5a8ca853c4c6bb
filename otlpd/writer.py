"""One writer thread per signal: buffer -> current Arrow IPC file -> rotation -> retention.

Every file operation of a signal happens on its writer thread, so rotation,
retention and writes never race each other; other threads only *ask* for a
rotation (:meth:`SignalWriter.rotate`) and wait for the answer.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

from otlpd import decode, files
from otlpd.sources import SOURCES_SCHEMA, Lean, sources_directory, sources_path
from otlpd.status import Counters

log = logging.getLogger(__name__)

# Drained batches are concatenated into record batches of at most COALESCE_ROWS
# rows and COALESCE_BYTES bytes before they are written. Arrow compresses each
# buffer of a batch separately, and a compressor has a fixed cost per call:
# measured here, zstd writes 1000-row trace batches at 0.3 M spans/s but 16 k-row
# batches at 0.8 M spans/s (smaller files too), for a concatenation that costs
# about 0.1-0.2 us a span (the decoder's native merge of Chunks; pyarrow's, for
# RecordBatches, 0.2-0.35 us). Readers also scan fewer, larger batches faster. The
# byte bound caps the one extra copy the writer holds (traces decode to ~1 KB a
# span, so 32 MiB is ~32 k spans); it comes out of buffer.max_bytes
# (split_memory_bound). Measured on traces: 32 k instead of 64 k rows
# cost ~20 % more concatenation + zstd CPU a span (1.16 vs 0.95 us, one noisy
# run) and lowered the sampled peak RSS by 50-120 MiB in two runs.
COALESCE_ROWS = 65536
COALESCE_BYTES = 32 * 1024 * 1024


def split_memory_bound(max_bytes: int, min_buffer: int = 0) -> tuple[int, int]:
    """Split one signal's memory bound into (buffer bytes, coalescing bytes).

    ``buffer.max_bytes`` bounds all decoded rows in memory: rows waiting, rows
    being written (held), and the writer's one concatenated copy. The copy gets
    1/8 of the bound, at most COALESCE_BYTES, but never so much that the buffer
    falls below ``min_buffer`` (the largest request, which must always fit an
    empty buffer); the buffer takes the rest. A copy of 0 bytes means batches
    are written as they are, never concatenated.
    """
    copy = max(0, min(COALESCE_BYTES, max_bytes // 8, max_bytes - min_buffer))
    return max(1, max_bytes - copy), copy


@dataclass(frozen=True)
class WriterSettings:
    write_interval: float = 1.0
    flush_rows: int = 65536
    max_file_bytes: int = 256 * 1024 * 1024
    max_file_age: float = 600.0
    compression: str = "zstd"
    compression_level: int | None = None  # None: the codec's default
    fsync: bool = True
    retention_max_age: float = 0.0
    retention_max_total_bytes: int = 0
    retention_check_interval: float = 60.0
    instance: str = ""
    coalesce_bytes: int = COALESCE_BYTES  # bound of the one concatenated copy (split_memory_bound)

    def ipc_options(self) -> pa.ipc.IpcWriteOptions:
        return pa.ipc.IpcWriteOptions(
            compression=None if self.compression == "none" else pa.Codec(self.compression, self.compression_level))


class _IpcPart:
    """An IPC file writer on ``<name>.arrow.part``, renamed to ``<name>.arrow`` when complete."""

    def __init__(self, path: Path, schema: pa.Schema, options: pa.ipc.IpcWriteOptions):
        self.part_path = path.with_name(path.name + ".part")
        self.final_path = path
        self._sink = pa.OSFile(str(self.part_path), "wb")
        try:
            self._writer = pa.ipc.new_file(self._sink, schema, options=options)
        except BaseException:
            self._sink.close()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        # OSFile is unbuffered: when this returns the batch is in the kernel and
        # survives a crash of this process
        self._writer.write_batch(batch)

    @property
    def size(self) -> int:
        return self._sink.tell()

    def complete(self, fsync: bool) -> int:
        """Write the footer and rename to the ``.arrow`` name; returns the file size."""
        self._writer.close()
        size = self._sink.tell()
        self._sink.close()
        if fsync:
            files.fsync_path(self.part_path)
        os.replace(self.part_path, self.final_path)
        if fsync:
            files.fsync_path(self.final_path.parent)
        return size

    def abandon(self) -> None:
        """Close without a footer after a write error; the .part is recovered later."""
        for closer in (self._writer.close, self._sink.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort on a file that already failed
                pass


class _OpenFile:
    """The file in progress and its sources file (otlpd.sources): every source a batch
    refers to is written to the sources file before the batch."""

    def __init__(self, path: Path, schema: pa.Schema, options: pa.ipc.IpcWriteOptions, opened_at: float):
        self.opened_at = opened_at
        self.rows = 0
        self.known: dict[int, bytes] = {}  # source_id -> canonical key, of this file's sources
        self._sources = _IpcPart(sources_path(path), SOURCES_SCHEMA, options)
        try:
            self._data = _IpcPart(path, schema, options)
        except BaseException:
            self._sources.abandon()
            raise
        self.part_path = self._data.part_path
        self.final_path = self._data.final_path

    def fits(self, items: list) -> int:
        """How many of ``items``, from the front, can go to this file: none refers to a
        source id that this file (or an earlier item) holds for other values."""
        added: dict[int, bytes] = {}
        for count, item in enumerate(items):
            for source_id, key in zip(item.source_ids, item.source_keys):
                have = self.known.get(source_id, added.get(source_id))
                if have is None:
                    added[source_id] = key
                elif have != key:
                    return count
        return len(items)

    def write(self, batch: pa.RecordBatch, group: list) -> None:
        """Append one batch (the rows of ``group``), after the sources new to this file."""
        fresh = []
        for item in group:
            new = [i for i, source_id in enumerate(item.source_ids) if source_id not in self.known]
            if new:
                table = item.sources_batch()
                fresh.append(table if len(new) == table.num_rows else table.take(new))
                for i in new:
                    self.known[item.source_ids[i]] = item.source_keys[i]
        if fresh:
            self._sources.write(fresh[0] if len(fresh) == 1
                                else pa.Table.from_batches(fresh).combine_chunks().to_batches()[0])
        self._data.write(batch)
        self.rows += batch.num_rows

    @property
    def size(self) -> int:
        return self._data.size + self._sources.size

    def complete(self, fsync: bool) -> int:
        """Complete the sources file, then the data file; returns their size together."""
        return self._sources.complete(fsync) + self._data.complete(fsync)

    def abandon(self) -> None:
        self._data.abandon()
        self._sources.abandon()


def _coalesce(items: list, target_rows: int | None = None, target_bytes: int | None = None):
    """Yield (group, batch): the items (the decoder's Chunks or Leans) concatenated into
    RecordBatches of at most ``target_rows`` rows and ``target_bytes`` bytes, in order,
    with the items each batch holds.

    Consumes ``items`` from the front as it goes, so each original is freed once its
    concatenation is written: the writer never holds two copies of a whole drain. An item
    that is large alone is yielded as it is, not copied.
    """
    target_rows = target_rows or COALESCE_ROWS
    target_bytes = COALESCE_BYTES if target_bytes is None else target_bytes
    while items:
        # The byte bound is turned into a row bound from the group's first item
        # (one nbytes call a group: it costs microseconds a call, per-item calls
        # would slow a writer fed with many tiny items).
        rows, size = items[0].num_rows, items[0].nbytes
        limit = target_rows if size == 0 else min(target_rows, max(1, target_bytes * rows // size))
        count = 1
        while count < len(items) and rows + items[count].num_rows <= limit:
            rows += items[count].num_rows
            count += 1
        group = items[:count]
        del items[:count]
        if count == 1:
            # to_batch() moves a Chunk's memory: keep the item whole for a retry (other
            # items' rows are theirs already, and their sources are taken only if new)
            item = group[0]
            if decode.is_chunk(item):
                group = [Lean(decode.as_batch(item), item.sources_batch(), item.source_keys)]
            yield group, decode.as_batch(group[0])
        else:
            yield group, decode.concat(group)
        del group


class SignalWriter:
    """Drains one signal's buffer into rotated files on a thread of its own."""

    def __init__(self, signal: str, schema: pa.Schema, buffer, directory: Path,
                 settings: WriterSettings, counters: Counters | None = None,
                 clock: Callable[[], float] = time.time, stage=None, retention_guard=None,
                 min_sequence: int = 0):
        self.signal = signal
        # what retention asks before deleting a file: its rows the forwarder has not shipped
        # (otlpd.forward.retention.RetentionGuard); None without forwarding
        self.retention_guard = retention_guard
        self._min_sequence = min_sequence  # never reuse a sequence the forwarder's checkpoint names
        # what runs on the drained items, in order, before they are written (the metrics
        # writer's temporality conversion, otlpd.temporality.Stage)
        self.stage = stage
        if stage is not None:  # a converted run is then one batch to write, as it is
            stage.limit_runs(COALESCE_ROWS, settings.coalesce_bytes)
        self.schema = schema
        self.buffer = buffer
        self.directory = Path(directory)
        self.settings = settings
        self.counters = counters or Counters()
        self._clock = clock
        self._options = settings.ipc_options()
        self._file: _OpenFile | None = None
        self._seq = 0
        self._wake = threading.Event()
        self._stopping = False
        self._requests_lock = threading.Lock()
        self._rotate_requests: list[tuple[threading.Event, list]] = []
        self._unwritten: list = []  # RecordBatches or Chunks, in order
        self._last_retention = 0.0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"otlpd-writer-{signal}", daemon=True)
        self._state = {"current_file": None, "current_file_bytes": 0, "current_file_rows": 0,
                       "current_file_opened_at": None}

    # -- called from other threads -------------------------------------------------

    def prepare(self, recover: bool = True) -> list[Path]:
        """Create the directory and complete files left in progress by a crash; call before start."""
        self.directory.mkdir(parents=True, exist_ok=True)
        sources_directory(self.directory).mkdir(parents=True, exist_ok=True)
        # before recovery removes empty parts: a sequence number is never reused
        self._seq = max(files.next_sequence(self.directory), self._min_sequence)
        if not recover:
            return []
        recovered = files.recover_directory(self.directory, self._options, self.settings.fsync)
        for path, rows in recovered:
            self.counters.add(files_recovered=1, rows_recovered=rows)
        return [path for path, _ in recovered]

    def start(self) -> None:
        self._thread.start()

    def on_pending(self, pending_rows: int) -> None:
        """Receiver hook after each accepted push: write early once enough rows wait."""
        if pending_rows >= self.settings.flush_rows:
            self._wake.set()

    def rotate(self, timeout: float = 30.0) -> Path | None:
        """Write everything accepted so far, complete the current file; returns its path.

        Returns None when there was nothing to complete.
        """
        done = threading.Event()
        result: list = []
        with self._requests_lock:
            if self._stopping or not self._thread.is_alive():
                raise RuntimeError(f"{self.signal} writer is not running")
            self._rotate_requests.append((done, result))
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError(f"{self.signal} writer did not rotate within {timeout} s")
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def stop(self, timeout: float = 60.0) -> None:
        """Write everything accepted, complete the current file and end the thread."""
        with self._requests_lock:
            self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict:
        return {**self.counters.snapshot(), **self._state, "last_error": self._last_error,
                "running": self._thread.is_alive()}

    # -- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        next_write = self._clock() + self.settings.write_interval
        while True:
            wait = next_write - self._clock()
            save_in = self.stage.save_in() if self.stage is not None else None
            if save_in is not None and self._last_error is None:  # the conversion state is saved by then
                wait = min(wait, save_in)
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
            with self._requests_lock:
                stopping = self._stopping
                requests, self._rotate_requests = self._rotate_requests, []
            self._step(requests)
            next_write = self._clock() + self.settings.write_interval
            if stopping:
                self._finish()
                return

    def _step(self, rotate_requests: list) -> None:
        self._write_pending()
        for done, result in rotate_requests:
            try:
                result.append(self._complete_file())
            except Exception as error:  # noqa: BLE001 - handed to the caller of rotate()
                result.append(error)
            done.set()
        current = self._file
        if current is not None and (current.size >= self.settings.max_file_bytes
                                    or self._clock() - current.opened_at >= self.settings.max_file_age):
            self._complete_file()
        if self._clock() - self._last_retention >= self.settings.retention_check_interval:
            self._retention()

    def _finish(self) -> None:
        self._write_pending(final=True)
        self._complete_file()
        with self._requests_lock:
            late, self._rotate_requests = self._rotate_requests, []
        for done, result in late:
            result.append(None)
            done.set()

    def _write_pending(self, final: bool = False) -> None:
        # hold: what is being written still counts against the buffer's bounds,
        # so they bound the memory of waiting *and* in-flight rows
        drained = self.buffer.drain(hold=True)
        if self.stage is not None:
            drained = self.stage.process(drained)
        items = self._unwritten + [decode.as_item(item) for item in drained]
        self._unwritten = []
        if not items:
            if self.stage is not None:
                self.stage.commit(force=final)  # e.g. a change of the setting alone
            return
        written_rows = written_batches = 0
        group: list = []
        segment: list = []
        try:
            while items:
                if self._file is None:
                    self._open_file()
                count = self._file.fits(items)
                if count == 0:
                    # a source id this file holds for other values (a 64-bit hash
                    # collision): the item starts a new file, never merges two sources
                    self.counters.add(source_id_collisions=1)
                    self._complete_file()
                    continue
                segment, items = items[:count], items[count:]
                # consumes `segment` as it goes
                for group, batch in _coalesce(segment, target_bytes=self.settings.coalesce_bytes):
                    self._file.write(batch, group)
                    written_rows += batch.num_rows
                    written_batches += 1
                    group = []
                items = segment + items  # empty segment unless a write failed
        except OSError as error:
            # Keep what did not reach the file and retry on the next tick: accepted
            # rows are never dropped; the buffer fills up and pushes back meanwhile.
            self._last_error = f"write failed: {error}"
            log.error("%s: %s; will retry", self.signal, self._last_error)
            self.counters.add(write_errors=1)
            self._unwritten = self._not_in_broken_file(group + segment + items)
            return
        finally:
            self.counters.add(written_rows=written_rows, written_batches=written_batches)
        self.buffer.release_held()
        if self.stage is not None:
            self.stage.commit(force=final)  # its state now matches what was written (saved once an interval)
        self._last_error = None
        self._update_state()

    def _open_file(self) -> None:
        now = self._clock()
        name = files.file_name(self.signal, now, self._seq, self.settings.instance)
        self._file = _OpenFile(self.directory / name, self.schema, self._options, now)
        self._seq += 1

    def _not_in_broken_file(self, batches: list) -> list:
        """After a failed write: complete the file with what reached it, return the rest.

        The items went to the file in order, each group whole or torn; recovery keeps
        the whole ones, so the rows it finds beyond those written before tell how
        many of ``batches`` are already safe.
        """
        broken, self._file = self._file, None
        if broken is None:
            return batches
        rows_before = broken.rows
        broken.abandon()
        try:
            _, rows_found = files.recover_with_sources(broken.part_path, self._options, self.settings.fsync)
        except OSError as error:
            log.error("%s: %s stays in progress until the next start: %s",
                      self.signal, broken.part_path.name, error)
            return batches
        safe_rows = rows_found - rows_before
        for index, batch in enumerate(batches):
            if safe_rows < batch.num_rows:
                return batches[index:]
            safe_rows -= batch.num_rows
        return []

    def _complete_file(self) -> Path | None:
        current, self._file = self._file, None
        if current is None:
            return None
        size = current.complete(self.settings.fsync)
        self.counters.add(files_rotated=1, written_bytes=size)
        log.info("completed %s (%d rows, %d bytes)", current.final_path.name, current.rows, size)
        self._update_state()
        self._retention()
        return current.final_path

    def _retention(self) -> None:
        self._last_retention = self._clock()
        if not (self.settings.retention_max_age or self.settings.retention_max_total_bytes):
            return
        guard = self.retention_guard
        deleted, deleted_bytes = files.apply_retention(
            self.directory, self.settings.retention_max_age,
            self.settings.retention_max_total_bytes, now=time.time(),
            unshipped=guard.rows_for(self.directory) if guard else None,
            dropped=self._count_dropped)
        if deleted:
            self.counters.add(files_deleted=deleted, bytes_deleted=deleted_bytes)

    def _count_dropped(self, file: files.CompletedFile, rows: int) -> None:
        self.counters.add(unforwarded_files_deleted=1, unforwarded_records_deleted=rows)
        self.retention_guard.dropped(file, rows)

    def _update_state(self) -> None:
        current = self._file
        self._state = {
            "current_file": current.part_path.name if current else None,
            "current_file_bytes": current.size if current else 0,
            "current_file_rows": current.rows if current else 0,
            "current_file_opened_at": current.opened_at if current else None,  # Unix seconds
        }
