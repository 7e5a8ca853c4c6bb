"""BatchBuffer: the contract, concurrency, and Cython == pure-Python twin.

Every test runs against both implementations through the `buffer_cls` fixture
(tests/conftest.py). The specification is otlpd/buffer_py.py.
"""
from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import threading
import time
import weakref
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from otlpd import buffer as buffer_module
from otlpd import buffer_py
from otlpd.buffer_py import BatchTooLarge, BufferFull

INT64_MAX = 2**63 - 1
STATS_KEYS = {
    "pending_items", "pending_bytes", "held_items", "held_bytes",
    "accepted_batches", "accepted_items", "accepted_bytes",
    "rejected_batches", "rejected_items", "rejected_bytes",
    "drained_batches", "max_bytes", "max_items",
}


class Payload:
    """A small object that supports weak references (object() does not)."""

    __slots__ = ("key", "nbytes", "nitems", "__weakref__")

    def __init__(self, key=None, nbytes=0, nitems=0):
        self.key = key
        self.nbytes = nbytes
        self.nitems = nitems

    def __repr__(self):
        return f"Payload({self.key!r})"


def outcome(func, *args, **kwargs):
    """("ok", result) or ("raise", exception class, message).

    The exception is not kept, so its traceback (whose frames reference the
    pushed object in the pure-Python implementation) does not skew refcounts.
    """
    try:
        return ("ok", func(*args, **kwargs))
    except Exception as error:  # noqa: BLE001 - compared, not swallowed
        return ("raise", type(error), str(error))


# -- basic contract ------------------------------------------------------------


def test_push_returns_pending_items_and_drain_keeps_order(buffer_cls):
    buf = buffer_cls(max_bytes=1000, max_items=100)
    batches = [Payload(i) for i in range(5)]
    returned = [buf.push(batch, 10 * (i + 1), i) for i, batch in enumerate(batches)]
    assert returned == [0, 1, 3, 6, 10]
    assert buf.pending_items == 10
    assert buf.pending_bytes == 150
    drained = buf.drain()
    assert type(drained) is list
    assert len(drained) == 5 and all(a is b for a, b in zip(drained, batches))
    assert buf.pending_items == 0 and buf.pending_bytes == 0
    assert buf.drain() == []


def test_many_batches_grow_the_array_and_keep_order(buffer_cls):
    buf = buffer_cls(max_bytes=10**9, max_items=10**9)
    batches = [Payload(i) for i in range(10_000)]
    for batch in batches:
        buf.push(batch, 3, 1)
    drained = buf.drain()
    assert len(drained) == len(batches)
    assert all(a is b for a, b in zip(drained, batches))
    for batch in batches[:100]:  # and again after the array was handed over
        buf.push(batch, 3, 1)
    assert [p.key for p in buf.drain()] == list(range(100))


def test_properties_and_stats(buffer_cls):
    buf = buffer_cls(100, 10)
    assert (buf.max_bytes, buf.max_items) == (100, 10)
    stats = buf.stats()
    assert set(stats) == STATS_KEYS
    assert stats == dict.fromkeys(STATS_KEYS, 0) | {"max_bytes": 100, "max_items": 10}
    assert all(type(value) is int for value in stats.values())

    buf.push(Payload(), 60, 4)
    buf.push(Payload(), 40, 6)
    assert outcome(buf.push, Payload(), 1, 0)[1] is BufferFull   # bytes bound
    assert outcome(buf.push, Payload(), 101, 1)[1] is BatchTooLarge
    assert buf.stats() == {
        "pending_items": 10, "pending_bytes": 100, "held_items": 0, "held_bytes": 0,
        "accepted_batches": 2, "accepted_items": 10, "accepted_bytes": 100,
        "rejected_batches": 2, "rejected_items": 1, "rejected_bytes": 102,
        "drained_batches": 0, "max_bytes": 100, "max_items": 10,
    }
    assert len(buf.drain()) == 2
    buf.push(Payload(), 5, 1)
    assert buf.stats() == {
        "pending_items": 1, "pending_bytes": 5, "held_items": 0, "held_bytes": 0,
        "accepted_batches": 3, "accepted_items": 11, "accepted_bytes": 105,
        "rejected_batches": 2, "rejected_items": 1, "rejected_bytes": 102,
        "drained_batches": 2, "max_bytes": 100, "max_items": 10,
    }


