"""The pre-aggregates' upkeep: merging rollup deltas, and reading and writing each entity's current risk."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, exists, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert

from services.query.store.timelines import BUCKET_TOTALS_SQL
from ueba.risk import OPEN_STATUS
from ueba.store.schema import anomalies, entity_risk, entity_risk_dirty, user_risk, user_risk_dirty

# Advisory lock keys (class, object): one refresher per tenant at a time, one merger.
_RISK_LOCK = 0x0E0E0004
_MERGE_LOCK = 0x0E0E0005

# Moves each chosen bucket's deltas into one merged row per key, and bumps the
# rollup generation of every tenant it touched in the same transaction: cached
# summary totals (services/query/summary.py) are checked against it. The hours it
# merges get their risk_hour_totals recomputed from anomalies in the same statement,
# so an hour without unmerged deltas has current totals (the risk timeline relies on it).
_MERGE_ANOMALY_ROLLUP = text(
    f"""
    WITH target AS (
        SELECT DISTINCT tenant, grain, bucket FROM anomaly_rollup WHERE NOT merged LIMIT :buckets
    ), totals AS (
        INSERT INTO risk_hour_totals (tenant, hour, anomalies, points, accounts)
        SELECT t.tenant, t.bucket, s.n, s.p, s.u FROM target t
        CROSS JOIN LATERAL ({BUCKET_TOTALS_SQL.format(tenant="t.tenant", lo="t.bucket", hi="t.bucket + interval '1 hour'", conditions="")}) s
        WHERE t.grain = 'hour'
        ON CONFLICT (tenant, hour) DO UPDATE
        SET anomalies = excluded.anomalies, points = excluded.points, accounts = excluded.accounts
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
    SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM merged)  -- "bumped" and "totals" run all the same
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


def _aged_out(table, horizon: datetime):
    return table.c.oldest_open <= horizon


def needs_refresh(conn: Connection, tenant: str, horizon: datetime) -> bool:
    """Whether an entity of the tenant is marked dirty or has an open anomaly at or before `horizon`."""
    checks = [exists(select(1).where(dirty.c.tenant == tenant)) for dirty in (user_risk_dirty, entity_risk_dirty)]
    checks += [exists(select(1).where(t.c.tenant == tenant, _aged_out(t, horizon))) for t in (user_risk, entity_risk)]
    return bool(conn.execute(select(or_(*checks))).scalar_one())


def tenants_to_refresh(conn: Connection, horizon: datetime) -> set[str]:
    tenants: set[str] = set()
    for dirty in (user_risk_dirty, entity_risk_dirty):
        tenants.update(conn.execute(select(dirty.c.tenant).distinct()).scalars())
    for table in (user_risk, entity_risk):
        tenants.update(conn.execute(select(table.c.tenant).where(_aged_out(table, horizon)).distinct()).scalars())
    return tenants


def first_oldest_open(conn: Connection) -> datetime | None:
    """The earliest oldest open finding of any entity of any tenant: the next to leave the risk window."""
    earliest = [select(func.min(t.c.oldest_open)).scalar_subquery() for t in (user_risk, entity_risk)]
    return conn.execute(select(func.least(*earliest))).scalar_one()


def lock(conn: Connection, tenant: str) -> None:
    """The tenant's refresh lock, until the transaction ends: one refresher per tenant at a time."""
    conn.execute(select(func.pg_advisory_xact_lock(_RISK_LOCK, func.hashtext(tenant))))


def claim(conn: Connection, tenant: str, horizon: datetime) -> dict[str, list[str]]:
    """The tenant's dirty and aged-out entities by type, sorted; takes the tenant's refresh lock and clears the dirty marks."""
    lock(conn, tenant)
    found: dict[str, set[str]] = defaultdict(set)
    ud, ed = user_risk_dirty.c, entity_risk_dirty.c
    found["user"].update(conn.execute(delete(user_risk_dirty).where(ud.tenant == tenant).returning(ud.user_name)).scalars())
    found["user"].update(
        conn.execute(select(user_risk.c.user_name).where(user_risk.c.tenant == tenant, _aged_out(user_risk, horizon))).scalars()
    )
    for entity_type, entity in conn.execute(delete(entity_risk_dirty).where(ed.tenant == tenant).returning(ed.entity_type, ed.entity)):
        found[entity_type].add(entity)
    er = entity_risk.c
    for entity_type, entity in conn.execute(
        select(er.entity_type, er.entity).where(er.tenant == tenant, _aged_out(entity_risk, horizon))
    ):
        found[entity_type].add(entity)
    return {t: sorted(names) for t, names in found.items() if names}


def oldest_open(conn: Connection, tenant: str, entity_type: str, names: list[str], horizon: datetime) -> dict[str, datetime]:
    """Each entity's oldest open anomaly after `horizon`."""
    a = anomalies.c
    return dict(
        conn.execute(
            select(a.entity, func.min(a.time))
            .where(a.tenant == tenant, a.entity_type == entity_type, a.status == OPEN_STATUS, a.time > horizon,
                   a.entity.in_(names))
            .group_by(a.entity)
        ).all()
    )


_RISK_COLUMNS = ("points", "risk", "open_anomalies", "oldest_open", "updated_at")


def write_risk(conn: Connection, tenant: str, entity_type: str, rows: list[dict], gone: list[str]) -> None:
    """Upserts the risk `rows` ({"name", points, ...}) of one entity type and deletes the rows of the names in `gone`.

    Accounts live in user_risk, every other entity in entity_risk.
    """
    if entity_type == "user":
        table, keys, scope = user_risk, {"user_name": None}, [user_risk.c.tenant == tenant]
        name = user_risk.c.user_name
    else:
        table, keys, scope = entity_risk, {"entity_type": entity_type, "entity": None}, [
            entity_risk.c.tenant == tenant, entity_risk.c.entity_type == entity_type]
        name = entity_risk.c.entity
    if gone:
        conn.execute(delete(table).where(*scope, name.in_(gone)))
    if rows:
        values = [
            {"tenant": tenant, **{k: (v if v is not None else r["name"]) for k, v in keys.items()},
             **{c: r[c] for c in _RISK_COLUMNS}}
            for r in rows
        ]
        stmt = insert(table).values(values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant", *keys], set_={c: stmt.excluded[c] for c in _RISK_COLUMNS},
            )
        )
