"""Periodic partition upkeep: create days ahead of the clock, drop days past retention.

Runs in every ingest replica; the DDL takes an advisory lock (see
ueba.store.partitions), so replicas doing it at the same time do no harm.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine

from services.ingest import metrics
from services.ingest.settings import IngestSettings
from services.ingest.store import PartitionCache
from ueba.store import partitions
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


class PartitionMaintenance(PeriodicWorker):
    """Creates partitions ahead and drops old ones at start and every maintenance interval."""

    thread_name = "partition-maintenance"
    run_at_start = True

    def __init__(
        self,
        settings: IngestSettings,
        engine: Engine,
        cache: PartitionCache,
        today: Callable[[], date] = utc_today,
    ):
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.today = today
        super().__init__()

    def run_once(self) -> list[str]:
        """Creates the partitions ahead and drops those past retention; returns the dropped names."""
        today = self.today()
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.rollback()  # DDL helpers need an idle connection
            partitions.ensure_ahead(conn, today, self.settings.partitions_ahead_days)
            dropped: list[str] = []
            if self.settings.retention_days:
                dropped = partitions.drop_before(conn, today - timedelta(days=self.settings.retention_days))
        finally:
            raw.close()
        if dropped:
            self.cache.forget()
            metrics.PARTITIONS_DROPPED.inc(len(dropped))
            log.info("dropped partitions past retention", extra={"partitions": dropped})
        return dropped

    @property
    def interval(self) -> float:
        return self.settings.maintenance_interval_seconds

    def next_wait(self, failed: bool) -> float:
        # The store may be down for a while: try again soon rather than in an hour.
        return min(self.interval, 60.0) if failed else self.interval