def test_read_only_properties(buffer_cls):
    buf = buffer_cls(100, 10)
    for name in ("max_bytes", "max_items", "pending_bytes", "pending_items"):
        with pytest.raises(AttributeError):
            setattr(buf, name, 1)
    assert (buf.max_bytes, buf.max_items) == (100, 10)


@pytest.mark.parametrize("max_bytes, max_items", [(0, 1), (1, 0), (-1, 5), (5, -1), (0, 0)])
def test_constructor_rejects_non_positive_bounds(buffer_cls, max_bytes, max_items):
    with pytest.raises(ValueError):
        buffer_cls(max_bytes, max_items)


@pytest.mark.parametrize("nbytes, nitems, error", [
    (-1, 0, ValueError),
    (0, -1, ValueError),
    (1.5, 1, TypeError),      # no silent truncation of floats
    (1, "2", TypeError),
    (None, 1, TypeError),
    (2**63, 1, OverflowError),
    (1, -(2**64), OverflowError),
])
def test_push_rejects_bad_sizes_without_counting_them(buffer_cls, nbytes, nitems, error):
    buf = buffer_cls(100, 10)
    with pytest.raises(error):
        buf.push(Payload(), nbytes, nitems)
    assert buf.stats()["rejected_batches"] == 0
    assert buf.stats()["accepted_batches"] == 0


def test_buffer_full_on_bytes_bound(buffer_cls):
    buf = buffer_cls(max_bytes=100, max_items=1000)
    assert buf.push(Payload(), 70, 1) == 1
    assert outcome(buf.push, Payload(), 31, 1)[:2] == ("raise", BufferFull)
    assert buf.push(Payload(), 30, 1) == 2          # exactly at the bound fits
    assert buf.pending_bytes == 100
    assert outcome(buf.push, Payload(), 1, 0)[:2] == ("raise", BufferFull)
    assert buf.stats()["rejected_batches"] == 2


def test_buffer_full_on_items_bound(buffer_cls):
    buf = buffer_cls(max_bytes=10**6, max_items=10)
    assert buf.push(Payload(), 1, 7) == 7
    assert outcome(buf.push, Payload(), 1, 4)[:2] == ("raise", BufferFull)
    assert buf.push(Payload(), 1, 3) == 10
    assert outcome(buf.push, Payload(), 0, 1)[:2] == ("raise", BufferFull)
    assert buf.pending_items == 10
    assert buf.stats()["rejected_items"] == 5


def test_empty_batch_always_fits(buffer_cls):
    buf = buffer_cls(10, 1)
    buf.push(Payload(), 10, 1)
    assert buf.push(Payload(), 0, 0) == 1
    assert len(buf.drain()) == 2


@pytest.mark.parametrize("nbytes, nitems", [(101, 0), (0, 11), (101, 11), (INT64_MAX, INT64_MAX)])
def test_batch_too_large_is_a_buffer_full_even_when_empty(buffer_cls, nbytes, nitems):
    buf = buffer_cls(100, 10)
    result = outcome(buf.push, Payload(), nbytes, nitems)
    assert result[:2] == ("raise", BatchTooLarge)
    assert issubclass(BatchTooLarge, BufferFull)
    stats = buf.stats()
    assert (stats["rejected_batches"], stats["rejected_bytes"], stats["rejected_items"]) == (1, nbytes, nitems)
    assert stats["pending_items"] == stats["pending_bytes"] == stats["accepted_batches"] == 0


