"""File names of one signal's directory, crash recovery of files in progress, and retention.

Completed files: ``<signal>-<UTC start>-<seq>.arrow`` (Arrow IPC file format).
The file in progress: the same name plus ``.part``, so a ``*.arrow`` glob
never matches it. It is written in the IPC file format too; until its footer
is written it is readable as an IPC stream starting at byte 8, after the
``ARROW1\\0\\0`` magic, which is how :func:`recover` completes it.

Every data file has a sources file of the same name (and the same life: written
before the batches that refer to it, completed, recovered and deleted with it) at
``<output_dir>/sources/<signal>/<name>`` (otlpd.sources); :func:`read_table` joins
the two back into the full layout.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import pyarrow as pa

from otlpd.sources import join, sources_directory, sources_path

log = logging.getLogger(__name__)

COMPLETE_SUFFIX = ".arrow"
PART_SUFFIX = ".arrow.part"
_MAGIC = b"ARROW1\x00\x00"
_NAME = re.compile(r"^(?P<signal>[a-z]+)-(?P<start>\d{8}T\d{6}Z)(?:-(?P<instance>[A-Za-z0-9_]+))?"
                   r"-(?P<seq>\d+)\.arrow(?:\.part)?$")


def file_name(signal: str, start: float, seq: int, instance: str = "") -> str:
    """The completed name of a file whose first batch was written at ``start`` (Unix seconds)."""
    stamp = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    middle = f"-{instance}" if instance else ""
    return f"{signal}-{stamp}{middle}-{seq:06d}{COMPLETE_SUFFIX}"


def sequence_of(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group("seq")) if match else None


class NameParts(NamedTuple):
    signal: str
    start: float  # Unix seconds of the file's first batch
    instance: str  # "" for a single process, "w1", "w2"... for worker processes
    seq: int
    complete: bool


def name_parts(name: str) -> NameParts | None:
    """What a data file's name says, or None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    start = datetime.strptime(match.group("start"), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return NameParts(match.group("signal"), start.timestamp(), match.group("instance") or "",
                     int(match.group("seq")), name.endswith(COMPLETE_SUFFIX))


def next_sequence(directory: Path) -> int:
    """One past the highest sequence number of any file, complete or not, in ``directory``."""
    sequences = [sequence_of(entry.name) for entry in directory.iterdir()]
    return max((seq for seq in sequences if seq is not None), default=0) + 1


