"""Writes prepared batches to `events` and `users` in one transaction.

The common case is a batch of new events: it goes straight into `events` with
one COPY, as fast as Postgres takes rows. When that COPY meets a row already
stored (a resent batch, or another replica writing the same event), the
transaction is rolled back and the batch goes the careful way: COPY into a
temporary staging table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING,
whose row count is the number of new events. Either way the commit is the
acknowledgement: nothing is acked that was not committed. A transaction that
stored events announces its commit (ueba.store.commits), which wakes the
profiles evaluator at once instead of at its next poll.
"""

from __future__ import annotations

import json
import logging
import time
from itertools import chain
from typing import Callable, Iterable, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.types.string import BytesBinaryDumper
from sqlalchemy import Engine

from services.ingest.prepare import COLUMNS, COPY_TYPES, PreparedBatch, merged_users
from ueba.store.commits import announce_commit
from ueba.store.partitions import EVENTS, PartitionCache, is_missing_partition

log = logging.getLogger(__name__)

_COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
_COPY_EVENTS = sql.SQL("COPY events ({}) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
_COPY_STAGE = sql.SQL("COPY ingest_stage ({}) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
# ON COMMIT DELETE ROWS: the staging table is empty at the start of every
# transaction on this connection, whatever happened to the previous one.
_CREATE_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE_STAGE = sql.SQL("INSERT INTO events ({cols}) SELECT {cols} FROM ingest_stage ON CONFLICT DO NOTHING").format(
    cols=_COLUMN_LIST
)
# One JSON parameter rather than four arrays: json.dumps is C, psycopg's array
# dumping is per element in Python, and this runs for every batch.
# Keeps first/last sighting and department current. The WHERE clause skips
# rows that would not change, so a replayed batch writes nothing.
_UPSERT_USERS = """
INSERT INTO users (tenant, user_name, department, first_seen, last_seen)
SELECT %(tenant)s, u.n, u.d,
       timestamptz 'epoch' + u.f * interval '1 microsecond',
       timestamptz 'epoch' + u.l * interval '1 microsecond'
FROM jsonb_to_recordset(%(users)s::jsonb) AS u(n text, d text, f bigint, l bigint)
ORDER BY u.n
ON CONFLICT (tenant, user_name) DO UPDATE SET
    first_seen = LEAST(users.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(users.last_seen, EXCLUDED.last_seen),
    department = CASE WHEN EXCLUDED.department IS NOT NULL AND EXCLUDED.last_seen >= users.last_seen
                      THEN EXCLUDED.department ELSE users.department END
WHERE EXCLUDED.first_seen < users.first_seen
   OR EXCLUDED.last_seen > users.last_seen
   OR (EXCLUDED.department IS NOT NULL AND EXCLUDED.department IS DISTINCT FROM users.department
       AND EXCLUDED.last_seen >= users.last_seen)
"""

def copy_rows(cur: psycopg.Cursor, statement: str | sql.Composable, rows: Iterable[tuple]) -> None:
    """Binary COPY of prepared rows (prepare.COLUMNS, COPY_TYPES) with psycopg's C dumpers throughout."""
    # psycopg's dumper for the bytea oid is dbapi20's BinaryBinaryDumper, a Python subclass
    # that wraps the C one: a Python call for every address and attribute value (0.8 us an
    # event, about 40% of formatting the row). This cursor gets the C one for bytea.
    cur.adapters.register_dumper(bytes, BytesBinaryDumper)
    with cur.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)


# Transient conflicts between concurrent writers: the batch is simply retried.
_RETRYABLE = (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable)
_ATTEMPTS = 4
T = TypeVar("T")


class EventStore:
    def __init__(self, engine: Engine, partition_cache: PartitionCache | None = None):
        self.engine = engine
        self.partitions = partition_cache or PartitionCache(EVENTS)

    def write_group(self, batches: list[tuple[str, PreparedBatch]]) -> list[int | Exception]:
        """Each batch's count of new events, or the exception that writing it alone raised.

        The batches share one transaction while all their events are new; otherwise (a resend,
        a value Postgres refuses) each is written on its own and gets its own count or error.
        """
        if len(batches) > 1:
            try:
                return self._with_retries(lambda conn: self._write_new(conn, batches))
            except psycopg.Error as exc:
                log.debug("a group of %d batches is written batch by batch", len(batches), exc_info=exc)
        outcomes: list[int | Exception] = []
        for tenant, batch in batches:
            try:
                outcomes.append(self.write(tenant, batch))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def write(self, tenant: str, batch: PreparedBatch) -> int:
        """Commits the batch's rows and user sightings; returns how many events were new."""
        if not batch.rows:
            return 0
        return self._with_retries(lambda conn: self._write(conn, tenant, batch))

    def _with_retries(self, write: Callable[[psycopg.Connection], T]) -> T:
        raw = self.engine.raw_connection()
        try:
            conn: psycopg.Connection = raw.driver_connection
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    return write(conn)
                except errors.CheckViolation as exc:
                    # A partition this process believed in was dropped (by retention elsewhere).
                    conn.rollback()
                    if not is_missing_partition(exc) or attempt == _ATTEMPTS:
                        raise
                    self.partitions.forget()
                except _RETRYABLE:
                    conn.rollback()
                    if attempt == _ATTEMPTS:
                        raise
                    time.sleep(0.01 * 2**attempt)
            raise AssertionError("unreachable")
        finally:
            raw.close()

    def _write(self, conn: psycopg.Connection, tenant: str, batch: PreparedBatch) -> int:
        try:
            return self._write_new(conn, [(tenant, batch)])[0]
        except errors.UniqueViolation:
            conn.rollback()
        with conn.cursor() as cur:
            cur.execute(_CREATE_STAGE)
            copy_rows(cur, _COPY_STAGE, batch.rows)
            cur.execute(_MERGE_STAGE)
            accepted = cur.rowcount
            self._upsert_users(cur, [(tenant, batch)])
            if accepted:
                announce_commit(cur)
        conn.commit()
        return accepted

    def _write_new(self, conn: psycopg.Connection, batches: list[tuple[str, PreparedBatch]]) -> list[int]:
        """One transaction for batches of new events only: one COPY of all their rows; UniqueViolation otherwise."""
        # Runs and commits on its own, before the data transaction starts, so
        # the data transaction never holds the parent table's DDL lock.
        self.partitions.ensure(conn, set().union(*(batch.days for _, batch in batches)))
        with conn.cursor() as cur:
            copy_rows(cur, _COPY_EVENTS, chain.from_iterable(batch.rows for _, batch in batches))
            self._upsert_users(cur, batches)
            announce_commit(cur)
        conn.commit()
        return [len(batch.rows) for _, batch in batches]

    @staticmethod
    def _upsert_users(cur: psycopg.Cursor, batches: list[tuple[str, PreparedBatch]]) -> None:
        by_tenant: dict[str, list[PreparedBatch]] = {}
        for tenant, batch in batches:
            by_tenant.setdefault(tenant, []).append(batch)
        # Tenants, and users within one (ORDER BY), in name order: concurrent transactions
        # lock user rows in the same order, so they cannot deadlock.
        for tenant in sorted(by_tenant):
            tenant_batches = by_tenant[tenant]
            sightings = tenant_batches[0].users if len(tenant_batches) == 1 else merged_users(tenant_batches)
            users = [{"n": name, "f": first, "l": last, "d": dept} for name, (first, last, dept) in sightings.items()]
            cur.execute(_UPSERT_USERS, {"tenant": tenant, "users": json.dumps(users, ensure_ascii=False)})
