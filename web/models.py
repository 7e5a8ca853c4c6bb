"""The REST API's request and response declarations (pydantic): they validate the requests
and are the OpenAPI document (``/api/v1/openapi.json``), so the document cannot drift."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

SignalName = Literal["traces", "metrics", "logs"]
HEX_ID = r"^([0-9a-fA-F]{2}){1,32}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, in one line")


def errors(*codes: int) -> dict[int, type[BaseModel]]:
    return {code: ErrorBody for code in codes}


# -- status ------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["healthy", "degraded"]
    ready: bool
    reasons: list[str]
    unready_reasons: list[str]


class SignalSummary(BaseModel):
    requests: int
    request_bytes: int
    accepted_items: int
    received_items: int
    rejected_items: dict[str, int]
    rejected_requests: dict[str, int]
    written_items: int
    written_bytes: int
    buffer_bytes: int
    buffer_items: int
    buffer_max_bytes: int
    buffer_max_items: int
    files_rotated: int
    files_deleted: int
    bytes_deleted: int
    write_errors: int
    writer_errors: list[str]
    writer_running: bool


class StatusBody(Open):
    """The daemon's status snapshot (``signals``, ``daemon``, with several workers also
    ``workers``), with the summary and health the dashboard derives from it."""

    time: float
    uptime_seconds: float
    version: str
    grpc_endpoint: Optional[str]
    dashboard_url: Optional[str]
    health: Health
    summary: dict[str, SignalSummary]
    signals: dict[str, Any]
    daemon: dict[str, Any]


class ForwardingBacklog(BaseModel):
    records: Optional[int] = Field(description="stored records not yet forwarded (null until first counted)")
    bytes: Optional[int] = Field(description="their share of the files' bytes")
    files: Optional[int] = Field(description="files with records not yet forwarded")
    lag_seconds: Optional[float] = Field(description="age of the oldest unforwarded record (its file's start)")


class ForwardingSignal(Open):
    running: bool
    backlog: ForwardingBacklog
    send_rate_records_per_second: float
    sent_requests: int
    sent_records: int
    sent_bytes: int
    retries: int
    retries_by_code: dict[str, int]
    skipped_records: int
    skipped_by_code: dict[str, int] = Field(description="records refused for good by the remote, by gRPC code")
    dropped_by_retention: int = Field(description="unforwarded records retention.max_total_bytes deleted "
                                                  "(in total, kept across restarts)")
    dropped_files_by_retention: int
    partial_success: dict[str, Any]
    duplicates_suspected: dict[str, int] = Field(description="requests and records resent after a send "
                                                             "that timed out (the remote may hold them twice)")
    last_error: Optional[dict[str, Any]]
    checkpoint: dict[str, dict[str, int]] = Field(description="per writer instance: seq, batch and row of "
                                                              "the next record to send")


class ForwardingBody(Open):
    """Forwarding (docs/FORWARDING.md); with forwarding off only ``time`` and ``enabled``."""

    time: float
    enabled: bool
    state: Optional[str] = Field(None, description="forwarding, waiting for the remote, stopped, not running")
    stopped_reason: Optional[str] = None
    remote: Optional[dict[str, Any]] = Field(None, description="endpoint, TLS, compression, timeout, kind of "
                                                               "credentials and header names (never values)")
    breaker: Optional[dict[str, Any]] = Field(None, description="state, open_timeout, retry_after, the last "
                                                                "transitions {at, from, to, reason}, counters")
    signals: Optional[dict[str, ForwardingSignal]] = None


class HistoryQuery(Strict):
    seconds: float = Field(600.0, gt=0, le=3600, description="how far back")


class HistoryBody(BaseModel):
    interval: float
    time: list[float] = Field(description="Unix seconds of each sample")
    series: dict[str, list[float]] = Field(description="per second, keyed <signal>.<series>")


# -- rotation ----------------------------------------------------------------------------

class InProgressFile(BaseModel):
    name: str
    bytes: int
    rows: int
    opened_at: Optional[float]
    age_seconds: Optional[float]
    seconds_until_rotation: Optional[float] = Field(description="until writer.max_file_age")
    bytes_until_rotation: int = Field(description="until writer.max_file_bytes")


class CompletedFileInfo(Open):
    name: str
    path: str
    bytes: int
    rows: Optional[int]
    batches: Optional[int]
    min_time: Optional[str]
    max_time: Optional[str]
    modified: Any


class Retention(BaseModel):
    max_age_seconds: float
    max_total_bytes: int
    check_interval_seconds: float
    deleted_files: int
    deleted_bytes: int


class SignalFiles(BaseModel):
    in_progress: list[InProgressFile]
    recent: list[CompletedFileInfo]
    disk: dict[str, int]
    files_rotated: int
    retention: Retention


class RotationQuery(Strict):
    limit: int = Field(10, ge=1, le=100, description="recent completed files per signal")


class RotationBody(BaseModel):
    max_file_bytes: int
    max_file_age_seconds: float
    signals: dict[str, SignalFiles]


class RotateRequest(Strict):
    signal: Optional[SignalName] = Field(None, description="one signal; absent: every signal")


TemporalityName = Literal["cumulative", "delta", "passthrough"]


class TemporalityRequest(Strict):
    temporality: TemporalityName = Field(description="what to store sums and histograms as from now on")


class TemporalityBody(BaseModel):
    temporality: TemporalityName = Field(description="in effect for requests received from now on")
    configured: TemporalityName = Field(description="metrics.temporality")
    source: Literal["config", "api"] = Field(description="where the value in effect comes from")
    changed_at: Optional[float] = Field(None, description="Unix seconds of the last change over the API")
    streams: int = Field(description="streams with conversion state")
    converted_points: int
    dropped_points: dict[str, int] = Field(description="dropped points by reason (docs/TEMPORALITY.md)")
    passed_through_points: int
    streams_over_limit: int = Field(description="points of streams beyond metrics.max_streams, stored unconverted")


class RotateResult(BaseModel):
    completed: dict[str, list[str]] = Field(description="per signal, the paths of the files completed")


# -- stored data -------------------------------------------------------------------------

class Scanned(BaseModel):
    files: int
    rows: int
    truncated: bool


class Span(Open):
    trace_id: str
    span_id: str
    parent_span_id: str
    service: Optional[str]
    name: Optional[str]
    kind: Optional[int]
    start_time: Optional[str]
    start_unix_nano: Optional[int]
    duration_ms: Optional[float]
    status_code: Optional[int]
    status_message: Optional[str]


class SpansQuery(Strict):
    service: Optional[str] = Field(None, max_length=1024, description="exact service.name")
    name: Optional[str] = Field(None, max_length=1024, description="part of the span name, any case")
    limit: int = Field(100, ge=1, le=1000)


class SpansBody(BaseModel):
    spans: list[Span]
    scanned: Scanned


class ServicesBody(BaseModel):
    services: list[str]


class TracePath(Strict):
    trace_id: str = Field(pattern=HEX_ID, description="the trace id in hex")


class TraceSpan(Span):
    depth: int
    offset_ms: Optional[float]


class TraceBody(BaseModel):
    trace_id: str
    start_time: Optional[str]
    duration_ms: Optional[float]
    spans: list[TraceSpan]
    scanned: Scanned


class LogsQuery(Strict):
    severity_min: int = Field(0, ge=0, le=24, description="lowest severity_number (1-24)")
    limit: int = Field(100, ge=1, le=1000)


class LogRecord(Open):
    time: Optional[str]
    service: Optional[str]
    severity_number: Optional[int]
    severity_text: Optional[str]
    body: Optional[str]
    trace_id: str
    span_id: str


class LogsBody(BaseModel):
    logs: list[LogRecord]
    scanned: Scanned


class MetricInfo(Open):
    name: Optional[str]
    type: Optional[str]
    unit: Optional[str]
    description: Optional[str]
    points: int


class MetricsBody(BaseModel):
    metrics: list[MetricInfo]
    scanned: Scanned


class MetricPath(Strict):
    name: str = Field(min_length=1, max_length=1024)


class MetricQuery(Strict):
    since: Optional[datetime] = Field(None, description="only points after this time (ISO 8601 or Unix seconds)")
    limit: int = Field(1000, ge=1, le=10000)


class MetricPoint(Open):
    time: Optional[str]
    time_unix_nano: Optional[int]
    value: Optional[float]
    service: Optional[str]
    attributes: dict[str, Any]


class MetricPointsBody(Open):
    name: str
    type: Optional[str]
    unit: Optional[str]
    points: list[MetricPoint]
    scanned: Scanned