def fsync_path(path: Path) -> None:
    """Make a file's data (or a directory's entries) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_ipc_file(path: Path, schema: pa.Schema, batches, options: pa.ipc.IpcWriteOptions) -> int:
    """Write ``batches`` as one complete IPC file; returns its size in bytes."""
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, schema, options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
        return sink.tell()


def read_part(path: Path) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
    """Every complete record batch of a file in progress (a torn last batch is dropped)."""
    data = pa.memory_map(str(path)).read_buffer()
    if data.size < len(_MAGIC) or data[: len(_MAGIC)].to_pybytes() != _MAGIC:
        return None, []
    try:
        reader = pa.ipc.open_stream(data.slice(len(_MAGIC)))
    except pa.ArrowInvalid:
        return None, []  # killed before the schema message was complete
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break  # end-of-stream marker: the file was closed, maybe even with its footer
        except (pa.ArrowInvalid, OSError):
            break  # the batch being written when the process died
    return reader.schema, batches


def recover(path: Path, options: pa.ipc.IpcWriteOptions, fsync: bool = True) -> tuple[Path | None, int]:
    """Turn a ``.part`` file left by a crash into a complete ``.arrow`` file.

    Returns the completed path (None when the part held no batch) and its row count.
    The complete file is written beside the part and renamed into place before
    the part is removed, so a crash during recovery leaves one or the other.
    """
    final = path.with_name(path.name[: -len(".part")])
    if final.exists():  # crashed after renaming a recovered file, before removing the part
        path.unlink()
        return final, 0
    schema, batches = read_part(path)
    if schema is None or not batches:
        path.unlink()
        return None, 0
    scratch = path.with_name(path.name + ".recovering")
    write_ipc_file(scratch, schema, batches, options)
    if fsync:
        fsync_path(scratch)
    os.replace(scratch, final)
    if fsync:
        fsync_path(final.parent)
    path.unlink()
    return final, sum(batch.num_rows for batch in batches)


def recover_with_sources(part: Path, options: pa.ipc.IpcWriteOptions,
                         fsync: bool = True) -> tuple[Path | None, int]:
    """:func:`recover` for a data ``.part`` and its sources ``.part``, sources first; a data
    part without any batch takes its sources file with it."""
    source_part = sources_path(part)
    if source_part.exists():
        recover(source_part, options, fsync)
    path, rows = recover(part, options, fsync)
    if path is None:
        sources_path(part.with_name(part.name[: -len(".part")])).unlink(missing_ok=True)
    return path, rows


def recover_directory(directory: Path, options: pa.ipc.IpcWriteOptions, fsync: bool = True,
                      instance: str | None = None) -> list[tuple[Path, int]]:
    """Recover every ``.part`` file of a directory (or of one instance) and its sources file;
    returns (path, rows) pairs of the data files.

    Sources first (each is written before the batches that refer to it, so a batch that
    survived has its sources); a sources file whose data file is gone goes too."""
    def ours(name: str) -> bool:
        match = _NAME.match(name)
        return instance is None or (match is not None and (match.group("instance") or "") == instance)

    source_directory = sources_directory(directory)
    if source_directory.is_dir():
        # a sources part beside a data file already complete (killed between the two renames)
        # is completed; one without any data file is dropped; the rest go with their data part
        for part in sorted(source_directory.glob("*" + PART_SUFFIX)):
            if not ours(part.name) or (directory / part.name).exists():
                continue
            if (directory / part.name[: -len(".part")]).exists():
                recover(part, options, fsync)
            else:
                part.unlink()
    recovered = []
    for part in sorted(directory.glob("*" + PART_SUFFIX)):
        if not ours(part.name):
            continue
        path, rows = recover_with_sources(part, options, fsync)
        if path is not None:
            log.info("recovered %s: %d rows from a file left in progress", path.name, rows)
            recovered.append((path, rows))
    if instance is None:
        for folder in (directory, source_directory):
            for scratch in folder.glob("*.recovering"):
                scratch.unlink()
    return recovered


def read_table(path: Path | str) -> pa.Table:
    """A completed data file and its sources file as one table of the full layout
    (``schema.schema_for``): what ``to_request`` takes."""
    path = Path(path)
    with pa.memory_map(str(path)) as source:
        rows = pa.ipc.open_file(source).read_all()
    with pa.memory_map(str(sources_path(path))) as source:
        table_of_sources = pa.ipc.open_file(source).read_all()
    return join(rows, table_of_sources)


@dataclass(frozen=True)
class CompletedFile:
    path: Path
    size: int
    mtime: float
    seq: int


def completed_files(directory: Path) -> list[CompletedFile]:
    """Completed files of a signal directory, oldest first (by sequence number); a file's
    size counts its sources file."""
    files = []
    for entry in os.scandir(directory):
        seq = sequence_of(entry.name)
        if seq is None or not entry.name.endswith(COMPLETE_SUFFIX):
            continue
        try:
            info = entry.stat()
        except FileNotFoundError:
            continue
        size = info.st_size
        try:
            size += sources_path(entry.path).stat().st_size
        except FileNotFoundError:
            pass
        files.append(CompletedFile(Path(entry.path), size, info.st_mtime, seq))
    files.sort(key=lambda file: file.seq)
    return files


def apply_retention(directory: Path, max_age: float, max_total_bytes: int,
                    now: float | None = None,
                    unshipped: Callable[[CompletedFile], int] | None = None,
                    dropped: Callable[[CompletedFile, int], None] | None = None) -> tuple[int, int]:
    """Delete completed files older than ``max_age`` and, oldest first, beyond ``max_total_bytes``.

    Zero disables either limit. Returns (files deleted, bytes deleted). With ``unshipped``
    (the forwarder's rows not yet shipped of a file) age never deletes a file with rows left
    to ship, and size deletes shipped files first; an unshipped file that size still has to
    delete is reported to ``dropped`` with its unshipped rows, and logged.
    """
    now = time.time() if now is None else now
    files = completed_files(directory)
    left = {file.path: unshipped(file) for file in files} if unshipped else {}
    doomed = []
    if max_age > 0:
        doomed = [file for file in files if now - file.mtime > max_age and not left.get(file.path)]
        files = [file for file in files if file not in doomed]
    if max_total_bytes > 0:
        total = sum(file.size for file in files)
        # shipped files first (a stable sort: oldest first within each kind)
        for file in sorted(files, key=lambda file: bool(left.get(file.path))):
            if total <= max_total_bytes:
                break
            doomed.append(file)
            total -= file.size
    deleted_files = deleted_bytes = 0
    for file in doomed:
        try:
            file.path.unlink()
        except FileNotFoundError:
            continue
        sources_path(file.path).unlink(missing_ok=True)
        deleted_files += 1
        deleted_bytes += file.size
        log.info("retention deleted %s (%d bytes)", file.path.name, file.size)
        rows = left.get(file.path)
        if rows:
            log.warning("retention.max_total_bytes deleted %s before it was forwarded: %d records dropped",
                        file.path.name, rows)
            if dropped is not None:
                dropped(file, rows)
    return deleted_files, deleted_bytes
