"""Pure-Python CircuitBreaker: the readable reference specification.

``otlpd._breaker.CircuitBreaker`` (Cython, ``ext/_breaker.pyx``) must behave
exactly like the class in this module: same arguments, same tickets, same
states, counters and transition reasons for the same calls and clock values.
``tests/test_breaker.py`` runs every test against both and drives them with
the same random sequences. docs/BREAKER.md draws the state machine.

The forwarder asks before each call to the remote endpoint and reports after
it; the breaker never wraps (or waits for) the call itself::

    ticket = breaker.allow()
    if not ticket:
        ...  # refused: retry after breaker.retry_after() seconds
    try:
        export(batch)
    except grpc.RpcError as error:
        breaker.record_failure(ticket, reason=error.code().name)
    else:
        breaker.record_success(ticket)

States:

* ``closed``: every call is allowed. Each report of a call allowed in this
  closed period goes into a sliding window of the last ``window_size``
  outcomes. The breaker opens after ``failure_threshold`` consecutive
  failures, or when at least ``minimum_calls`` outcomes are in the window and
  the share of failures among them is >= ``failure_rate_threshold``.
* ``open``: every call is refused (ticket 0) until ``open_timeout`` seconds
  have passed since it opened; then it is ``half_open``.
* ``half_open``: ``half_open_probes`` calls (probes) are allowed, one each,
  and every other call is refused at once. When all of them have succeeded
  the breaker closes; the first probe that fails (or succeeds too slowly, or
  whose lease expires) opens it again with the open timeout doubled, up to
  ``max_open_timeout``. Closing restores ``open_timeout``.

Time is whatever the injected ``clock`` says (seconds, a float). Timers are
not threads: an open breaker turns half-open, and an expired probe lease
reopens it, when an operation (``allow``, a report, ``state``,
``retry_after``, ``snapshot``) looks at it with a clock value past the limit.

Tickets (int, > 0; 0 means refused) carry everything a report needs, so the
breaker stores nothing per call in flight (only one slot per probe)::

    bits 62..23  start: microseconds since the breaker was made, modulo 2**40
    bits 22..7   generation: number of state changes so far, modulo 2**16
    bits  6..0   kind: 1 = a call allowed while closed, 2 + i = probe slot i

A report counts in the counters whatever its ticket, but only a ticket of the
current generation can change the state: a late report of a call allowed
before the breaker last changed state (a closed-period call ending in
half-open, a probe ending after its lease reopened the breaker) is stale.
Generations wrap after 65536 state changes: a ticket that outlives that many
is taken for current (one outcome in the window at worst).
Durations are in whole microseconds: the difference of the two clock values,
each floored to the microsecond since the breaker was made.

Every operation takes the breaker's lock at most once and never around the
call being protected. (The Cython twin takes none for ``allow`` while
closed; ``lock_acquisitions`` counts what each implementation really takes.)
"""
from __future__ import annotations

import math
import numbers
import operator
import threading
import time
from collections import deque
from typing import Callable, NamedTuple

