"""GetSummary: anomaly totals for a range from the rollups, and the riskiest users.

A range is split into whole UTC days (read from the day rollup), whole hours
at its ends (the hour rollup) and the partial hours at its very edges (the
anomalies themselves, a few hundred rows at most), so the cost does not grow
with the number of anomalies in the range. Anomalies of ignored users are
subtracted using the (tenant, user_name, time) index.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, or_, select

from services.query.filters import not_ignored
from services.query.vocab import STATUSES
from ueba.risk import LEVELS, risk_level
from ueba.store.schema import anomalies, anomaly_rollup, event_counts, ignored_users, user_risk, users

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FACETS = ("level", "profile", "dimension", "status", "source")


def floor_to(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=t.tzinfo)
    return t - ((t - epoch) % step)


def ceil_to(t: datetime, step: timedelta) -> datetime:
    floored = floor_to(t, step)
    return floored if floored == t else floored + step


@dataclass
class Totals:
    """Anomalies and points per facet key."""

    anomalies: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    points: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, facet: str, key: str, count: int, points: int, sign: int = 1) -> None:
        self.anomalies[facet][key] += sign * count
        self.points[facet][key] += sign * points

    def add_raw(self, score: int, profile: str, dimension: str, status: str, source: str, count: int, points: int, sign: int = 1) -> None:
        for facet, key in zip(FACETS, (risk_level(score), profile, dimension, status, source)):
            self.add(facet, key, count, points, sign)


def split_range(start: datetime, end: datetime):
    """(raw intervals, hour-bucket intervals, day-bucket interval or None) covering [start, end)."""
    h0, h1 = ceil_to(start, HOUR), floor_to(end, HOUR)
    if h0 >= h1:
        return [(start, end)], [], None
    raw = [(s, e) for s, e in ((start, h0), (h1, end)) if s < e]
    d0, d1 = ceil_to(h0, DAY), floor_to(h1, DAY)
    if d0 >= d1:
        return raw, [(h0, h1)], None
    hours = [(s, e) for s, e in ((h0, d0), (d1, h1)) if s < e]
    return raw, hours, (d0, d1)


def _raw_totals(conn: Connection, totals: Totals, conditions, sign: int = 1, join_ignored: bool = False) -> None:
    a = anomalies.c
    q = select(a.risk_score, a.profile_name, a.dimension, a.status, a.source, func.count(), func.sum(a.risk_score))
    if join_ignored:
        q = q.select_from(
            anomalies.join(ignored_users, and_(ignored_users.c.tenant == a.tenant, ignored_users.c.user_name == a.user_name))
        )
    q = q.where(*conditions).group_by(a.risk_score, a.profile_name, a.dimension, a.status, a.source)
    for score, profile, dimension, status, source, count, points in conn.execute(q):
        totals.add_raw(score, profile, dimension, status, source, count, int(points), sign)


def anomaly_totals(conn: Connection, tenant: str, start: datetime, end: datetime, include_ignored: bool) -> Totals:
    totals = Totals()
    raw, hours, days = split_range(start, end)
    r = anomaly_rollup.c
    buckets = [and_(r.grain == "hour", r.bucket >= s, r.bucket < e) for s, e in hours]
    if days:
        buckets.append(and_(r.grain == "day", r.bucket >= days[0], r.bucket < days[1]))
    if buckets:
        q = (
            select(r.facet, r.key, func.sum(r.anomalies), func.sum(r.points))
            .where(r.tenant == tenant, or_(*buckets))
            .group_by(r.facet, r.key)
        )
        for facet, key, count, points in conn.execute(q):
            totals.add(facet, key, int(count), int(points))
    a = anomalies.c
    if raw:
        _raw_totals(conn, totals, [a.tenant == tenant, or_(*[and_(a.time >= s, a.time < e) for s, e in raw])])
    if not include_ignored:
        _raw_totals(conn, totals, [a.tenant == tenant, a.time >= start, a.time < end], sign=-1, join_ignored=True)
    return totals


def riskiest_users(conn: Connection, tenant: str, top: int, include_ignored: bool):
    ur = user_risk.c
    q = select(ur.user_name, ur.points, ur.risk, ur.open_anomalies).where(ur.tenant == tenant)
    if not include_ignored:
        q = q.where(not_ignored(ur.tenant, ur.user_name))
    return conn.execute(q.order_by(ur.risk.desc(), ur.points.desc(), ur.user_name).limit(top)).all()


def users_seen(conn: Connection, tenant: str, start: datetime, end: datetime, include_ignored: bool) -> int:
    u = users.c
    q = select(func.count()).where(u.tenant == tenant, u.first_seen < end, u.last_seen >= start)
    if not include_ignored:
        q = q.where(not_ignored(u.tenant, u.user_name))
    return conn.execute(q).scalar_one()


def events_in(conn: Connection, tenant: str, start: datetime, end: datetime) -> int:
    c = event_counts.c
    q = select(func.coalesce(func.sum(c.events), 0)).where(
        c.tenant == tenant, c.hour >= floor_to(start, HOUR), c.hour < ceil_to(end, HOUR)
    )
    return int(conn.execute(q).scalar_one())


def ordered_counts(counter: Counter, keys: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """Every key of `keys` (zeros included) in that order, else non-zero keys by count."""
    if keys is not None:
        return [(k, counter.get(k, 0)) for k in keys]
    return sorted(((k, v) for k, v in counter.items() if v), key=lambda kv: (-kv[1], kv[0]))


LEVELS_HIGH_FIRST = tuple(reversed(LEVELS))
ALL_STATUSES = STATUSES
