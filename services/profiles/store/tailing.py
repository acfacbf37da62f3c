"""Commit-order tailing: the evaluator's cursors (a pg_snapshot of what it processed) and
the delta of rows committed since, a page of whole transactions at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy import Connection, select, text

from services.profiles.records import EventRecord
from services.profiles.store.events import BucketSet
from ueba.store.schema import profile_cursors

ALL_TENANTS = "*"
# Nothing is visible in this snapshot: the evaluator starts from the first event.
EMPTY_SNAPSHOT = "3:3:"
# Serialises the one-time creation of the bucket cursors among replicas.
CURSOR_INIT_LOCK = 0x0E0E_0003


@dataclass
class Cursor:
    snapshot: str
    high_water: datetime | None


def read_cursor(conn: Connection, consumer: str) -> Cursor | None:
    row = conn.execute(
        select(profile_cursors.c.snapshot, profile_cursors.c.high_water).where(
            profile_cursors.c.tenant == ALL_TENANTS, profile_cursors.c.consumer == consumer
        )
    ).first()
    return Cursor(row.snapshot, row.high_water) if row else None


def read_cursors(conn: Connection, consumers: Iterable[str]) -> dict[str, Cursor]:
    rows = conn.execute(
        select(profile_cursors.c.consumer, profile_cursors.c.snapshot, profile_cursors.c.high_water).where(
            profile_cursors.c.tenant == ALL_TENANTS, profile_cursors.c.consumer.in_(list(consumers))
        )
    )
    return {r.consumer: Cursor(r.snapshot, r.high_water) for r in rows}


# One statement text for any number of consumers: SQLAlchemy compiled the multi-row insert afresh
# on every batch, a fifth of a small batch's time.
_WRITE_CURSORS = text("""
INSERT INTO profile_cursors (tenant, consumer, snapshot, high_water, updated_at)
SELECT :tenant, consumer, :snapshot, CAST(:high_water AS timestamptz), clock_timestamp()
FROM unnest(CAST(:consumers AS text[])) AS consumer
ON CONFLICT (tenant, consumer) DO UPDATE
SET snapshot = EXCLUDED.snapshot, high_water = EXCLUDED.high_water, updated_at = EXCLUDED.updated_at""")


def write_cursor(conn: Connection, consumer: str | Sequence[str], cursor: Cursor) -> None:
    """Stores `cursor` as the cursor of one consumer, or of several at once (buckets that moved together)."""
    names = [consumer] if isinstance(consumer, str) else list(consumer)
    conn.execute(_WRITE_CURSORS, {
        "tenant": ALL_TENANTS, "consumers": names, "snapshot": cursor.snapshot, "high_water": cursor.high_water,
    })


def current_snapshot(conn: Connection) -> str:
    return conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()


def lock_cursor_creation(conn: Connection) -> None:
    """Until the transaction ends: replicas starting at once create the cursors once."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CURSOR_INIT_LOCK})


# The delta reads on the driver connection: the same columns as EVENT_COLUMNS, as SQL text.
_EVENT_NAMES = (
    "event_id, time, user_name, event_type, outcome, tenant, source_ip, source_host, destination_host,"
    " application, country, city, latitude, longitude, bytes, file_count, action, department, producer, object,"
    " failure_reason, logon_type, trusted_source"
)
_EVENT_SQL = _EVENT_NAMES.replace(" source_ip,", " host(source_ip) AS source_ip,")
# The new rows in commit order, a page at a time: rows whose writing transaction was not visible
# in the cursor (one of the transactions it saw in progress, or at or after its xmax). Two index
# scans in txid order, merged, stop after the page: a whole backlog is never read or sorted.
# A replica that owns some of the hash buckets adds `_IN_BUCKETS`: a filter on the same scans.
_IN_BUCKETS = " AND ueba_bucket(tenant, user_name, %(n_buckets)s) = ANY(%(buckets)s::int[])"


def _delta_sql(where: str) -> tuple[str, str]:
    page = f"""
SELECT {_EVENT_NAMES}, date_part('epoch', time), txid::text::bigint FROM (
    (SELECT {_EVENT_SQL}, txid FROM events
      WHERE txid = ANY(ARRAY(SELECT pg_snapshot_xip(%(since)s::pg_snapshot))){where} ORDER BY txid LIMIT %(n)s)
    UNION ALL
    (SELECT {_EVENT_SQL}, txid FROM events
      WHERE txid >= pg_snapshot_xmax(%(since)s::pg_snapshot){where} ORDER BY txid LIMIT %(n)s)
) page ORDER BY page.txid LIMIT %(n)s"""
    one = f"SELECT {_EVENT_SQL}, date_part('epoch', time), txid::text::bigint FROM events WHERE txid = %(txid)s::text::xid8{where}"
    return page, one


_DELTA_PAGE, _ONE_TRANSACTION = _delta_sql("")
_DELTA_PAGE_IN_BUCKETS, _ONE_TRANSACTION_IN_BUCKETS = _delta_sql(_IN_BUCKETS)

def delta_page(
    conn: Connection, since: str, page: int, buckets: BucketSet | None = None
) -> tuple[list[EventRecord], int | None]:
    """Rows visible now but not in `since` (of users in `buckets`, when given), in whole
    transactions of about `page` rows (one transaction larger than a page is taken whole); and
    the txid they end at, None when they are all there is.

    Read on the driver connection in binary, rows straight into EventRecords: the ORM's row
    processing cost more than the detectors, and datetime.timestamp() a fifth of them.
    """
    cursor = conn.connection.driver_connection.cursor(binary=True)
    if buckets is None:
        page_sql, one_sql, extra = _DELTA_PAGE, _ONE_TRANSACTION, {}
    else:
        page_sql, one_sql = _DELTA_PAGE_IN_BUCKETS, _ONE_TRANSACTION_IN_BUCKETS
        extra = {"n_buckets": buckets.n, "buckets": sorted(buckets.buckets)}
    rows = cursor.execute(page_sql, {"since": since, "n": page + 1, **extra}).fetchall()
    if len(rows) <= page:
        return [EventRecord(*r[:-1]) for r in rows], None
    first, cut = rows[0][-1], rows[page][-1]
    if cut == first:
        rows = cursor.execute(one_sql, {"txid": str(first), **extra}).fetchall()
        return [EventRecord(*r[:-1]) for r in rows], first
    # Up to the transaction before the one the page ends in.
    upto = cut - 1
    return [EventRecord(*r[:-1]) for r in rows if r[-1] <= upto], upto


def next_snapshot(since: str, current: str, upto_txid: int | None) -> str:
    """The snapshot in which exactly the rows of `since` plus the new rows up to `upto_txid` are visible.

    `current` is the snapshot the new rows were read in. Transactions up to
    upto_txid that `current` saw in progress stay invisible; everything else
    below upto_txid + 1 was committed (or aborted) by then and is taken.
    """
    if upto_txid is None:
        return current
    xmin, xmax, xip = current.split(":")
    if upto_txid + 1 >= int(xmax):
        return current
    new_xmax = upto_txid + 1
    running = sorted(int(x) for x in xip.split(",") if x and int(x) < new_xmax)
    new_xmin = running[0] if running else new_xmax
    return f"{new_xmin}:{new_xmax}:{','.join(str(x) for x in running)}"

