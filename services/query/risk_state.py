"""Keeps the pre-aggregates the summary reads: merged rollups and current user risk.

Triggers on `anomalies` and `events` (migration 0004_query) append signed
deltas to anomaly_rollup and event_counts and mark changed users in
user_risk_dirty. Here the deltas of each bucket are merged into one row per key,
and the user_risk rows of dirty users, and of users whose oldest open anomaly
has left the risk window, are recomputed with ueba.risk. A reader calls
`ensure_fresh` first, so user risk is never stale; the background worker only
keeps that call cheap.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Engine, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert

from ueba.risk import OPEN_STATUS, open_scores, user_risk
from ueba.store.schema import anomalies, user_risk as user_risk_table, user_risk_dirty
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)

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


def _aged_out(now: datetime, window_days: int):
    return user_risk_table.c.oldest_open <= now - timedelta(days=window_days)


def needs_refresh(conn: Connection, tenant: str, now: datetime, window_days: int) -> bool:
    dirty = exists(select(1).where(user_risk_dirty.c.tenant == tenant))
    aged = exists(select(1).where(user_risk_table.c.tenant == tenant, _aged_out(now, window_days)))
    return bool(conn.execute(select(dirty | aged)).scalar_one())


def refresh(conn: Connection, tenant: str, now: datetime, window_days: int) -> int:
    """Recomputes user_risk for the tenant's dirty and aged-out users (inside the caller's transaction)."""
    conn.execute(select(func.pg_advisory_xact_lock(_RISK_LOCK, func.hashtext(tenant))))
    users = set(
        conn.execute(
            delete(user_risk_dirty).where(user_risk_dirty.c.tenant == tenant).returning(user_risk_dirty.c.user_name)
        ).scalars()
    )
    users.update(
        conn.execute(
            select(user_risk_table.c.user_name).where(user_risk_table.c.tenant == tenant, _aged_out(now, window_days))
        ).scalars()
    )
    if not users:
        return 0
    names = sorted(users)
    scores = open_scores(conn, tenant, now, window_days, users=names)
    oldest = dict(
        conn.execute(
            select(anomalies.c.user_name, func.min(anomalies.c.time))
            .where(
                anomalies.c.tenant == tenant,
                anomalies.c.status == OPEN_STATUS,
                anomalies.c.time > now - timedelta(days=window_days),
                anomalies.c.user_name.in_(names),
            )
            .group_by(anomalies.c.user_name)
        ).all()
    )
    rows = []
    for name in names:
        if scores.get(name):
            points, risk, _level = user_risk(scores[name])
            rows.append(
                {
                    "tenant": tenant,
                    "user_name": name,
                    "points": points,
                    "risk": risk,
                    "open_anomalies": len(scores[name]),
                    "oldest_open": oldest.get(name),
                    "updated_at": now,
                }
            )
    gone = [n for n in names if not scores.get(n)]
    if gone:
        conn.execute(delete(user_risk_table).where(user_risk_table.c.tenant == tenant, user_risk_table.c.user_name.in_(gone)))
    if rows:
        stmt = insert(user_risk_table).values(rows)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant", "user_name"],
                set_={c: stmt.excluded[c] for c in ("points", "risk", "open_anomalies", "oldest_open", "updated_at")},
            )
        )
    return len(names)


def ensure_fresh(engine: Engine, tenant: str, now: datetime, window_days: int) -> bool:
    """Brings the tenant's user_risk up to date before a read that relies on it; True when it wrote."""
    with engine.connect() as conn:
        if not needs_refresh(conn, tenant, now, window_days):
            return False
    with engine.begin() as conn:
        return refresh(conn, tenant, now, window_days) > 0


class Maintainer(PeriodicWorker):
    """Background work of the query service: merges rollups, refreshes user risk.

    A failed round is retried at the next: reads stay correct without it.
    """

    thread_name = "query-maintenance"

    def __init__(self, engine: Engine, window_days: int, interval: float):
        super().__init__()
        self.engine = engine
        self.window_days = window_days
        self.interval = interval

    def run_once(self) -> None:
        now = datetime.now(timezone.utc)
        while merge_rollups(self.engine) > 0 and not self.stopping.is_set():
            pass
        with self.engine.connect() as conn:
            tenants = set(conn.execute(select(user_risk_dirty.c.tenant).distinct()).scalars())
            tenants.update(
                conn.execute(select(user_risk_table.c.tenant).where(_aged_out(now, self.window_days)).distinct()).scalars()
            )
        for tenant in sorted(tenants):
            with self.engine.begin() as conn:
                refresh(conn, tenant, now, self.window_days)