def test_bounds_checks_cannot_overflow(buffer_cls):
    buf = buffer_cls(INT64_MAX, INT64_MAX)
    buf.push(Payload(), INT64_MAX - 1, INT64_MAX - 1)
    assert outcome(buf.push, Payload(), 2, 0)[:2] == ("raise", BufferFull)
    assert outcome(buf.push, Payload(), 0, 2)[:2] == ("raise", BufferFull)
    assert buf.push(Payload(), 1, 1) == INT64_MAX
    assert (buf.pending_bytes, buf.pending_items) == (INT64_MAX, INT64_MAX)


def test_usable_after_drain(buffer_cls):
    buf = buffer_cls(100, 10)
    for round_ in range(3):
        buf.push(Payload((round_, 0)), 60, 5)
        buf.push(Payload((round_, 1)), 40, 5)
        assert outcome(buf.push, Payload(), 1, 0)[1] is BufferFull
        assert [p.key for p in buf.drain()] == [(round_, 0), (round_, 1)]
    assert buf.stats()["drained_batches"] == 6


def test_exceptions_are_shared_by_both_implementations(buffer_cls):
    assert buffer_module.BufferFull is BufferFull
    assert buffer_module.BatchTooLarge is BatchTooLarge
    buf = buffer_cls(1, 1)
    buf.push(Payload(), 1, 1)
    with pytest.raises(buffer_module.BufferFull, match="buffer full"):
        buf.push(Payload(), 1, 1)
    with pytest.raises(buffer_module.BatchTooLarge, match="can never fit"):
        buf.push(Payload(), 2, 1)


def test_refcounts_follow_ownership(buffer_cls):
    buf = buffer_cls(100, 10)
    obj = Payload()
    base = sys.getrefcount(obj)
    buf.push(obj, 10, 1)
    assert sys.getrefcount(obj) == base + 1            # the buffer owns one reference
    assert outcome(buf.push, obj, 1000, 1)[1] is BatchTooLarge
    assert sys.getrefcount(obj) == base + 1            # a rejected push keeps none
    buf.push(obj, 90, 1)
    assert outcome(buf.push, obj, 1, 1)[1] is BufferFull
    assert sys.getrefcount(obj) == base + 2
    with pytest.raises(ValueError):
        buf.push(obj, -1, 1)
    assert sys.getrefcount(obj) == base + 2
    drained = buf.drain()
    assert sys.getrefcount(obj) == base + 2            # handed over to the list
    del drained
    assert sys.getrefcount(obj) == base                # nothing left in the buffer


def test_objects_released_after_drain_and_after_deletion(buffer_cls):
    buf = buffer_cls(1000, 100)
    drained_obj, pending_obj = Payload("drained"), Payload("pending")
    drained_ref, pending_ref = weakref.ref(drained_obj), weakref.ref(pending_obj)
    buf.push(drained_obj, 1, 1)
    del drained_obj
    drained = buf.drain()
    buf.push(pending_obj, 1, 1)
    del pending_obj
    assert drained_ref() is not None and pending_ref() is not None
    del drained
    assert drained_ref() is None                       # the buffer kept no reference
    assert pending_ref() is not None
    del buf                                            # dropping a buffer releases its batches
    gc.collect()
    assert pending_ref() is None


