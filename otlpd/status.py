"""Counters kept by the components and the one snapshot the dashboard reads."""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable


class Counters:
    """A thread-safe bag of named integer counters (one per signal per component).

    The lock guards a dict update of a few integers: it is held for well under a
    microsecond, never across I/O.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, **amounts: int) -> None:
        with self._lock:
            self._values.update(amounts)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Status:
    """Collects one snapshot from every component that registered a reporter.

    Components register a callable returning a plain dict; the snapshot is a
    fresh nested dict that callers may keep and serialise (JSON-ready).
    """

    def __init__(self) -> None:
        self.started_at = time.time()
        self._reporters: dict[str, Callable[[], dict[str, Any]]] = {}

    def register(self, name: str, reporter: Callable[[], dict[str, Any]]) -> None:
        self._reporters[name] = reporter

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "time": time.time(),
            "uptime_seconds": time.time() - self.started_at,
        }
        for name, reporter in self._reporters.items():
            result[name] = reporter()
        return result
