"""Upkeep of a day-partitioned table: days created ahead of the clock, days past retention dropped,
at start and every interval, by a background worker of the service that writes the table.

Runs in every replica of that service; the DDL takes the table's advisory lock
(see ueba.store.partitions), so replicas doing it at the same time do no harm.
Creating or dropping a partition locks the whole table, and a long transaction
(a scoring run's aggregation, the evaluator's batch) may be using it: waiting
for it would queue every writer and reader behind the DDL. So the DDL gives up
after `lock_timeout` and is tried again `retry_seconds` later, as after a failure.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Callable

from prometheus_client import Counter
from psycopg import errors
from sqlalchemy import Engine

from ueba.store import partitions
from ueba.store.partitions import PartitionCache
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)

DROPPED = Counter("ueba_partitions_dropped_total", "Day partitions dropped by retention", ["table"])


class PartitionUpkeep(PeriodicWorker):
    run_at_start = True
    retry_seconds = 60.0
    lock_timeout = "2s"

    def __init__(
        self,
        engine: Engine,
        cache: PartitionCache,
        *,
        days_ahead: int,
        retention_days: int,
        interval: float,
        today: Callable[[], date] = partitions.utc_today,
    ):
        super().__init__()
        self.engine = engine
        self.cache = cache
        self.table = cache.table
        self.thread_name = f"{self.table.parent}-partitions"
        self.days_ahead = days_ahead
        self.retention_days = retention_days
        self.interval = interval
        self.today = today
        self.busy = False

    def run_once(self) -> list[str]:
        """One round; returns the dropped partitions' names (none while the table is busy)."""
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.rollback()  # DDL helpers need an idle connection
            try:
                dropped = partitions.maintain(conn, self.table, self.today(), self.days_ahead,
                                              self.retention_days, self.lock_timeout)
            except errors.LockNotAvailable:
                self.busy = True
                log.info("partition upkeep waits for a transaction using the table",
                         extra={"table": self.table.parent, "retry_seconds": self.retry_seconds})
                return []
        finally:
            raw.close()
        self.busy = False
        if dropped:
            self.cache.forget()
            DROPPED.labels(self.table.parent).inc(len(dropped))
            log.info("dropped partitions past retention", extra={"table": self.table.parent, "partitions": dropped})
        return dropped

    def next_wait(self, failed: bool) -> float:
        # The store may be down or the table busy for a while: try again soon rather than in an hour.
        return min(self.interval, self.retry_seconds) if failed or self.busy else self.interval