def test_selection_by_environment(buffer_cls):
    """otlpd.buffer picks Cython unless OTLPD_PURE_PYTHON=1 (checked in a fresh interpreter)."""
    want = "python" if buffer_cls is buffer_py.BatchBuffer else "cython"
    env = dict(os.environ)
    env.pop("OTLPD_PURE_PYTHON", None)
    if want == "python":
        env["OTLPD_PURE_PYTHON"] = "1"
    code = (
        "import otlpd.buffer as b, otlpd.buffer_py as p\n"
        "impls = b.implementations()\n"
        "assert impls['python'] is p.BatchBuffer and b.BatchBuffer is impls[b.IMPLEMENTATION]\n"
        "assert b.BufferFull is p.BufferFull and b.BatchTooLarge is p.BatchTooLarge\n"
        "try:\n"
        "    import otlpd._buffer\n"
        "except ImportError:\n"
        "    built = False\n"
        "else:\n"
        "    built = True\n"
        "# implementations() lists every importable one, whichever is selected.\n"
        "assert ('cython' in impls) == built, (impls, built)\n"
        "print(b.IMPLEMENTATION, b.BatchBuffer.__module__)\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    implementation, module = result.stdout.split()
    assert implementation == want
    assert module == buffer_cls.__module__


# -- concurrency ---------------------------------------------------------------

PRODUCERS = 128
PUSHES_PER_PRODUCER = 200
TIME_LIMIT = 5.0  # cap on the pushing phase; it normally takes 0.3-2 s


def test_many_producers_one_consumer(buffer_cls):
    """128 producers, one draining consumer, one stats checker, all started together.

    Checks bounds in every stats snapshot and every drain, then exact
    accounting: every accepted batch drained exactly once and in its
    producer's order, counters equal to what the threads saw. Under the GIL
    races are rare, so this mostly proves the accounting; on a free-threaded
    build it also exercises the lock for real.
    """
    max_bytes, max_items = 60_000, 3_000
    buf = buffer_cls(max_bytes, max_items)
    barrier = threading.Barrier(PRODUCERS + 2)
    producers_done = threading.Event()
    errors: list[str] = []
    accepted: list[list[Payload]] = [[] for _ in range(PRODUCERS)]
    rejected: list[list[Payload]] = [[] for _ in range(PRODUCERS)]
    attempts = [0] * PRODUCERS
    too_large = [0] * PRODUCERS
    drained: list[Payload] = []
    drains_with_batches = [0]
    deadline = [0.0]

    def guarded(body):
        def run(*args):
            try:
                body(*args)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(f"{threading.current_thread().name}: {error!r}")
                barrier.abort()
        return run

    def producer(index):
        rng = random.Random(index)
        barrier.wait()
        for seq in range(PUSHES_PER_PRODUCER):
            if time.monotonic() > deadline[0]:
                break
            if rng.random() < 0.01:   # now and then a batch that can never fit
                item = Payload((index, seq), max_bytes + 1, rng.randint(0, 50))
            else:
                item = Payload((index, seq), rng.randint(0, 1500), rng.randint(0, 50))
            attempts[index] += 1
            try:
                pending = buf.push(item, item.nbytes, item.nitems)
            except BatchTooLarge:
                too_large[index] += 1
                rejected[index].append(item)
            except BufferFull:
                rejected[index].append(item)
                time.sleep(0)   # "retry later", as clients are told; lets the consumer in
            else:
                accepted[index].append(item)
                if not item.nitems <= pending <= max_items:
                    errors.append(f"push returned {pending} pending items")

    def check_drained(batch):
        total_bytes = sum(item.nbytes for item in batch)
        total_items = sum(item.nitems for item in batch)
        if total_bytes > max_bytes or total_items > max_items:
            errors.append(f"drained {total_bytes} bytes / {total_items} items: bound exceeded")
        drained.extend(batch)
        drains_with_batches[0] += bool(batch)

    def consumer():
        barrier.wait()
        while not producers_done.is_set():
            check_drained(buf.drain())
            time.sleep(0.002)   # let the buffer fill up now and then
        check_drained(buf.drain())

    def checker():
        barrier.wait()
        previous = buf.stats()
        while not producers_done.is_set():
            stats = buf.stats()
            if stats["pending_bytes"] > max_bytes or stats["pending_items"] > max_items:
                errors.append(f"bound exceeded in snapshot {stats}")
            if stats["drained_batches"] > stats["accepted_batches"]:
                errors.append(f"drained more than accepted in snapshot {stats}")
            for key in STATS_KEYS - {"pending_items", "pending_bytes"}:
                if stats[key] < previous[key]:
                    errors.append(f"{key} went down: {previous[key]} -> {stats[key]}")
            previous = stats
            time.sleep(0)

    threads = [threading.Thread(target=guarded(producer), args=(i,), name=f"producer-{i}")
               for i in range(PRODUCERS)]
    consumer_thread = threading.Thread(target=guarded(consumer), name="consumer")
    checker_thread = threading.Thread(target=guarded(checker), name="checker")
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)   # more interleaving for the pure-Python implementation
    try:
        deadline[0] = time.monotonic() + TIME_LIMIT
        for thread in [*threads, consumer_thread, checker_thread]:
            thread.start()
        for thread in threads:
            thread.join(timeout=TIME_LIMIT + 10)
        producers_done.set()
        consumer_thread.join(timeout=10)
        checker_thread.join(timeout=10)
    finally:
        producers_done.set()
        sys.setswitchinterval(old_interval)
    assert not [t.name for t in [*threads, consumer_thread, checker_thread] if t.is_alive()]
    assert not errors, errors[:10]

    all_accepted = [item for items in accepted for item in items]
    all_rejected = [item for items in rejected for item in items]
    # Every accepted object drained exactly once, nothing else drained.
    drained_keys = [item.key for item in drained]
    assert len(drained_keys) == len(set(drained_keys)), "a batch was drained twice"
    assert set(drained_keys) == {item.key for item in all_accepted}, "lost or foreign batches"
    assert all(a is b for a, b in zip(
        sorted(drained, key=lambda p: p.key), sorted(all_accepted, key=lambda p: p.key)))
    # Each producer's batches come out in the order it pushed them.
    order = defaultdict(list)
    for item in drained:
        order[item.key[0]].append(item.key[1])
    assert all(seqs == sorted(seqs) for seqs in order.values())

    stats = buf.stats()
    assert len(all_accepted) + len(all_rejected) == sum(attempts)
    assert stats["accepted_batches"] == len(all_accepted)
    assert stats["rejected_batches"] == len(all_rejected)
    assert stats["accepted_items"] == sum(item.nitems for item in all_accepted)
    assert stats["accepted_bytes"] == sum(item.nbytes for item in all_accepted)
    assert stats["rejected_items"] == sum(item.nitems for item in all_rejected)
    assert stats["rejected_bytes"] == sum(item.nbytes for item in all_rejected)
    assert stats["drained_batches"] == len(drained)
    assert stats["pending_items"] == stats["pending_bytes"] == 0
    # The run really exercised every path.
    assert sum(too_large) > 0
    assert len(all_rejected) > sum(too_large), "the buffer never filled up"
    assert len(all_accepted) > 0 and drains_with_batches[0] > 1


