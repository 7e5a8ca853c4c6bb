"""The stored files of one signal read back as a log: per writer instance, its files in sequence
order, each a list of record batches, each a list of rows.

A completed file and a file in progress are read the same way: as an IPC stream from byte 8
(after the ``ARROW1\\0\\0`` magic), message by message, like recovery does. Only complete
messages are taken (a batch being written is not there yet), and the row count of a batch is
read from its message header without decompressing its body. The sources a batch refers to
are always in its sources file by the time the batch is (the writer writes them first), so
the sources file is read after the data file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from otlpd import files
from otlpd.forward.checkpoint import Position
from otlpd.sources import sources_path

_MAGIC_BYTES = 8
_RECORD_BATCH = 3  # org.apache.arrow.flatbuf.MessageHeader.RecordBatch


def _field(data: bytes, table: int, index: int) -> int:
    """Absolute offset of field ``index`` of the flatbuffer table at ``table`` (0: absent)."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vtable_size:
        return 0
    offset = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + offset if offset else 0


def batch_rows(message: pa.ipc.Message) -> int:
    """Rows of a record batch message, from its header (Message.header -> RecordBatch.length,
    format/Message.fbs): no body is read or decompressed."""
    data = message.metadata.to_pybytes()
    root = struct.unpack_from("<I", data, 0)[0]
    kind, header = _field(data, root, 1), _field(data, root, 2)
    if not kind or data[kind] != _RECORD_BATCH or not header:
        raise ValueError("not a record batch message")
    table = header + struct.unpack_from("<I", data, header)[0]
    length = _field(data, table, 0)
    return struct.unpack_from("<q", data, length)[0] if length else 0


@dataclass
class DataFile:
    """One data file of the log, as last listed."""

    path: Path
    instance: str
    seq: int
    start: float
    complete: bool
    size: int


def list_files(directory: Path) -> dict[str, list[DataFile]]:
    """The data files of a signal directory by instance, each list in sequence order; a file
    both completed and in progress (a moment of recovery) is listed once, complete."""
    found: dict[tuple[str, int], DataFile] = {}
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return {}
    for entry in entries:
        parts = files.name_parts(entry.name)
        if parts is None:
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:
            continue
        try:
            size += sources_path(entry).stat().st_size
        except FileNotFoundError:
            pass
        key = (parts.instance, parts.seq)
        if key in found and found[key].complete:
            continue
        found[key] = DataFile(entry, parts.instance, parts.seq, parts.start, parts.complete, size)
    by_instance: dict[str, list[DataFile]] = {}
    for file in sorted(found.values(), key=lambda file: file.seq):
        by_instance.setdefault(file.instance, []).append(file)
    return by_instance


class OpenedFile:
    """The complete record batches of one data file (completed or in progress) at the moment
    it was opened, read lazily, and its sources."""

    def __init__(self, file: DataFile):
        self.file = file
        self.schema: pa.Schema | None = None
        self._messages: list[pa.ipc.Message] = []
        self.rows: list[int] = []
        self._sources: pa.Table | None = None
        data = pa.memory_map(str(file.path)).read_buffer()
        if data.size <= _MAGIC_BYTES:
            return
        try:
            reader = pa.ipc.MessageReader.open_stream(data.slice(_MAGIC_BYTES))
            self.schema = pa.ipc.read_schema(reader.read_next_message())
        except (pa.ArrowInvalid, OSError, StopIteration):
            return  # the schema message is not complete yet
        while True:
            try:
                message = reader.read_next_message()
            except StopIteration:
                break  # end-of-stream marker (a completed file's footer follows)
            except (pa.ArrowInvalid, OSError):
                break  # the batch being written
            if message.type != "record batch":
                continue
            self._messages.append(message)
            self.rows.append(batch_rows(message))

    @property
    def batches(self) -> int:
        return len(self._messages)

    def batch(self, index: int) -> pa.RecordBatch:
        return pa.ipc.read_record_batch(self._messages[index], self.schema)

    def sources(self) -> pa.Table:
        """The sources of this file: every source its batches read so far refer to."""
        if self._sources is None:
            self._sources = read_sources(self.file.path)
        return self._sources


def read_sources(data_path: Path) -> pa.Table:
    """The sources file of a data file, complete or in progress (its part is tried first: a
    file in progress completes its sources before itself)."""
    final = sources_path(data_path.with_name(data_path.name.removesuffix(".part")))
    part = final.with_name(final.name + ".part")
    for attempt in range(2):
        for path in (part, final):
            try:
                if path is part:
                    schema, batches = files.read_part(path)
                    if schema is None:
                        continue
                    return pa.Table.from_batches(batches, schema=schema)
                with pa.memory_map(str(path)) as source:
                    return pa.ipc.open_file(source).read_all()
            except FileNotFoundError:
                continue
    raise FileNotFoundError(f"no sources file for {data_path.name}")


class RowCounts:
    """Row counts per batch of completed files (immutable, so counted once), by path."""

    def __init__(self) -> None:
        self._counts: dict[Path, list[int]] = {}

    def of(self, file: DataFile) -> list[int]:
        if not file.complete:
            return OpenedFile(file).rows
        counts = self._counts.get(file.path)
        if counts is None:
            counts = self._counts[file.path] = OpenedFile(file).rows
        return counts

    def forget_missing(self, present: set[Path]) -> None:
        for path in [path for path in self._counts if path not in present]:
            del self._counts[path]


def unshipped_rows(rows: list[int], seq: int, position: Position | None) -> int:
    """Rows of file ``seq`` (batch row counts ``rows``) not yet shipped from ``position`` on."""
    if position is None or seq > position.seq:
        return sum(rows)
    if seq < position.seq or position.batch >= len(rows):
        return 0
    return sum(rows[position.batch:]) - min(position.row, rows[position.batch])
