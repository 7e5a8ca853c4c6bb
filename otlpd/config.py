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
import urllib.parse
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


def _remote_endpoint(value: str) -> str | None:
    if "://" in value:
        return ("must be HOST:PORT without a scheme (TLS is the default; forward.insecure true for "
                "plain text)")
    return _endpoint(value)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a public address


def _metadata_name(value: str) -> str | None:
    if not re.fullmatch(r"[0-9a-z_.-]+", value) or value.startswith("grpc-"):
        return "must be a gRPC metadata name: lower-case letters, digits, - _ . and not grpc-..."
    return None


def parse_headers(text: Any) -> tuple[tuple[str, str], ...]:
    """``name=value,name=value`` (the OTEL_EXPORTER_OTLP_HEADERS form; values percent-decoded)
    as (lower-case name, value) pairs; the default, (), as it is."""
    if isinstance(text, tuple):
        return text
    pairs = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=value,name=value, got an item without '=' ({name.strip()!r})")
        pairs.append((name, urllib.parse.unquote(value.strip())))
    result = []
    for name, value in pairs:
        name = name.strip().lower()
        problem = _metadata_name(name)
        if problem:
            raise ValueError(f"header {name!r} {problem}")
        result.append((name, value))
    return tuple(result)


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
    # -- forwarding (docs/FORWARDING.md): off unless forward.endpoint is set --
    Setting("forward.endpoint", "", lambda v: str(v).strip(),
            "HOST:PORT of a remote OTLP/gRPC receiver that gets everything stored (empty: no forwarding)",
            lambda value: None if not value else _remote_endpoint(value)),
    Setting("forward.insecure", False, parse_bool,
            "plain-text gRPC to forward.endpoint (no TLS)"),
    Setting("forward.tls_ca_file", "", str,
            "PEM file of the CAs that sign the remote's certificate (empty: the system's roots)"),
    Setting("forward.tls_cert_file", "", str,
            "PEM client certificate for mutual TLS (with forward.tls_key_file)"),
    Setting("forward.tls_key_file", "", str,
            "PEM private key of forward.tls_cert_file"),
    Setting("forward.compression", "gzip", lambda v: str(v).lower(),
            "compression of the forwarded requests: gzip or none", _one_of("gzip", "none")),
    Setting("forward.timeout", 10.0, parse_duration,
            "deadline of one Export call to the remote", _positive),
    Setting("forward.headers", (), parse_headers,
            "extra gRPC metadata sent with every call: name=value,name=value (values percent-decoded)"),
    Setting("forward.api_key", "", str,
            "API key sent in forward.api_key_header (better: OTLPD_FORWARD__API_KEY or forward.api_key_file)"),
    Setting("forward.api_key_file", "", str,
            "file holding the API key (instead of forward.api_key)"),
    Setting("forward.api_key_header", "x-api-key", lambda v: str(v).strip().lower(),
            "metadata name that carries forward.api_key", _metadata_name),
    Setting("forward.bearer_token", "", str,
            "token sent as authorization: Bearer <token>"),
    Setting("forward.bearer_token_file", "", str,
            "file holding the bearer token (instead of forward.bearer_token)"),
    Setting("forward.basic_auth_user", "", str,
            "user name of authorization: Basic (with a password)"),
    Setting("forward.basic_auth_password", "", str,
            "password of forward.basic_auth_user"),
    Setting("forward.basic_auth_password_file", "", str,
            "file holding the basic-auth password (instead of forward.basic_auth_password)"),
    Setting("forward.max_request_items", 8192, parse_int,
            "most records in one forwarded request", _positive),
    Setting("forward.max_request_bytes", 4_000_000, parse_size,
            "largest forwarded request unless one record alone is larger (the remote's default limit is 4 MiB)",
            _positive),
    Setting("forward.max_in_flight", 4, parse_int,
            "requests per signal sent and not yet acknowledged at once (1: one at a time, in strict order)",
            _positive),
    Setting("forward.poll_interval", 1.0, parse_duration,
            "how often the forwarder looks for new stored data once everything is shipped", _positive),
    Setting("forward.retry.initial_backoff", 0.5, parse_duration,
            "first retry of a retryable failure waits up to this long (full jitter, doubling)", _positive),
    Setting("forward.retry.max_backoff", 30.0, parse_duration,
            "longest wait between two retries (a RetryInfo delay from the remote is honoured up to this)",
            _positive),
    Setting("forward.breaker.failure_threshold", 5, parse_int,
            "consecutive failed sends that open the circuit breaker", _positive),
    Setting("forward.breaker.failure_rate_threshold", 0.5, float,
            "share of failures among the last forward.breaker.window_size sends that opens the breaker"),
    Setting("forward.breaker.window_size", 20, parse_int,
            "sends the failure rate is computed over", _positive),
    Setting("forward.breaker.minimum_calls", 10, parse_int,
            "sends in the window before the failure rate counts", _positive),
    Setting("forward.breaker.open_timeout", 1.0, parse_duration,
            "how long an open breaker refuses sends before one probe (doubles on each failed probe)",
            _positive),
    Setting("forward.breaker.max_open_timeout", 60.0, parse_duration,
            "the longest open timeout", _positive),
    Setting("forward.breaker.half_open_probes", 1, parse_int,
            "probe sends that must succeed to close the breaker again", _positive),
    Setting("forward.breaker.slow_call_threshold", 30.0, parse_duration,
            "a send acknowledged after this long counts as a failure", _positive),
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
    for key, file_key in SECRET_FILES:
        values[key] = _secret(values, key, file_key)
    _check_together(values)
    _check_forwarding(values)
    return Config(values)


