"""otlpd: an OpenTelemetry OTLP/gRPC receiver that stores telemetry in rotated Arrow IPC files."""

__version__ = "0.1.0"
