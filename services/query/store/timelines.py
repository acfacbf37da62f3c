"""A user's day hour by hour, and anomalies and risk points per time bucket."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, func, select, text

from services.query.store.conditions import not_ignored
from services.query.store.json_rows import anomaly_json_sql
from services.query.store.reads import Reads
from ueba.store.schema import anomalies

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


def risk_buckets(
    conn: Connection, tenant: str, start: datetime, end: datetime, step: timedelta, include_ignored: bool,
    entity: tuple[str, str] | None = None,
) -> dict:
    """{bucket start: (anomalies, risk points, accounts)} of the non-empty buckets of [start, end), of one
    entity's findings when given; false positives left out."""
    a = anomalies.c
    bucket = func.date_bin(step, a.time, start)
    accounts = func.count(func.nullif(a.user_name, "").distinct())  # a finding about a source names none
    q = select(bucket, func.count(), func.sum(a.risk_score), accounts).where(
        a.tenant == tenant, a.time >= start, a.time < end, a.status != "false_positive"
    )
    if entity is not None:
        q = q.where(a.entity_type == entity[0], a.entity == entity[1])
    if not include_ignored:
        q = q.where(not_ignored(a.tenant, a.user_name))
    return {b: (c, int(p), u) for b, c, p, u in conn.execute(q.group_by(bucket))}