def _secret(values: Mapping[str, Any], key: str, file_key: str) -> str:
    """A secret, from its setting or read from the file its ``*_file`` setting names."""
    secret, path = values[key].strip(), values[file_key]
    if not path:
        return secret
    if secret:
        raise ConfigError(f"{file_key}: set either it or {key}, not both")
    try:
        with open(path, encoding="utf-8") as stream:
            secret = stream.read().strip()
    except OSError as error:
        raise ConfigError(f"{file_key}: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file_key}: {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{file_key}: {path} is empty")
    return secret


# (secret, the setting naming a file that holds it)
SECRET_FILES = (
    ("dashboard.admin_token", "dashboard.admin_token_file"),
    ("forward.api_key", "forward.api_key_file"),
    ("forward.bearer_token", "forward.bearer_token_file"),
    ("forward.basic_auth_password", "forward.basic_auth_password_file"),
)


def _check_forwarding(values: Mapping[str, Any]) -> None:
    """Checks of the forward.* settings that involve more than one of them."""
    if not values["forward.endpoint"]:
        return
    host, _, port = values["forward.endpoint"].rpartition(":")
    own_host, _, own_port = values["grpc_endpoint"].rpartition(":")
    if port == own_port and port != "0" and (host == own_host or (is_loopback(host) and is_loopback(own_host))):
        # every forwarded record would be stored again, and forwarded again, forever
        raise ConfigError(f"forward.endpoint: {values['forward.endpoint']} is this otlpd's own grpc_endpoint")
    if values["forward.bearer_token"] and values["forward.basic_auth_user"]:
        raise ConfigError("forward.bearer_token: set either it or forward.basic_auth_user, not both "
                          "(both are the authorization header)")
    if bool(values["forward.basic_auth_user"]) != bool(values["forward.basic_auth_password"]):
        raise ConfigError("forward.basic_auth_user: needs forward.basic_auth_password (or its _file), and "
                          "the other way round")
    if bool(values["forward.tls_cert_file"]) != bool(values["forward.tls_key_file"]):
        raise ConfigError("forward.tls_cert_file: mutual TLS needs both forward.tls_cert_file and "
                          "forward.tls_key_file")
    tls_files = ("forward.tls_ca_file", "forward.tls_cert_file", "forward.tls_key_file")
    for key in tls_files:
        if values[key] and values["forward.insecure"]:
            raise ConfigError(f"{key}: has no effect with forward.insecure true (plain text); "
                              "set forward.insecure false")
        if values[key]:
            try:
                with open(values[key], "rb") as stream:
                    stream.read(1)
            except OSError as error:
                raise ConfigError(f"{key}: cannot read {values[key]}: {error.strerror}") from None
    secrets = [key for key in ("forward.api_key", "forward.bearer_token", "forward.basic_auth_password")
               if values[key]]
    if secrets and values["forward.insecure"] and not is_loopback(host):
        raise ConfigError(f"{secrets[0]}: would travel in plain text to {host}; set forward.insecure false "
                          "(TLS) or forward to a loopback address")
    if values["forward.retry.max_backoff"] < values["forward.retry.initial_backoff"]:
        raise ConfigError("forward.retry.max_backoff: must not be below forward.retry.initial_backoff")
    from otlpd.forward.settings import breaker_arguments  # the breaker's own rules, named by key

    breaker_arguments(values)


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
