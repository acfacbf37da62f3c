"""Fires per bucket (`scorer_buckets`): the latest scheduled fire each bucket was scored for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, text

from ueba.store.schema import scorer_buckets


def scored_since(conn: Connection, tenant: str, fire: datetime, buckets: tuple[int, ...] | None = None) -> set[int]:
    """The buckets (of `buckets`, or any) already scored for `fire` or a later one."""
    where = [scorer_buckets.c.tenant == tenant, scorer_buckets.c.scheduled_at >= fire]
    if buckets is not None:
        where.append(scorer_buckets.c.bucket.in_(buckets))
    return set(conn.execute(select(scorer_buckets.c.bucket).where(*where)).scalars())


def record_fire(conn: Connection, tenant: str, run_id: str, fire: datetime, buckets: tuple[int, ...]) -> None:
    conn.execute(
        text("""INSERT INTO scorer_buckets (tenant, bucket, scheduled_at, run_id)
                SELECT :tenant, b, :fire, :run_id FROM unnest(CAST(:buckets AS int[])) AS b
                ON CONFLICT (tenant, bucket) DO UPDATE SET
                    scheduled_at = GREATEST(scorer_buckets.scheduled_at, excluded.scheduled_at),
                    run_id = excluded.run_id, updated_at = now()"""),
        {"tenant": tenant, "fire": fire, "run_id": run_id, "buckets": list(buckets)},
    )
