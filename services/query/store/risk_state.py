"""The pre-aggregates' upkeep: merging rollup deltas, and reading and writing each user's current risk."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert

from ueba.risk import OPEN_STATUS
from ueba.store.schema import anomalies, user_risk, user_risk_dirty

# Advisory lock keys (class, object): one refresher per tenant at a time, one merger.
_RISK_LOCK = 0x0E0E0004
_MERGE_LOCK = 0x0E0E0005

# Moves each chosen bucket's deltas into one merged row per key, and bumps the
# rollup generation of every tenant it touched in the same transaction: cached
# summary totals (services/query/summary.py) are checked against it.
_MERGE_ANOMALY_ROLLUP = text(
    """
    WITH target AS (
        SELECT DISTINCT tenant, grain, bucket FROM anomaly_rollup WHERE NOT merged LIMIT :buckets
    ), moved AS (
        DELETE FROM anomaly_rollup r USING target t
        WHERE r.tenant = t.tenant AND r.grain = t.grain AND r.bucket = t.bucket
        RETURNING r.tenant, r.grain, r.bucket, r.facet, r.key, r.anomalies, r.points
    ), merged AS (
        INSERT INTO anomaly_rollup (tenant, grain, bucket, facet, key, anomalies, points, merged)
        SELECT tenant, grain, bucket, facet, key, sum(anomalies), sum(points), true FROM moved
        GROUP BY tenant, grain, bucket, facet, key
        HAVING sum(anomalies) <> 0 OR sum(points) <> 0
        RETURNING 1
    ), bumped AS (
        INSERT INTO query_rollup_versions (tenant, generation)
        SELECT DISTINCT tenant, 1 FROM moved
        ON CONFLICT (tenant) DO UPDATE SET generation = query_rollup_versions.generation + 1
    )
    SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM merged)  -- "bumped" runs all the same
    """
)
_MERGE_EVENT_COUNTS = text(
    """
    WITH target AS (
        SELECT DISTINCT tenant, hour FROM event_counts WHERE NOT merged LIMIT :buckets
    ), moved AS (
        DELETE FROM event_counts c USING target t WHERE c.tenant = t.tenant AND c.hour = t.hour
        RETURNING c.tenant, c.hour, c.events
    )
    INSERT INTO event_counts (tenant, hour, events, merged)
    SELECT tenant, hour, sum(events), true FROM moved GROUP BY tenant, hour HAVING sum(events) <> 0
    """
)


def merge_rollups(engine: Engine, buckets: int = 2000) -> int:
    """Merges the deltas of up to `buckets` buckets per table; returns rows moved and written (0: nothing to merge)."""
    with engine.begin() as conn:
        if not conn.execute(select(func.pg_try_advisory_xact_lock(_MERGE_LOCK, 0))).scalar_one():
            return 0
        written = conn.execute(_MERGE_ANOMALY_ROLLUP, {"buckets": buckets}).scalar_one()
        written += conn.execute(_MERGE_EVENT_COUNTS, {"buckets": buckets}).rowcount
    return written


def _aged_out(horizon: datetime):
    return user_risk.c.oldest_open <= horizon


def needs_refresh(conn: Connection, tenant: str, horizon: datetime) -> bool:
    """Whether a user of the tenant is marked dirty or has an open anomaly at or before `horizon`."""
    dirty = exists(select(1).where(user_risk_dirty.c.tenant == tenant))
    aged = exists(select(1).where(user_risk.c.tenant == tenant, _aged_out(horizon)))
    return bool(conn.execute(select(dirty | aged)).scalar_one())


def tenants_to_refresh(conn: Connection, horizon: datetime) -> set[str]:
    tenants = set(conn.execute(select(user_risk_dirty.c.tenant).distinct()).scalars())
    tenants.update(conn.execute(select(user_risk.c.tenant).where(_aged_out(horizon)).distinct()).scalars())
    return tenants


def claim_users(conn: Connection, tenant: str, horizon: datetime) -> list[str]:
    """The tenant's dirty and aged-out users, sorted; takes the tenant's refresh lock and clears the dirty marks."""
    conn.execute(select(func.pg_advisory_xact_lock(_RISK_LOCK, func.hashtext(tenant))))
    users = set(
        conn.execute(
            delete(user_risk_dirty).where(user_risk_dirty.c.tenant == tenant).returning(user_risk_dirty.c.user_name)
        ).scalars()
    )
    users.update(conn.execute(select(user_risk.c.user_name).where(user_risk.c.tenant == tenant, _aged_out(horizon))).scalars())
    return sorted(users)


def oldest_open(conn: Connection, tenant: str, names: list[str], horizon: datetime) -> dict[str, datetime]:
    """Each user's oldest open anomaly after `horizon`."""
    a = anomalies.c
    return dict(
        conn.execute(
            select(a.user_name, func.min(a.time))
            .where(a.tenant == tenant, a.status == OPEN_STATUS, a.time > horizon, a.user_name.in_(names))
            .group_by(a.user_name)
        ).all()
    )


def write_user_risk(conn: Connection, tenant: str, rows: list[dict], gone: list[str]) -> None:
    """Upserts `rows` of user_risk and deletes the rows of the users in `gone`."""
    if gone:
        conn.execute(delete(user_risk).where(user_risk.c.tenant == tenant, user_risk.c.user_name.in_(gone)))
    if rows:
        stmt = insert(user_risk).values(rows)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant", "user_name"],
                set_={c: stmt.excluded[c] for c in ("points", "risk", "open_anomalies", "oldest_open", "updated_at")},
            )
        )
