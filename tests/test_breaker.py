"""CircuitBreaker: every transition, the timers on an injected clock, tickets, concurrency,
the lock budget against a one-lock-per-field design, and Cython == pure-Python twin.

Every test runs against both implementations through the `breaker_cls` fixture
(tests/conftest.py). The specification is otlpd/breaker_py.py; no test sleeps:
time is a FakeClock the test moves.
"""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from otlpd import breaker_py
from otlpd.breaker_py import CLOSED, COUNTER_NAMES, HALF_OPEN, OPEN, TRANSITIONS_KEPT


class FakeClock:
    """The injected clock: returns ``now`` until a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def is_cython(breaker_cls) -> bool:
    return breaker_cls.__module__ == "otlpd._breaker"


def transitions(breaker) -> list[tuple[str, str, str]]:
    """(from, to, reason) of every transition kept, oldest first."""
    return [(t["from"], t["to"], t["reason"]) for t in breaker.snapshot()["transitions"]]


def counters(breaker) -> dict:
    return breaker.snapshot()["counters"]


def fail(breaker, times: int, reason: str = "UNAVAILABLE") -> None:
    for _ in range(times):
        ticket = breaker.allow()
        assert ticket > 0
        breaker.record_failure(ticket, reason=reason)


def succeed(breaker, times: int) -> None:
    for _ in range(times):
        ticket = breaker.allow()
        assert ticket > 0
        breaker.record_success(ticket)


def opened_breaker(breaker_cls, clock, **kwargs):
    """A breaker opened by consecutive failures at clock.now."""
    kwargs.setdefault("failure_threshold", 2)
    breaker = breaker_cls(clock=clock, **kwargs)
    fail(breaker, kwargs["failure_threshold"])
    assert breaker.state == OPEN
    return breaker


def half_open_breaker(breaker_cls, clock, **kwargs):
    """A breaker opened then moved past its open timeout."""
    breaker = opened_breaker(breaker_cls, clock, **kwargs)
    clock.advance(breaker.snapshot()["open_timeout"])
    assert breaker.state == HALF_OPEN
    return breaker


# -- closed --------------------------------------------------------------------------

def test_a_new_breaker_is_closed_and_allows_every_call(breaker_cls, clock):
    breaker = breaker_cls(clock=clock)
    snapshot = breaker.snapshot()
    assert snapshot == {
        "state": CLOSED, "open_timeout": 1.0, "retry_after": 0.0, "transitions": [],
        "counters": dict.fromkeys(COUNTER_NAMES, 0),
    }
    tickets = [breaker.allow() for _ in range(100)]
    assert all(ticket > 0 for ticket in tickets)
    assert breaker.state == CLOSED and breaker.retry_after() == 0.0
    assert counters(breaker)["allowed"] == 100


def test_consecutive_failures_open_it(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=3, clock=clock)
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker, 1, reason="DEADLINE_EXCEEDED")
    assert breaker.state == OPEN
    assert transitions(breaker) == [(CLOSED, OPEN, "3 consecutive failures")]
    assert breaker.snapshot()["transitions"][0]["at"] == clock.now
    assert breaker.allow() == 0
    assert counters(breaker) == {"allowed": 3, "refused": 1, "successes": 0, "failures": 3,
                                 "slow_calls": 0, "opened": 1, "expired_probes": 0}


def test_a_success_resets_the_consecutive_failures(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=3, failure_rate_threshold=1.0, clock=clock)
    for _ in range(5):
        fail(breaker, 2)
        succeed(breaker, 1)
    assert breaker.state == CLOSED
    fail(breaker, 3)
    assert transitions(breaker) == [(CLOSED, OPEN, "3 consecutive failures")]


def test_failure_rate_waits_for_minimum_calls(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=100, failure_rate_threshold=0.5, window_size=10,
                          minimum_calls=6, clock=clock)
    for _ in range(2):
        fail(breaker, 1)
        succeed(breaker, 1)
    fail(breaker, 1)  # 3 of 5: 60 %, but only 5 calls
    assert breaker.state == CLOSED
    succeed(breaker, 1)  # 3 of 6: 50 % >= 50 %, and 6 calls: a success can open it
    assert breaker.state == OPEN
    assert transitions(breaker) == [(CLOSED, OPEN, "failure rate 50% over 6 calls")]


def test_failure_rate_counts_only_the_last_window_size_calls(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=100, failure_rate_threshold=0.75, window_size=4,
                          minimum_calls=4, clock=clock)
    fail(breaker, 2)
    succeed(breaker, 4)  # the two failures have left the window: S S S S
    fail(breaker, 2)     # S S F F: 50 %
    assert breaker.state == CLOSED
    fail(breaker, 1)     # S F F F: 75 %
    assert transitions(breaker) == [(CLOSED, OPEN, "failure rate 75% over 4 calls")]


def test_consecutive_rule_is_named_when_both_rules_trip(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=2, minimum_calls=2, window_size=2, clock=clock)
    fail(breaker, 2)
    assert transitions(breaker) == [(CLOSED, OPEN, "2 consecutive failures")]


def test_failure_rate_reason_rounds_to_a_percent(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=100, failure_rate_threshold=0.6, window_size=3,
                          minimum_calls=3, clock=clock)
    succeed(breaker, 1)
    fail(breaker, 2)
    assert transitions(breaker) == [(CLOSED, OPEN, "failure rate 67% over 3 calls")]


# -- open, timeouts --------------------------------------------------------------------

def test_open_refuses_until_its_timeout_then_half_open(breaker_cls, clock):
    breaker = opened_breaker(breaker_cls, clock, open_timeout=2.0)
    opened_at = clock.now
    assert breaker.retry_after() == 2.0
    clock.advance(1.5)
    assert breaker.allow() == 0
    assert breaker.state == OPEN
    assert breaker.retry_after() == pytest.approx(0.5)
    clock.now = opened_at + 2.0
    assert breaker.retry_after() == 0.0
    assert breaker.state == HALF_OPEN
    snapshot = breaker.snapshot()
    assert snapshot["transitions"][-1] == {"at": opened_at + 2.0, "from": OPEN, "to": HALF_OPEN,
                                           "reason": "open timeout 2.0s passed"}
    assert snapshot["counters"]["refused"] == 1


@pytest.mark.parametrize("observe", ["allow", "state", "snapshot", "retry_after"])
def test_the_timeout_is_noticed_by_every_observation(breaker_cls, clock, observe):
    breaker = opened_breaker(breaker_cls, clock)
    clock.advance(1.0)
    result = getattr(breaker, observe)
    if callable(result):
        result()
    assert transitions(breaker)[-1][:2] == (OPEN, HALF_OPEN)


def test_open_timeout_doubles_up_to_the_cap_and_resets_after_close(breaker_cls, clock):
    breaker = opened_breaker(breaker_cls, clock, open_timeout=1.0, max_open_timeout=5.0)
    seen = []
    for _ in range(5):
        timeout = breaker.snapshot()["open_timeout"]
        seen.append(timeout)
        clock.advance(timeout - 0.001)
        assert breaker.allow() == 0, "half-open before its timeout"
        clock.advance(0.001)
        fail(breaker, 1)  # the probe fails
        assert breaker.state == OPEN
    assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert breaker.snapshot()["open_timeout"] == 5.0
    clock.advance(5.0)
    succeed(breaker, 1)  # the probe succeeds
    assert breaker.state == CLOSED
    assert breaker.snapshot()["open_timeout"] == 1.0
    fail(breaker, 2)
    assert breaker.retry_after() == 1.0
    assert counters(breaker)["opened"] == 7


# -- half-open -------------------------------------------------------------------------

def test_one_probe_success_closes_it(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock)
    probe = breaker.allow()
    assert probe > 0
    assert breaker.allow() == 0, "a second call got through with half_open_probes=1"
    breaker.record_success(probe)
    assert breaker.state == CLOSED
    assert transitions(breaker) == [
        (CLOSED, OPEN, "2 consecutive failures"),
        (OPEN, HALF_OPEN, "open timeout 1.0s passed"),
        (HALF_OPEN, CLOSED, "probe succeeded"),
    ]
    succeed(breaker, 3)
    assert breaker.state == CLOSED


def test_a_failed_probe_reopens_with_its_reason(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock)
    breaker.record_failure(breaker.allow(), reason="RESOURCE_EXHAUSTED")
    assert breaker.state == OPEN
    assert transitions(breaker)[-1] == (HALF_OPEN, OPEN, "probe failed: RESOURCE_EXHAUSTED")
    assert breaker.retry_after() == 2.0
    assert counters(breaker)["opened"] == 2


def test_every_probe_must_succeed_to_close(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, half_open_probes=3)
    probes = [breaker.allow() for _ in range(4)]
    assert [p > 0 for p in probes] == [True, True, True, False]
    assert len(set(probes[:3])) == 3, "probe tickets must differ"
    breaker.record_success(probes[2])
    breaker.record_success(probes[0])
    assert breaker.state == HALF_OPEN
    assert breaker.allow() == 0, "a slot that reported success must not be granted again"
    breaker.record_success(probes[1])
    assert breaker.state == CLOSED
    assert transitions(breaker)[-1] == (HALF_OPEN, CLOSED, "3 probes succeeded")


def test_one_failed_probe_among_several_reopens_and_the_others_are_stale(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, half_open_probes=2)
    first, second = breaker.allow(), breaker.allow()
    breaker.record_success(first)
    breaker.record_failure(second, reason="INTERNAL")
    assert breaker.state == OPEN
    clock.advance(2.0)
    assert breaker.state == HALF_OPEN
    breaker.record_success(second)  # a second report of an old probe: counted, no effect
    breaker.record_success(first)
    assert breaker.state == HALF_OPEN
    assert counters(breaker)["successes"] == 3


def test_concurrent_callers_in_half_open_get_exactly_the_probes_and_never_wait(breaker_cls, clock):
    """16 threads released together: exactly half_open_probes tickets, every other caller 0.

    The probe holders report only after every refused caller has returned, so
    a refused caller that waited for a probe slot would hang the test (join
    timeout) instead of passing.
    """
    probes, threads_count = 3, 16
    breaker = half_open_breaker(breaker_cls, clock, half_open_probes=probes)
    barrier = threading.Barrier(threads_count)
    refused_all_returned = threading.Event()
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    refused_count = [0]

    def caller():
        try:
            barrier.wait(timeout=30)
            ticket = breaker.allow()
            with lock:
                results.append(ticket)
                if ticket == 0:
                    refused_count[0] += 1
                    if refused_count[0] == threads_count - probes:
                        refused_all_returned.set()
            if ticket:
                assert refused_all_returned.wait(timeout=30), "refused callers did not return"
                breaker.record_success(ticket)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=caller) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [t for t in threads if t.is_alive()], "a caller blocked"
    assert not errors, errors
    assert sorted(t > 0 for t in results) == [False] * (threads_count - probes) + [True] * probes
    assert breaker.state == CLOSED
    c = counters(breaker)
    assert (c["allowed"], c["refused"], c["successes"]) == (2 + probes, threads_count - probes, probes)


# -- slow calls ---------------------------------------------------------------------------

def test_a_slow_success_counts_as_a_failure(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=2, slow_call_threshold=30.0, clock=clock)
    ticket = breaker.allow()
    clock.advance(30.0)
    breaker.record_success(ticket)  # exactly the threshold: not slow
    ticket = breaker.allow()
    clock.advance(30.5)
    breaker.record_success(ticket)
    assert counters(breaker)["slow_calls"] == 1 and breaker.state == CLOSED
    ticket = breaker.allow()
    clock.advance(31.0)
    breaker.record_success(ticket)
    assert breaker.state == OPEN
    assert transitions(breaker) == [(CLOSED, OPEN, "2 consecutive failures")]
    c = counters(breaker)
    assert (c["successes"], c["failures"], c["slow_calls"]) == (1, 2, 2)


def test_a_slow_probe_reopens(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, slow_call_threshold=2.0)
    probe = breaker.allow()
    clock.advance(2.25)
    breaker.record_success(probe)
    assert breaker.state == OPEN
    assert transitions(breaker)[-1] == (HALF_OPEN, OPEN, "probe failed: slow call of 2.25s")


def test_a_slow_failure_is_one_failure_not_a_slow_call(breaker_cls, clock):
    breaker = breaker_cls(clock=clock)
    ticket = breaker.allow()
    clock.advance(100.0)
    breaker.record_failure(ticket)
    assert (counters(breaker)["failures"], counters(breaker)["slow_calls"]) == (1, 0)


def test_infinite_slow_call_threshold_means_no_call_is_slow(breaker_cls, clock):
    breaker = breaker_cls(slow_call_threshold=math.inf, failure_threshold=1, clock=clock)
    ticket = breaker.allow()
    clock.advance(86400.0 * 12)  # 12 days, just within the 12.7 days tickets can measure
    breaker.record_success(ticket)
    assert breaker.state == CLOSED and counters(breaker)["successes"] == 1


# -- probe lease ------------------------------------------------------------------------

def test_an_expired_probe_lease_reopens_and_frees_the_slot(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, probe_lease=10.0)
    probe = breaker.allow()
    clock.advance(9.999)
    assert breaker.state == HALF_OPEN
    assert breaker.allow() == 0
    clock.advance(0.001)
    assert breaker.state == OPEN
    assert transitions(breaker)[-1] == (HALF_OPEN, OPEN, "probe lease expired")
    c = counters(breaker)
    assert (c["expired_probes"], c["opened"]) == (1, 2)
    assert breaker.snapshot()["open_timeout"] == 2.0
    clock.advance(2.0)
    fresh = breaker.allow()
    assert fresh > 0, "the slot of the expired probe was not freed"
    breaker.record_success(probe)  # the hung call finally returns: stale, counted only
    assert breaker.state == HALF_OPEN and counters(breaker)["successes"] == 1
    breaker.record_success(fresh)
    assert breaker.state == CLOSED


def test_a_report_after_the_lease_is_too_late(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, probe_lease=5.0, slow_call_threshold=60.0)
    probe = breaker.allow()
    clock.advance(5.0)
    breaker.record_success(probe)  # nobody looked since: the report itself notices the lease
    assert breaker.state == OPEN
    assert transitions(breaker)[-1][2] == "probe lease expired"


def test_several_expired_leases_are_one_transition(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock, half_open_probes=3, probe_lease=5.0)
    breaker.allow()
    clock.advance(1.0)
    breaker.allow()
    clock.advance(4.0)  # the first lease has run out, not the second
    assert breaker.state == OPEN
    assert transitions(breaker)[-1][2] == "probe lease expired"
    assert counters(breaker)["expired_probes"] == 1


# -- tickets from before a state change ---------------------------------------------------

def test_late_reports_of_closed_calls_do_not_decide_half_open(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=2, clock=clock)
    old = [breaker.allow() for _ in range(4)]
    fail(breaker, 2)
    clock.advance(1.0)
    assert breaker.state == HALF_OPEN
    breaker.record_success(old[0])
    assert breaker.state == HALF_OPEN, "a call allowed while closed closed the half-open breaker"
    breaker.record_failure(old[1])
    assert breaker.state == HALF_OPEN, "a call allowed while closed reopened it"
    probe = breaker.allow()
    assert probe > 0, "a late report took the probe slot"
    breaker.record_success(probe)
    assert breaker.state == CLOSED
    # Old closed-period tickets do not count in the new closed period either.
    breaker.record_failure(old[2])
    fail(breaker, 1)
    assert breaker.state == CLOSED
    breaker.record_failure(old[3])
    assert breaker.state == CLOSED
    c = counters(breaker)
    assert (c["successes"], c["failures"]) == (2, 6)


def test_late_reports_while_open_are_counted_only(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=1, clock=clock)
    old = breaker.allow()
    fail(breaker, 1)
    breaker.record_failure(old)
    assert breaker.state == OPEN and breaker.retry_after() == 1.0
    assert counters(breaker)["opened"] == 1


# -- the transition ring ------------------------------------------------------------------

def test_the_last_32_transitions_are_kept_oldest_first(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=1, open_timeout=1.0, max_open_timeout=1.0,
                          clock=clock)
    for _ in range(15):  # closed -> open -> half_open -> closed: 3 transitions each
        fail(breaker, 1)
        clock.advance(1.0)
        succeed(breaker, 1)
        clock.advance(1.0)
    kept = breaker.snapshot()["transitions"]
    assert len(kept) == TRANSITIONS_KEPT
    assert [t["at"] for t in kept] == sorted(t["at"] for t in kept)
    assert kept[-1]["to"] == CLOSED
    assert (kept[0]["from"], kept[0]["to"]) == (OPEN, HALF_OPEN)  # 45 made, the first 13 dropped


def test_a_long_reason_is_cut_at_a_character_boundary(breaker_cls, clock):
    breaker = half_open_breaker(breaker_cls, clock)
    breaker.record_failure(breaker.allow(), reason="é" * 40)  # 80 bytes of UTF-8
    reason = transitions(breaker)[-1][2]
    assert reason == "probe failed: " + "é" * 31  # 63 bytes kept, the half character dropped


# -- arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"failure_threshold": 0}, ValueError, "failure_threshold must be between 1"),
    ({"failure_threshold": 2.0}, TypeError, "failure_threshold must be an integer"),
    ({"failure_threshold": True}, TypeError, "failure_threshold must be an integer"),
    ({"failure_rate_threshold": 0.0}, ValueError, "failure_rate_threshold must be > 0 and <= 1"),
    ({"failure_rate_threshold": 1.5}, ValueError, "failure_rate_threshold"),
    ({"failure_rate_threshold": math.nan}, ValueError, "failure_rate_threshold"),
    ({"failure_rate_threshold": "0.5"}, TypeError, "failure_rate_threshold must be a number"),
    ({"window_size": 0}, ValueError, "window_size must be between 1 and 1000000"),
    ({"window_size": 1_000_001}, ValueError, "window_size"),
    ({"minimum_calls": 0}, ValueError, "minimum_calls must be between 1"),
    ({"minimum_calls": 21}, ValueError, r"minimum_calls must be between 1 and window_size \(20\)"),
    ({"open_timeout": 0}, ValueError, "open_timeout must be > 0 and finite"),
    ({"open_timeout": -1.0}, ValueError, "open_timeout"),
    ({"open_timeout": math.inf}, ValueError, "open_timeout"),
    ({"max_open_timeout": 0.5}, ValueError, r"max_open_timeout must be >= open_timeout \(1.0\)"),
    ({"max_open_timeout": math.inf}, ValueError, "max_open_timeout"),
    ({"half_open_probes": 0}, ValueError, "half_open_probes must be between 1 and 64"),
    ({"half_open_probes": 65}, ValueError, "half_open_probes"),
    ({"slow_call_threshold": 0.0}, ValueError, "slow_call_threshold must be > 0"),
    ({"slow_call_threshold": math.nan}, ValueError, "slow_call_threshold"),
    ({"probe_lease": -5}, ValueError, "probe_lease must be > 0"),
    ({"probe_lease": None}, TypeError, "probe_lease must be a number"),
    ({"clock": 3.0}, TypeError, "clock must be callable"),
])
def test_constructor_rejects_bad_arguments(breaker_cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        breaker_cls(**kwargs)


def test_constructor_accepts_the_edges(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=1, failure_rate_threshold=1.0, window_size=1,
                          minimum_calls=1, open_timeout=0.001, max_open_timeout=0.001,
                          half_open_probes=64, slow_call_threshold=math.inf,
                          probe_lease=math.inf, clock=clock)
    fail(breaker, 1)
    clock.advance(0.001)
    assert sum(breaker.allow() > 0 for _ in range(70)) == 64


@pytest.mark.parametrize("ticket, error, match", [
    (0, ValueError, "0 means refused"),
    (-7, ValueError, "not a ticket"),
    (1 << 7, ValueError, "not a ticket"),      # kind 0
    (3, ValueError, "not a ticket"),           # probe slot 1 with half_open_probes=1
    (2**63, OverflowError, None),
    (1.0, TypeError, None),
    ("1", TypeError, None),
])
def test_reports_reject_what_cannot_be_a_ticket(breaker_cls, clock, ticket, error, match):
    breaker = breaker_cls(clock=clock)
    with pytest.raises(error, match=match):
        breaker.record_success(ticket)
    with pytest.raises(error, match=match):
        breaker.record_failure(ticket)
    assert counters(breaker) == dict.fromkeys(COUNTER_NAMES, 0)


def test_reason_must_be_a_string(breaker_cls, clock):
    breaker = breaker_cls(clock=clock)
    with pytest.raises(TypeError, match="reason must be a str"):
        breaker.record_failure(breaker.allow(), reason=14)
    assert counters(breaker)["failures"] == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e13])
def test_a_clock_that_returns_nonsense_is_an_error(breaker_cls, clock, bad):
    breaker = breaker_cls(failure_threshold=1, clock=clock)
    fail(breaker, 1)
    clock.now = bad
    with pytest.raises(ValueError, match="clock\\(\\) returned"):
        breaker.allow()
    with pytest.raises(ValueError, match="clock\\(\\) returned"):
        breaker.snapshot()


def test_the_default_clock_is_monotonic(breaker_cls):
    breaker = breaker_cls()
    ticket = breaker.allow()
    breaker.record_success(ticket)
    assert counters(breaker)["successes"] == 1


# -- selection ---------------------------------------------------------------------------

SELECTION_PROBE = """
import otlpd.breaker as chosen, otlpd.breaker_py as twin
found = chosen.implementations()
assert found["python"] is twin.CircuitBreaker
assert chosen.CircuitBreaker is found[chosen.IMPLEMENTATION]
print(chosen.IMPLEMENTATION, chosen.CircuitBreaker.__module__)
"""


def selected_in_a_fresh_interpreter(pure_python: bool) -> list[str]:
    """[IMPLEMENTATION, module of CircuitBreaker] as otlpd.breaker chooses them at import."""
    env = {key: value for key, value in os.environ.items() if key != "OTLPD_PURE_PYTHON"}
    env.update({"OTLPD_PURE_PYTHON": "1"} if pure_python else {})
    done = subprocess.run([sys.executable, "-c", SELECTION_PROBE], env=env, text=True,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_selection_by_environment(breaker_cls):
    """otlpd.breaker picks Cython unless OTLPD_PURE_PYTHON=1."""
    pure_python = not is_cython(breaker_cls)
    assert selected_in_a_fresh_interpreter(pure_python) == [
        "python" if pure_python else "cython", breaker_cls.__module__]


# -- the lock budget ----------------------------------------------------------------------

def test_each_operation_takes_the_lock_at_most_once(breaker_cls, clock):
    breaker = breaker_cls(failure_threshold=1, clock=clock)

    def taken(operation, *args):
        before = breaker.lock_acquisitions
        result = operation(*args)
        return breaker.lock_acquisitions - before, result

    closed_allow, ticket = taken(breaker.allow)
    assert closed_allow == (0 if is_cython(breaker_cls) else 1)
    assert taken(breaker.record_success, ticket)[0] == 1
    assert taken(breaker.record_failure, breaker.allow())[0] == 1  # and it opens
    assert taken(breaker.allow) == (1, 0)
    assert taken(breaker.retry_after)[0] == 1
    assert taken(breaker.snapshot)[0] == 1
    clock.advance(1.0)
    assert taken(lambda: breaker.state) == (1, HALF_OPEN)
    probe_allow, probe = taken(breaker.allow)
    assert (probe_allow, probe > 0) == (1, True)
    assert taken(breaker.record_success, probe)[0] == 1
    assert taken(lambda: breaker.state)[0] == (0 if is_cython(breaker_cls) else 1)


class CountingLock:
    """A lock that counts how often it is taken (for the one-lock-per-field model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquisitions = 0

    def __enter__(self):
        self._lock.acquire()
        self.acquisitions += 1
        return self

    def __exit__(self, *exc_info):
        self._lock.release()


class PerFieldLockBreaker:
    """The design the breaker replaces: four locks, one per field group (state, counters,
    window, timers), each taken around the fields it guards, as the original system did.

    Only what the cycle below exercises: consecutive failures, the open timeout, one
    probe. Its decisions match the real breaker's for that cycle (asserted); what it is
    for is ``lock_acquisitions``, the sum over its four locks.
    """

    def __init__(self, failure_threshold: int, open_timeout: float, clock) -> None:
        self.failure_threshold, self.open_timeout, self.clock = failure_threshold, open_timeout, clock
        self.locks = {name: CountingLock() for name in ("state", "counters", "window", "timers")}
        self.current = CLOSED
        self.counts = dict.fromkeys(COUNTER_NAMES, 0)
        self.consecutive = 0
        self.open_until = 0.0
        self.probe_out = False

    @property
    def lock_acquisitions(self) -> int:
        return sum(lock.acquisitions for lock in self.locks.values())

    def _set_state(self, state: str) -> None:
        with self.locks["state"]:
            self.current = state

    def allow(self) -> int:
        locks, now = self.locks, self.clock()
        with locks["state"]:
            state = self.current
        if state == OPEN:
            with locks["timers"]:
                passed = now >= self.open_until
            if passed:
                self._set_state(HALF_OPEN)
                state = HALF_OPEN
        granted = state == CLOSED
        if state == HALF_OPEN:
            with locks["timers"]:  # the probe slot and its lease
                granted, self.probe_out = not self.probe_out, True
        with locks["counters"]:
            self.counts["allowed" if granted else "refused"] += 1
        return (2 if state == HALF_OPEN else 1) if granted else 0

    def _report(self, ticket: int, failed: bool) -> None:
        locks = self.locks
        with locks["counters"]:
            self.counts["failures" if failed else "successes"] += 1
        with locks["state"]:
            state = self.current
        if state == CLOSED and ticket == 1:
            with locks["window"]:
                self.consecutive = self.consecutive + 1 if failed else 0
                trip = self.consecutive >= self.failure_threshold
            if trip:
                self._set_state(OPEN)
                with locks["timers"]:
                    self.open_until = self.clock() + self.open_timeout
                with locks["counters"]:
                    self.counts["opened"] += 1
        elif state == HALF_OPEN and ticket == 2 and not failed:
            with locks["timers"]:
                self.probe_out = False
            self._set_state(CLOSED)
            with locks["window"]:
                self.consecutive = 0

    def record_success(self, ticket: int) -> None:
        self._report(ticket, False)

    def record_failure(self, ticket: int, reason: str = "UNAVAILABLE") -> None:
        self._report(ticket, True)


def run_cycle(breaker, clock, threads: int = 8, calls: int = 25) -> list[int]:
    """closed -> open -> half-open -> closed with ``threads`` threads released together at
    each step; returns the number of tickets granted at the half-open step."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    probes: list[int] = []

    def worker(index: int) -> None:
        try:
            for _ in range(calls):  # closed: calls that succeed
                breaker.record_success(breaker.allow())
            barrier.wait(timeout=30)
            ticket = breaker.allow()  # closed: calls that will fail ...
            barrier.wait(timeout=30)
            breaker.record_failure(ticket)  # ... together: the threshold-th opens it
            barrier.wait(timeout=30)
            assert all(breaker.allow() == 0 for _ in range(5)), "allowed while open"
            if barrier.wait(timeout=30) == 0:
                clock.advance(1.0)  # one thread moves time past the open timeout
            barrier.wait(timeout=30)
            probe = breaker.allow()  # half-open: all at once, one gets through
            barrier.wait(timeout=30)
            if probe:
                probes.append(probe)
                breaker.record_success(probe)
            barrier.wait(timeout=30)
            for _ in range(calls):  # closed again
                breaker.record_success(breaker.allow())
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors, errors
    return probes


def test_a_full_cycle_takes_at_most_half_the_locks_of_one_lock_per_field(breaker_cls):
    threads = 8
    ours_clock, model_clock = FakeClock(), FakeClock()
    ours = breaker_cls(failure_threshold=threads, clock=ours_clock)
    model = PerFieldLockBreaker(failure_threshold=threads, open_timeout=1.0, clock=model_clock)
    assert len(run_cycle(ours, ours_clock, threads)) == 1
    taken = ours.lock_acquisitions  # before the snapshots below take theirs
    assert len(run_cycle(model, model_clock, threads)) == 1
    assert [t[:2] for t in transitions(ours)] == [(CLOSED, OPEN), (OPEN, HALF_OPEN),
                                                  (HALF_OPEN, CLOSED)]
    ours_counters = counters(ours)
    assert {name: ours_counters[name] for name in ("allowed", "refused", "successes",
                                                   "failures", "opened")} == {
        name: model.counts[name] for name in ("allowed", "refused", "successes", "failures",
                                              "opened")}
    print(f"lock acquisitions for the cycle: {breaker_cls.__module__} {taken}, "
          f"one lock per field {model.lock_acquisitions} ({taken / model.lock_acquisitions:.0%})")
    assert taken <= model.lock_acquisitions * 0.5


def test_many_threads_through_every_state_keep_the_accounting_exact(breaker_cls):
    """8 threads allow and report at random while one moves the clock, so calls race the
    transitions (Cython: the lock-free closed allow against a thread opening it). Nothing
    may be lost or counted twice, and every transition must follow the state machine."""
    clock = FakeClock()
    breaker = breaker_cls(failure_threshold=3, window_size=8, minimum_calls=4,
                          open_timeout=0.5, max_open_timeout=2.0, half_open_probes=2,
                          probe_lease=3.0, clock=clock)
    threads, rounds = 8, 400
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    calls = [[0, 0] for _ in range(threads)]  # allow() calls, reports
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        rng = random.Random(index)
        try:
            barrier.wait(timeout=30)
            for _ in range(rounds):
                ticket = breaker.allow()
                calls[index][0] += 1
                if ticket:
                    calls[index][1] += 1
                    if rng.random() < 0.4:
                        breaker.record_failure(ticket, reason="UNAVAILABLE")
                    else:
                        breaker.record_success(ticket)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def ticker() -> None:
        barrier.wait(timeout=30)
        while not stop.is_set():
            clock.advance(0.05)
            breaker.snapshot()

    pool = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    clock_thread = threading.Thread(target=ticker)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in [*pool, clock_thread]:
            thread.start()
        for thread in pool:
            thread.join(timeout=120)
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
    clock_thread.join(timeout=30)
    assert not errors, errors
    snapshot = breaker.snapshot()
    c = snapshot["counters"]
    assert c["allowed"] + c["refused"] == sum(made for made, _ in calls) == threads * rounds
    assert c["allowed"] == c["successes"] + c["failures"] == sum(reported for _, reported in calls)
    assert c["opened"] > 0 and c["refused"] > 0, "the run never opened the breaker"
    allowed_moves = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    kept = snapshot["transitions"]
    assert {(t["from"], t["to"]) for t in kept} <= allowed_moves
    assert all(a["to"] == b["from"] for a, b in zip(kept, kept[1:])), "transitions do not chain"
    assert kept[-1]["to"] == snapshot["state"]


# -- Cython == pure-Python twin, step by step -----------------------------------------------

CLOCK_STEPS = st.sampled_from([0.0, 1e-6, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 10.0, 31.0]) | st.floats(0, 40)


def test_same_behaviour_as_the_twin(breaker_cls):
    """Random allow/success/failure/advance-clock sequences: identical tickets, states, snapshots."""

    class SameBehaviour(RuleBasedStateMachine):
        @initialize(
            failure_threshold=st.integers(1, 4),
            failure_rate_threshold=st.sampled_from([0.25, 0.5, 0.6, 1.0]),
            window_size=st.integers(1, 6),
            data=st.data(),
            open_timeout=st.sampled_from([0.5, 1.0, 2.0]),
            cap=st.sampled_from([1.0, 3.0, 8.0]),
            half_open_probes=st.integers(1, 3),
            slow_call_threshold=st.sampled_from([0.75, 5.0, math.inf]),
            probe_lease=st.sampled_from([1.5, 3.0, math.inf]),
            start=st.sampled_from([0.0, 1000.0, 1e9]),
        )
        def create(self, failure_threshold, failure_rate_threshold, window_size, data,
                   open_timeout, cap, half_open_probes, slow_call_threshold, probe_lease, start):
            self.clock = FakeClock(start)
            kwargs = dict(
                failure_threshold=failure_threshold, failure_rate_threshold=failure_rate_threshold,
                window_size=window_size, minimum_calls=data.draw(st.integers(1, window_size)),
                open_timeout=open_timeout, max_open_timeout=open_timeout * cap,
                half_open_probes=half_open_probes, slow_call_threshold=slow_call_threshold,
                probe_lease=probe_lease, clock=self.clock)
            self.impl = breaker_cls(**kwargs)
            self.twin = breaker_py.CircuitBreaker(**kwargs)
            self.outstanding: list[int] = []
            self.reported: list[int] = []
            self.granted = 0
            self.reports = 0

        @rule()
        def allow(self):
            ticket = self.impl.allow()
            assert ticket == self.twin.allow()
            if ticket:
                self.granted += 1
                self.outstanding.append(ticket)

        @precondition(lambda self: self.outstanding)
        @rule(data=st.data(), failed=st.booleans(),
              reason=st.sampled_from(["UNAVAILABLE", "DEADLINE_EXCEEDED", "ünïcode" * 10]))
        def report(self, data, failed, reason):
            ticket = self.outstanding.pop(data.draw(st.integers(0, len(self.outstanding) - 1)))
            self.reported.append(ticket)
            self.reports += 1
            for breaker in (self.impl, self.twin):
                if failed:
                    breaker.record_failure(ticket, reason=reason)
                else:
                    breaker.record_success(ticket)

        @precondition(lambda self: self.reported)
        @rule(data=st.data())
        def report_again(self, data):
            ticket = data.draw(st.sampled_from(self.reported))
            self.reports += 1
            self.impl.record_success(ticket)
            self.twin.record_success(ticket)

        @rule(seconds=CLOCK_STEPS)
        def advance(self, seconds):
            self.clock.advance(seconds)

        @rule()
        def look(self):
            assert self.impl.state == self.twin.state
            assert self.impl.retry_after() == self.twin.retry_after()

        @invariant()
        def same_snapshots(self):
            snapshot = self.impl.snapshot()
            assert snapshot == self.twin.snapshot()
            c = snapshot["counters"]
            assert c["allowed"] == self.granted
            assert c["successes"] + c["failures"] == self.reports  # each report counted once
            assert c["slow_calls"] <= c["failures"]
            assert c["opened"] == sum(t["to"] == OPEN for t in snapshot["transitions"]) or len(
                snapshot["transitions"]) == TRANSITIONS_KEPT
            assert (snapshot["retry_after"] > 0) == (snapshot["state"] == OPEN)
            assert snapshot["open_timeout"] <= self.twin._settings.max_open_timeout

    run_state_machine_as_test(
        SameBehaviour,
        settings=settings(max_examples=150, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
