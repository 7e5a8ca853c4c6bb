"""What retention asks the forwarder's checkpoint before it deletes a completed file."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from otlpd import files
from otlpd.config import ConfigError
from otlpd.forward.checkpoint import add_dropped, checkpoint_path, read_positions
from otlpd.forward.log import DataFile, RowCounts, unshipped_rows


class RetentionGuard:
    """Rows of a completed file the forwarder has not shipped yet, read from its checkpoint
    on disk (so it works in a worker process while the supervisor forwards), and the ledger
    of the unshipped rows retention deleted anyway."""

    def __init__(self, output_dir: Path | str, signal: str, fsync: bool = True):
        self._output_dir = output_dir
        self._signal = signal
        self._fsync = fsync
        self._path = checkpoint_path(output_dir, signal)
        self._counts = RowCounts()

    def dropped(self, file: files.CompletedFile, rows: int) -> None:
        """Retention deleted ``rows`` unshipped records with ``file``: into the ledger."""
        add_dropped(self._output_dir, self._signal, file.path.name, rows, self._fsync)

    def rows_for(self, directory: Path) -> Callable[[files.CompletedFile], int]:
        """A function of one retention run: the checkpoint is read once, now."""
        self._counts.forget_missing(set(directory.iterdir()))
        try:
            positions = read_positions(self._path)
        except ConfigError:
            positions = {}  # unreadable: treat every file as unshipped (the safe side)

        def unshipped(file: files.CompletedFile) -> int:
            parts = files.name_parts(file.path.name)
            if parts is None:
                return 0
            counts = self._counts.of(DataFile(file.path, parts.instance, parts.seq, parts.start, True, file.size))
            return unshipped_rows(counts, parts.seq, positions.get(parts.instance))

        return unshipped
