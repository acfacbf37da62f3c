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
    metrics_port: int = env_field("UEBA_METRICS_PORT", 0, "Prometheus metrics port; 0 picks a free one, -1 disables")
    log_level: str = env_field("UEBA_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")
    drain_seconds: float = env_field("UEBA_DRAIN_SECONDS", 10.0, "grace for in-flight calls on SIGTERM")
    max_message_bytes: int = env_field("UEBA_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, "largest gRPC message accepted")
    max_connection_age_seconds: int = env_field(
        "UEBA_MAX_CONNECTION_AGE_SECONDS", 0, "close connections after this age so clients rebalance; 0: never"
    )
    db_pool_size: int = env_field("UEBA_DB_POOL_SIZE", 8, "database connections per process")

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
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise SettingsError(f"UEBA_LISTEN={self.listen!r}: expected host:port, e.g. 0.0.0.0:50051")
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
