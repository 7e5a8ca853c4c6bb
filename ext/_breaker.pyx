# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
#
# Directives:
# - boundscheck/wraparound=False: the only indexing is into C arrays, the window
#   ring (window_size bytes), the transition ring (TRANSITIONS_KEPT entries) and
#   the probe slots (HALF_OPEN_PROBES_MAX entries). Cython never checks C-array
#   indexing anyway: every index is checked by hand before it is used
#   (_ring_slot, and the probe-slot checks), and a failed check is reported as
#   BREAKER_CORRUPT, which the caller raises as RuntimeError with the GIL.
# - cdivision=True: every division and modulo here has a divisor proven
#   non-zero (window_count > 0, TICKS_PER_SECOND, a ring size >= 1).
# - freethreading_compatible=True: mutable state lives in one C struct that is
#   only written with self._lock held; the few fields read without it
#   (state_word, the allowed counter, lock_acquisitions) are read and written
#   with atomic builtins. The settings never change after __cinit__.
"""Cython CircuitBreaker: decides and records, never wraps the call.

Behaviour is specified by the pure-Python twin ``otlpd/breaker_py.py`` (read it
first); this module implements the same contract with all state in one C
struct behind one C-level lock, taken at most once per operation with the GIL
released, and not at all by ``allow()`` while the breaker is closed (an atomic
read of the state and generation, and an atomic increment of ``allowed``).
The Python clock is called with the GIL before each critical section and its
value passed in.
"""
cimport cython
from cpython.number cimport PyNumber_Index
from libc.math cimport floor
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

import time

# Constants, validation, messages and the snapshot layout are the twin's, so
# that both implementations accept, reject and describe things identically.
from otlpd import breaker_py
from otlpd.breaker_py import (checked_clock_value, reason_text, snapshot_dict, ticket_fields,
                              validated_settings)

__all__ = ["CircuitBreaker"]


# -- declarations --------------------------------------------------------------
# Kept here rather than in ext/_breaker.pxd for the reason ext/_buffer.pyx
# gives: Cython pairs Extension("otlpd._breaker") with otlpd/_breaker.pxd and
# would never read ext/_breaker.pxd.

cdef extern from *:
    """
    /* The fields allow() reads without the lock. GCC/Clang builtins: otlpd
       builds on Linux with either. */
    static inline uint64_t otlpd_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void otlpd_store(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void otlpd_increment(uint64_t *p) {
        (void)__atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
    }
    """
    uint64_t otlpd_load(const uint64_t* p) nogil
    void otlpd_store(uint64_t* p, uint64_t v) nogil
    void otlpd_increment(uint64_t* p) nogil

# The twin's constants, as C constants (checked against it at import below).
cdef enum:
    STATE_CLOSED = 0
    STATE_OPEN = 1
    STATE_HALF_OPEN = 2
    STATE_MASK = 3                  # state_word = generation << 2 | state

cdef enum:
    WHY_CONSECUTIVE = 0
    WHY_RATE = 1
    WHY_TIMEOUT = 2
    WHY_PROBE_FAILED = 3
    WHY_PROBE_SLOW = 4
    WHY_PROBES_SUCCEEDED = 5
    WHY_LEASE_EXPIRED = 6

cdef enum:                          # indexes of Breaker.counters, in COUNTER_NAMES order
    ALLOWED = 0
    REFUSED = 1
    SUCCESSES = 2
    FAILURES = 3
    SLOW_CALLS = 4
    OPENED = 5
    EXPIRED_PROBES = 6
    COUNTERS = 7

cdef enum:
    KIND_BITS = 7
    KIND_MASK = 127
    GENERATION_MASK = 0xFFFF
    START_SHIFT = 23                # KIND_BITS + 16 generation bits
    KIND_CALL = 1
    KIND_FIRST_PROBE = 2
    HALF_OPEN_PROBES_MAX = 64
    TRANSITIONS_KEPT = 32
    REASON_TEXT_MAX = 63

cdef enum:                          # what a critical section can report
    BREAKER_OK = 0
    BREAKER_CORRUPT = -1            # a ring index out of range: nothing was written

cdef double TICKS_PER_SECOND = 1e6
cdef uint64_t TICKS_MASK = (<uint64_t>1 << 40) - 1
cdef double CLOCK_LIMIT = 1e12