# -- Cython == pure-Python twin == model, operation by operation --------------------

SMALL = st.integers(min_value=0, max_value=40) | st.integers(min_value=0, max_value=130)
HUGE = st.integers(min_value=0, max_value=2**56)  # sums stay far below 2**64


class ModelBuffer:
    """The contract in a dozen lines, to check the twin itself too."""

    def __init__(self, max_bytes, max_items):
        self.max_bytes, self.max_items = max_bytes, max_items
        self.pending: list = []
        self.counters = dict.fromkeys(STATS_KEYS - {"max_bytes", "max_items"}, 0)

    def push(self, batch, nbytes, nitems):
        c = self.counters
        if nbytes > self.max_bytes or nitems > self.max_items:
            kind = BatchTooLarge
        elif (c["pending_bytes"] + nbytes > self.max_bytes
              or c["pending_items"] + nitems > self.max_items):
            kind = BufferFull
        else:
            self.pending.append(batch)
            for prefix in ("pending", "accepted"):
                c[f"{prefix}_bytes"] += nbytes
                c[f"{prefix}_items"] += nitems
            c["accepted_batches"] += 1
            return ("ok", c["pending_items"])
        c["rejected_batches"] += 1
        c["rejected_bytes"] += nbytes
        c["rejected_items"] += nitems
        return ("raise", kind)

    def drain(self):
        batches, self.pending = self.pending, []
        self.counters.update(pending_bytes=0, pending_items=0)
        self.counters["drained_batches"] += len(batches)
        return batches

    def stats(self):
        return self.counters | {"max_bytes": self.max_bytes, "max_items": self.max_items}


