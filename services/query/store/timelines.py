"""A user's day hour by hour, and anomalies and risk points per time bucket."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, text

from services.query.store.json_rows import anomaly_json_sql
from services.query.store.reads import Reads

# One user-day in one statement. Hours are numbered 0-23 from the (UTC) day's start.
_USER_DAY_SQL = text(f"""
    SELECT
        (SELECT json_agg(json_build_array(extract(hour FROM hour AT TIME ZONE 'UTC')::int, model, score, features, learning)
                         ORDER BY hour, score DESC, model)
         FROM event_scores WHERE tenant = :tenant AND user_name = :user AND hour >= :day AND hour < :end) AS scores,
        (SELECT json_agg(json_build_array(h, n)) FROM (
            SELECT extract(hour FROM time AT TIME ZONE 'UTC')::int AS h, count(*) AS n FROM events
            WHERE tenant = :tenant AND user_name = :user AND time >= :day AND time < :end GROUP BY 1) e) AS events,
        (SELECT json_build_array(score, learning) FROM user_scores
         WHERE tenant = :tenant AND user_name = :user AND day = :date) AS day_score,
        (SELECT json_agg({anomaly_json_sql()} ORDER BY anomalies.time, anomalies.id) FROM anomalies
         WHERE tenant = :tenant AND user_name = :user AND time >= :day AND time < :end) AS anomalies,
        EXISTS (SELECT 1 FROM users WHERE tenant = :tenant AND user_name = :user) AS known
""")


def user_day(reads: Reads, tenant: str, user: str, day: datetime) -> Row:
    """The hourly scores, events per hour, day score, anomalies and whether the user is known, of `day` (00:00 UTC)."""
    return reads.one(_USER_DAY_SQL, {"tenant": tenant, "user": user, "day": day, "end": day + timedelta(days=1), "date": day.date()})


# Each bucket is one index-only range scan of ix_anomalies_tenant_time_covering, its accounts counted
# distinct among ~100 rows; one GROUP BY over the whole range sorted ~93,000 rows on disk instead
# (README, "Indexes"). The ignore list is a hashed NOT IN, read once, rather than a probe per row.
_BUCKETS_SQL = """
    SELECT g.b, s.n, s.p, s.u
    FROM generate_series(CAST(:start AS timestamptz), CAST(:last AS timestamptz), CAST(:step AS interval)) AS g(b)
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, coalesce(sum(a.risk_score), 0) AS p, count(DISTINCT nullif(a.user_name, '')) AS u
        FROM anomalies a
        WHERE a.tenant = :tenant AND a.time >= g.b AND a.time < least(g.b + CAST(:step AS interval), :end)
          AND a.status NOT IN ('false_positive', 'suppressed') {conditions}
    ) AS s
    WHERE s.n > 0
"""
_NOT_IGNORED = "AND a.user_name NOT IN (SELECT i.user_name FROM ignored_users i WHERE i.tenant = :tenant)"
_OF_ENTITY = "AND a.entity_type = :entity_type AND a.entity = :entity"
# Fixed texts, so each is compiled once and prepared by psycopg.
_BUCKETS = {
    (ignored, entity): text(_BUCKETS_SQL.format(conditions=" ".join(
        ([] if ignored else [_NOT_IGNORED]) + ([_OF_ENTITY] if entity else []))))
    for ignored in (False, True) for entity in (False, True)
}


def risk_buckets(
    conn: Connection, tenant: str, start: datetime, end: datetime, step: timedelta, include_ignored: bool,
    entity: tuple[str, str] | None = None,
) -> dict:
    """{bucket start: (anomalies, risk points, accounts)} of the non-empty buckets of [start, end), of one
    entity's findings when given; false positives left out."""
    last = start + (-(-(end - start) // step) - 1) * step
    params = {"tenant": tenant, "start": start, "last": last, "end": end, "step": step}
    if entity is not None:
        params.update(entity_type=entity[0], entity=entity[1])
    statement = _BUCKETS[(include_ignored, entity is not None)]
    return {b: (n, int(p), u) for b, n, p, u in conn.execute(statement, params)}