cdef struct Transition:
    double at
    int64_t count                   # consecutive failures, calls in the window, probes
    double value                    # failure rate, timeout passed, slow duration
    uint8_t before
    uint8_t after
    uint8_t why
    uint8_t text_length             # <= REASON_TEXT_MAX
    char text[REASON_TEXT_MAX]      # the failure reason's UTF-8, not NUL-terminated


cdef struct ProbeSlot:
    double start                    # clock value when it was granted
    bint in_flight                  # granted in this half-open period, not reported yet


cdef struct Breaker:
    # Settings: written once by __cinit__, read-only afterwards.
    int64_t failure_threshold
    double failure_rate_threshold
    int64_t window_size             # 1 <= window_size <= WINDOW_SIZE_MAX
    int64_t minimum_calls
    double base_open_timeout
    double max_open_timeout
    int64_t half_open_probes        # 1 <= half_open_probes <= HALF_OPEN_PROBES_MAX
    double slow_ticks               # slow_call_threshold in microseconds
    double probe_lease
    double origin                   # clock value at construction: tickets count from it

    # Read without the lock (atomics only); written with it held.
    uint64_t state_word             # generation << 2 | state
    uint64_t lock_acquisitions
    uint64_t counters[COUNTERS]     # counters[ALLOWED] is atomic; the rest under the lock

    # Everything else: only with the lock held.
    int state
    uint64_t generation             # state changes so far
    int64_t consecutive             # consecutive failures in this closed period
    uint8_t* window                 # ring of window_size outcomes, 1 = failure (calloc'd)
    int64_t window_next             # 0 <= window_next < window_size
    int64_t window_count            # 0 <= window_count <= window_size
    int64_t window_failures         # 0 <= window_failures <= window_count
    double open_timeout             # the current one
    double open_until
    ProbeSlot probes[HALF_OPEN_PROBES_MAX]
    int64_t probes_granted          # 0 <= probes_granted <= half_open_probes
    int64_t probe_successes
    Transition transitions[TRANSITIONS_KEPT]
    int64_t transitions_next        # 0 <= transitions_next < TRANSITIONS_KEPT
    int64_t transitions_count       # 0 <= transitions_count <= TRANSITIONS_KEPT


cdef struct Snapshot:
    # What snapshot() copies out of the critical section.
    int state
    double open_timeout
    double retry_after
    uint64_t counters[COUNTERS]
    int64_t transitions_count
    Transition transitions[TRANSITIONS_KEPT]   # oldest first


# -- the state machine: C only, called with the lock held ---------------------------
# Each mirrors the method of the same name in otlpd/breaker_py.py.

cdef inline int64_t _ring_slot(int64_t index, int64_t size) noexcept nogil:
    """``index`` if it is a valid index of a ring of ``size``, else -1."""
    if index < 0 or index >= size:
        return -1
    return index


cdef int _change_locked(Breaker* b, double now, int to, int why, int64_t count, double value,
                        const char* text, Py_ssize_t text_length) noexcept nogil:
    """Enter state ``to``: a new generation, its transition kept, its fields reset."""
    cdef int64_t slot = _ring_slot(b.transitions_next, TRANSITIONS_KEPT)
    cdef Transition* kept
    if slot < 0:
        return BREAKER_CORRUPT
    kept = &b.transitions[slot]
    kept.at = now
    kept.count = count
    kept.value = value
    kept.before = <uint8_t>b.state
    kept.after = <uint8_t>to
    kept.why = <uint8_t>why
    if text_length > REASON_TEXT_MAX:  # reason_text() already cut it; never trust a length
        text_length = REASON_TEXT_MAX
    kept.text_length = <uint8_t>text_length if text_length > 0 else 0
    if kept.text_length:
        memcpy(kept.text, text, kept.text_length)
    b.transitions_next = (slot + 1) % TRANSITIONS_KEPT
    if b.transitions_count < TRANSITIONS_KEPT:
        b.transitions_count += 1

    b.state = to
    b.generation += 1
    otlpd_store(&b.state_word, (b.generation << 2) | <uint64_t>to)
    if to == STATE_OPEN:
        b.counters[OPENED] += 1
        b.open_until = now + b.open_timeout
    elif to == STATE_HALF_OPEN:
        memset(b.probes, 0, sizeof(b.probes))
        b.probes_granted = 0
        b.probe_successes = 0
    else:
        memset(b.window, 0, <size_t>b.window_size)
        b.window_next = 0
        b.window_count = 0
        b.window_failures = 0
        b.consecutive = 0
        b.open_timeout = b.base_open_timeout
    return BREAKER_OK


