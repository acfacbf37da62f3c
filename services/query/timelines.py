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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from services.query.errors import InvalidArgument, NotFound
from services.query.filters import not_ignored
from ueba.store.schema import anomalies, event_scores, events, user_scores, users

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


def user_day(conn: Connection, tenant: str, user: str, day: datetime):
    """(hourly scores, events per hour, the day's user score row, anomalies) of one user-day."""
    end = day + timedelta(days=1)
    s = event_scores.c
    scores = conn.execute(
        select(s.hour, s.model, s.score, s.features, s.learning)
        .where(s.tenant == tenant, s.user_name == user, s.hour >= day, s.hour < end)
        .order_by(s.hour, s.score.desc(), s.model)
    ).all()
    e = events.c
    hour = func.date_trunc("hour", e.time, "UTC")
    counts = dict(
        conn.execute(
            select(hour, func.count()).where(e.tenant == tenant, e.user_name == user, e.time >= day, e.time < end).group_by(hour)
        ).all()
    )
    u = user_scores.c
    day_score = conn.execute(select(u.score, u.learning).where(u.tenant == tenant, u.user_name == user, u.day == day.date())).first()
    a = anomalies.c
    day_anomalies = conn.execute(
        select(anomalies).where(a.tenant == tenant, a.user_name == user, a.time >= day, a.time < end).order_by(a.time, a.id)
    ).all()
    if not scores and not counts and not day_anomalies and day_score is None:
        known = conn.execute(select(func.count()).where(users.c.tenant == tenant, users.c.user_name == user)).scalar_one()
        if not known:
            raise NotFound(f"user {user!r} not found")
    return scores, counts, day_score, day_anomalies


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
