"""Daily partitions of the tables partitioned by day: created ahead of the data, dropped after retention.

`events` (on event time, written by ingest) and `event_scores` (on the scored
hour, written by the scorer) are range-partitioned with one partition per UTC
day, named `<parent>_pYYYYMMDD`. Partition DDL runs in its own short
transaction under an advisory lock of its table, so that concurrent writers
never race to create the same day and a data transaction never holds the
parent table's lock.

Creating or dropping a partition locks the whole parent (ACCESS EXCLUSIVE), so
the request waits for every transaction using the table and every reader
queues behind it. A caller that can come back later passes `lock_timeout`:
the DDL then gives up after that long (psycopg.errors.LockNotAvailable)
instead of holding up the readers until a long transaction ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

import psycopg
from psycopg import errors, sql


@dataclass(frozen=True)
class DailyPartitions:
    """A table partitioned by range on a timestamptz column, one partition per UTC day."""

    parent: str
    # Serialises this table's partition DDL; any constant works, the same in every process.
    lock_key: int

    def name(self, day: date) -> str:
        return f"{self.parent}_p{day:%Y%m%d}"

    def day_of(self, name: str) -> date | None:
        """The day of one of this table's partitions, from its name; None for any other name."""
        prefix = f"{self.parent}_p"
        digits = name[len(prefix):]
        if not name.startswith(prefix) or len(digits) != 8 or not digits.isdigit():
            return None
        return datetime.strptime(digits, "%Y%m%d").date()


EVENTS = DailyPartitions("events", 0x0E0E_0001)
EVENT_SCORES = DailyPartitions("event_scores", 0x0E0E_0002)
TABLES = (EVENTS, EVENT_SCORES)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def existing_partitions(conn: psycopg.Connection, table: DailyPartitions = EVENTS) -> set[date]:
    rows = conn.execute(
        """SELECT c.relname FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relname = %s""",
        (table.parent,),
    ).fetchall()
    days = (table.day_of(name) for (name,) in rows)
    return {day for day in days if day is not None}


def _lock(conn: psycopg.Connection, table: DailyPartitions, lock_timeout: str | None) -> None:
    """Inside the DDL transaction: its advisory lock, and the lock timeout of what follows."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (table.lock_key,))
    if lock_timeout is not None:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))


def ensure_partitions(
    conn: psycopg.Connection,
    days: set[date] | list[date],
    table: DailyPartitions = EVENTS,
    lock_timeout: str | None = None,
) -> set[date]:
    """Creates the partitions missing for `days`; returns the days now covered.

    `conn` must be in autocommit mode or idle: the DDL commits on its own (inside
    a transaction it becomes a savepoint of that transaction, as in a migration).
    """
    wanted = set(days)
    if not wanted:
        return set()
    with conn.transaction():
        _lock(conn, table, lock_timeout)
        have = existing_partitions(conn, table)
        for day in sorted(wanted - have):
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(table.name(day)),
                    sql.Identifier(table.parent),
                    sql.Literal(start),
                    sql.Literal(start + timedelta(days=1)),
                )
            )
    return wanted


def ensure_ahead(
    conn: psycopg.Connection,
    today: date,
    days_ahead: int = 3,
    table: DailyPartitions = EVENTS,
    lock_timeout: str | None = None,
) -> None:
    ensure_partitions(conn, {today + timedelta(days=i) for i in range(days_ahead + 1)}, table, lock_timeout)


def drop_before(
    conn: psycopg.Connection,
    cutoff: date,
    table: DailyPartitions = EVENTS,
    lock_timeout: str | None = None,
) -> list[str]:
    """Drops every partition wholly before `cutoff`; returns the dropped names."""
    dropped = []
    with conn.transaction():
        _lock(conn, table, lock_timeout)
        for day in sorted(existing_partitions(conn, table)):
            if day < cutoff:
                name = table.name(day)
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                dropped.append(name)
    return dropped


def maintain(
    conn: psycopg.Connection,
    table: DailyPartitions,
    today: date,
    days_ahead: int,
    retention_days: int,
    lock_timeout: str | None = None,
) -> list[str]:
    """One round of upkeep: the partitions from today to `days_ahead` ahead exist, and
    those older than `retention_days` (0: none) are dropped; returns the dropped names."""
    ensure_ahead(conn, today, days_ahead, table, lock_timeout)
    if not retention_days:
        return []
    return drop_before(conn, today - timedelta(days=retention_days), table, lock_timeout)


class PartitionCache:
    """Days known to have a partition of `table`, so most writes skip the catalogue lookup.

    A partition dropped by retention elsewhere leaves a stale entry: a writer that
    then meets "no partition of relation ... found for row" forgets and retries.
    """

    def __init__(self, table: DailyPartitions) -> None:
        self.table = table
        self._known: set[date] = set()
        self._lock = threading.Lock()

    def missing(self, days: Iterable[date]) -> set[date]:
        with self._lock:
            return set(days) - self._known

    def add(self, days: Iterable[date]) -> None:
        with self._lock:
            self._known.update(days)

    def forget(self, days: Iterable[date] | None = None) -> None:
        with self._lock:
            if days is None:
                self._known.clear()
            else:
                self._known.difference_update(days)

    def ensure(self, conn: psycopg.Connection, days: Iterable[date]) -> None:
        """Creates the partitions of `days` not known to exist (see ensure_partitions for `conn`)."""
        missing = self.missing(days)
        if missing:
            ensure_partitions(conn, missing, self.table)
            self.add(missing)


def is_missing_partition(exc: BaseException) -> bool:
    """A write met a day without a partition: "no partition of relation ... found for row"."""
    return isinstance(exc, errors.CheckViolation) and "no partition of relation" in str(exc)