cdef int _reopen_locked(Breaker* b, double now, int why, int64_t count, double value,
                        const char* text, Py_ssize_t text_length) noexcept nogil:
    """Half-open -> open, with the open timeout doubled (up to max_open_timeout)."""
    cdef double doubled = b.open_timeout * 2
    b.open_timeout = doubled if doubled < b.max_open_timeout else b.max_open_timeout
    return _change_locked(b, now, STATE_OPEN, why, count, value, text, text_length)


cdef int _advance_locked(Breaker* b, double now) noexcept nogil:
    """The transitions time alone causes: open timeout passed, probe lease expired."""
    cdef int64_t i, expired = 0
    if b.state == STATE_OPEN and now >= b.open_until:
        return _change_locked(b, now, STATE_HALF_OPEN, WHY_TIMEOUT, 0, b.open_timeout, NULL, 0)
    if b.state == STATE_HALF_OPEN:
        for i in range(b.half_open_probes):  # <= HALF_OPEN_PROBES_MAX, checked in __cinit__
            if b.probes[i].in_flight and now - b.probes[i].start >= b.probe_lease:
                expired += 1
        if expired:
            b.counters[EXPIRED_PROBES] += <uint64_t>expired
            return _reopen_locked(b, now, WHY_LEASE_EXPIRED, expired, 0.0, NULL, 0)
    return BREAKER_OK


cdef int _record_outcome_locked(Breaker* b, double now, bint failed) noexcept nogil:
    """One outcome of the closed period: window, consecutive failures, maybe open."""
    cdef int64_t index = _ring_slot(b.window_next, b.window_size)
    cdef double rate
    if index < 0:
        return BREAKER_CORRUPT
    if b.window_count == b.window_size:
        b.window_failures -= b.window[index]  # the oldest outcome leaves the window
    else:
        b.window_count += 1
    b.window[index] = failed
    b.window_failures += failed
    b.window_next = index + 1 if index + 1 < b.window_size else 0
    b.consecutive = b.consecutive + 1 if failed else 0
    if b.consecutive >= b.failure_threshold:
        return _change_locked(b, now, STATE_OPEN, WHY_CONSECUTIVE, b.consecutive, 0.0, NULL, 0)
    if b.window_count >= b.minimum_calls:
        rate = <double>b.window_failures / <double>b.window_count
        if rate >= b.failure_rate_threshold:
            return _change_locked(b, now, STATE_OPEN, WHY_RATE, b.window_count, rate, NULL, 0)
    return BREAKER_OK


cdef int64_t _allow_locked(Breaker* b, double now, uint64_t* generation) noexcept nogil:
    """The ticket kind granted (> 0), 0 if refused, or BREAKER_CORRUPT."""
    cdef int64_t kind, slot
    if _advance_locked(b, now) != BREAKER_OK:
        return BREAKER_CORRUPT
    if b.state == STATE_CLOSED:
        kind = KIND_CALL
    elif b.state == STATE_HALF_OPEN and b.probes_granted < b.half_open_probes:
        slot = _ring_slot(b.probes_granted, HALF_OPEN_PROBES_MAX)
        if slot < 0:
            return BREAKER_CORRUPT
        b.probes_granted += 1
        b.probes[slot].start = now
        b.probes[slot].in_flight = True
        kind = KIND_FIRST_PROBE + slot
    else:
        b.counters[REFUSED] += 1
        return 0
    otlpd_increment(&b.counters[ALLOWED])
    generation[0] = b.generation
    return kind