def test_same_behaviour_as_twin_and_model(buffer_cls):
    """Random push/drain sequences: identical results, exceptions (and messages), stats."""

    class SameBehaviour(RuleBasedStateMachine):
        # Large bounds stay far enough below 2**63 that the cumulative counters
        # cannot wrap within a run (see test_bounds_checks_cannot_overflow for
        # bounds at INT64_MAX).
        @initialize(max_bytes=st.integers(1, 100) | st.just(2**50),
                    max_items=st.integers(1, 12) | st.just(2**50))
        def create(self, max_bytes, max_items):
            self.impl = buffer_cls(max_bytes, max_items)
            self.twin = buffer_py.BatchBuffer(max_bytes, max_items)
            self.model = ModelBuffer(max_bytes, max_items)
            self.serial = 0

        @rule(nbytes=SMALL | HUGE, nitems=st.integers(0, 15) | HUGE)
        def push(self, nbytes, nitems):
            self.serial += 1
            batch = Payload(self.serial)
            got = outcome(self.impl.push, batch, nbytes, nitems)
            assert got == outcome(self.twin.push, batch, nbytes, nitems)
            assert got[:2] == self.model.push(batch, nbytes, nitems)

        @rule(data=st.data(), dbytes=st.integers(-2, 2), ditems=st.integers(-2, 2))
        def push_near_the_bounds(self, data, dbytes, ditems):
            # Sizes just below, at and just above what is left: the off-by-one zone.
            stats = self.twin.stats()
            room_bytes = stats["max_bytes"] - stats["pending_bytes"]
            room_items = stats["max_items"] - stats["pending_items"]
            nbytes = data.draw(st.sampled_from([max(0, room_bytes + dbytes), 0, 1]))
            nitems = data.draw(st.sampled_from([max(0, room_items + ditems), 0, 1]))
            self.push(nbytes, nitems)

        @rule(nbytes=st.integers(-(2**64), 2**64), nitems=st.integers(-3, 3))
        def push_maybe_invalid(self, nbytes, nitems):
            # Out-of-range or negative sizes: same exception, nothing counted.
            got = outcome(self.impl.push, "x", nbytes, nitems)
            assert got == outcome(self.twin.push, "x", nbytes, nitems)
            if got[0] == "ok" or got[1] in (BufferFull, BatchTooLarge):
                assert got[:2] == self.model.push("x", nbytes, nitems)

        @rule()
        def drain(self):
            got, twin, model = self.impl.drain(), self.twin.drain(), self.model.drain()
            assert len(got) == len(twin) == len(model)
            assert all(a is b is c for a, b, c in zip(got, twin, model))

        @invariant()
        def same_observations(self):
            stats = self.impl.stats()
            assert stats == self.twin.stats() == self.model.stats()
            assert (self.impl.pending_items, self.impl.pending_bytes) == (
                stats["pending_items"], stats["pending_bytes"])
            assert stats["pending_bytes"] <= stats["max_bytes"]
            assert stats["pending_items"] <= stats["max_items"]

    run_state_machine_as_test(
        SameBehaviour,
        settings=settings(max_examples=100, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )


def test_held_batches_count_against_the_bounds_until_released(buffer_cls):
    buffer = buffer_cls(100, 10)
    buffer.push("a", 60, 4)
    assert buffer.drain(hold=True) == ["a"]
    stats = buffer.stats()
    assert (stats["pending_bytes"], stats["held_bytes"], stats["held_items"]) == (0, 60, 4)
    with pytest.raises(BufferFull, match="pending or held"):
        buffer.push("b", 50, 1)  # 60 held + 50 > 100
    assert buffer.push("c", 40, 6) == 6
    assert buffer.drain(hold=True) == ["c"]
    assert buffer.stats()["held_bytes"] == 100
    assert buffer.free_bytes == 0
    buffer.release_held()
    assert buffer.free_bytes == 100
    assert buffer.stats()["held_bytes"] == buffer.stats()["held_items"] == 0
    assert buffer.push("d", 100, 10) == 10
    assert buffer.drain() == ["d"]  # without hold nothing stays counted
    assert buffer.stats()["held_bytes"] == 0
