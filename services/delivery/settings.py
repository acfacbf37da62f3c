"""Delivery settings: the destinations, the anomaly.log, leases, batches and retention."""

from __future__ import annotations

from dataclasses import dataclass

from services.delivery.destinations import Destination, load_destinations
from ueba.anomaly_log import check_target
from ueba.settings import BaseSettings, SettingsError, env_field


@dataclass(frozen=True)
class DeliverySettings(BaseSettings):
    destinations_json: str = env_field(
        "UEBA_DELIVERY_DESTINATIONS", "", "the destinations as a JSON array (services/delivery/README.md)"
    )
    destinations_file: str = env_field(
        "UEBA_DELIVERY_DESTINATIONS_FILE", "", "a file holding that JSON array instead (a mounted ConfigMap)"
    )
    anomaly_log: str = env_field(
        "UEBA_ANOMALY_LOG", "", "anomaly.log of every finding: empty for stdout, a file path, syslog://host:port, or off"
    )
    lease_seconds: float = env_field(
        "UEBA_DELIVERY_LEASE_SECONDS", 30.0, "a claimed delivery whose worker died is retried after this"
    )
    batch: int = env_field("UEBA_DELIVERY_BATCH", 100, "outbox rows routed, and deliveries claimed, at a time")
    poll_seconds: float = env_field("UEBA_DELIVERY_POLL_SECONDS", 0.5, "pause when there is nothing to send")
    retention_days: int = env_field(
        "UEBA_DELIVERY_RETENTION_DAYS", 7, "outbox rows with nothing pending are removed after this many days"
    )

    def destinations(self) -> list[Destination]:
        return load_destinations(self.destinations_json, self.destinations_file, self.anomaly_log)

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.lease_seconds <= 3600:
            raise SettingsError(f"UEBA_DELIVERY_LEASE_SECONDS={self.lease_seconds}: expected 2 to 3600")
        if not 1 <= self.batch <= 10_000:
            raise SettingsError(f"UEBA_DELIVERY_BATCH={self.batch}: expected 1 to 10000")
        if not 0.05 <= self.poll_seconds <= 60:
            raise SettingsError(f"UEBA_DELIVERY_POLL_SECONDS={self.poll_seconds}: expected 0.05 to 60")
        if not 1 <= self.retention_days <= 3650:
            raise SettingsError(f"UEBA_DELIVERY_RETENTION_DAYS={self.retention_days}: expected 1 to 3650")
        check_target(self.anomaly_log)
        self.destinations()  # a bad destination stops the service before it listens
