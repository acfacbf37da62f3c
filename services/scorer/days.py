"""The day loop of a scoring run: per UTC day, baselines, peer groups, event scores, written by COPY."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from services.scorer import peers, scoring
from services.scorer.context import RunContext
from services.scorer.day_baselines import load_day_baselines
from services.scorer.event_rows import event_score_rows
from services.scorer.store.event_scores import copy_event_scores
from services.scorer.window import DAY, floor_day
from ueba.leases import buckets_of


@dataclass(frozen=True)
class TenantFacts:
    """What every day of a run reads of the tenant once."""

    ignored: frozenset[str]
    departments: dict[str, str | None]
    first_hours: dict[str, datetime]


@dataclass
class DayTotals:
    scored_users: set[str] = field(default_factory=set)
    learning_users: set[str] = field(default_factory=set)
    hours_scored: int = 0
    event_scores: int = 0
    # The most a day held of numpy baseline arrays: this run's users' whole, the rest's profiles and sums.
    baseline_bytes: int = 0
    # The last day's peer groups and everyone's profiles, stored once the days are done.
    assignment: peers.PeerAssignment | None = None
    people: peers.Everyone | None = None


def score_days(ctx: RunContext, conn: Connection, auto: Connection, facts: TenantFacts) -> DayTotals:
    """Scores every day of the run's window; stage seconds go to ctx.seconds."""
    totals = DayTotals()
    day = floor_day(ctx.start)
    while day < ctx.end:
        _score_day(ctx, conn, auto, facts, day, totals)
        day += DAY
    return totals


def _score_day(ctx: RunContext, conn: Connection, auto: Connection, facts: TenantFacts, day: datetime,
               totals: DayTotals) -> None:
    s = ctx.settings
    began = time.perf_counter()
    loaded = load_day_baselines(ctx, conn, auto, day, (max(ctx.start, day), min(ctx.end, day + DAY)),
                                facts.first_hours)
    data, people = loaded.data, loaded.people
    baselines_done = time.perf_counter()
    sharing_before_groups = loaded.sharing.seconds
    assignment, sums = peers.peer_groups(people, facts.departments, s.min_peer_group, day, s.baseline_days)
    # The other buckets' arrays, fetched one at a time while the groups were summed.
    fetching = loaded.sharing.seconds - sharing_before_groups
    rates = scoring.shrunk_rates(data, assignment.group[people.rows_of(data.users)], sums, s.baseline_days)
    learning = scoring.baseline_days(data, s.baseline_days) < s.min_baseline_days
    rows = _rows_in_scope(ctx, conn, data, facts.ignored)
    results = scoring.score_day(data, rates, rows)
    scored = time.perf_counter()
    written_rows = copy_event_scores(conn, event_score_rows(ctx, data, results, learning))
    written = time.perf_counter()

    ctx.seconds.load += baselines_done - began - sharing_before_groups
    ctx.seconds.share_baselines += loaded.sharing.seconds
    ctx.seconds.score += scored - baselines_done - fetching
    ctx.seconds.write_event_scores += written - scored
    totals.baseline_bytes = max(totals.baseline_bytes, data.baseline_nbytes + people.nbytes + sums.nbytes)
    totals.assignment, totals.people = assignment, people
    totals.event_scores += written_rows
    totals.hours_scored += rows.size
    users = np.unique(data.w_user[rows])
    totals.scored_users.update(data.users[i] for i in users)
    totals.learning_users.update(data.users[i] for i in users if learning[i])


def _rows_in_scope(ctx: RunContext, conn: Connection, data, ignored: frozenset[str]) -> np.ndarray:
    """The day's window rows (user-hours) of the run's users, but the ignored."""
    scope = ctx.scope
    mine = None if scope.every_bucket else {
        u for u, b in buckets_of(conn, ctx.tenant, data.users, scope.n).items() if b in scope.buckets}
    in_scope = np.array([u not in ignored and (scope.users is None or u in scope.users) and (mine is None or u in mine)
                         for u in data.users], dtype=bool)
    return np.flatnonzero(in_scope[data.w_user]) if data.w_user.size else np.zeros(0, dtype=np.int64)
