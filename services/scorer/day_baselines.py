"""A day's baselines for a run: its users' whole arrays, and what the peer groups need of everyone.

A scheduled run over some buckets loads its own buckets' baselines, publishes
them, and reads the others' from the other replicas of its fire
(baseline_share), one bucket's arrays at a time; any other run loads
everyone's (nobody publishes for it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from services.scorer import baseline, baseline_share, peers
from services.scorer.context import RunContext
from ueba.leases import buckets_of

_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass
class SharingClock:
    """Seconds spent sharing baselines; it keeps running while the peer groups fetch other buckets."""

    seconds: float = 0.0


@dataclass(frozen=True)
class DayBaselines:
    data: baseline.DayData
    people: peers.Everyone
    sharing: SharingClock


class _Loader:
    """Loads baselines of the day for the users of given buckets."""

    def __init__(self, ctx: RunContext, conn: Connection, day: datetime, hours: tuple[datetime, datetime],
                 first_hours: dict[str, datetime]):
        self.ctx, self.conn, self.day, self.hours, self.first_hours = ctx, conn, day, hours, first_hours

    def load(self, buckets: list[int] | None) -> tuple[baseline.DayData, dict[int, np.ndarray]]:
        s, n = self.ctx.settings, self.ctx.scope.n
        data = baseline.load_day(self.conn, self.ctx.tenant, self.day, self.hours, s.baseline_days,
                                 s.min_baseline_days, self.first_hours,
                                 buckets=(n, buckets) if buckets is not None else None)
        return data, baseline.by_bucket(data.users, buckets_of(self.conn, self.ctx.tenant, data.users, n))

    def parts(self, buckets: list[int]) -> dict[int, baseline.Part]:
        data, rows = self.load(buckets)
        return {b: baseline.part_of(data, rows.get(b, _NO_ROWS)) for b in buckets}

    def first_hour(self, users: list[str]) -> np.ndarray:
        return baseline.first_hour_array(users, self.first_hours)


def load_day_baselines(ctx: RunContext, conn: Connection, auto: Connection, day: datetime,
                       hours: tuple[datetime, datetime], first_hours: dict[str, datetime]) -> DayBaselines:
    """The baselines and window of the run's users on `day` (window `hours`), and everyone's profiles and
    arrays for the peer groups. `auto` is the run's autocommit connection (publications commit at once)."""
    loader = _Loader(ctx, conn, day, hours, first_hours)
    data, rows = loader.load(list(ctx.scope.buckets) if ctx.sharing else None)

    def own_part(b: int) -> baseline.Part:
        return baseline.part_of(data, rows.get(b, _NO_ROWS))

    def own(b: int) -> dict[str, np.ndarray]:
        return own_part(b)[1]

    clock = SharingClock()
    if not ctx.sharing:
        profiles = {b: ([data.users[i] for i in r], peers.behaviour_profile(own(b))) for b, r in rows.items()}
        return DayBaselines(data, peers.everyone(profiles, loader.first_hour, own), clock)
    return DayBaselines(data, _shared(ctx, loader, auto, own_part, clock), clock)


def _shared(ctx: RunContext, loader: _Loader, auto: Connection, own_part, clock: SharingClock) -> peers.Everyone:
    """Everyone, from this run's buckets and the other replicas' publications of the day."""
    ctx.check("baselines")
    started = time.perf_counter()
    s, n, tenant = ctx.settings, ctx.scope.n, ctx.tenant
    key = baseline_share.state(loader.conn, tenant, loader.day, loader.hours, s.baseline_days, s.min_baseline_days)
    # Publishing computes the own buckets' profiles; they serve here too.
    published = baseline_share.publish(auto, tenant, key, ctx.run_id, n, {b: own_part(b) for b in ctx.scope.buckets})
    shared = baseline_share.collect(auto, tenant, key, ctx.run_id, n, set(ctx.scope.buckets), ctx.scheduled.fire,
                                    loader.parts)
    profiles = {b: (one.users, one.profile) for b, one in (published | shared).items()}

    def arrays(b: int) -> dict[str, np.ndarray]:
        if b not in shared:
            return own_part(b)[1]
        began = time.perf_counter()
        fetched = baseline_share.fetch(auto, tenant, key, n, b)
        if fetched is None:  # its publication outlived KEEP: load it again, as its replica did
            fetched = loader.parts([b])[b][1]
        clock.seconds += time.perf_counter() - began
        return fetched

    clock.seconds = time.perf_counter() - started
    return peers.everyone(profiles, loader.first_hour, arrays)
