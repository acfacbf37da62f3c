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


# The counted findings of one bucket (false positives and suppressed ones never were risk): also
# the statement the rollup merge (store/risk_state.py) recomputes risk_hour_totals with.
BUCKET_TOTALS_SQL = """
    SELECT count(*) AS n, coalesce(sum(a.risk_score), 0) AS p, count(DISTINCT nullif(a.user_name, '')) AS u
    FROM anomalies a
    WHERE a.tenant = {tenant} AND a.time >= {lo} AND a.time < {hi}
      AND a.status NOT IN ('false_positive', 'suppressed') {conditions}
"""
_NOT_IGNORED = "AND a.user_name NOT IN (SELECT i.user_name FROM ignored_users i WHERE i.tenant = :tenant)"
_OF_ENTITY = "AND a.entity_type = :entity_type AND a.entity = :entity"


def _bucket_totals(lo: str, hi: str, ignored: bool, entity: bool = False) -> str:
    conditions = " ".join(([] if ignored else [_NOT_IGNORED]) + ([_OF_ENTITY] if entity else []))
    return BUCKET_TOTALS_SQL.format(tenant=":tenant", lo=lo, hi=hi, conditions=conditions)


# Any range and step: each bucket is one index-only range scan of ix_anomalies_tenant_time_covering,
# its accounts counted distinct among ~100 rows; one GROUP BY over the whole range sorted ~93,000
# rows on disk instead (README, "Indexes"). The ignore list is a hashed NOT IN, read once.
_BUCKETS_SQL = """
    SELECT g.b, s.n, s.p, s.u
    FROM generate_series(CAST(:start AS timestamptz), CAST(:last AS timestamptz), CAST(:step AS interval)) AS g(b)
    CROSS JOIN LATERAL ({totals}) AS s
    WHERE s.n > 0
"""
# Fixed texts, so each is compiled once and prepared by psycopg.
_BUCKETS = {
    (ignored, entity): text(_BUCKETS_SQL.format(
        totals=_bucket_totals("g.b", "least(g.b + CAST(:step AS interval), :end)", ignored, entity)))
    for ignored in (False, True) for entity in (False, True)
}

# Hourly buckets on UTC hours: a whole hour whose deltas are all merged is its risk_hour_totals
# row, less the ignored accounts' share (read from their own rows, (tenant, user_name, time));
# hours with unmerged deltas and a cut last hour are counted from anomalies as above.
_HOURS_SQL = """
    WITH dirty AS MATERIALIZED (
        SELECT DISTINCT r.bucket AS hour FROM anomaly_rollup r
        WHERE r.tenant = :tenant AND r.grain = 'hour' AND NOT r.merged AND r.bucket >= :start AND r.bucket < :whole_end
    )
    SELECT hour, sum(n), sum(p), sum(u) FROM (
        SELECT t.hour, t.anomalies AS n, t.points AS p, t.accounts AS u FROM risk_hour_totals t
        WHERE t.tenant = :tenant AND t.hour >= :start AND t.hour < :whole_end
          AND t.hour NOT IN (SELECT hour FROM dirty)
        {ignored_share}
        UNION ALL
        SELECT g.b, s.n, s.p, s.u
        FROM (SELECT hour FROM dirty UNION ALL SELECT CAST(:whole_end AS timestamptz) WHERE :whole_end < :end) AS g(b)
        CROSS JOIN LATERAL ({totals}) AS s
    ) x
    GROUP BY hour HAVING sum(n) > 0
"""
_IGNORED_SHARE = """
        UNION ALL
        SELECT date_trunc('hour', a.time, 'UTC'), -count(*), -sum(a.risk_score), -count(DISTINCT nullif(a.user_name, ''))
        FROM anomalies a
        WHERE a.tenant = :tenant AND a.user_name IN (SELECT i.user_name FROM ignored_users i WHERE i.tenant = :tenant)
          AND a.time >= :start AND a.time < :whole_end AND a.status NOT IN ('false_positive', 'suppressed')
          AND date_trunc('hour', a.time, 'UTC') NOT IN (SELECT hour FROM dirty)
        GROUP BY 1"""
_HOURS = {
    ignored: text(_HOURS_SQL.format(
        ignored_share="" if ignored else _IGNORED_SHARE,
        totals=_bucket_totals("g.b", "least(g.b + interval '1 hour', :end)", ignored)))
    for ignored in (False, True)
}
HOUR = timedelta(hours=1)


def _on_utc_hours(start: datetime, step: timedelta) -> bool:
    # By the epoch, not the clock fields: a start given in another offset (+05:30) is no UTC hour.
    return step == HOUR and start.timestamp() % 3600 == 0


def risk_buckets(
    conn: Connection, tenant: str, start: datetime, end: datetime, step: timedelta, include_ignored: bool,
    entity: tuple[str, str] | None = None,
) -> dict:
    """{bucket start: (anomalies, risk points, accounts)} of the non-empty buckets of [start, end), of one
    entity's findings when given; false positives left out."""
    params = {"tenant": tenant, "start": start, "end": end}
    if entity is None and _on_utc_hours(start, step):
        params["whole_end"] = start + (end - start) // HOUR * HOUR
        statement = _HOURS[include_ignored]
    else:
        params.update(last=start + (-(-(end - start) // step) - 1) * step, step=step)
        if entity is not None:
            params.update(entity_type=entity[0], entity=entity[1])
        statement = _BUCKETS[(include_ignored, entity is not None)]
    return {b: (int(n), int(p), int(u)) for b, n, p, u in conn.execute(statement, params)}
