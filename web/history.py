"""The last minutes of the counters, sampled once a second, for the live chart and the health banner.

The sampler thread belongs to the web side: it reads ``Source.snapshot()`` like
any page does, so a browser opened late still sees the last minutes at once,
and "is a signal rejecting right now?" has an answer without a client polling.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from otlpd import schema
from otlpd.web.summary import summarize

SERIES = ("received_items", "written_items", "rejected_items")
REJECTING_WINDOW = 10.0  # seconds: a signal that refused rows this recently is "rejecting"


class History:
    """A ring of (time, {signal: {series: total}}) samples; thread-safe."""

    def __init__(self, source, interval: float = 1.0, keep: float = 600.0,
                 clock: Callable[[], float] = time.time):
        self._source = source
        self.interval = interval
        self._clock = clock
        self._samples: collections.deque = collections.deque(maxlen=max(2, int(keep / interval) + 1))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now (the thread calls this every ``interval``)."""
        summary = summarize(self._source.snapshot())
        totals = {signal: {"received_items": summary[signal]["received_items"],
                           "written_items": summary[signal]["written_items"],
                           "rejected_items": sum(summary[signal]["rejected_items"].values()),
                           "rejected_requests": dict(summary[signal]["rejected_requests"])}
                  for signal in schema.SIGNALS}
        with self._lock:
            self._samples.append((self._clock(), totals))

    def rates(self, seconds: float = 600.0) -> dict[str, Any]:
        """Per-second rates between consecutive samples of the last ``seconds``, columnar
        (``time`` and one list per ``<signal>.<series>``), as a chart library wants them."""
        with self._lock:
            samples = list(self._samples)
        if samples:
            samples = [s for s in samples if s[0] >= samples[-1][0] - seconds - self.interval]
        result: dict[str, Any] = {"interval": self.interval, "time": [],
                                  "series": {f"{signal}.{name}": [] for signal in schema.SIGNALS
                                             for name in SERIES}}
        for (t0, before), (t1, after) in zip(samples, samples[1:]):
            span = max(t1 - t0, 1e-9)
            result["time"].append(t1)
            for signal in schema.SIGNALS:
                for name in SERIES:
                    delta = max(0, after[signal][name] - before[signal][name])
                    result["series"][f"{signal}.{name}"].append(delta / span)
        return result

    def rejecting(self, window: float = REJECTING_WINDOW) -> dict[str, dict[str, int]]:
        """``{signal: {reason: requests refused}}`` for signals that refused requests in the
        last ``window`` seconds."""
        with self._lock:
            samples = list(self._samples)
        if len(samples) < 2:
            return {}
        latest_time, latest = samples[-1]
        baseline = samples[0][1]
        for moment, totals in samples:
            if moment >= latest_time - window:
                break
            baseline = totals
        result = {}
        for signal in schema.SIGNALS:
            before = baseline[signal]["rejected_requests"]
            refused = {reason: count - before.get(reason, 0)
                       for reason, count in latest[signal]["rejected_requests"].items()
                       if count > before.get(reason, 0)}
            if refused:
                result[signal] = refused
        return result

    # -- the sampler thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otlpd-dashboard-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a worker restarting must not end the sampler
                pass
            self._stop.wait(self.interval)
