"""GetSummary: a range cut into rollup buckets, the rollup cache, and the totals (README: the rollup cache)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from services.query.store.reads import Reads
from services.query.store.summary import SummarySlots, summary_row
from services.query.versioned_cache import VersionedCache
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


def _two(intervals: list[tuple[datetime, datetime]], empty: datetime) -> tuple:
    """Exactly two intervals (the statement has two slots), padded with empty ones."""
    padded = intervals + [(empty, empty)] * 2
    return padded[0], padded[1]


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
    users_by_level: Counter
    users_seen: int
    events: int


class RollupCache(VersionedCache[list]):
    """Rollup totals per (tenant, buckets) with the rollup version (generation, unmerged deltas) they were read at."""


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
    slots = SummarySlots(start, end, _two(raw, start), _two(hours, start), days or (start, start), (e0, e1))
    key = (tenant, slots.days, slots.hours)
    cached = cache.get(key)
    cached_version = cached[0] if cached else NO_VERSION
    row = summary_row(reads, tenant, slots, include_ignored, top, horizon, cached_version)
    if row.stale:
        refresh()
        row = summary_row(reads, tenant, slots, include_ignored, top, horizon, cached_version)
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
    return SummaryData(totals, riskiest, Counter(row.users_by_level or {}), int(row.users_seen), int(row.events))


def ordered_counts(counter: Counter, keys: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """Every key of `keys` (zeros included) in that order, else non-zero keys by count."""
    if keys is not None:
        return [(k, counter.get(k, 0)) for k in keys]
    return sorted(((k, v) for k, v in counter.items() if v), key=lambda kv: (-kv[1], kv[0]))


LEVELS_HIGH_FIRST = tuple(reversed(LEVELS))
