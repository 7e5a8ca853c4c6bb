"""Pure-Python BatchBuffer: the readable reference specification.

``otlpd._buffer.BatchBuffer`` (Cython, ``ext/_buffer.pyx``) must behave exactly
like the class in this module: same arguments, same return values, same
exceptions (these very classes) with the same messages, same counters.
``tests/test_buffer.py`` runs every test against both and compares them
operation by operation.

A ``BatchBuffer`` sits between the gRPC worker threads of one signal
(producers, calling :meth:`BatchBuffer.push`) and that signal's writer thread
(the consumer, calling :meth:`BatchBuffer.drain`). It holds opaque Python
objects (in the daemon: ``pyarrow.RecordBatch``) together with a size the
caller declares for each (bytes and items, e.g. spans or data points). It never
looks inside the objects.

Every public operation takes the buffer's lock exactly once, so each one is
atomic with respect to the others: a push is either entirely accepted or
entirely rejected, a drain returns exactly the batches accepted before it and
not yet drained, and ``stats()`` is one consistent snapshot.
"""
from __future__ import annotations

import operator
import threading

__all__ = ["BatchBuffer", "BatchTooLarge", "BufferFull"]

#: Sizes and bounds are C ``int64_t`` in the Cython implementation; the twin
#: enforces the same range so both reject the same arguments the same way.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class BufferFull(Exception):
    """The batch does not fit in the buffer right now: retry later.

    Raised by ``push`` when accepting the batch would take the pending bytes
    or pending items above their bound. The receiver answers the client
    ``UNAVAILABLE`` with a ``RetryInfo`` delay. The push is counted in the
    ``rejected_*`` statistics and the buffer is unchanged.
    """


class BatchTooLarge(BufferFull):
    """This batch alone exceeds ``max_bytes`` or ``max_items``: it can never fit.

    A subclass of :class:`BufferFull` so that ``except BufferFull`` catches
    every rejection, while callers that care can tell "retry later" from
    "split the batch or give up". Also counted in ``rejected_*``.
    """


