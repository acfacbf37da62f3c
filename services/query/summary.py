"""GetSummary: anomaly totals for a range from the rollups, and the riskiest users, in one statement.

A range is split into whole UTC days (read from the day rollup), whole hours
at its ends (the hour rollup) and the partial hours at its very edges (the
anomalies themselves, a few hundred rows at most), so the cost does not grow
with the number of anomalies in the range. Anomalies of ignored users are
subtracted using the (tenant, user_name, time) index.

Everything a call needs (rollup totals, edges, riskiest users, users seen,
events, and whether user_risk is stale) comes back from one statement, so a
call is one round trip and one snapshot.

The rollup totals of the whole hours and days are cached per process, keyed by
(tenant, buckets), together with the tenant's rollup version: the generation
the merge bumps (query_rollup_versions) and the number of unmerged delta rows.
Between two merges delta rows are only ever added, and every statement that
changes anomalies adds at least one, so an unchanged version means unchanged
totals. The statement reads the version in the same snapshot as the totals and
skips the rollup scan when it equals the cached one; a review or a new anomaly
changes it at commit, so the next summary shows it. Edges, riskiest users,
users seen and events are read on every call (ingest changes them constantly).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import text

from services.query.reads import Reads
from services.query.vocab import STATUSES
from ueba.risk import LEVELS, risk_level

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


def _two(intervals: list[tuple[datetime, datetime]], empty: datetime) -> list[tuple[datetime, datetime]]:
    """Exactly two intervals (the statement has two slots), padded with empty ones."""
    return (intervals + [(empty, empty)] * 2)[:2]


def _summary_sql(include_ignored: bool) -> str:
    # Two fixed statements rather than a flag parameter, so that each keeps a
    # plan of its own (an anti-join, or none) once psycopg prepares it.
    not_ignored = lambda alias: (
        "" if include_ignored else
        f" AND NOT EXISTS (SELECT 1 FROM ignored_users i WHERE i.tenant = {alias}.tenant AND i.user_name = {alias}.user_name)"
    )
    ignored_rows = "" if include_ignored else """
            UNION ALL
            SELECT a.risk_score, a.profile_name, a.dimension, a.status, a.source, count(*), sum(a.risk_score), -1
            FROM anomalies a JOIN ignored_users i ON i.tenant = a.tenant AND i.user_name = a.user_name
            WHERE a.tenant = :tenant AND a.time >= :start AND a.time < :end
            GROUP BY 1, 2, 3, 4, 5"""
    # One index-only range scan per bucket range (an OR of the ranges would be a bitmap scan of the table).
    rollup_ranges = " UNION ALL ".join(
        "SELECT facet, key, anomalies, points FROM anomaly_rollup "
        f"WHERE tenant = :tenant AND grain = '{grain}' AND bucket >= :{lo} AND bucket < :{hi}"
        for grain, lo, hi in (("day", "d0", "d1"), ("hour", "h0", "h1"), ("hour", "h2", "h3"))
    )
    return f"""
    WITH version AS MATERIALIZED (
        SELECT coalesce((SELECT generation FROM query_rollup_versions WHERE tenant = :tenant), 0) AS generation,
               (SELECT count(*) FROM anomaly_rollup WHERE tenant = :tenant AND NOT merged) AS unmerged
    )
    SELECT
        (SELECT generation FROM version) AS generation,
        (SELECT unmerged FROM version) AS unmerged,
        EXISTS (SELECT 1 FROM user_risk_dirty WHERE tenant = :tenant)
            OR EXISTS (SELECT 1 FROM user_risk WHERE tenant = :tenant AND oldest_open <= :horizon) AS stale,
        (SELECT json_agg(json_build_array(facet, key, n, p)) FROM (
            SELECT facet, key, sum(anomalies) AS n, sum(points) AS p FROM ({rollup_ranges}) b
            WHERE (SELECT generation <> :cached_generation OR unmerged <> :cached_unmerged FROM version)
            GROUP BY facet, key) r) AS rolled,
        (SELECT json_agg(json_build_array(score, profile, dimension, status, source, n, p, sign)) FROM (
            SELECT risk_score AS score, profile_name AS profile, dimension, status, source, count(*) AS n,
                   sum(risk_score) AS p, 1 AS sign
            FROM anomalies
            WHERE tenant = :tenant AND ((time >= :r0 AND time < :r1) OR (time >= :r2 AND time < :r3))
            GROUP BY 1, 2, 3, 4, 5{ignored_rows}) e) AS edges,
        (SELECT json_agg(json_build_array(user_name, points, risk, open_anomalies)
                         ORDER BY risk DESC, points DESC, user_name) FROM (
            SELECT user_name, points, risk, open_anomalies FROM user_risk r
            WHERE tenant = :tenant{not_ignored("r")}
            ORDER BY risk DESC, points DESC, user_name LIMIT :top) t) AS riskiest,
        (SELECT count(*) FROM users u
         WHERE tenant = :tenant AND first_seen < :end AND last_seen >= :start{not_ignored("u")}) AS users_seen,
        (SELECT coalesce(sum(events), 0) FROM event_counts
         WHERE tenant = :tenant AND hour >= :e0 AND hour < :e1) AS events
    """


SUMMARY_SQL = {flag: text(_summary_sql(flag)) for flag in (False, True)}
NO_VERSION = (-1, -1)


@dataclass(frozen=True)
class RiskyUser:
    user_name: str
    points: int
    risk: int
    open_anomalies: int


@dataclass
class SummaryData:
    totals: Totals
    riskiest: list[RiskyUser]
    users_seen: int
    events: int


class RollupCache:
    """Rollup totals per (tenant, buckets) with the rollup version they were read at; least recently used go first."""

    def __init__(self, entries: int):
        self.entries = entries
        self._items: OrderedDict[tuple, tuple[tuple[int, int], list]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[tuple[int, int], list] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, version: tuple[int, int], rolled: list) -> None:
        if self.entries <= 0:
            return
        with self._lock:
            self._items[key] = (version, rolled)
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


def summary(
    reads: Reads,
    cache: RollupCache,
    tenant: str,
    start: datetime,
    end: datetime,
    include_ignored: bool,
    top: int,
    horizon: datetime,
    refresh: Callable[[], Any],
) -> SummaryData:
    """Totals of [start, end), the `top` riskiest users and the counts; `refresh()` runs when user_risk is stale."""
    if start < end:
        raw, hours, days = split_range(start, end)
        e0, e1 = floor_to(start, HOUR), ceil_to(end, HOUR)
    else:  # an empty range: no anomalies, no events (users seen are still counted)
        raw, hours, days, e0, e1 = [], [], None, start, start
    (r0, r1), (r2, r3) = _two(raw, start)
    (h0, h1), (h2, h3) = _two(hours, start)
    d0, d1 = days or (start, start)
    key = (tenant, d0, d1, h0, h1, h2, h3)
    cached = cache.get(key)
    cached_version = cached[0] if cached else NO_VERSION
    params = {
        "tenant": tenant, "start": start, "end": end, "horizon": horizon, "top": top,
        "cached_generation": cached_version[0], "cached_unmerged": cached_version[1],
        "d0": d0, "d1": d1, "h0": h0, "h1": h1, "h2": h2, "h3": h3, "r0": r0, "r1": r1, "r2": r2, "r3": r3,
        "e0": e0, "e1": e1,
    }
    statement = SUMMARY_SQL[bool(include_ignored)]
    row = reads.one(statement, params)
    if row.stale:
        refresh()
        row = reads.one(statement, params)
    version = (row.generation, row.unmerged)
    if cached is not None and version == cached_version:
        rolled = cached[1]
    else:
        rolled = [tuple(r) for r in row.rolled or ()]
        cache.put(key, version, rolled)
    totals = Totals()
    for facet, k, count, points in rolled:
        totals.add(facet, k, count, points)
    for score, profile, dimension, status, source, count, points, sign in row.edges or ():
        totals.add_raw(score, profile, dimension, status, source, count, points, sign)
    riskiest = [RiskyUser(*r) for r in row.riskiest or ()]
    return SummaryData(totals, riskiest, int(row.users_seen), int(row.events))


def ordered_counts(counter: Counter, keys: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """Every key of `keys` (zeros included) in that order, else non-zero keys by count."""
    if keys is not None:
        return [(k, counter.get(k, 0)) for k in keys]
    return sorted(((k, v) for k, v in counter.items() if v), key=lambda kv: (-kv[1], kv[0]))


LEVELS_HIGH_FIRST = tuple(reversed(LEVELS))
ALL_STATUSES = STATUSES
