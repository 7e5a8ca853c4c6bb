"""The requests of one signal that are sent and not yet recorded in the checkpoint, oldest first,
and the sender threads that deliver them (``forward.max_in_flight`` of them).

A request's whole delivery (breaker, retries with backoff, RetryInfo) runs on one sender thread,
so several requests are on the wire at once while the signal's thread encodes the next. The
window only ever hands the checkpoint the contiguous prefix of finished entries, in order: a
request acknowledged before an older one waits for it.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Callable, Iterator, NamedTuple

from otlpd.forward.checkpoint import Position


class Pending:
    """One step of the checkpoint: a request being delivered (``data``), or a move with nothing to
    send (``data`` None: past an empty batch or a finished file), finished at once."""

    __slots__ = ("instance", "after", "count", "data", "done", "error")

    def __init__(self, instance: str, after: Position, count: int = 0, data: bytes | None = None):
        self.instance = instance
        self.after = after  # the checkpoint's position once this step is finished
        self.count = count
        self.data = data
        self.done = threading.Event()
        self.error: BaseException | None = None  # why the delivery ended without finishing
        if data is None:
            self.done.set()

    @property
    def finished(self) -> bool:
        """Acknowledged, refused for good (counted), or a move: the checkpoint may pass it."""
        return self.done.is_set() and self.error is None


class Prefix(NamedTuple):
    positions: dict[str, Position]  # the checkpoint's new position per instance
    requests: int
    records: int


class Window:
    """Steps in the order they were taken; at most ``size`` of them unrecorded at once."""

    def __init__(self, size: int):
        self.size = size
        self._steps: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._steps))

    @property
    def full(self) -> bool:
        return len(self._steps) >= self.size

    @property
    def oldest(self) -> Pending | None:
        return self._steps[0] if self._steps else None

    def add(self, step: Pending) -> None:
        self._steps.append(step)

    def take_finished_prefix(self) -> Prefix:
        """Remove the finished steps at the head, in order, up to the first unfinished one."""
        positions: dict[str, Position] = {}
        requests = records = 0
        while self._steps and self._steps[0].finished:
            step = self._steps.popleft()
            positions[step.instance] = step.after
            requests += step.count > 0
            records += step.count
        return Prefix(positions, requests, records)

    def failed_head(self) -> BaseException | None:
        """Why the oldest step ended unfinished, if it has."""
        head = self.oldest
        return head.error if head is not None and head.done.is_set() else None

    def clear(self) -> list[Pending]:
        steps = list(self._steps)
        self._steps.clear()
        return steps


class Senders:
    """``count`` daemon threads, each delivering one Pending at a time with ``send(data, count)``;
    started on the first request. Daemon threads: a process that exits without stop() is not held
    by a retry loop."""

    def __init__(self, name: str, count: int, send: Callable[[bytes, int], None]):
        self.name = name
        self.count = count
        self._send = send
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, step: Pending) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                             for i in range(self.count)]
            for thread in self._threads:
                thread.start()
        self._queue.put(step)

    def close(self) -> None:
        """End the threads once they finish what they took (called after every step is done)."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    def _work(self) -> None:
        while (step := self._queue.get()) is not None:
            try:
                self._send(step.data, step.count)
            except BaseException as error:  # noqa: BLE001 - handed to the signal's thread
                step.error = error
            finally:
                step.data = None  # the request bytes are not kept once it is delivered
                step.done.set()