__all__ = ["CircuitBreaker", "CLOSED", "OPEN", "HALF_OPEN", "COUNTER_NAMES", "Settings",
           "validated_settings", "describe"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: State names by their number (the C enum of the Cython implementation).
STATE_NAMES = (CLOSED, OPEN, HALF_OPEN)
STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN = range(3)

#: The ``counters`` of :meth:`CircuitBreaker.snapshot`, in order. ``failures``
#: counts every report that counts as a failure, slow successes included
#: (``slow_calls`` is the part of them that were slow successes), so
#: ``successes + failures`` is the number of reports.
COUNTER_NAMES = ("allowed", "refused", "successes", "failures", "slow_calls", "opened",
                 "expired_probes")

# -- tickets -------------------------------------------------------------------
KIND_BITS = 7
GENERATION_BITS = 16
START_BITS = 40
KIND_MASK = (1 << KIND_BITS) - 1
GENERATION_MASK = (1 << GENERATION_BITS) - 1
START_SHIFT = KIND_BITS + GENERATION_BITS
TICKET_MAX = 2**63 - 1               # tickets are positive C int64_t
KIND_CALL = 1                        # a call allowed while closed
KIND_FIRST_PROBE = 2                 # probe slot i has kind 2 + i
HALF_OPEN_PROBES_MAX = 64            # so kinds fit their 7 bits with room to spare
TICKS_PER_SECOND = 1_000_000         # ticket start times are microseconds ...
TICKS_MODULUS = 1 << START_BITS      # ... modulo 2**40 (12.7 days): durations wrap after that
CLOCK_LIMIT = 1e12                   # |clock()| below this keeps microseconds exact in int64

# -- bounds --------------------------------------------------------------------
TRANSITIONS_KEPT = 32                # snapshot()["transitions"]: the last 32
REASON_TEXT_MAX = 63                 # bytes of a failure reason kept (UTF-8, truncated)
WINDOW_SIZE_MAX = 1_000_000          # one byte per outcome
COUNT_MAX = 2**31 - 1                # failure_threshold

# -- why a transition happened (formatted by describe()) ------------------------
(WHY_CONSECUTIVE, WHY_RATE, WHY_TIMEOUT, WHY_PROBE_FAILED, WHY_PROBE_SLOW,
 WHY_PROBES_SUCCEEDED, WHY_LEASE_EXPIRED) = range(7)


def describe(why: int, count: int, value: float, text: bytes) -> str:
    """The ``reason`` of a transition from its code and figures (shared by both twins)."""
    if why == WHY_CONSECUTIVE:
        return f"{count} consecutive failure{'s' if count != 1 else ''}"
    if why == WHY_RATE:
        return f"failure rate {value:.0%} over {count} calls"
    if why == WHY_TIMEOUT:
        return f"open timeout {value}s passed"
    if why == WHY_PROBE_FAILED:
        return f"probe failed: {text.decode('utf-8', 'ignore')}"
    if why == WHY_PROBE_SLOW:
        return f"probe failed: slow call of {value}s"
    if why == WHY_PROBES_SUCCEEDED:
        return "probe succeeded" if count == 1 else f"{count} probes succeeded"
    if why == WHY_LEASE_EXPIRED:
        return "probe lease expired" if count == 1 else f"{count} probe leases expired"
    raise ValueError(f"unknown transition reason code {why}")


def reason_text(reason: object) -> bytes:
    """What a transition keeps of a failure reason: its UTF-8, cut to REASON_TEXT_MAX bytes."""
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str, not {type(reason).__name__}")
    return reason.encode("utf-8", "replace")[:REASON_TEXT_MAX]


def checked_clock_value(now: float) -> float:
    """``now`` if it is a usable clock value, else ValueError (both twins raise the same)."""
    if not -CLOCK_LIMIT < now < CLOCK_LIMIT:
        raise ValueError(f"clock() returned {now}, not a finite number of seconds below {CLOCK_LIMIT:g}")
    return now


def ticket_fields(ticket: object, half_open_probes: int) -> tuple[int, int, int]:
    """(kind, generation, start) of a ticket allow() handed out; ValueError if it cannot be one."""
    ticket = operator.index(ticket)
    if ticket > TICKET_MAX:
        raise OverflowError(f"ticket {ticket} is out of range")
    kind = ticket & KIND_MASK
    if ticket <= 0 or not KIND_CALL <= kind < KIND_FIRST_PROBE + half_open_probes:
        raise ValueError(f"{ticket} is not a ticket this breaker allowed (0 means refused: "
                         "nothing to record)")
    return kind, (ticket >> KIND_BITS) & GENERATION_MASK, ticket >> START_SHIFT


# -- constructor arguments -------------------------------------------------------

class Settings(NamedTuple):
    """The constructor arguments, validated and normalised (counts int, seconds float)."""

    failure_threshold: int
    failure_rate_threshold: float
    window_size: int
    minimum_calls: int
    open_timeout: float
    max_open_timeout: float
    half_open_probes: int
    slow_call_threshold: float
    probe_lease: float
    clock: Callable[[], float]


def _whole(name: str, value: object, low: int, high: int, high_name: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    value = operator.index(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high_name or high}, got {value}")
    return value


def _real(name: str, value: object, allowed: Callable[[float], bool], rule: str) -> float:
    """``value`` as float if it is a number and ``allowed(value)``, else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not allowed(value):  # nan fails every comparison, so every rule rejects it
        raise ValueError(f"{name} must be {rule}, got {value}")
    return value


def validated_settings(
    failure_threshold: int = 5,
    failure_rate_threshold: float = 0.5,
    window_size: int = 20,
    minimum_calls: int = 10,
    open_timeout: float = 1.0,
    max_open_timeout: float = 60.0,
    half_open_probes: int = 1,
    slow_call_threshold: float = 30.0,
    probe_lease: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> Settings:
    """The constructor's arguments checked: TypeError or ValueError naming the parameter.

    Both implementations call this, so they accept and reject the same
    arguments with the same messages. ``slow_call_threshold`` and
    ``probe_lease`` may be ``math.inf`` (no call is slow, no lease expires).
    """
    window_size = _whole("window_size", window_size, 1, WINDOW_SIZE_MAX)
    open_timeout = _real("open_timeout", open_timeout, lambda v: 0 < v < math.inf,
                            "> 0 and finite")
    if not callable(clock):
        raise TypeError(f"clock must be callable, not {type(clock).__name__}")
    return Settings(
        failure_threshold=_whole("failure_threshold", failure_threshold, 1, COUNT_MAX),
        failure_rate_threshold=_real("failure_rate_threshold", failure_rate_threshold,
                                        lambda v: 0 < v <= 1, "> 0 and <= 1"),
        window_size=window_size,
        minimum_calls=_whole("minimum_calls", minimum_calls, 1, window_size,
                             f"window_size ({window_size})"),
        open_timeout=open_timeout,
        max_open_timeout=_real("max_open_timeout", max_open_timeout,
                                  lambda v: open_timeout <= v < math.inf,
                                  f">= open_timeout ({open_timeout}) and finite"),
        half_open_probes=_whole("half_open_probes", half_open_probes, 1, HALF_OPEN_PROBES_MAX),
        slow_call_threshold=_real("slow_call_threshold", slow_call_threshold, lambda v: v > 0,
                                     "> 0 (inf: no call is slow)"),
        probe_lease=_real("probe_lease", probe_lease, lambda v: v > 0,
                             "> 0 (inf: leases never expire)"),
        clock=clock,
    )


# -- the breaker -------------------------------------------------------------------

class CircuitBreaker:
    """Decides whether a call to a remote endpoint may go ahead, from the outcomes reported.

    Thread-safe; never blocks a caller beyond one short critical section, and
    never holds its lock while the protected call runs. See the module
    docstring for the states, the tickets and the rules.
    """

    __slots__ = (
        "_settings", "_clock", "_origin", "_slow_ticks", "_lock", "_lock_acquisitions",
        "_state", "_generation", "_counters", "_transitions",
        "_consecutive", "_window", "_window_next", "_window_count", "_window_failures",
        "_open_timeout", "_open_until",
        "_probe_starts", "_probes_granted", "_probe_successes",
    )

    def __init__(self, failure_threshold: int = 5, failure_rate_threshold: float = 0.5,
                 window_size: int = 20, minimum_calls: int = 10, open_timeout: float = 1.0,
                 max_open_timeout: float = 60.0, half_open_probes: int = 1,
                 slow_call_threshold: float = 30.0, probe_lease: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """A closed breaker; arguments as in :func:`validated_settings`."""
        settings = validated_settings(
            failure_threshold, failure_rate_threshold, window_size, minimum_calls,
            open_timeout, max_open_timeout, half_open_probes, slow_call_threshold,
            probe_lease, clock)
        self._settings = settings
        self._clock = settings.clock
        self._slow_ticks = settings.slow_call_threshold * TICKS_PER_SECOND
        self._lock = threading.Lock()
        self._lock_acquisitions = 0
        self._state = STATE_CLOSED
        self._generation = 0
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        # (at, from, to, why, count, value, text): formatted by snapshot().
        self._transitions: deque[tuple] = deque(maxlen=TRANSITIONS_KEPT)
        self._window = bytearray(settings.window_size)  # 1 = failure, a ring of outcomes
        self._window_next = 0       # where the next outcome goes
        self._window_count = 0      # outcomes in the window: <= window_size
        self._window_failures = 0   # failures among them
        self._consecutive = 0
        self._open_timeout = settings.open_timeout  # the current one: doubles on reopening
        self._open_until = 0.0
        self._probe_starts: list[float | None] = [None] * settings.half_open_probes
        self._probes_granted = 0
        self._probe_successes = 0
        self._origin = self._now()

    # -- time ------------------------------------------------------------------

    def _now(self) -> float:
        return checked_clock_value(float(self._clock()))

    def _ticks(self, now: float) -> int:
        return math.floor((now - self._origin) * TICKS_PER_SECOND) & (TICKS_MODULUS - 1)

    # -- decisions -------------------------------------------------------------

    def allow(self) -> int:
        """A ticket (> 0) if the call may go ahead, 0 if it is refused; never blocks.

        Closed: always a ticket. Open: 0 (until the open timeout has passed,
        when it turns half-open). Half-open: a probe ticket while one of the
        ``half_open_probes`` slots is free, else 0.
        """
        now = self._now()
        with self._lock:
            self._lock_acquisitions += 1
            self._advance(now)
            if self._state == STATE_CLOSED:
                kind = KIND_CALL
            elif self._state == STATE_HALF_OPEN and self._probes_granted < len(self._probe_starts):
                slot = self._probes_granted
                self._probes_granted += 1
                self._probe_starts[slot] = now
                kind = KIND_FIRST_PROBE + slot
            else:
                self._counters["refused"] += 1
                return 0
            self._counters["allowed"] += 1
            generation = self._generation
        return ((self._ticks(now) << START_SHIFT) | ((generation & GENERATION_MASK) << KIND_BITS)
                | kind)

    def record_success(self, ticket: int) -> None:
        """Report that the call of ``ticket`` succeeded.

        A success that took longer than ``slow_call_threshold`` (clock now
        minus the ticket's start) counts as a failure, and as a slow call.
        """
        self._report(ticket, None)

    def record_failure(self, ticket: int, reason: str = "UNAVAILABLE") -> None:
        """Report that the call of ``ticket`` failed; ``reason`` goes into the transition it causes."""
        self._report(ticket, reason_text(reason))

    def _report(self, ticket: int, failure: bytes | None) -> None:
        kind, generation, start = ticket_fields(ticket, len(self._probe_starts))
        now = self._now()
        duration_ticks = (self._ticks(now) - start) & (TICKS_MODULUS - 1)
        slow = failure is None and duration_ticks > self._slow_ticks
        counters = self._counters
        with self._lock:
            self._lock_acquisitions += 1
            self._advance(now)
            if failure is None and not slow:
                counters["successes"] += 1
            else:
                counters["failures"] += 1
                counters["slow_calls"] += slow
            if generation != self._generation & GENERATION_MASK:
                return  # stale: allowed before the last state change
            failed = failure is not None or slow
            if kind == KIND_CALL:
                if self._state == STATE_CLOSED:
                    self._record_outcome(now, failed)
                return
            slot = kind - KIND_FIRST_PROBE
            if self._state != STATE_HALF_OPEN or self._probe_starts[slot] is None:
                return  # reported twice, or never granted
            self._probe_starts[slot] = None
            if failure is not None:
                self._reopen(now, WHY_PROBE_FAILED, 1, 0.0, failure)
            elif slow:
                self._reopen(now, WHY_PROBE_SLOW, 1, duration_ticks / TICKS_PER_SECOND, b"")
            else:
                self._probe_successes += 1
                if self._probe_successes == len(self._probe_starts):
                    self._change(now, STATE_CLOSED, WHY_PROBES_SUCCEEDED, self._probe_successes,
                                 0.0, b"")

    # -- the state machine (called with the lock held) ------------------------------

    def _record_outcome(self, now: float, failed: bool) -> None:
        """One outcome of the closed period: window, consecutive failures, maybe open."""
        window, index = self._window, self._window_next
        if self._window_count == len(window):
            self._window_failures -= window[index]  # the oldest outcome leaves the window
        else:
            self._window_count += 1
        window[index] = failed
        self._window_failures += failed
        self._window_next = index + 1 if index + 1 < len(window) else 0
        self._consecutive = self._consecutive + 1 if failed else 0
        settings = self._settings
        if self._consecutive >= settings.failure_threshold:
            self._change(now, STATE_OPEN, WHY_CONSECUTIVE, self._consecutive, 0.0, b"")
        elif self._window_count >= settings.minimum_calls:
            rate = self._window_failures / self._window_count
            if rate >= settings.failure_rate_threshold:
                self._change(now, STATE_OPEN, WHY_RATE, self._window_count, rate, b"")

    def _advance(self, now: float) -> None:
        """The transitions time alone causes: open timeout passed, probe lease expired."""
        if self._state == STATE_OPEN and now >= self._open_until:
            self._change(now, STATE_HALF_OPEN, WHY_TIMEOUT, 0, self._open_timeout, b"")
        elif self._state == STATE_HALF_OPEN:
            lease = self._settings.probe_lease
            expired = sum(1 for start in self._probe_starts
                          if start is not None and now - start >= lease)
            if expired:
                self._counters["expired_probes"] += expired
                self._reopen(now, WHY_LEASE_EXPIRED, expired, 0.0, b"")

    def _reopen(self, now: float, why: int, count: int, value: float, text: bytes) -> None:
        """Half-open -> open, with the open timeout doubled (up to max_open_timeout)."""
        self._open_timeout = min(self._open_timeout * 2, self._settings.max_open_timeout)
        self._change(now, STATE_OPEN, why, count, value, text)

    def _change(self, now: float, to: int, why: int, count: int, value: float, text: bytes) -> None:
        """Enter state ``to``: a new generation, its transition kept, its fields reset."""
        self._transitions.append((now, self._state, to, why, count, value, text))
        self._state = to
        self._generation += 1
        if to == STATE_OPEN:
            self._counters["opened"] += 1
            self._open_until = now + self._open_timeout
        elif to == STATE_HALF_OPEN:
            self._probe_starts = [None] * len(self._probe_starts)
            self._probes_granted = 0
            self._probe_successes = 0
        else:
            self._window = bytearray(len(self._window))
            self._window_next = self._window_count = self._window_failures = 0
            self._consecutive = 0
            self._open_timeout = self._settings.open_timeout

    # -- observation -------------------------------------------------------------

    @property
    def state(self) -> str:
        """"closed", "open" or "half_open", as of now (an open breaker past its timeout is half-open)."""
        now = self._now()
        with self._lock:
            self._lock_acquisitions += 1
            self._advance(now)
            return STATE_NAMES[self._state]

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through; 0.0 unless open."""
        now = self._now()
        with self._lock:
            self._lock_acquisitions += 1
            self._advance(now)
            return self._open_until - now if self._state == STATE_OPEN else 0.0

    def snapshot(self) -> dict:
        """State, current open timeout, retry_after, the last 32 transitions and the counters.

        One consistent view taken under the lock; ``transitions`` oldest
        first, each ``{"at", "from", "to", "reason"}``.
        """
        now = self._now()
        with self._lock:
            self._lock_acquisitions += 1
            self._advance(now)
            state = self._state
            open_timeout = self._open_timeout
            retry_after = self._open_until - now if state == STATE_OPEN else 0.0
            transitions = list(self._transitions)
            counters = dict(self._counters)
        return snapshot_dict(state, open_timeout, retry_after, transitions, counters)

    @property
    def lock_acquisitions(self) -> int:
        """How many times this breaker took its lock (a debug counter, read without the lock)."""
        return self._lock_acquisitions

    def __repr__(self) -> str:
        return f"<CircuitBreaker {STATE_NAMES[self._state]} (pure Python)>"


def snapshot_dict(state: int, open_timeout: float, retry_after: float,
                  transitions: list[tuple], counters: dict) -> dict:
    """The dict snapshot() returns, from the figures both implementations keep."""
    return {
        "state": STATE_NAMES[state],
        "open_timeout": open_timeout,
        "retry_after": retry_after,
        "transitions": [
            {"at": at, "from": STATE_NAMES[before], "to": STATE_NAMES[after],
             "reason": describe(why, count, value, text)}
            for at, before, after, why, count, value, text in transitions
        ],
        "counters": counters,
    }
