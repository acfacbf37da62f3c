"""A user's day hour by hour, and the organisation's risk over time with surges.

Display threshold (user timeline): max(50, the 90th percentile of the user's
non-empty event scores that day). The floor keeps ordinary hours (under 50)
from ever being highlighted; the percentile keeps a bad day, where many cards
score high, down to its worst tenth, so the eye goes to the hours that matter.

Surges (risk timeline): a bucket is a surge when its risk points exceed the
median of the range's buckets by more than three scaled median absolute
deviations (1.4826 * MAD, the robust stand-in for a standard deviation), with
the deviation floored at 1 point so that a flat range marks any real jump.
Median and MAD are used rather than mean and standard deviation so that the
surges themselves do not raise the bar that detects them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text

from services.query.convert import anomaly_json_sql
from ueba.errors import InvalidArgument, NotFound
from services.query.filters import not_ignored
from services.query.reads import Reads
from ueba.store.schema import anomalies

DISPLAY_FLOOR = 50.0
SURGE_MADS = 3.0
MAD_SCALE = 1.4826
MIN_BUCKET_SECONDS = 60
MAX_BUCKETS = 5000


def display_threshold(scores: list[int]) -> float:
    present = sorted(s for s in scores if s > 0)
    if not present:
        return DISPLAY_FLOOR
    p90 = present[0] if len(present) == 1 else statistics.quantiles(present, n=10, method="inclusive")[8]
    return max(DISPLAY_FLOOR, float(p90))


def surge_threshold(values: list[float]) -> float:
    if not values:
        return 0.0
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median + SURGE_MADS * max(MAD_SCALE * mad, 1.0)


def features_of(raw: Any) -> list[dict[str, float | str]]:
    """The stored feature list, tolerant of missing or non-numeric values."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        values = {}
        for key in ("expected", "observed", "share"):
            try:
                values[key] = float(item.get(key) or 0.0)
            except (TypeError, ValueError):
                values[key] = 0.0
        out.append({"name": str(item.get("name", "")), **values})
    return out


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


@dataclass
class UserDay:
    scores: list  # [hour 0-23, model, score, features, learning], by hour then score descending
    events: dict[int, int]  # events per hour 0-23
    day_score: float | None
    anomalies: list  # JSON arrays (convert.anomaly_from_json), by time


def user_day(reads: Reads, tenant: str, user: str, day: datetime) -> UserDay:
    """The hourly scores, events per hour, day score and anomalies of one user-day (`day` at 00:00 UTC)."""
    row = reads.one(_USER_DAY_SQL, {"tenant": tenant, "user": user, "day": day, "end": day + timedelta(days=1), "date": day.date()})
    scores, events, anomalies = row.scores or [], dict(row.events or ()), row.anomalies or []
    if not scores and not events and not anomalies and row.day_score is None and not row.known:
        raise NotFound(f"user {user!r} not found")
    return UserDay(scores, events, row.day_score[0] if row.day_score else None, anomalies)


def risk_buckets(conn: Connection, tenant: str, start: datetime, end: datetime, bucket_seconds: int, include_ignored: bool = False):
    """[(bucket start, anomalies, risk points, users)] for every bucket of [start, end), empty ones included.

    False positives are left out: they were never risk.
    """
    if bucket_seconds < MIN_BUCKET_SECONDS:
        raise InvalidArgument(f"bucket_seconds: at least {MIN_BUCKET_SECONDS}")
    step = timedelta(seconds=bucket_seconds)
    n = -(-(end - start) // step)
    if n > MAX_BUCKETS:
        raise InvalidArgument(f"bucket_seconds: {n} buckets over this range; at most {MAX_BUCKETS} (use larger buckets)")
    a = anomalies.c
    bucket = func.date_bin(step, a.time, start)
    q = select(bucket, func.count(), func.sum(a.risk_score), func.count(a.user_name.distinct())).where(
        a.tenant == tenant, a.time >= start, a.time < end, a.status != "false_positive"
    )
    if not include_ignored:
        q = q.where(not_ignored(a.tenant, a.user_name))
    found = {b: (c, int(p), u) for b, c, p, u in conn.execute(q.group_by(bucket))}
    return [(start + i * step, *found.get(start + i * step, (0, 0, 0))) for i in range(n)]