def _as_int64(value: object) -> int:
    """Convert like Cython converts an argument to ``int64_t``.

    Integers and objects with ``__index__`` are accepted (``bool`` too);
    anything else raises ``TypeError``; values outside the int64 range raise
    ``OverflowError``.
    """
    value = operator.index(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError("value too large to convert to int64_t")
    return value


def _too_large_message(nbytes: int, nitems: int, max_bytes: int, max_items: int) -> str:
    return (
        f"batch of {nbytes} bytes / {nitems} items can never fit in a buffer "
        f"of max_bytes={max_bytes}, max_items={max_items}"
    )


def _full_message(
    nbytes: int, nitems: int, pending_bytes: int, pending_items: int,
    max_bytes: int, max_items: int,
) -> str:
    return (
        f"buffer full: batch of {nbytes} bytes / {nitems} items does not fit "
        f"({pending_bytes}/{max_bytes} bytes, {pending_items}/{max_items} items pending or held)"
    )


class BatchBuffer:
    """Bounded, thread-safe FIFO of opaque batches with declared sizes.

    Bounds: at every instant ``pending_bytes + held_bytes <= max_bytes`` and
    ``pending_items + held_items <= max_items`` (held: drained with
    ``hold=True`` and not released yet).

    Statistics (see :meth:`stats`): the ``accepted_*``/``rejected_*`` counters
    count pushes (batches, and the sum of their declared items/bytes);
    ``drained_batches`` counts batches handed out by :meth:`drain`. They only
    grow. (The Cython counters are unsigned 64-bit and would wrap after 2**64;
    the twin's never do. Neither is reachable in practice.)
    """

    __slots__ = (
        "_lock", "_batches", "_max_bytes", "_max_items",
        "_pending_bytes", "_pending_items", "_held_bytes", "_held_items",
        "_accepted_batches", "_accepted_items", "_accepted_bytes",
        "_rejected_batches", "_rejected_items", "_rejected_bytes",
        "_drained_batches",
    )

    def __init__(self, max_bytes: int, max_items: int) -> None:
        """Create an empty buffer.

        ``max_bytes`` and ``max_items`` must both be > 0 (``ValueError``
        otherwise); they are fixed for the buffer's lifetime.
        """
        max_bytes = _as_int64(max_bytes)
        max_items = _as_int64(max_items)
        if max_bytes <= 0 or max_items <= 0:
            raise ValueError(
                f"max_bytes and max_items must be > 0, got {max_bytes} and {max_items}"
            )
        self._lock = threading.Lock()
        self._batches: list = []
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._pending_bytes = 0
        self._pending_items = 0
        self._held_bytes = 0
        self._held_items = 0
        self._accepted_batches = 0
        self._accepted_items = 0
        self._accepted_bytes = 0
        self._rejected_batches = 0
        self._rejected_items = 0
        self._rejected_bytes = 0
        self._drained_batches = 0

    def push(self, batch: object, nbytes: int, nitems: int) -> int:
        """Append ``batch``, declared as ``nbytes`` bytes and ``nitems`` items.

        Accepted iff ``pending_bytes + nbytes <= max_bytes`` and
        ``pending_items + nitems <= max_items``; then the buffer keeps a
        reference to ``batch`` until it is drained, and ``push`` returns the
        number of pending items after the push.

        Otherwise nothing is stored, the push is counted as rejected and
        ``push`` raises :class:`BatchTooLarge` if ``nbytes > max_bytes`` or
        ``nitems > max_items`` (it could never fit, even in an empty buffer),
        else :class:`BufferFull`.

        Bad arguments are not counted: ``nbytes``/``nitems`` must be integers
        (``TypeError``) in int64 range (``OverflowError``) and >= 0
        (``ValueError``). A batch declared as 0 bytes and 0 items always fits.
        """
        nbytes = _as_int64(nbytes)
        nitems = _as_int64(nitems)
        if nbytes < 0 or nitems < 0:
            raise ValueError(f"nbytes and nitems must be >= 0, got {nbytes} and {nitems}")
        with self._lock:  # the one lock acquisition of this push
            if nbytes > self._max_bytes or nitems > self._max_items:
                error_cls: type[BufferFull] = BatchTooLarge
            elif (self._pending_bytes + self._held_bytes + nbytes > self._max_bytes
                  or self._pending_items + self._held_items + nitems > self._max_items):
                error_cls = BufferFull
            else:
                self._batches.append(batch)
                self._pending_bytes += nbytes
                self._pending_items += nitems
                self._accepted_batches += 1
                self._accepted_items += nitems
                self._accepted_bytes += nbytes
                return self._pending_items
            self._rejected_batches += 1
            self._rejected_items += nitems
            self._rejected_bytes += nbytes
            pending_bytes = self._pending_bytes + self._held_bytes
            pending_items = self._pending_items + self._held_items
        # Raised outside the lock, and never stored in a local variable: that
        # would make a frame <-> traceback cycle keeping `batch` alive until the
        # cyclic GC runs.
        if error_cls is BatchTooLarge:
            raise BatchTooLarge(
                _too_large_message(nbytes, nitems, self._max_bytes, self._max_items))
        raise BufferFull(_full_message(
            nbytes, nitems, pending_bytes, pending_items, self._max_bytes, self._max_items))

    def drain(self, hold: bool = False) -> list:
        """Remove and return all pending batches, oldest first.

        Resets ``pending_bytes`` and ``pending_items`` to 0 and adds the
        number of returned batches to ``drained_batches``. Returns ``[]`` if
        nothing is pending. The buffer keeps no reference to the returned
        batches.

        With ``hold=True`` the drained sizes move to ``held_bytes`` /
        ``held_items``, which still count against the bounds until
        :meth:`release_held`: the writer holds them while it writes, so the
        bounds cover the data being written as well as the data waiting.
        """
        with self._lock:  # the one lock acquisition of this drain
            batches, self._batches = self._batches, []
            if hold:
                self._held_bytes += self._pending_bytes
                self._held_items += self._pending_items
            self._pending_bytes = 0
            self._pending_items = 0
            self._drained_batches += len(batches)
        return batches

    def release_held(self) -> None:
        """Stop counting the batches drained with ``hold=True``: they are written."""
        with self._lock:
            self._held_bytes = 0
            self._held_items = 0

    @property
    def pending_items(self) -> int:
        """Sum of the declared items of the batches not drained yet."""
        with self._lock:
            return self._pending_items

    @property
    def pending_bytes(self) -> int:
        """Sum of the declared bytes of the batches not drained yet."""
        with self._lock:
            return self._pending_bytes

    @property
    def free_bytes(self) -> int:
        """Bytes a push can still take: ``max_bytes`` minus pending and held bytes."""
        with self._lock:
            return self._max_bytes - self._pending_bytes - self._held_bytes

    @property
    def max_bytes(self) -> int:
        """Bound on ``pending_bytes`` (fixed at construction)."""
        return self._max_bytes

    @property
    def max_items(self) -> int:
        """Bound on ``pending_items`` (fixed at construction)."""
        return self._max_items

    def stats(self) -> dict:
        """One consistent snapshot of all counters, taken under the lock.

        Keys: ``pending_items``, ``pending_bytes``, ``held_items``,
        ``held_bytes``, ``accepted_batches``,
        ``accepted_items``, ``accepted_bytes``, ``rejected_batches``,
        ``rejected_items``, ``rejected_bytes``, ``drained_batches``,
        ``max_bytes``, ``max_items`` (all ``int``).
        """
        with self._lock:
            return {
                "pending_items": self._pending_items,
                "pending_bytes": self._pending_bytes,
                "held_items": self._held_items,
                "held_bytes": self._held_bytes,
                "accepted_batches": self._accepted_batches,
                "accepted_items": self._accepted_items,
                "accepted_bytes": self._accepted_bytes,
                "rejected_batches": self._rejected_batches,
                "rejected_items": self._rejected_items,
                "rejected_bytes": self._rejected_bytes,
                "drained_batches": self._drained_batches,
                "max_bytes": self._max_bytes,
                "max_items": self._max_items,
            }
