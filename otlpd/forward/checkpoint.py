"""Where forwarding stopped: per signal, the position of the next record to send in each
writer instance's files (``""`` for a single process, ``w1``, ``w2``... for workers).

``<output_dir>/forward/<signal>.json``, replaced atomically (a temporary file, fsynced, then
``os.replace``) whenever acknowledged sends move it (several acknowledgements that complete
together are saved in one write), so a crash at any moment leaves the previous
checkpoint or the new one, never a torn one. Everything before a position has been
acknowledged by the remote (or skipped, counted); a restart resumes exactly there.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from otlpd.config import ConfigError
from otlpd.files import fsync_path

DIRECTORY = "forward"
VERSION = 1


class Position(NamedTuple):
    """The next record to send: row ``row`` of record batch ``batch`` of file number ``seq``."""

    seq: int
    batch: int = 0
    row: int = 0


def checkpoint_path(output_dir: Path | str, signal: str) -> Path:
    return Path(output_dir) / DIRECTORY / f"{signal}.json"


def read_positions(path: Path) -> dict[str, Position]:
    """The positions saved at ``path`` ({} when there is none yet); ConfigError when it cannot be
    read, so a damaged checkpoint stops the start instead of shipping everything again."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"forward.endpoint: cannot read the checkpoint {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
        if document.get("version") != VERSION:
            raise ValueError(f"version {document.get('version')!r}, expected {VERSION}")
        return {str(instance): Position(int(p["seq"]), int(p["batch"]), int(p["row"]))
                for instance, p in document["positions"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"forward.endpoint: the checkpoint {path} is not usable ({error}); move it away "
                          "to ship every stored file again") from None


def sequence_floor(output_dir: Path | str, signal: str) -> int:
    """The lowest sequence number a new file of ``signal`` may take: one past every file the
    checkpoint names, so a file written after retention emptied the directory is never taken
    for one already shipped."""
    try:
        positions = read_positions(checkpoint_path(output_dir, signal))
    except ConfigError:
        return 0
    return max((position.seq for position in positions.values()), default=-1) + 1


def dropped_path(output_dir: Path | str, signal: str) -> Path:
    return Path(output_dir) / DIRECTORY / f"{signal}.dropped.json"


def read_dropped(output_dir: Path | str, signal: str) -> dict:
    """Unshipped records and files retention deleted, in total since forwarding began (the
    ledger retention keeps beside the checkpoint, so a restart forgets nothing)."""
    try:
        document = json.loads(dropped_path(output_dir, signal).read_text(encoding="utf-8"))
        return {"records": int(document["records"]), "files": int(document["files"]),
                "last_file": document.get("last_file"), "last_at": document.get("last_at")}
    except (OSError, ValueError, KeyError, TypeError):
        return {"records": 0, "files": 0, "last_file": None, "last_at": None}


def add_dropped(output_dir: Path | str, signal: str, file_name: str, records: int, fsync: bool = True) -> None:
    """Add one deleted file's unshipped records to the ledger (only retention writes it: one
    writer thread of one process per signal)."""
    total = read_dropped(output_dir, signal)
    document = {"records": total["records"] + records, "files": total["files"] + 1,
                "last_file": file_name, "last_at": time.time()}
    write_atomically(dropped_path(output_dir, signal), document, fsync)


def write_atomically(path: Path, document: dict, fsync: bool) -> None:
    """``document`` as JSON at ``path``: a temporary file beside it (fsynced), os.replace, then
    the directory fsynced, so a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(path.parent)


class Checkpoint:
    """One signal's positions, saved atomically on every change."""

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.positions = read_positions(self.path)
        self.saved_at: float | None = None

    def get(self, instance: str) -> Position | None:
        return self.positions.get(instance)

    def set(self, instance: str, position: Position) -> None:
        """Record ``position`` for ``instance`` and save before returning."""
        self.update({instance: position})

    def update(self, positions: dict[str, Position]) -> None:
        """Record several instances' positions (acknowledgements that completed together) and
        save once before returning; when the save fails, the positions stay as they were (what
        they would have passed is sent again)."""
        previous = self.positions
        # a new dict, not an update: snapshot() may be iterating the old one on another thread
        self.positions = {**previous, **{instance: Position(*p) for instance, p in positions.items()}}
        try:
            self.save()
        except BaseException:
            self.positions = previous
            raise

    def save(self) -> None:
        document = {"version": VERSION, "updated_at": time.time(),
                    "positions": {instance: position._asdict()
                                  for instance, position in sorted(self.positions.items())}}
        write_atomically(self.path, document, self.fsync)
        self.saved_at = document["updated_at"]

    def snapshot(self) -> dict:
        return {instance: position._asdict() for instance, position in sorted(self.positions.items())}
