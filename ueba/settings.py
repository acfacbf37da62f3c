"""Settings from environment variables, validated once at start.

Every service reads the same base settings plus its own. A bad value stops the
process with a message naming the variable, before anything listens.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ueba.names import USER_NAME_MODES


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_field(name: str, default: Any, help: str = "") -> Any:
    return field(default=default, metadata={"env": name, "help": help})


def _parse(kind: Any, raw: str, var: str) -> Any:
    try:
        if kind is bool or kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if kind is int or kind == "int":
            return int(raw)
        if kind is float or kind == "float":
            return float(raw)
        if kind in ("tuple[str, ...]",):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r}: {exc}") from None


@dataclass(frozen=True)
class BaseSettings:
    database_url: str = env_field("DATABASE_URL", "", "Postgres URL; empty starts the embedded server")
    data_dir: str = env_field("UEBA_DATA_DIR", ".data", "folder of the embedded Postgres and local files")
    tenant: str = env_field("UEBA_TENANT", "default", "tenant of requests that carry no token")
    listen: str = env_field("UEBA_LISTEN", "127.0.0.1:0", "host:port of the gRPC server")
    health_listen: str = env_field(
        "UEBA_HEALTH_LISTEN", "", "host:port of a plaintext port serving gRPC health only (probes with TLS on); empty: none"
    )
    metrics_port: int = env_field("UEBA_METRICS_PORT", 0, "Prometheus metrics port; 0 picks a free one, -1 disables")
    metrics_host: str = env_field("UEBA_METRICS_HOST", "", "address the metrics port listens on; empty: the host of UEBA_LISTEN")
    log_level: str = env_field("UEBA_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")
    drain_seconds: float = env_field("UEBA_DRAIN_SECONDS", 10.0, "grace for in-flight calls on SIGTERM")
    max_message_bytes: int = env_field("UEBA_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, "largest gRPC message accepted")
    max_connection_age_seconds: int = env_field(
        "UEBA_MAX_CONNECTION_AGE_SECONDS", 0, "close connections after this age so clients rebalance; 0: never"
    )
    db_pool_size: int = env_field("UEBA_DB_POOL_SIZE", 8, "database connections per process")
    auto_migrate: bool = env_field("UEBA_AUTO_MIGRATE", False, "apply migrations at start (local runs only)")
    # --- transport security and authentication (docs/security.md) ---
    tls_cert_file: str = env_field("UEBA_TLS_CERT_FILE", "", "PEM server certificate (chain); with the key, every port speaks TLS")
    tls_key_file: str = env_field("UEBA_TLS_KEY_FILE", "", "PEM private key of the server certificate")
    tls_client_ca_file: str = env_field(
        "UEBA_TLS_CLIENT_CA_FILE", "", "PEM CA bundle that client certificates must chain to (mutual TLS)"
    )
    tls_require_client_cert: bool = env_field(
        "UEBA_TLS_REQUIRE_CLIENT_CERT", False, "require a client certificate signed by UEBA_TLS_CLIENT_CA_FILE"
    )
    plaintext: bool = env_field(
        "UEBA_PLAINTEXT", False, "allow plaintext on a non-loopback address (behind a TLS-terminating mesh only)"
    )
    auth: str = env_field("UEBA_AUTH", "off", "off: every call is the default tenant's admin; tokens: bearer tokens with roles")
    auth_cache_seconds: float = env_field(
        "UEBA_AUTH_CACHE_SECONDS", 5.0, "how long a token lookup is cached; a revocation takes effect within this"
    )
    rate_limit_per_second: float = env_field(
        "UEBA_RATE_LIMIT_PER_SECOND", 200.0, "requests (and streamed messages) per second per token; 0: no limit"
    )
    rate_limit_burst: int = env_field("UEBA_RATE_LIMIT_BURST", 400, "requests a token may make at once above the rate")
    # --- streams (docs/security.md): each open stream holds a worker thread ---
    max_streams: int = env_field("UEBA_MAX_STREAMS", 0, "streaming calls open at once per process; 0: three quarters of the worker threads")
    max_streams_per_token: int = env_field("UEBA_MAX_STREAMS_PER_TOKEN", 8, "streaming calls open at once per token")
    max_anonymous_streams: int = env_field(
        "UEBA_MAX_ANONYMOUS_STREAMS", 4, "streaming calls open at once without a token (reflection, health Watch)"
    )
    stream_idle_seconds: float = env_field(
        "UEBA_STREAM_IDLE_SECONDS", 30.0, "a stream waiting longer for its client's next message is ended (UNAVAILABLE); 0: never"
    )
    stream_recheck_seconds: float = env_field(
        "UEBA_STREAM_RECHECK_SECONDS", 5.0, "how often the token of an open stream is checked again (revocation ends it)"
    )
    # --- meanings every service must share (set them alike on every service) ---
    user_name_mode: str = env_field(
        "UEBA_USER_NAME_MODE",
        "strip_domain",
        "strip_domain: CORP\\Alice, alice@corp.com -> alice; qualified: -> alice@corp(.com); exact: trimmed as sent",
    )
    risk_window_days: int = env_field("UEBA_RISK_WINDOW_DAYS", 30, "open anomalies older than this stop counting toward risk")
    min_baseline_days: int = env_field("UEBA_MIN_BASELINE_DAYS", 7, "a user seen for fewer days is still learning")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any):
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f.metadata.get("env")
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif var and var in environ:
                values[f.name] = _parse(f.type, environ[var], var)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"UEBA_LOG_LEVEL={self.log_level!r}: expected DEBUG, INFO, WARNING or ERROR")
        _check_address("UEBA_LISTEN", self.listen)
        if self.health_listen:
            _check_address("UEBA_HEALTH_LISTEN", self.health_listen)
        if not -1 <= self.metrics_port <= 65535:
            raise SettingsError(f"UEBA_METRICS_PORT={self.metrics_port}: expected -1 to 65535")
        if self.drain_seconds < 0:
            raise SettingsError(f"UEBA_DRAIN_SECONDS={self.drain_seconds}: must not be negative")
        if self.max_message_bytes < 1024:
            raise SettingsError(f"UEBA_MAX_MESSAGE_BYTES={self.max_message_bytes}: at least 1024")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise SettingsError("DATABASE_URL: expected a postgresql:// URL")
        if not self.tenant or len(self.tenant) > 64:
            raise SettingsError(f"UEBA_TENANT={self.tenant!r}: 1 to 64 characters")
        if self.db_pool_size < 1:
            raise SettingsError(f"UEBA_DB_POOL_SIZE={self.db_pool_size}: at least 1")
        if self.user_name_mode not in USER_NAME_MODES:
            raise SettingsError(f"UEBA_USER_NAME_MODE={self.user_name_mode!r}: expected one of {', '.join(USER_NAME_MODES)}")
        if not 1 <= self.risk_window_days <= 3650:
            raise SettingsError(f"UEBA_RISK_WINDOW_DAYS={self.risk_window_days}: expected 1 to 3650")
        if not 1 <= self.min_baseline_days <= 365:
            raise SettingsError(f"UEBA_MIN_BASELINE_DAYS={self.min_baseline_days}: expected 1 to 365")
        self._validate_security()

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)

    def _validate_security(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("UEBA_TLS_CERT_FILE and UEBA_TLS_KEY_FILE: set both or neither")
        for var, path in (
            ("UEBA_TLS_CERT_FILE", self.tls_cert_file),
            ("UEBA_TLS_KEY_FILE", self.tls_key_file),
            ("UEBA_TLS_CLIENT_CA_FILE", self.tls_client_ca_file),
        ):
            if path:
                _check_pem(var, path)
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("UEBA_TLS_CLIENT_CA_FILE: needs UEBA_TLS_CERT_FILE and UEBA_TLS_KEY_FILE (mutual TLS is TLS)")
        if self.tls_require_client_cert and not self.tls_client_ca_file:
            raise SettingsError("UEBA_TLS_REQUIRE_CLIENT_CERT: needs UEBA_TLS_CLIENT_CA_FILE to verify client certificates")
        if self.tls_client_ca_file and not self.tls_require_client_cert:
            # gRPC Python either requires and verifies a client certificate or
            # never asks for one: an optional, verified certificate is not possible.
            raise SettingsError(
                "UEBA_TLS_CLIENT_CA_FILE is set but UEBA_TLS_REQUIRE_CLIENT_CERT is not true: "
                "gRPC can only require client certificates, not accept optional ones"
            )
        if self.tls_cert_file and self.plaintext:
            raise SettingsError("UEBA_PLAINTEXT=true and UEBA_TLS_CERT_FILE are both set: choose one")
        check_plaintext_allowed("UEBA_LISTEN", self.listen, self)
        if self.auth not in ("off", "tokens"):
            raise SettingsError(f"UEBA_AUTH={self.auth!r}: expected off or tokens")
        if not 0 <= self.auth_cache_seconds <= 300:
            raise SettingsError(f"UEBA_AUTH_CACHE_SECONDS={self.auth_cache_seconds}: expected 0 to 300")
        if self.rate_limit_per_second < 0:
            raise SettingsError(f"UEBA_RATE_LIMIT_PER_SECOND={self.rate_limit_per_second}: must not be negative")
        if self.rate_limit_burst < 1:
            raise SettingsError(f"UEBA_RATE_LIMIT_BURST={self.rate_limit_burst}: at least 1")
        self._validate_streams()

    def _validate_streams(self) -> None:
        if self.max_streams < 0:
            raise SettingsError(f"UEBA_MAX_STREAMS={self.max_streams}: must not be negative")
        for var, value in (("UEBA_MAX_STREAMS_PER_TOKEN", self.max_streams_per_token),
                           ("UEBA_MAX_ANONYMOUS_STREAMS", self.max_anonymous_streams)):
            if value < 1:
                raise SettingsError(f"{var}={value}: at least 1")
        if self.stream_idle_seconds < 0:
            raise SettingsError(f"UEBA_STREAM_IDLE_SECONDS={self.stream_idle_seconds}: must not be negative")
        if not 0.1 <= self.stream_recheck_seconds <= 300:
            raise SettingsError(f"UEBA_STREAM_RECHECK_SECONDS={self.stream_recheck_seconds}: expected 0.1 to 300")


def _check_pem(var: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise SettingsError(f"{var}={path!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise SettingsError(f"{var}={path!r}: not a PEM file")


def is_loopback(address: str) -> bool:
    """True when host:port names only this machine (127.0.0.0/8, ::1, localhost)."""
    host = address.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_address(var: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{var}={address!r}: expected host:port, e.g. 0.0.0.0:50051")


def check_plaintext_allowed(var: str, address: str, settings: "BaseSettings") -> None:
    """Refuses a plaintext listener reachable from other machines unless UEBA_PLAINTEXT says so."""
    if settings.tls_cert_file or settings.plaintext or is_loopback(address):
        return
    raise SettingsError(
        f"{var}={address!r} is reachable from other machines but TLS is not configured: "
        "set UEBA_TLS_CERT_FILE and UEBA_TLS_KEY_FILE, or UEBA_PLAINTEXT=true when a mesh or proxy encrypts traffic"
    )


def parse_cidrs(var: str, raw: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in raw:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{var}: {item!r} is not a CIDR network") from None
    return tuple(nets)


def describe(cls: type[BaseSettings]) -> list[tuple[str, Any, str]]:
    """(variable, default, help) for every setting of a settings class, for docs and --help."""
    return [(f.metadata["env"], f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls) if "env" in f.metadata]
