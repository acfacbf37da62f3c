"""A scoring run: its record and locks, aggregation, then one scoring transaction (README: "A run")."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

import psycopg
from sqlalchemy import Connection, Engine

from services.scorer import baseline
from services.scorer.context import RunContext, ScheduledBuckets, StageSeconds, UserScope
from services.scorer.cursor import aggregate
from services.scorer.days import DayTotals, TenantFacts, score_days
from services.scorer.features import FeatureRefresh, analyze_unless_busy
from services.scorer.metrics import FAILED, SUCCEEDED
from services.scorer.model_anomalies import write_model_anomalies
from services.scorer.settings import ScorerSettings
from ueba.anomaly_log import AnomalySink
from services.scorer.store import buckets as bucket_store
from services.scorer.store import event_scores, locks, tenant
from services.scorer.store import runs as run_store
from services.scorer.store.peer_groups import replace_peer_groups
from services.scorer.store.transactions import repeatable_read
from services.scorer.user_scores import write_user_scores
from services.scorer.window import floor_hour, whole_days, whole_days_past_retention, window_days
from ueba.leases import buckets_of
from ueba.store.partitions import EVENT_SCORES, PartitionCache, is_missing_partition, utc_today

__all__ = ["RunResult", "ScheduledBuckets", "Scorer", "mark_interrupted"]

log = logging.getLogger(__name__)
# Scoring transactions tried when a day's partition vanished under the run (see _attempts).
_ATTEMPTS = 3


@dataclass
class RunResult:
    id: str
    status: str
    trigger: str
    start: datetime
    end: datetime
    figures: dict = field(default_factory=dict)
    error: str | None = None


class Scorer:
    """Runs scoring for a tenant. `fail_point`, when set, is called at each stage (tests inject crashes)."""

    def __init__(self, engine: Engine, settings: ScorerSettings, sink: AnomalySink | None = None,
                 partitions: PartitionCache | None = None):
        self.engine = engine
        self.settings = settings
        self.sink = sink or AnomalySink(settings.anomaly_log)
        self.partitions = partitions or PartitionCache(EVENT_SCORES)
        self.weights = settings.weights()
        self.fail_point: Callable[[str], None] | None = None

    def run(self, tenant: str, start: datetime, end: datetime, users: list[str] | None = None,
            trigger: str = "on_demand", scheduled: ScheduledBuckets | None = None) -> RunResult:
        """Scores the window's hours for `users` (canonical names; None: everyone) of the run's buckets."""
        start, end = whole_days_past_retention(floor_hour(start), floor_hour(end), self.settings.score_retention_days,
                                               utc_today())
        with self.engine.begin() as conn:
            scope = self._scope(conn, tenant, users, scheduled)
            marker = {"users": sorted(users) if users else [], "buckets": list(scope.buckets), **_fire(scheduled)}
            run_id = run_store.start_run(conn, tenant, trigger, start, end, marker)
        ctx = RunContext(run_id, tenant, start, end, scope, scheduled, self.settings, self.weights, self._check)
        started = time.perf_counter()
        try:
            figures, lines = self._run_locked(ctx)
        except Exception as exc:
            log.exception("scoring run failed", extra={"run_id": run_id, "tenant": tenant})
            error = f"{type(exc).__name__}: {exc}"[:2000]
            with self.engine.begin() as conn:
                run_store.fail_run(conn, run_id, error)
            FAILED.inc()
            return RunResult(run_id, "failed", trigger, start, end, {}, error)
        # Committed: now the SIEM may see the scores.
        self.sink.write(lines)
        figures["seconds"] = round(time.perf_counter() - started, 3)
        log.info("scoring run finished", extra={"run_id": run_id, "tenant": tenant, **figures})
        SUCCEEDED.inc()
        return RunResult(run_id, "succeeded", trigger, start, end, figures)

    def _scope(self, conn: Connection, tenant: str, users: list[str] | None,
               scheduled: ScheduledBuckets | None) -> UserScope:
        n = self.settings.buckets
        wanted = frozenset(users) if users else None
        if scheduled is not None:
            buckets = tuple(sorted(scheduled.tokens))
        elif wanted is not None:
            buckets = tuple(sorted(set(buckets_of(conn, tenant, wanted, n).values())))
        else:
            buckets = tuple(range(n))
        return UserScope(n, buckets, wanted)

    def _check(self, stage: str) -> None:
        if self.fail_point is not None:
            self.fail_point(stage)

    def _run_locked(self, ctx: RunContext) -> tuple[dict, list[str]]:
        with self.engine.connect() as lock_conn:
            lock_conn = lock_conn.execution_options(isolation_level="AUTOCOMMIT")
            # The run's own lock tells mark_interrupted that this `running` row is alive.
            locks.lock_run(lock_conn, ctx.run_id)
            try:
                refreshed = aggregate(self.engine, lock_conn, ctx.tenant, self._check)
                locks.lock_buckets(lock_conn, ctx.tenant, ctx.scope.buckets)
                return self._attempts(ctx, lock_conn, refreshed)
            finally:
                locks.unlock_all(lock_conn)

    def _attempts(self, ctx: RunContext, lock_conn: Connection, refreshed: FeatureRefresh) -> tuple[dict, list[str]]:
        """The scoring transaction, again when retention in another replica dropped a day this process
        had cached (only days past retention, which a backfill may score): all of it rolled back."""
        for attempt in range(1, _ATTEMPTS + 1):
            # In a short transaction of its own: DDL inside the scoring transaction
            # would lock every reader out of event_scores for the whole run.
            self.partitions.ensure(lock_conn.connection.driver_connection, window_days(ctx.start, ctx.end))
            fresh = replace(ctx, lines=[], seconds=StageSeconds(features=refreshed.seconds))
            try:
                return self._score(fresh, lock_conn, refreshed), fresh.lines
            except psycopg.errors.CheckViolation as exc:
                if not is_missing_partition(exc) or attempt == _ATTEMPTS:
                    raise
                self.partitions.forget()
        raise AssertionError("unreachable")

    def _score(self, ctx: RunContext, lock_conn: Connection, refreshed: FeatureRefresh) -> dict:
        with repeatable_read(self.engine) as (conn, tx):
            figures = _score_in(ctx, conn, lock_conn, refreshed)
            if ctx.scheduled is None or not figures["buckets"]:
                return figures
            # Commit under the fence: the leases cannot move until this commit is done.
            with ctx.scheduled.leases.fenced({b: ctx.scheduled.tokens[b] for b in figures["buckets"]}):
                tx.commit()
            return figures


def _score_in(ctx: RunContext, conn: Connection, auto: Connection, refreshed: FeatureRefresh) -> dict:
    """Everything the run writes, in the scoring transaction `conn`; its figures."""
    if ctx.scheduled is not None:
        # Another replica may have scored some of these buckets for this fire since
        # they were chosen (they changed hands in between): never twice.
        done = bucket_store.scored_since(conn, ctx.tenant, ctx.scheduled.fire, ctx.scope.buckets)
        ctx = replace(ctx, scope=ctx.scope.without(done))
        if not ctx.scope.buckets:
            figures = {"buckets": [], "already_scored": sorted(done), "users_scored": 0}
            run_store.finish_run(conn, ctx.run_id, figures)
            return figures
    began = time.perf_counter()
    facts = TenantFacts(tenant.ignored(conn, ctx.tenant), tenant.departments(conn, ctx.tenant),
                        baseline.load_first_hours(conn, ctx.tenant))
    event_scores.delete_window(conn, ctx.tenant, ctx.start, ctx.end, ctx.scope)
    totals = score_days(ctx, conn, auto, facts)
    # Fresh statistics for the queries below, of the written days only: ANALYZE of the
    # parent would sample every partition of the retention period, and recurse into each.
    for written in window_days(ctx.start, ctx.end):
        analyze_unless_busy(conn, EVENT_SCORES.name(written))
    ctx.check("event_scores")
    # Every replica computes the same groups from everyone's baseline; the run that
    # holds bucket 0 stores them, so two runs never rewrite them at once.
    if totals.assignment is not None and totals.people is not None and totals.people.users and 0 in ctx.scope.buckets:
        replace_peer_groups(conn, ctx.tenant, totals.assignment)
    days = whole_days(ctx.start, ctx.end)
    user_scores, own_scores = write_user_scores(ctx, conn, days, facts.ignored)
    ctx.check("user_scores")
    anomalies = write_model_anomalies(ctx, conn, days, own_scores)
    ctx.check("anomalies")
    if ctx.scheduled is not None:
        bucket_store.record_fire(conn, ctx.tenant, ctx.run_id, ctx.scheduled.fire, ctx.scope.buckets)
    figures = _figures(ctx, refreshed, totals, user_scores, anomalies, len(facts.ignored),
                       time.perf_counter() - began)
    run_store.finish_run(conn, ctx.run_id, figures)
    return figures


def _fire(scheduled: ScheduledBuckets | None) -> dict:
    return {} if scheduled is None else {"fire": scheduled.fire.isoformat(), "owner": scheduled.leases.owner}


def _figures(ctx: RunContext, refreshed: FeatureRefresh, totals: DayTotals, user_scores: int, anomalies: int,
             ignored: int, seconds: float) -> dict:
    return {
        "buckets": list(ctx.scope.buckets),
        **_fire(ctx.scheduled),
        "new_events": refreshed.new_events,
        "dirty_user_hours": refreshed.dirty_user_hours,
        "users_scored": len(totals.scored_users),
        "hours_scored": int(totals.hours_scored),
        "event_scores": int(totals.event_scores),
        "user_scores": user_scores,
        "anomalies": anomalies,
        "learning_users": len(totals.learning_users),
        "ignored_users": ignored,
        "baseline_bytes": int(totals.baseline_bytes),
        "stage_seconds": ctx.seconds.figure(seconds),
    }


def mark_interrupted(engine: Engine) -> int:
    """Fails runs left `running` by a process that died (their transaction never committed): a
    `running` row whose lock is free belongs to no live process, whichever replica started it."""
    marked = 0
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for run_id in run_store.running_runs(conn):
            with locks.run_if_abandoned(conn, run_id) as abandoned:
                if abandoned:
                    marked += run_store.fail_run(conn, run_id, run_store.INTERRUPTED, only_running=True)
    # A dead process's run is a failed run too; the process that finds it counts it.
    FAILED.inc(marked)
    return marked
