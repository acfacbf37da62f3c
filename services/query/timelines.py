"""A user's day hour by hour, and the organisation's risk over time with surges (thresholds in the README)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from services.query.store import timelines as store
from services.query.store.reads import Reads
from ueba.errors import InvalidArgument, NotFound

DISPLAY_FLOOR = 50.0
SURGE_MADS = 3.0
MAD_SCALE = 1.4826
MIN_BUCKET_SECONDS = 60
MAX_BUCKETS = 5000


def display_threshold(scores: list[int]) -> float:
    """max(50, the 90th percentile of the day's non-empty scores): a bad day highlights only its worst tenth."""
    present = sorted(s for s in scores if s > 0)
    if not present:
        return DISPLAY_FLOOR
    p90 = present[0] if len(present) == 1 else statistics.quantiles(present, n=10, method="inclusive")[8]
    return max(DISPLAY_FLOOR, float(p90))


def surge_threshold(values: list[float]) -> float:
    """Median plus three scaled MADs (at least 1 point): surges do not raise the bar that finds them."""
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


@dataclass
class UserDay:
    scores: list  # [hour 0-23, model, score, features, learning], by hour then score descending
    events: dict[int, int]  # events per hour 0-23
    day_score: float | None
    anomalies: list  # JSON arrays (convert.anomaly_from_json), by time


def user_day(reads: Reads, tenant: str, user: str, day: datetime) -> UserDay:
    """The hourly scores, events per hour, day score and anomalies of one user-day (`day` at 00:00 UTC)."""
    row = store.user_day(reads, tenant, user, day)
    scores, events, anomalies = row.scores or [], dict(row.events or ()), row.anomalies or []
    if not scores and not events and not anomalies and row.day_score is None and not row.known:
        raise NotFound(f"user {user!r} not found")
    return UserDay(scores, events, row.day_score[0] if row.day_score else None, anomalies)


def buckets_of(start: datetime | None, end: datetime | None, bucket_seconds: int, now: datetime) -> tuple[datetime, datetime, int]:
    """The range and bucket length a risk timeline asks for: by default the 7 days up to now, in hours."""
    end = end or now
    start = start or end - timedelta(days=7)
    if start >= end:
        raise InvalidArgument("range: start must be before end")
    if bucket_seconds < 0:
        raise InvalidArgument("bucket_seconds: must not be negative")
    return start, end, bucket_seconds or 3600


def risk_buckets(conn: Connection, tenant: str, start: datetime, end: datetime, bucket_seconds: int,
                 include_ignored: bool = False, entity: tuple[str, str] | None = None):
    """[(bucket start, anomalies, risk points, users)] for every bucket of [start, end), empty ones included;
    of one entity's findings when `entity` (type, name) is given.

    False positives are left out: they were never risk.
    """
    if bucket_seconds < MIN_BUCKET_SECONDS:
        raise InvalidArgument(f"bucket_seconds: at least {MIN_BUCKET_SECONDS}")
    step = timedelta(seconds=bucket_seconds)
    n = -(-(end - start) // step)
    if n > MAX_BUCKETS:
        raise InvalidArgument(f"bucket_seconds: {n} buckets over this range; at most {MAX_BUCKETS} (use larger buckets)")
    found = store.risk_buckets(conn, tenant, start, end, step, include_ignored or entity is not None, entity)
    return [(start + i * step, *found.get(start + i * step, (0, 0, 0))) for i in range(n)]
