"""The ingest service's upkeep of the `events` day partitions (UEBA_PARTITIONS_AHEAD_DAYS,
UEBA_RETENTION_DAYS, UEBA_MAINTENANCE_INTERVAL_SECONDS)."""

from __future__ import annotations

from datetime import date
from typing import Callable

from sqlalchemy import Engine

from services.ingest.settings import IngestSettings
from ueba.store.partitions import PartitionCache, utc_today
from ueba.store.upkeep import PartitionUpkeep


def partition_upkeep(settings: IngestSettings, engine: Engine, cache: PartitionCache,
                     today: Callable[[], date] = utc_today) -> PartitionUpkeep:
    return PartitionUpkeep(
        engine, cache, days_ahead=settings.partitions_ahead_days, retention_days=settings.retention_days,
        interval=settings.maintenance_interval_seconds, today=today,
    )