cdef int _report_locked(Breaker* b, double now, int64_t kind, uint64_t generation, bint slow,
                        uint64_t duration, bint failure, const char* text,
                        Py_ssize_t text_length) noexcept nogil:
    """Count one report; let it change the state only if its ticket is current."""
    cdef int64_t slot
    cdef int status = _advance_locked(b, now)
    if status != BREAKER_OK:
        return status
    if not failure and not slow:
        b.counters[SUCCESSES] += 1
    else:
        b.counters[FAILURES] += 1
        b.counters[SLOW_CALLS] += slow
    if generation != (b.generation & GENERATION_MASK):
        return BREAKER_OK  # stale: allowed before the last state change
    if kind == KIND_CALL:
        if b.state == STATE_CLOSED:
            return _record_outcome_locked(b, now, failure or slow)
        return BREAKER_OK
    slot = kind - KIND_FIRST_PROBE  # 0 <= slot < half_open_probes: checked by _report
    if _ring_slot(slot, b.half_open_probes) < 0:
        return BREAKER_CORRUPT
    if b.state != STATE_HALF_OPEN or not b.probes[slot].in_flight:
        return BREAKER_OK  # reported twice, or never granted
    b.probes[slot].in_flight = False
    if failure:
        return _reopen_locked(b, now, WHY_PROBE_FAILED, 1, 0.0, text, text_length)
    if slow:
        return _reopen_locked(b, now, WHY_PROBE_SLOW, 1, <double>duration / TICKS_PER_SECOND,
                              NULL, 0)
    b.probe_successes += 1
    if b.probe_successes == b.half_open_probes:
        return _change_locked(b, now, STATE_CLOSED, WHY_PROBES_SUCCEEDED, b.probe_successes,
                              0.0, NULL, 0)
    return BREAKER_OK


cdef int _snapshot_locked(Breaker* b, double now, Snapshot* out) noexcept nogil:
    """Copy what snapshot() reports, transitions oldest first."""
    cdef int64_t i, slot
    cdef int status = _advance_locked(b, now)
    if status != BREAKER_OK:
        return status
    out.state = b.state
    out.open_timeout = b.open_timeout
    out.retry_after = b.open_until - now if b.state == STATE_OPEN else 0.0
    memcpy(out.counters, b.counters, sizeof(out.counters))
    out.counters[ALLOWED] = otlpd_load(&b.counters[ALLOWED])
    if b.transitions_count < 0 or b.transitions_count > TRANSITIONS_KEPT:
        return BREAKER_CORRUPT
    out.transitions_count = b.transitions_count
    for i in range(b.transitions_count):
        # The oldest kept is transitions_count entries behind the next free one.
        slot = _ring_slot((b.transitions_next - b.transitions_count + i + TRANSITIONS_KEPT)
                          % TRANSITIONS_KEPT, TRANSITIONS_KEPT)
        if slot < 0:
            return BREAKER_CORRUPT
        out.transitions[i] = b.transitions[slot]
    return BREAKER_OK


cdef inline uint64_t _ticks(double now, double origin) noexcept nogil:
    """Microseconds since ``origin`` modulo 2**40, as the twin's _ticks: |now|, |origin| <
    CLOCK_LIMIT keep the product below 2**63, and the mask is the two's complement of a
    negative difference exactly as Python's ``&`` takes it."""
    return <uint64_t><int64_t>floor((now - origin) * TICKS_PER_SECOND) & TICKS_MASK


cdef inline int64_t _ticket(uint64_t start, uint64_t generation, int64_t kind) noexcept nogil:
    return <int64_t>((start << START_SHIFT) | ((generation & GENERATION_MASK) << KIND_BITS)
                     | <uint64_t>kind)


cdef int _raise_corrupt() except -1:
    raise RuntimeError("CircuitBreaker: a ring index is out of range (internal error); "
                       "nothing was written")


