"""Periodic partition upkeep: create days ahead of the clock, drop days past retention.

Runs in every ingest replica; the DDL takes an advisory lock (see
ueba.store.partitions), so replicas doing it at the same time do no harm.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine

from services.ingest import metrics
from services.ingest.settings import IngestSettings
from services.ingest.store import PartitionCache
from ueba.store import partitions

log = logging.getLogger(__name__)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


class PartitionMaintenance:
    """A background worker (start/stop) for ueba.server.ServiceServer."""

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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def _loop(self) -> None:
        while True:
            wait = self.settings.maintenance_interval_seconds
            try:
                self.run_once()
            except Exception:  # the store may be down for a while: try again soon
                log.exception("partition maintenance failed")
                wait = min(wait, 60.0)
            if self._stop.wait(wait):
                return

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="partition-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
