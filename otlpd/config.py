"""Settings: defaults < YAML file < OTLPD_* environment < command-line flags.

Every setting has one dotted key (``writer.max_file_bytes``), which is also its
environment variable (``OTLPD_WRITER__MAX_FILE_BYTES``: upper case, ``.``
becomes ``__``) and its flag (``--writer.max-file-bytes``: ``_`` becomes ``-``).
A wrong value raises :class:`ConfigError` whose message is one line naming the
key; the command line prints it and exits 2.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import Any, Callable, Mapping

import yaml

ENV_PREFIX = "OTLPD_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key."""


_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}


def parse_size(text: Any) -> int:
    """Bytes from ``1048576``, ``"64MiB"`` or ``"1.5 GB"``."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as 64MiB, got {text!r}")
    if isinstance(text, (int, float)):
        value = text
    else:
        match = re.fullmatch(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"expected a size such as 64MiB, got {text!r}")
        value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    return int(value)


def parse_duration(text: Any) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"10m"`` or ``"7d"``."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 10s, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as 10s, got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_int(text: Any) -> int:
    if isinstance(text, bool):
        raise ValueError(f"expected a whole number, got {text!r}")
    if isinstance(text, int):
        return text
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def parse_level(text: Any) -> int | None:
    """A compression level: a whole number, or ``default`` (None) for the codec's own."""
    if text is None or str(text).strip().lower() == "default":
        return None
    try:
        return parse_int(text)
    except ValueError:
        raise ValueError(f"expected a whole number or default, got {text!r}") from None


# Levels Arrow accepts for each IPC codec (pyarrow.Codec.minimum/maximum_compression_level).
COMPRESSION_LEVELS = {"zstd": (-131072, 22), "lz4": (1, 12)}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration key with its default, parser and help text."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    check: Callable[[Any], str | None] = lambda value: None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "__")

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)
    return check


def _endpoint(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT with a port from 0 to 65535"
    return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a public address


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("grpc_endpoint", "127.0.0.1:4317", str,
            "HOST:PORT the OTLP/gRPC receiver listens on (port 0 picks a free port)", _endpoint),
    Setting("output_dir", "./otlpd-data", str,
            "directory that receives <signal>/<signal>-<UTC start>-<seq>.arrow files (and sources/<signal>/)"),
    Setting("log_level", "info", lambda v: str(v).lower(),
            "debug, info, warning or error", _one_of("debug", "info", "warning", "error")),
    Setting("receiver.max_request_bytes", 64 * MiB, parse_size,
            "largest accepted request after decompression; larger ones get RESOURCE_EXHAUSTED",
            _positive),
    Setting("receiver.workers", 1, parse_int,
            "receiver processes sharing the port (SO_REUSEPORT); each writes its own files",
            _positive),
    Setting("receiver.threads", 4, parse_int,
            "gRPC worker threads (requests decoded at once)", _positive),
    Setting("receiver.max_concurrent_streams", 0, parse_int,
            "calls in flight per client connection (HTTP/2 streams); 0: grpc's default, no limit",
            _not_negative),
    Setting("receiver.retry_delay", 1.0, parse_duration,
            "RetryInfo delay sent with UNAVAILABLE when a buffer is full", _positive),
    Setting("receiver.grace_period", 10.0, parse_duration,
            "how long shutdown waits for requests in flight", _not_negative),
    Setting("buffer.max_bytes", 256 * MiB, parse_size,
            "bound on decoded bytes in memory (waiting, being written, the writer's copy), per signal", _positive),
    Setting("buffer.max_items", 2_000_000, parse_int,
            "bound on rows (spans, data points, log records) waiting, per signal", _positive),
    Setting("writer.write_interval", 1.0, parse_duration,
            "how often each writer drains its buffer into the current file", _positive),
    Setting("writer.flush_rows", 65536, parse_int,
            "write sooner once this many rows wait", _positive),
    Setting("writer.max_file_bytes", 256 * MiB, parse_size,
            "rotate the current file once it is this large", _positive),
    Setting("writer.max_file_age", 600.0, parse_duration,
            "rotate the current file once it is this old", _positive),
    Setting("writer.compression", "zstd", lambda v: str(v).lower(),
            "Arrow IPC body compression: zstd, lz4 or none", _one_of("zstd", "lz4", "none")),
    Setting("writer.compression_level", "default", parse_level,
            "codec level: zstd -131072 (fastest) to 22, lz4 1 to 12, or default (zstd 1, lz4 1)"),
    Setting("writer.fsync", True, parse_bool,
            "fsync each completed file and its directory at rotation"),
    Setting("retention.max_age", 0.0, parse_duration,
            "delete completed files older than this (0 keeps them forever)", _not_negative),
    Setting("retention.max_total_bytes", 0, parse_size,
            "per signal, delete the oldest completed files beyond this total (0: no limit)",
            _not_negative),
    Setting("retention.check_interval", 60.0, parse_duration,
            "how often retention runs besides after each rotation", _positive),
    Setting("metrics.temporality", "cumulative", lambda v: str(v).lower(),
            "store sums and histograms as cumulative, delta, or passthrough (as received); "
            "PUT /api/v1/temporality changes it at run time (docs/TEMPORALITY.md)",
            _one_of("cumulative", "delta", "passthrough")),
    Setting("metrics.initial_value", "auto", lambda v: str(v).lower(),
            "to delta, a stream's first point: auto, keep or drop (docs/TEMPORALITY.md)",
            _one_of("auto", "keep", "drop")),
    Setting("metrics.max_streams", 100_000, parse_int,
            "streams converted at once; points of further streams are stored unconverted", _positive),
    Setting("metrics.max_stale", 300.0, parse_duration,
            "forget a stream without a point for this long", _positive),
    Setting("dashboard.enabled", True, parse_bool,
            "serve the web dashboard, REST API and /metrics"),
    Setting("dashboard.endpoint", "127.0.0.1:8317", str,
            "HOST:PORT of the dashboard (port 0 picks a free port); a non-loopback host needs an admin token",
            _endpoint),
    Setting("dashboard.admin_token", "", str,
            "bearer token every POST/PUT/DELETE must carry (empty: none needed on loopback)"),
    Setting("dashboard.admin_token_file", "", str,
            "file holding the admin token (instead of dashboard.admin_token)"),
    Setting("dashboard.threads", 4, parse_int,
            "threads answering dashboard and API requests", _positive),
    Setting("dashboard.max_scan_files", 8, parse_int,
            "most completed files one data query (spans, logs, metrics) reads, newest first", _positive),
    Setting("dashboard.max_scan_rows", 1_000_000, parse_int,
            "most stored rows one data query reads", _positive),
)

SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


class Config:
    """Resolved settings, read as ``config["writer.max_file_bytes"]`` or ``config.writer.max_file_bytes``."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._values:
            return self._values[name]
        prefix = name + "."
        section = {k[len(prefix):]: v for k, v in self._values.items() if k.startswith(prefix)}
        if not section:
            raise AttributeError(name)
        return _Section(section)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class _Section:
    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def read_file(path: str) -> dict[str, Any]:
    """Flat ``{key: raw value}`` from a YAML file with sections as nested mappings."""
    try:
        with open(path, encoding="utf-8") as stream:
            tree = yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--config: {path}{where} is not valid YAML") from None
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"--config: {path} must hold a mapping of settings")
    flat = _flatten(tree)
    for key in flat:
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(f"{key}: unknown setting in {path}")
    return flat


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Flat ``{key: raw value}`` from OTLPD_* variables; unknown OTLPD_ names are errors."""
    by_env = {setting.env: setting.key for setting in SETTINGS}
    ignored = {"OTLPD_PURE_PYTHON"}
    flat = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ignored:
            continue
        if name not in by_env:
            raise ConfigError(f"{name}: unknown setting in the environment")
        flat[by_env[name]] = value
    return flat


def resolve(file_values: Mapping[str, Any], env_values: Mapping[str, Any],
            flag_values: Mapping[str, Any]) -> Config:
    """Merge by precedence (flags > env > file > defaults), parse and check every value."""
    values = {}
    for setting in SETTINGS:
        raw = setting.default
        for layer in (file_values, env_values, flag_values):
            if setting.key in layer and layer[setting.key] is not None:
                raw = layer[setting.key]
        try:
            value = setting.parse(raw)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{setting.key}: {error}") from None
        problem = setting.check(value)
        if problem:
            raise ConfigError(f"{setting.key}: {problem}, got {raw!r}")
        values[setting.key] = value
    values["dashboard.admin_token"] = _admin_token(values)
    _check_together(values)
    return Config(values)


def _admin_token(values: Mapping[str, Any]) -> str:
    """The admin token, from the setting or read from dashboard.admin_token_file."""
    token, path = values["dashboard.admin_token"].strip(), values["dashboard.admin_token_file"]
    if not path:
        return token
    if token:
        raise ConfigError("dashboard.admin_token_file: set either it or dashboard.admin_token, not both")
    try:
        with open(path, encoding="utf-8") as stream:
            token = stream.read().strip()
    except OSError as error:
        raise ConfigError(f"dashboard.admin_token_file: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"dashboard.admin_token_file: {path} is not UTF-8 text") from None
    if not token:
        raise ConfigError(f"dashboard.admin_token_file: {path} is empty")
    return token


def _check_together(values: Mapping[str, Any]) -> None:
    """Checks that involve more than one setting."""
    request, workers = values["receiver.max_request_bytes"], values["receiver.workers"]
    if request > values["buffer.max_bytes"] // workers:
        # a request the receiver accepts must always fit an empty buffer
        share = " divided by receiver.workers (each worker has its share)" if workers > 1 else ""
        raise ConfigError(f"receiver.max_request_bytes: must not exceed buffer.max_bytes{share} "
                          f"({request} > {values['buffer.max_bytes'] // workers})")
    level, codec = values["writer.compression_level"], values["writer.compression"]
    if level is not None:
        if codec not in COMPRESSION_LEVELS:
            raise ConfigError(f"writer.compression_level: must be default with writer.compression {codec}, "
                              f"got {level}")
        low, high = COMPRESSION_LEVELS[codec]
        if not low <= level <= high:
            raise ConfigError(f"writer.compression_level: must be from {low} to {high} for {codec}, got {level}")
    endpoint = values["dashboard.endpoint"]
    if values["dashboard.enabled"] and not values["dashboard.admin_token"] \
            and not is_loopback(endpoint.rpartition(":")[0]):
        # anyone who can reach the port could rotate files (and later change settings)
        raise ConfigError(f"dashboard.endpoint: {endpoint} is reachable from other hosts; set "
                          "dashboard.admin_token (or dashboard.admin_token_file) so that changes need a token, "
                          "or listen on 127.0.0.1")


def load(config_path: str | None = None, environ: Mapping[str, str] | None = None,
         flags: Mapping[str, Any] | None = None) -> Config:
    """The configuration a daemon started this way would use."""
    file_values = read_file(config_path) if config_path else {}
    env_values = read_environment(os.environ if environ is None else environ)
    return resolve(file_values, env_values, flags or {})