@cython.final
cdef class CircuitBreaker:
    """Decides whether a call to a remote endpoint may go ahead, from the outcomes reported.

    CircuitBreaker(failure_threshold=5, failure_rate_threshold=0.5, window_size=20,
    minimum_calls=10, open_timeout=1.0, max_open_timeout=60.0, half_open_probes=1,
    slow_call_threshold=30.0, probe_lease=30.0, clock=time.monotonic): see
    otlpd.breaker_py.CircuitBreaker for the full contract, which this class
    implements identically.
    """

    # Guards self._b (except the atomics). On CPython < 3.13 a PyThread_type_lock,
    # on 3.13+ a PyMutex.
    cdef cython.pymutex _lock
    cdef Breaker _b
    cdef object _clock

    def __cinit__(self, failure_threshold=5, failure_rate_threshold=0.5, window_size=20,
                  minimum_calls=10, open_timeout=1.0, max_open_timeout=60.0,
                  half_open_probes=1, slow_call_threshold=30.0, probe_lease=30.0,
                  clock=time.monotonic):
        # Cython has zeroed self._b (window NULL), so __dealloc__ is safe if this raises.
        settings = validated_settings(
            failure_threshold, failure_rate_threshold, window_size, minimum_calls,
            open_timeout, max_open_timeout, half_open_probes, slow_call_threshold,
            probe_lease, clock)
        cdef Breaker* b = &self._b
        b.failure_threshold = settings.failure_threshold
        b.failure_rate_threshold = settings.failure_rate_threshold
        b.window_size = settings.window_size
        b.minimum_calls = settings.minimum_calls
        b.base_open_timeout = settings.open_timeout
        b.max_open_timeout = settings.max_open_timeout
        b.half_open_probes = settings.half_open_probes
        b.slow_ticks = settings.slow_call_threshold * TICKS_PER_SECOND
        b.probe_lease = settings.probe_lease
        if not 1 <= b.half_open_probes <= HALF_OPEN_PROBES_MAX or b.window_size < 1:
            raise AssertionError("validated_settings let an out-of-range size through")
        b.open_timeout = b.base_open_timeout
        b.window = <uint8_t*>calloc(<size_t>b.window_size, 1)
        if b.window is NULL:
            raise MemoryError("CircuitBreaker: cannot allocate the window")
        self._clock = settings.clock
        b.origin = self._now()

    def __dealloc__(self):
        free(self._b.window)
        self._b.window = NULL

    cdef double _now(self) except? -1.0:
        """The injected clock, called with the GIL, checked like the twin checks it."""
        cdef double now = self._clock()
        if not -CLOCK_LIMIT < now < CLOCK_LIMIT:  # also false for nan
            checked_clock_value(now)  # raises the twin's ValueError
        return now

    # -- decisions -------------------------------------------------------------

    def allow(self):
        """allow() -> int

        A ticket (> 0) if the call may go ahead, 0 if it is refused; never
        blocks. Closed: takes no lock.
        """
        cdef double now = self._now()
        cdef Breaker* b = &self._b
        cdef uint64_t word = otlpd_load(&b.state_word)
        cdef uint64_t generation = 0
        cdef int64_t kind
        if (word & STATE_MASK) == STATE_CLOSED:
            # Closed has no timers, so there is nothing to decide: a ticket of this
            # generation. If another thread opens the breaker meanwhile, this call
            # was simply allowed just before; its report will be stale.
            otlpd_increment(&b.counters[ALLOWED])
            return _ticket(_ticks(now, b.origin), word >> 2, KIND_CALL)
        with nogil:
            with self._lock:  # the one lock acquisition of this decision
                otlpd_increment(&b.lock_acquisitions)
                kind = _allow_locked(b, now, &generation)
        if kind == BREAKER_CORRUPT:
            _raise_corrupt()
        if kind == 0:
            return 0
        return _ticket(_ticks(now, b.origin), generation, kind)

    def record_success(self, ticket):
        """record_success(ticket) -> None

        The call of ``ticket`` succeeded; slower than slow_call_threshold, it
        counts as a (slow) failure.
        """
        self._report(ticket, None)

    def record_failure(self, ticket, reason="UNAVAILABLE"):
        """record_failure(ticket, reason="UNAVAILABLE") -> None

        The call of ``ticket`` failed; ``reason`` goes into the transition it causes.
        """
        self._report(ticket, reason_text(reason))

    cdef int _report(self, object ticket, bytes failure) except -1:
        cdef Breaker* b = &self._b
        cdef int64_t value = PyNumber_Index(ticket)  # TypeError / OverflowError as in the twin
        cdef int64_t kind = value & KIND_MASK
        cdef uint64_t generation, start, duration
        cdef double now
        cdef bint slow
        cdef const char* text = NULL
        cdef Py_ssize_t text_length = 0
        cdef int status
        if value <= 0 or kind < KIND_CALL or kind >= KIND_FIRST_PROBE + b.half_open_probes:
            ticket_fields(value, b.half_open_probes)  # raises the twin's ValueError
        generation = (<uint64_t>value >> KIND_BITS) & GENERATION_MASK
        start = <uint64_t>value >> START_SHIFT
        now = self._now()
        duration = (_ticks(now, b.origin) - start) & TICKS_MASK
        slow = failure is None and <double>duration > b.slow_ticks
        if failure is not None:
            text = failure          # `failure` keeps the bytes alive through the section
            text_length = len(failure)
        with nogil:
            with self._lock:  # the one lock acquisition of this report
                otlpd_increment(&b.lock_acquisitions)
                status = _report_locked(b, now, kind, generation, slow, duration,
                                        failure is not None, text, text_length)
        if status != BREAKER_OK:
            _raise_corrupt()
        return 0

    # -- observation -------------------------------------------------------------

    cdef int _current_state(self, double* retry_after) except -1:
        """State as of now (one lock acquisition unless closed); retry_after as well."""
        cdef Breaker* b = &self._b
        cdef double now
        cdef int state, status
        if (otlpd_load(&b.state_word) & STATE_MASK) == STATE_CLOSED:
            retry_after[0] = 0.0
            return STATE_CLOSED  # no timers in closed: nothing to evaluate, no lock
        now = self._now()
        with nogil:
            with self._lock:
                otlpd_increment(&b.lock_acquisitions)
                status = _advance_locked(b, now)
                state = b.state
                retry_after[0] = b.open_until - now if state == STATE_OPEN else 0.0
        if status != BREAKER_OK:
            _raise_corrupt()
        return state

    @property
    def state(self):
        """"closed", "open" or "half_open", as of now."""
        cdef double retry_after
        return breaker_py.STATE_NAMES[self._current_state(&retry_after)]

    def retry_after(self):
        """retry_after() -> float

        Seconds until an open breaker lets a probe through; 0.0 unless open.
        """
        cdef double retry_after
        self._current_state(&retry_after)
        return retry_after

    def snapshot(self):
        """snapshot() -> dict

        State, current open timeout, retry_after, the last 32 transitions
        (oldest first) and the counters: one consistent view.
        """
        cdef Snapshot snap
        cdef Transition* kept
        cdef double now = self._now()
        cdef int status
        cdef Py_ssize_t i
        with nogil:
            with self._lock:
                otlpd_increment(&self._b.lock_acquisitions)
                status = _snapshot_locked(&self._b, now, &snap)
        if status != BREAKER_OK:
            _raise_corrupt()
        transitions = []
        for i in range(snap.transitions_count):  # <= TRANSITIONS_KEPT: checked in the section
            kept = &snap.transitions[i]
            transitions.append((kept.at, kept.before, kept.after, kept.why, kept.count,
                                kept.value, kept.text[:kept.text_length]))
        counters = {name: snap.counters[i]
                    for i, name in enumerate(breaker_py.COUNTER_NAMES)}
        return snapshot_dict(snap.state, snap.open_timeout, snap.retry_after, transitions,
                             counters)

    @property
    def lock_acquisitions(self):
        """How many times this breaker took its C-level lock (a debug counter)."""
        return otlpd_load(&self._b.lock_acquisitions)

    def __repr__(self):
        return f"<CircuitBreaker {self.state} (Cython)>"


