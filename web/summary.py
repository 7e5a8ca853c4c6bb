"""One flat summary per signal from a status snapshot (one process or several workers).

The overview page, ``/readyz`` and the Prometheus collector all read this, so
the three can never disagree on what "received" or "rejected" means:

- ``accepted_items``: rows the buffer took (each acknowledged to a client);
- ``rejected_items`` / ``rejected_requests``: refused, by reason (``buffer_full``,
  ``too_large``, ``invalid``, ``out_of_memory``); an invalid request has no row count;
- ``received_items``: accepted plus rejected rows;
- ``written_items``: rows written to files; ``written_bytes``: bytes of completed files.
"""
from __future__ import annotations

import re
from typing import Any

from otlpd import schema

_REJECTED = re.compile(r"^rejected_(?P<reason>[a-z_]+)_(?P<unit>requests|items)$")


def leaves(value: Any) -> list:
    """A leaf of one process's snapshot, or the list of every worker's value (merged snapshot)."""
    return value if isinstance(value, list) else [value]


def _number(value: Any) -> float:
    if isinstance(value, list):  # a merge could not sum them (never for counters)
        return sum(v for v in value if isinstance(v, (int, float)))
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def signal_summary(signal_status: dict[str, Any]) -> dict[str, Any]:
    receiver = signal_status.get("receiver", {})
    buffer = signal_status.get("buffer", {})
    writer = signal_status.get("writer", {})
    rejected_items: dict[str, int] = {}
    rejected_requests: dict[str, int] = {}
    for key, value in receiver.items():
        match = _REJECTED.match(key)
        if match:
            target = rejected_requests if match["unit"] == "requests" else rejected_items
            target[match["reason"]] = int(_number(value))
    accepted = int(_number(buffer.get("accepted_items", 0)))
    errors = [error for error in leaves(writer.get("last_error")) if error]
    running = [alive for alive in leaves(writer.get("running", True)) if alive is not None]
    return {
        "requests": int(_number(receiver.get("requests", 0))),
        "request_bytes": int(_number(receiver.get("request_bytes", 0))),
        "accepted_items": accepted,
        "received_items": accepted + sum(rejected_items.values()),
        "rejected_items": rejected_items,
        "rejected_requests": rejected_requests,
        "written_items": int(_number(writer.get("written_rows", 0))),
        "written_bytes": int(_number(writer.get("written_bytes", 0))),
        "buffer_bytes": int(_number(buffer.get("pending_bytes", 0)) + _number(buffer.get("held_bytes", 0))),
        "buffer_items": int(_number(buffer.get("pending_items", 0)) + _number(buffer.get("held_items", 0))),
        "buffer_max_bytes": int(_number(buffer.get("max_bytes", 0))),
        "buffer_max_items": int(_number(buffer.get("max_items", 0))),
        "files_rotated": int(_number(writer.get("files_rotated", 0))),
        "files_deleted": int(_number(writer.get("files_deleted", 0))),
        "bytes_deleted": int(_number(writer.get("bytes_deleted", 0))),
        "write_errors": int(_number(writer.get("write_errors", 0))),
        "writer_errors": errors,
        "writer_running": all(running),
    }


def summarize(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{signal: summary}`` for every signal of the snapshot."""
    signals = snapshot.get("signals", {})
    return {signal: signal_summary(signals.get(signal, {})) for signal in schema.SIGNALS}


def writer_states(snapshot: dict[str, Any], signal: str) -> list[dict[str, Any]]:
    """Each process's writer status of ``signal`` (one, or one per worker)."""
    workers = snapshot.get("workers")
    if isinstance(workers, dict) and workers:
        return [worker["signals"][signal]["writer"] for worker in workers.values()]
    return [snapshot.get("signals", {}).get(signal, {}).get("writer", {})]
