"""Healthy or degraded (the banner) and ready or not (``/readyz``), from one snapshot's summary."""
from __future__ import annotations

from typing import Any

from otlpd import schema


def health(summary: dict[str, dict[str, Any]], rejecting: dict[str, dict[str, int]], serving: bool) -> dict[str, Any]:
    """``{"status": "healthy" | "degraded", "ready": bool, "reasons": [...]}`` from a
    snapshot's :func:`~otlpd.web.summary.summarize`.

    Degraded: a writer failed its last write or stopped, a signal refused requests in
    the last seconds (``rejecting``), or the receiver is not serving. Not ready: the
    same, except refusals of invalid or oversized requests (the client's fault, not
    ours): a full buffer does make otlpd unready, so a load balancer sends elsewhere.
    """
    reasons: list[str] = []
    unready: list[str] = []
    if not serving:
        reasons.append("the OTLP receiver is not serving")
        unready.append(reasons[-1])
    for signal in schema.SIGNALS:
        item = summary[signal]
        for error in item["writer_errors"]:
            reasons.append(f"{signal} writer: {error}")
            unready.append(reasons[-1])
        if not item["writer_running"]:
            reasons.append(f"{signal} writer is not running")
            unready.append(reasons[-1])
        refused = rejecting.get(signal)
        if refused:
            causes = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(refused.items()))
            reasons.append(f"{signal}: requests refused in the last seconds ({causes})")
            if refused.get("buffer_full") or refused.get("out_of_memory"):
                unready.append(reasons[-1])
    return {"status": "degraded" if reasons else "healthy", "ready": not unready,
            "reasons": reasons, "unready_reasons": unready}
