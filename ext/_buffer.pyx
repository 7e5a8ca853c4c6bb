# cython: language_level=3
# cython: boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
#
# Directives:
# - boundscheck/wraparound=False: the only indexing in this module is
#   `self._entries[i]` / `entries[i]` on C arrays, always with
#   0 <= i < _len <= _cap (push writes at _len after ensuring _len < _cap;
#   drain and dealloc loop over range(_len)). Cython never checks C-pointer
#   indexing anyway, so these only guarantee that no Python-level index check
#   sneaks in if the code changes.
# - freethreading_compatible=True: all mutable state is only touched with
#   self._lock held (or in __cinit__/__dealloc__, where no other thread can
#   see the object), and object references are INCREF'd/stolen with the GIL
#   (or thread state) held, so the module is safe without the GIL.
"""Cython BatchBuffer: bounded buffer of opaque batches between threads.

Behaviour is specified by the pure-Python twin ``otlpd/buffer_py.py`` (read it
first); this module implements the same contract with a C array of entries and
a C-level lock taken exactly once per push/drain with the GIL released.
"""
cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, realloc

# The exception classes are shared with the pure-Python twin, so that
# `except BufferFull` works whichever implementation otlpd.buffer selected.
from otlpd.buffer_py import BatchTooLarge, BufferFull

__all__ = ["BatchBuffer", "BatchTooLarge", "BufferFull"]


# -- declarations --------------------------------------------------------------
# These would naturally live in ext/_buffer.pxd, but Cython pairs a module with
# its .pxd by *module* name: for Extension("otlpd._buffer", ["ext/_buffer.pyx"])
# it looks for otlpd/_buffer.pxd (or the deprecated ext/otlpd._buffer.pxd) and
# never reads ext/_buffer.pxd. Until the layout changes they are kept here.

cdef struct Entry:
    # One pending batch. `obj` is a strong reference owned by the buffer
    # (INCREF'd by push, stolen by the list drain builds, DECREF'd by dealloc).
    PyObject* obj
    int64_t nbytes
    int64_t nitems


cdef struct Counters:
    # Everything stats() reports except the bounds. Only read or written with
    # BatchBuffer._lock held, so a struct copy under the lock is a consistent
    # snapshot.
    int64_t pending_items        # invariant: 0 <= pending_items <= max_items
    int64_t pending_bytes        # invariant: 0 <= pending_bytes <= max_bytes
    int64_t held_items           # drained with hold=True, not released yet;
    int64_t held_bytes           # invariant: pending + held <= max, per bound
    uint64_t accepted_batches    # cumulative counters: unsigned so that
    uint64_t accepted_items      # wrapping (after 2**64, unreachable in
    uint64_t accepted_bytes      # practice) is defined behaviour
    uint64_t rejected_batches
    uint64_t rejected_items
    uint64_t rejected_bytes
    uint64_t drained_batches


cdef extern from "Python.h":
    # Declared with a PyObject* item so Cython does no reference counting:
    # PyList_SET_ITEM steals the buffer's reference, which is what we want.
    list PyList_New(Py_ssize_t size)
    void PyList_SET_ITEM(object lst, Py_ssize_t index, PyObject* item)
    const Py_ssize_t PY_SSIZE_T_MAX
    # Like operator.index() then a range check, without raising for overflow:
    # non-integers (floats included) raise TypeError, as in the twin.
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1


cdef int64_t _as_int64(object value) except? -1:
    """Convert an argument exactly like otlpd.buffer_py._as_int64: integers and
    __index__ objects only (Cython's own int64_t coercion would accept and
    truncate floats), OverflowError outside the int64 range."""
    cdef int overflow = 0
    cdef long long result = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow != 0:
        raise OverflowError("value too large to convert to int64_t")
    return <int64_t>result


# Outcome of the critical section of a push (a C status that never leaves this
# module: _push turns every non-OK value into a Python exception with the GIL).
cdef enum:
    PUSH_OK = 0
    PUSH_FULL = 1
    PUSH_TOO_LARGE = 2
    PUSH_NOMEM = 3

cdef enum:
    INITIAL_CAPACITY = 16


