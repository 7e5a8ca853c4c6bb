"""otlpd: an OpenTelemetry OTLP/gRPC receiver that stores telemetry in rotated Arrow IPC files."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``otlpd.Daemon`` (imported on first use: the command line and the tools need not load it)."""
    if name == "Daemon":
        from otlpd.daemon import Daemon

        return Daemon
    raise AttributeError(f"module 'otlpd' has no attribute {name!r}")