def _check_constants():
    """The C constants above must be the twin's: a mismatch fails the import."""
    twin = breaker_py
    mine = {
        "STATE_CLOSED": STATE_CLOSED, "STATE_OPEN": STATE_OPEN, "STATE_HALF_OPEN": STATE_HALF_OPEN,
        "WHY_CONSECUTIVE": WHY_CONSECUTIVE, "WHY_RATE": WHY_RATE, "WHY_TIMEOUT": WHY_TIMEOUT,
        "WHY_PROBE_FAILED": WHY_PROBE_FAILED, "WHY_PROBE_SLOW": WHY_PROBE_SLOW,
        "WHY_PROBES_SUCCEEDED": WHY_PROBES_SUCCEEDED, "WHY_LEASE_EXPIRED": WHY_LEASE_EXPIRED,
        "KIND_BITS": KIND_BITS, "KIND_MASK": KIND_MASK, "GENERATION_MASK": GENERATION_MASK,
        "START_SHIFT": START_SHIFT, "KIND_CALL": KIND_CALL, "KIND_FIRST_PROBE": KIND_FIRST_PROBE,
        "HALF_OPEN_PROBES_MAX": HALF_OPEN_PROBES_MAX, "TRANSITIONS_KEPT": TRANSITIONS_KEPT,
        "REASON_TEXT_MAX": REASON_TEXT_MAX, "TICKS_PER_SECOND": TICKS_PER_SECOND,
        "TICKS_MODULUS": TICKS_MASK + 1, "CLOCK_LIMIT": CLOCK_LIMIT,
    }
    wrong = {name: (value, getattr(twin, name)) for name, value in mine.items()
             if value != getattr(twin, name)}
    if wrong or len(twin.COUNTER_NAMES) != COUNTERS:
        raise ImportError(f"otlpd._breaker does not match otlpd.breaker_py: {wrong}")


_check_constants()
