"""Daily partitions of `events`: created ahead of the data, dropped after retention.

Partition DDL runs in its own short transaction under an advisory lock, so
that concurrent writers never race to create the same day and a data
transaction never holds the parent table's lock.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg import sql

PARENT = "events"
_NAME = re.compile(r"^events_p(\d{8})$")
# Any constant works; it only has to be the same in every process.
_LOCK_KEY = 0x0E0E_0001


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def existing_partitions(conn: psycopg.Connection) -> set[date]:
    rows = conn.execute(
        """SELECT c.relname FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relname = %s""",
        (PARENT,),
    ).fetchall()
    days = set()
    for (name,) in rows:
        m = _NAME.match(name)
        if m:
            days.add(datetime.strptime(m.group(1), "%Y%m%d").date())
    return days


def ensure_partitions(conn: psycopg.Connection, days: set[date] | list[date]) -> set[date]:
    """Creates the partitions missing for `days`; returns the days now covered.

    `conn` must be in autocommit mode or idle: the DDL commits on its own.
    """
    wanted = set(days)
    if not wanted:
        return set()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        have = existing_partitions(conn)
        for day in sorted(wanted - have):
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(partition_name(day)),
                    sql.Identifier(PARENT),
                    sql.Literal(start),
                    sql.Literal(start + timedelta(days=1)),
                )
            )
    return wanted


def ensure_ahead(conn: psycopg.Connection, today: date, days_ahead: int = 3) -> None:
    ensure_partitions(conn, {today + timedelta(days=i) for i in range(days_ahead + 1)})


def drop_before(conn: psycopg.Connection, cutoff: date) -> list[str]:
    """Drops every partition wholly before `cutoff`; returns the dropped names."""
    dropped = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for day in sorted(existing_partitions(conn)):
            if day < cutoff:
                name = partition_name(day)
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                dropped.append(name)
    return dropped
