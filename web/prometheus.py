"""A prometheus-client collector that reads the status snapshot at scrape time.

Nothing is counted twice: every value is the daemon's own counter, read through
:func:`otlpd.web.summary.summarize` like the overview page reads it.
"""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from otlpd import schema
from otlpd.web import forwarding
from otlpd.web.summary import summarize

# (summary key, metric name without _total, help)
COUNTERS = (
    ("received_items", "otlpd_received_items", "Rows received (accepted plus rejected)"),
    ("accepted_items", "otlpd_accepted_items", "Rows accepted into the buffer (acknowledged)"),
    ("written_items", "otlpd_written_items", "Rows written to Arrow files"),
    ("written_bytes", "otlpd_written_bytes", "Bytes of completed Arrow files"),
    ("requests", "otlpd_requests", "Export requests received"),
    ("request_bytes", "otlpd_request_bytes", "Bytes of Export requests received (after decompression)"),
    ("files_rotated", "otlpd_files_rotated", "Files completed (rotated)"),
    ("files_deleted", "otlpd_files_deleted", "Completed files deleted by retention"),
    ("bytes_deleted", "otlpd_deleted_bytes", "Bytes of completed files deleted by retention"),
    ("write_errors", "otlpd_write_errors", "Failed writes (retried)"),
)
GAUGES = (
    ("buffer_bytes", "otlpd_buffer_bytes", "Decoded bytes in the buffer (waiting and being written)"),
    ("buffer_items", "otlpd_buffer_items", "Rows in the buffer (waiting and being written)"),
    ("buffer_max_bytes", "otlpd_buffer_max_bytes", "Bound of the buffer in bytes (buffer.max_bytes)"),
    ("buffer_max_items", "otlpd_buffer_max_items", "Bound of the buffer in rows (buffer.max_items)"),
)


class StatusCollector:
    """Collects from one :class:`~otlpd.web.app.WebContext` (its source, data and health)."""

    def __init__(self, ctx):
        self._ctx = ctx

    def collect(self):
        snapshot = self._ctx.source.snapshot()
        summary = summarize(snapshot)
        info = InfoMetricFamily("otlpd", "otlpd build and endpoints")
        info.add_metric([], {"version": self._ctx.source.version,
                             "grpc_endpoint": self._ctx.source.grpc_endpoint or ""})
        yield info
        uptime = GaugeMetricFamily("otlpd_uptime_seconds", "Seconds since otlpd started")
        uptime.add_metric([], snapshot.get("uptime_seconds", 0.0))
        yield uptime
        ready = GaugeMetricFamily("otlpd_ready", "1 when /readyz answers 200")
        ready.add_metric([], 1.0 if self._ctx.health(summary)["ready"] else 0.0)
        yield ready
        for key, name, text in COUNTERS:
            family = CounterMetricFamily(name, text, labels=["signal"])
            for signal in schema.SIGNALS:
                family.add_metric([signal], summary[signal][key])
            yield family
        for key, name, text in GAUGES:
            family = GaugeMetricFamily(name, text, labels=["signal"])
            for signal in schema.SIGNALS:
                family.add_metric([signal], summary[signal][key])
            yield family
        for unit in ("items", "requests"):
            family = CounterMetricFamily(f"otlpd_rejected_{unit}", f"{unit.capitalize()} refused, by reason",
                                         labels=["signal", "reason"])
            for signal in schema.SIGNALS:
                for reason, count in sorted(summary[signal][f"rejected_{unit}"].items()):
                    family.add_metric([signal, reason], count)
            yield family
        disk = GaugeMetricFamily("otlpd_disk_bytes", "Bytes on disk: completed files and files in progress",
                                 labels=["signal", "state"])
        files = GaugeMetricFamily("otlpd_completed_files", "Completed files on disk", labels=["signal"])
        for signal in schema.SIGNALS:
            usage = self._ctx.data.disk_usage(signal)
            disk.add_metric([signal, "completed"], usage["completed_bytes"])
            disk.add_metric([signal, "in_progress"], usage["in_progress_bytes"])
            files.add_metric([signal], usage["completed_files"])
        yield disk
        yield files
        yield from forwarding.collect(snapshot)
