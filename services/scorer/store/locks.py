"""The scorer's advisory locks, all taken on an autocommit session connection.

A run holds its own lock (keyed by its id) while it works, so that a `running`
row whose lock is free is known dead; the tenant's aggregation lock serialises
aggregations; the bucket locks serialise runs over the same buckets.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, func, select, text

RUN_LOCK = "ueba-scorer-run"  # (hashtext(RUN_LOCK), hashtext(run id))
AGGREGATION_LOCK = "ueba-scorer-aggregation"  # (hashtext(AGGREGATION_LOCK), hashtext(tenant))
BUCKET_LOCK = "ueba-scorer-bucket"  # (hashtext(BUCKET_LOCK:tenant), bucket)


def _run_key(run_id: str) -> tuple:
    return func.hashtext(RUN_LOCK), func.hashtext(str(run_id))


def lock_run(conn: Connection, run_id: str) -> None:
    conn.execute(select(func.pg_advisory_lock(*_run_key(run_id))))


@contextmanager
def run_if_abandoned(conn: Connection, run_id: str) -> Iterator[bool]:
    """True (holding the run's lock until the block ends) when no live process holds it."""
    key = _run_key(run_id)
    if not conn.execute(select(func.pg_try_advisory_lock(*key))).scalar_one():
        yield False
        return
    try:
        yield True
    finally:
        conn.execute(select(func.pg_advisory_unlock(*key)))


@contextmanager
def aggregation_lock(conn: Connection, tenant: str) -> Iterator[None]:
    key = (func.hashtext(AGGREGATION_LOCK), func.hashtext(tenant))
    conn.execute(select(func.pg_advisory_lock(*key)))
    try:
        yield
    finally:
        conn.execute(select(func.pg_advisory_unlock(*key)))


def lock_buckets(conn: Connection, tenant: str, buckets: tuple[int, ...]) -> None:
    # In bucket order, so that runs over overlapping buckets cannot deadlock.
    conn.execute(
        text("SELECT count(pg_advisory_lock(hashtext(:key), b)) FROM unnest(CAST(:buckets AS int[])) AS b"),
        {"key": f"{BUCKET_LOCK}:{tenant}", "buckets": sorted(buckets)},
    )


def unlock_all(conn: Connection) -> None:
    conn.execute(select(func.pg_advisory_unlock_all()))
