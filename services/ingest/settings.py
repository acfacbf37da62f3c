"""Settings of the ingest service: validation limits, normalisation, retention, back-pressure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ueba.settings import BaseSettings, SettingsError, env_field, parse_cidrs


@dataclass(frozen=True)
class IngestSettings(BaseSettings):
    listen: str = env_field("UEBA_LISTEN", "127.0.0.1:50051", "host:port of the gRPC server")
    max_future_seconds: int = env_field(
        "UEBA_MAX_FUTURE_SECONDS", 900, "reject events timed further ahead of the server clock; 0: no limit"
    )
    max_past_days: int = env_field("UEBA_MAX_PAST_DAYS", 400, "reject events older than this many days; 0: no limit")
    max_field_length: int = env_field("UEBA_MAX_FIELD_LENGTH", 2048, "longest accepted string field, in characters")
    max_attributes: int = env_field("UEBA_MAX_ATTRIBUTES", 64, "most attributes one event may carry")
    max_batch_size: int = env_field("UEBA_MAX_BATCH_SIZE", 10000, "most events in one batch")
    trusted_networks: tuple[str, ...] = env_field(
        "UEBA_TRUSTED_NETWORKS", (), "comma-separated CIDRs whose source addresses are marked trusted_source"
    )
    geoip_database: str = env_field(
        "UEBA_GEOIP_DATABASE", "", "MaxMind .mmdb file to locate source addresses whose event carries no geo"
    )
    retention_days: int = env_field(
        "UEBA_RETENTION_DAYS", 400, "drop event partitions older than this many days; 0: keep forever"
    )
    partitions_ahead_days: int = env_field("UEBA_PARTITIONS_AHEAD_DAYS", 3, "daily partitions created ahead of today")
    maintenance_interval_seconds: float = env_field(
        "UEBA_MAINTENANCE_INTERVAL_SECONDS", 3600.0, "how often partitions are created ahead and old ones dropped"
    )
    max_inflight_batches: int = env_field(
        "UEBA_INGEST_MAX_INFLIGHT_BATCHES", 4, "batches being written at once in this process"
    )
    writers: int = env_field(
        "UEBA_INGEST_WRITERS", 2, "connections writing prepared batches, each several batches to a transaction"
    )
    stream_window: int = env_field("UEBA_STREAM_WINDOW", 4, "batches one stream may have read but not acknowledged")
    stream_max_bytes: int = env_field(
        "UEBA_STREAM_MAX_BYTES", 8 * 1024 * 1024, "bytes of batches one stream may have read but not acknowledged (one batch always)"
    )
    otlp_listen: str = env_field("UEBA_OTLP_LISTEN", "", "extra host:port for OTLP/gRPC agents, e.g. 0.0.0.0:4317")

    def validate(self) -> None:
        super().validate()
        for var, value, low in (
            ("UEBA_MAX_FUTURE_SECONDS", self.max_future_seconds, 0),
            ("UEBA_MAX_PAST_DAYS", self.max_past_days, 0),
            ("UEBA_RETENTION_DAYS", self.retention_days, 0),
            ("UEBA_PARTITIONS_AHEAD_DAYS", self.partitions_ahead_days, 0),
            ("UEBA_MAX_FIELD_LENGTH", self.max_field_length, 16),
            ("UEBA_MAX_ATTRIBUTES", self.max_attributes, 0),
            ("UEBA_MAX_BATCH_SIZE", self.max_batch_size, 1),
            ("UEBA_INGEST_MAX_INFLIGHT_BATCHES", self.max_inflight_batches, 1),
            ("UEBA_INGEST_WRITERS", self.writers, 1),
            ("UEBA_STREAM_WINDOW", self.stream_window, 1),
            ("UEBA_STREAM_MAX_BYTES", self.stream_max_bytes, 1),
        ):
            if value < low:
                raise SettingsError(f"{var}={value}: at least {low}")
        if self.maintenance_interval_seconds <= 0:
            raise SettingsError(f"UEBA_MAINTENANCE_INTERVAL_SECONDS={self.maintenance_interval_seconds}: must be positive")
        self.networks()
        if self.geoip_database and not Path(self.geoip_database).is_file():
            raise SettingsError(f"UEBA_GEOIP_DATABASE={self.geoip_database!r}: no such file")
        if self.otlp_listen:
            host, sep, port = self.otlp_listen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise SettingsError(f"UEBA_OTLP_LISTEN={self.otlp_listen!r}: expected host:port, e.g. 0.0.0.0:4317")

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_cidrs("UEBA_TRUSTED_NETWORKS", self.trusted_networks)
