"""The ``forward.*`` settings as the forwarder's components take them."""
from __future__ import annotations

import base64
import dataclasses
from typing import Any, Mapping

from otlpd.config import ConfigError

# forward.breaker.<name> -> CircuitBreaker(<name>=...)
BREAKER_KEYS = ("failure_threshold", "failure_rate_threshold", "window_size", "minimum_calls",
                "open_timeout", "max_open_timeout", "half_open_probes", "slow_call_threshold")


def breaker_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """CircuitBreaker keyword arguments from ``forward.breaker.*``, checked by the breaker's own
    rules; a ConfigError names the key of the first bad one."""
    from otlpd.breaker_py import validated_settings

    arguments = {name: values[f"forward.breaker.{name}"] for name in BREAKER_KEYS}
    try:
        validated_settings(**arguments)
    except (TypeError, ValueError) as error:
        text = str(error)
        name = next((name for name in BREAKER_KEYS if text.startswith(name)), BREAKER_KEYS[0])
        raise ConfigError(f"forward.breaker.{name}: {text}") from None
    return arguments


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """How to reach the remote. ``metadata`` holds secrets: it is never shown; :meth:`public`
    says what is safe to show."""

    endpoint: str
    insecure: bool = True
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    compression: str = "gzip"
    timeout: float = 10.0
    metadata: tuple[tuple[str, str], ...] = ()
    auth: str = "none"  # what kind of credential the metadata carries, for the status

    def __repr__(self) -> str:  # never the metadata's values
        return f"ClientSettings(endpoint={self.endpoint!r}, auth={self.auth!r})"

    def public(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "insecure": self.insecure, "tls": not self.insecure,
                "mutual_tls": bool(self.tls_cert_file), "compression": self.compression,
                "timeout_seconds": self.timeout, "auth": self.auth,
                "header_names": sorted({name for name, _ in self.metadata})}


@dataclasses.dataclass(frozen=True)
class ForwardSettings:
    client: ClientSettings
    max_request_items: int = 8192
    max_request_bytes: int = 4_000_000
    max_in_flight: int = 4
    poll_interval: float = 1.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    fsync: bool = True
    breaker: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def client_settings(config) -> ClientSettings:
    metadata = list(config["forward.headers"])
    kinds = []
    if config["forward.api_key"]:
        metadata.append((config["forward.api_key_header"], config["forward.api_key"]))
        kinds.append(f"api_key ({config['forward.api_key_header']})")
    if config["forward.bearer_token"]:
        metadata.append(("authorization", f"Bearer {config['forward.bearer_token']}"))
        kinds.append("bearer_token")
    if config["forward.basic_auth_user"]:
        pair = f"{config['forward.basic_auth_user']}:{config['forward.basic_auth_password']}"
        metadata.append(("authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii")))
        kinds.append("basic_auth")
    return ClientSettings(
        endpoint=config["forward.endpoint"], insecure=config["forward.insecure"],
        tls_ca_file=config["forward.tls_ca_file"], tls_cert_file=config["forward.tls_cert_file"],
        tls_key_file=config["forward.tls_key_file"], compression=config["forward.compression"],
        timeout=config["forward.timeout"], metadata=tuple(metadata), auth=", ".join(kinds) or "none")


def forward_settings(config) -> ForwardSettings:
    values = config.as_dict()
    return ForwardSettings(
        client=client_settings(config),
        max_request_items=config["forward.max_request_items"],
        max_request_bytes=config["forward.max_request_bytes"],
        max_in_flight=config["forward.max_in_flight"],
        poll_interval=config["forward.poll_interval"],
        initial_backoff=config["forward.retry.initial_backoff"],
        max_backoff=config["forward.retry.max_backoff"],
        fsync=config["writer.fsync"],
        breaker=breaker_arguments(values))