@cython.final
cdef class BatchBuffer:
    """Bounded, thread-safe FIFO of opaque batches with declared sizes.

    BatchBuffer(max_bytes, max_items): see otlpd.buffer_py.BatchBuffer for the
    full contract, which this class implements identically.
    """

    # Guards everything below except the two bounds, which never change after
    # __cinit__. On CPython < 3.13 a PyThread_type_lock, on 3.13+ a PyMutex.
    cdef cython.pymutex _lock
    cdef Entry* _entries         # malloc'd array of _cap entries, NULL when _cap == 0
    cdef Py_ssize_t _len         # entries in use: _entries[0:_len], 0 <= _len <= _cap
    cdef Py_ssize_t _cap
    cdef Counters _c
    cdef readonly int64_t max_bytes
    cdef readonly int64_t max_items

    def __cinit__(self, max_bytes, max_items):
        # Cython has already initialised self._lock (allocated the
        # PyThread_type_lock on < 3.13) and zeroed every C field, so
        # __dealloc__ is safe even if this raises.
        cdef int64_t max_bytes_ = _as_int64(max_bytes)
        cdef int64_t max_items_ = _as_int64(max_items)
        if max_bytes_ <= 0 or max_items_ <= 0:
            raise ValueError(
                f"max_bytes and max_items must be > 0, got {max_bytes_} and {max_items_}"
            )
        self.max_bytes = max_bytes_
        self.max_items = max_items_

    def __dealloc__(self):
        # Last reference gone: no other thread can hold the lock or see the
        # entries. Release the batches still pending, then the array. (Cython
        # frees the lock itself after this.)
        cdef Py_ssize_t i
        if self._entries is not NULL:
            for i in range(self._len):
                Py_XDECREF(self._entries[i].obj)
            free(self._entries)
            self._entries = NULL
        self._len = 0
        self._cap = 0

    # -- critical-section helpers: C only, called with self._lock held --------

    @cython.cdivision(True)  # divisor is sizeof(Entry) > 0: no Python zero-division check
    cdef int _grow_locked(self) noexcept nogil:
        """Double the capacity of the entries array. 0 on success, -1 if out
        of memory (array untouched). C only: safe inside the lock, no GIL."""
        cdef Py_ssize_t new_cap
        cdef Entry* new_entries
        if self._cap == 0:
            new_cap = INITIAL_CAPACITY
        elif self._cap > PY_SSIZE_T_MAX / 2 / <Py_ssize_t>sizeof(Entry):
            return -1
        else:
            new_cap = self._cap * 2
        new_entries = <Entry*>realloc(self._entries, <size_t>new_cap * sizeof(Entry))
        if new_entries is NULL:
            return -1
        self._entries = new_entries
        self._cap = new_cap
        return 0

    cdef int _append_locked(self, PyObject* obj, int64_t nbytes, int64_t nitems) noexcept nogil:
        """Bounds check + store + counters: the whole critical section of a
        push. Returns a PUSH_* status; on PUSH_OK the buffer owns `obj`'s
        reference, otherwise the caller still does."""
        if nbytes > self.max_bytes or nitems > self.max_items:
            self._c.rejected_batches += 1
            self._c.rejected_items += <uint64_t>nitems
            self._c.rejected_bytes += <uint64_t>nbytes
            return PUSH_TOO_LARGE
        # Written as subtractions so they cannot overflow: the invariant
        # 0 <= pending + held <= max keeps max - pending - held in [0, max].
        if (nbytes > self.max_bytes - self._c.pending_bytes - self._c.held_bytes
                or nitems > self.max_items - self._c.pending_items - self._c.held_items):
            self._c.rejected_batches += 1
            self._c.rejected_items += <uint64_t>nitems
            self._c.rejected_bytes += <uint64_t>nbytes
            return PUSH_FULL
        if self._len == self._cap and self._grow_locked() != 0:
            return PUSH_NOMEM
        # Here _len < _cap: the index is in range.
        self._entries[self._len].obj = obj
        self._entries[self._len].nbytes = nbytes
        self._entries[self._len].nitems = nitems
        self._len += 1
        self._c.pending_bytes += nbytes
        self._c.pending_items += nitems
        self._c.accepted_batches += 1
        self._c.accepted_items += <uint64_t>nitems
        self._c.accepted_bytes += <uint64_t>nbytes
        return PUSH_OK

    # -- push -------------------------------------------------------------------

    cdef int64_t _push(self, object batch, int64_t nbytes, int64_t nitems) except -1:
        cdef PyObject* obj = <PyObject*>batch
        cdef int status
        cdef Counters snap
        if nbytes < 0 or nitems < 0:
            raise ValueError(f"nbytes and nitems must be >= 0, got {nbytes} and {nitems}")
        # The buffer's reference, taken while we still hold the GIL; handed
        # back below if the batch is not accepted.
        Py_INCREF(batch)
        with nogil:
            with self._lock:  # the one lock acquisition of this push
                status = self._append_locked(obj, nbytes, nitems)
                snap = self._c
        if status == PUSH_OK:
            return snap.pending_items
        # Not accepted: back with the GIL, give the reference back and raise.
        Py_DECREF(batch)
        if status == PUSH_TOO_LARGE:
            raise BatchTooLarge(
                f"batch of {nbytes} bytes / {nitems} items can never fit in a buffer "
                f"of max_bytes={self.max_bytes}, max_items={self.max_items}"
            )
        if status == PUSH_FULL:
            raise BufferFull(
                f"buffer full: batch of {nbytes} bytes / {nitems} items does not fit "
                f"({snap.pending_bytes + snap.held_bytes}/{self.max_bytes} bytes, "
                f"{snap.pending_items + snap.held_items}/{self.max_items} items pending or held)"
            )
        raise MemoryError("BatchBuffer: cannot grow the entries array")

    def push(self, object batch, nbytes, nitems):
        """push(batch, nbytes, nitems) -> int

        Append `batch` if it fits; return the pending items after the push.
        Raises BufferFull (retry later) or BatchTooLarge (can never fit), both
        counted as rejected; ValueError if nbytes or nitems < 0.
        """
        return self._push(batch, _as_int64(nbytes), _as_int64(nitems))

    # -- drain ------------------------------------------------------------------

    def drain(self, bint hold=False):
        """drain(hold=False) -> list

        Remove and return all pending batches in push order; resets pending
        bytes/items to 0. With hold=True their sizes stay counted against the
        bounds (as held) until release_held().
        """
        cdef Entry* entries
        cdef Py_ssize_t n, i
        cdef list result
        with nogil:
            with self._lock:  # the one lock acquisition of this drain: O(1)
                entries = self._entries
                n = self._len
                self._entries = NULL
                self._len = 0
                self._cap = 0
                if hold:
                    self._c.held_bytes += self._c.pending_bytes
                    self._c.held_items += self._c.pending_items
                self._c.pending_bytes = 0
                self._c.pending_items = 0
                self._c.drained_batches += <uint64_t>n
        # Outside the lock, with the GIL: the swapped-out array is ours alone.
        try:
            result = PyList_New(n)
        except BaseException:
            # Out of memory building the list: the batches are lost (the
            # counters already say drained); do not leak them as well.
            for i in range(n):
                Py_XDECREF(entries[i].obj)
            free(entries)
            raise
        for i in range(n):
            PyList_SET_ITEM(result, i, entries[i].obj)  # steals the reference
        free(entries)
        return result

    def release_held(self):
        """release_held() -> None

        Stop counting the batches drained with hold=True: they are written.
        """
        with nogil:
            with self._lock:
                self._c.held_bytes = 0
                self._c.held_items = 0

    # -- observation --------------------------------------------------------------

    @property
    def pending_items(self):
        """Sum of the declared items of the batches not drained yet."""
        cdef int64_t value
        with nogil:
            with self._lock:
                value = self._c.pending_items
        return value

    @property
    def pending_bytes(self):
        """Sum of the declared bytes of the batches not drained yet."""
        cdef int64_t value
        with nogil:
            with self._lock:
                value = self._c.pending_bytes
        return value

    @property
    def free_bytes(self):
        """Bytes a push can still take: max_bytes minus pending and held bytes."""
        cdef int64_t value
        with nogil:
            with self._lock:
                value = self.max_bytes - self._c.pending_bytes - self._c.held_bytes
        return value

    def stats(self):
        """stats() -> dict

        One consistent snapshot of all counters, taken under the lock.
        """
        cdef Counters snap
        with nogil:
            with self._lock:
                snap = self._c
        return {
            "pending_items": snap.pending_items,
            "pending_bytes": snap.pending_bytes,
            "held_items": snap.held_items,
            "held_bytes": snap.held_bytes,
            "accepted_batches": snap.accepted_batches,
            "accepted_items": snap.accepted_items,
            "accepted_bytes": snap.accepted_bytes,
            "rejected_batches": snap.rejected_batches,
            "rejected_items": snap.rejected_items,
            "rejected_bytes": snap.rejected_bytes,
            "drained_batches": snap.drained_batches,
            "max_bytes": self.max_bytes,
            "max_items": self.max_items,
        }
