"""Upkeep of the event_scores day partitions: tomorrow's created ahead, days past
UEBA_SCORE_RETENTION_DAYS dropped, at start and every hour.

Runs in every scorer replica; the DDL takes the table's advisory lock (see
ueba.store.partitions), so replicas doing it at the same time do no harm.
Creating or dropping a partition locks all of event_scores, and a scoring run's
transaction uses the table for minutes: waiting for it would hold every reader
(timelines, the next runs) in the lock queue behind the DDL. So the DDL gives up
after `lock_timeout` and is tried again a minute later.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Callable

from psycopg import errors
from sqlalchemy import Engine

from services.scorer.settings import ScorerSettings
from ueba.store import partitions
from ueba.store.partitions import EVENT_SCORES, PartitionCache
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)


class EventScorePartitions(PeriodicWorker):
    """Creates tomorrow's event_scores partition and drops those past retention."""

    thread_name = "event-score-partitions"
    run_at_start = True
    interval = 3600.0
    retry_seconds = 60.0
    lock_timeout = "2s"
    # Runs create the days they write themselves; a day ahead spares the first run
    # after midnight the DDL (and its wait for the other replicas' runs).
    days_ahead = 1

    def __init__(self, settings: ScorerSettings, engine: Engine, cache: PartitionCache,
                 today: Callable[[], date] = partitions.utc_today):
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.today = today
        self.busy = False
        super().__init__()

    def run_once(self) -> list[str]:
        """One round; returns the dropped partitions' names (none while the table is busy)."""
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.rollback()  # DDL helpers need an idle connection
            try:
                dropped = partitions.maintain(conn, EVENT_SCORES, self.today(), self.days_ahead,
                                              self.settings.score_retention_days, self.lock_timeout)
            except errors.LockNotAvailable:
                self.busy = True
                log.info("event_scores is in use by a scoring run: partition upkeep tried again shortly")
                return []
        finally:
            raw.close()
        self.busy = False
        if dropped:
            self.cache.forget()
            log.info("dropped event-score partitions past retention", extra={"partitions": dropped})
        return dropped

    def next_wait(self, failed: bool) -> float:
        return min(self.interval, self.retry_seconds) if failed or self.busy else self.interval
