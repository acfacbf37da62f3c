"""A scoring run: features, baselines, models, event scores, user scores and model anomalies.

The run marker (a scoring_runs row with status `running`) is committed first, so
the history shows every run. Then two transactions:

1. aggregation (features.py): the tenant's new events into user_hour_features and
   entity_seen, with the cursor (scorer_cursors), under the tenant's aggregation
   lock. Every user's, whichever buckets the run scores: every bucket's baselines
   and peer groups read these rows, so scores do not depend on which replica
   aggregated first. The replicas of one fire share this work: the first does
   it, the others find nothing new.
2. scoring, all-or-nothing: event scores, user scores, anomalies, peer groups and
   the marker's final status in ONE transaction. A crash or error rolls all of it
   back; the marker is then set to `failed` (or, if the process died, to `failed`
   by a live scorer). Readers never need to filter half-written runs, and at ten
   thousand users a run writes about a million rows, which Postgres commits
   comfortably in one go. An aggregation committed before a failed scoring stays:
   it is derived data, complete, and its cursor moved with it.

Idempotent: a run deletes the event scores of its window (for its users) and
inserts them again (into the window's day partitions, created before the
scoring transaction: ueba.store.partitions), recomputes the user scores of
every day it touches from the stored event scores, and upserts model
anomalies by a key of user and day.
An hour's score depends only on the data (its baseline is the days before its
UTC day), not on which window scored it.

Replicas split the users into hash buckets (ueba/leases.py). A run scores a set
of buckets: a scheduled run the buckets its replica leases, an on-demand run every
bucket (or the buckets of its users). Runs touching the same bucket of a tenant
are serialised by session advisory locks per bucket, taken before the scoring
transaction starts, so a waiting run's snapshot already includes the previous
run's commit. Peer groups and shrinkage need something of every user: everyone's
behaviour profile for the clustering, then per-group sums of everyone's baseline
arrays (baseline.GroupSums, added per bucket in a fixed order). A scheduled run
loads only its own buckets' baselines, publishes them, and takes the others' from
the other replicas of its fire (baseline_share): their profiles, then their arrays
one bucket at a time into the sums, so it holds whole arrays only for its own
users. Any other run loads everyone's. Scores are written only for the run's
buckets. A scheduled run records
its fire time per bucket (scorer_buckets) and commits under its lease fence, so
each fire scores each bucket exactly once, even when a paused replica wakes up
after its buckets moved.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import numpy as np
import psycopg
from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update

from services.scorer import baseline, baseline_share, features, peers, scoring
from services.scorer.features import analyze_unless_busy
from services.scorer.models import BY_NAME, NOVELTY_ENTITY
from services.scorer.settings import ScorerSettings
from services.scorer.sink import AnomalySink
from ueba.leases import LeaseManager, buckets_of
from ueba.names import canonical_user
from ueba.store.anomalies import AnomalyRecord, withdraw_unreviewed, write_anomalies
from ueba.store.partitions import EVENT_SCORES, PartitionCache, is_missing_partition, utc_today
from ueba.store.schema import (
    event_scores,
    ignored_users,
    peer_groups,
    scorer_buckets,
    scorer_cursors,
    scoring_runs,
    user_scores,
    users,
)

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RUN_LOCK = "ueba-scorer-run"  # advisory lock (hashtext(RUN_LOCK), hashtext(run id)) held while a run works
AGGREGATION_LOCK = "ueba-scorer-aggregation"  # advisory lock (hashtext(it), hashtext(tenant))
BUCKET_LOCK = "ueba-scorer-bucket"  # advisory locks (hashtext(BUCKET_LOCK:tenant), bucket) serialise runs
# Scoring transactions tried when a day's partition vanished under the run (see _run_locked).
_ATTEMPTS = 3


class RunFailed(RuntimeError):
    pass


@dataclass
class RunResult:
    id: str
    status: str
    trigger: str
    start: datetime
    end: datetime
    figures: dict = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ScheduledBuckets:
    """A scheduled run's share: the fire time and the leased buckets with their tokens."""

    fire: datetime
    tokens: dict[int, int]
    leases: LeaseManager


@dataclass(frozen=True)
class UserScope:
    """The users a run scores: those of `buckets` (of N), narrowed to `users` when given."""

    n: int
    buckets: tuple[int, ...]
    users: frozenset[str] | None = None

    @property
    def every_bucket(self) -> bool:
        return len(self.buckets) == self.n

    def clauses(self, table) -> list:
        out = []
        if self.users is not None:
            out.append(table.c.user_name.in_(sorted(self.users)))
        if not self.every_bucket:
            out.append(func.ueba_bucket(table.c.tenant, table.c.user_name, self.n).in_(self.buckets))
        return out

    def params(self) -> dict:
        """For text SQL: `(:all_users OR user = ANY(:users)) AND (:all_buckets OR ueba_bucket(...) = ANY(:buckets))`."""
        return {"all_users": self.users is None, "users": sorted(self.users or ()), "all_buckets": self.every_bucket,
                "buckets": list(self.buckets), "n": self.n}




def floor_hour(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def window_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days the hours from `start` to `end` fall on."""
    days = []
    day = floor_day(start)
    while day < end:
        days.append(day.date())
        day += DAY
    return days


def whole_days_past_retention(start: datetime, end: datetime, retention_days: int,
                               today: date) -> tuple[datetime, datetime]:
    """The window widened to whole UTC days where it touches a day whose event scores
    retention may have dropped (0: none).

    A run computes each day's user score from all the day's stored event scores;
    scoring part of a day whose other hours are gone would replace its score (and
    withdraw its anomaly) with one of that part alone. A day of margin: the
    retention worker's clock may already be on the next day.
    """
    if not retention_days:
        return start, end
    kept = datetime(today.year, today.month, today.day, tzinfo=timezone.utc) - (retention_days - 1) * DAY
    if start < kept:
        start = floor_day(start)
    last_day = floor_day(end - HOUR)
    if last_day < kept:
        end = last_day + DAY
    return start, end


def default_window(now: datetime) -> tuple[datetime, datetime]:
    """The last 24 complete hours."""
    end = floor_hour(now)
    return end - 24 * HOUR, end


def _numbers(values: np.ndarray, fmt: str) -> list[str]:
    """JSON numbers for a column (no NaN or infinity ever reaches a score)."""
    return [fmt % v for v in np.nan_to_num(values, posinf=1e300, neginf=-1e300).tolist()]


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

    # -- public --------------------------------------------------------------------------------

    def run(self, tenant: str, start: datetime, end: datetime, user_filter: list[str] | None = None,
            trigger: str = "on_demand", scheduled: ScheduledBuckets | None = None) -> RunResult:
        start, end = whole_days_past_retention(floor_hour(start), floor_hour(end), self.settings.score_retention_days,
                                               utc_today())
        n = self.settings.buckets
        with self.engine.begin() as conn:
            wanted = frozenset(canonical_user(u) for u in user_filter) if user_filter else None
            if scheduled is not None:
                buckets = tuple(sorted(scheduled.tokens))
            elif wanted is not None:
                buckets = tuple(sorted(set(buckets_of(conn, tenant, wanted, n).values())))
            else:
                buckets = tuple(range(n))
            scope = UserScope(n, buckets, wanted)
            marker = {"users": sorted(user_filter) if user_filter else [], "buckets": list(buckets)}
            if scheduled is not None:
                marker.update(fire=scheduled.fire.isoformat(), owner=scheduled.leases.owner)
            run_id = conn.execute(
                insert(scoring_runs)
                .values(tenant=tenant, status="running", trigger=trigger, range_start=start, range_end=end,
                        figures=marker)
                .returning(scoring_runs.c.id)
            ).scalar_one()
        started = time.perf_counter()
        lines: list[str] = []
        try:
            figures = self._run_locked(run_id, tenant, start, end, scope, scheduled, lines)
        except Exception as exc:
            log.exception("scoring run failed", extra={"run_id": run_id, "tenant": tenant})
            error = f"{type(exc).__name__}: {exc}"[:2000]
            with self.engine.begin() as conn:
                conn.execute(
                    update(scoring_runs)
                    .where(scoring_runs.c.id == run_id)
                    .values(status="failed", finished_at=func.now(), error=error)
                )
            return RunResult(run_id, "failed", trigger, start, end, {}, error)
        # Committed: now the SIEM may see the scores.
        self.sink.write(lines)
        figures["seconds"] = round(time.perf_counter() - started, 3)
        log.info("scoring run finished", extra={"run_id": run_id, "tenant": tenant, **figures})
        return RunResult(run_id, "succeeded", trigger, start, end, figures)

    # -- the transaction -----------------------------------------------------------------------

    def _check(self, stage: str) -> None:
        if self.fail_point is not None:
            self.fail_point(stage)

    def _run_locked(self, run_id, tenant, start, end, scope: UserScope, scheduled, lines) -> dict:
        with self.engine.connect() as lock_conn:
            lock_conn = lock_conn.execution_options(isolation_level="AUTOCOMMIT")
            # The run's own lock tells mark_interrupted that this `running` row is alive.
            lock_conn.execute(select(func.pg_advisory_lock(func.hashtext(RUN_LOCK), func.hashtext(str(run_id)))))
            try:
                refreshed = self._aggregate(lock_conn, tenant)
                # In bucket order, so that runs over overlapping buckets cannot deadlock.
                lock_conn.execute(
                    text("SELECT count(pg_advisory_lock(hashtext(:key), b)) FROM unnest(CAST(:buckets AS int[])) AS b"),
                    {"key": f"{BUCKET_LOCK}:{tenant}", "buckets": list(scope.buckets)},
                )
                for attempt in range(1, _ATTEMPTS + 1):
                    # In a short transaction of its own: DDL inside the scoring transaction
                    # would lock every reader out of event_scores for the whole run.
                    self.partitions.ensure(lock_conn.connection.driver_connection, window_days(start, end))
                    try:
                        return self._score(lock_conn, run_id, tenant, start, end, scope, scheduled, refreshed, lines)
                    except psycopg.errors.CheckViolation as exc:
                        # Retention in another replica dropped a day this process had cached
                        # (only days past retention, which a backfill may score): all rolled back.
                        if not is_missing_partition(exc) or attempt == _ATTEMPTS:
                            raise
                        self.partitions.forget()
                        lines.clear()
                raise AssertionError("unreachable")
            finally:
                lock_conn.execute(select(func.pg_advisory_unlock_all()))

    def _score(self, lock_conn: Connection, run_id, tenant, start, end, scope: UserScope, scheduled,
               refreshed: features.FeatureRefresh, lines) -> dict:
        """The scoring transaction (see the module docstring)."""
        with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin() as tx:
                figures = self._run_in_transaction(conn, lock_conn, run_id, tenant, start, end, scope, scheduled,
                                                   refreshed, lines)
                if scheduled is None or not figures["buckets"]:
                    return figures
                # Commit under the fence: the leases cannot move until this commit is done.
                with scheduled.leases.fenced({b: scheduled.tokens[b] for b in figures["buckets"]}):
                    tx.commit()
                return figures

    def _aggregate(self, lock_conn: Connection, tenant: str) -> features.FeatureRefresh:
        """The tenant's new events into features, in a transaction of its own (see the module docstring)."""
        key = (func.hashtext(AGGREGATION_LOCK), func.hashtext(tenant))
        lock_conn.execute(select(func.pg_advisory_lock(*key)))
        try:
            with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
                conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
                previous = conn.execute(
                    select(scorer_cursors.c.snapshot).where(scorer_cursors.c.tenant == tenant)).scalar_one_or_none()
                if previous is None:
                    # Before scorer_cursors, the last succeeded run's figures held the cursor.
                    previous = conn.execute(
                        select(scoring_runs.c.figures["snapshot"].astext)
                        .where(scoring_runs.c.tenant == tenant, scoring_runs.c.status == "succeeded",
                               scoring_runs.c.figures.has_key("snapshot"))
                        .order_by(scoring_runs.c.finished_at.desc())
                        .limit(1)
                    ).scalar_one_or_none()
                started = time.perf_counter()
                refreshed = features.refresh(conn, tenant, previous)
                refreshed.seconds = round(time.perf_counter() - started, 3)
                self._check("features")
                conn.execute(
                    text("""INSERT INTO scorer_cursors (tenant, snapshot) VALUES (:tenant, :snapshot)
                            ON CONFLICT (tenant) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now(),
                                features_version = scorer_cursors.features_version + CAST(:changed AS int)"""),
                    {"tenant": tenant, "snapshot": refreshed.snapshot, "changed": refreshed.dirty_user_hours > 0},
                )
                return refreshed
        finally:
            lock_conn.execute(select(func.pg_advisory_unlock(*key)))

    def _run_in_transaction(self, conn: Connection, auto: Connection, run_id, tenant, start, end, scope: UserScope,
                            scheduled: ScheduledBuckets | None, refreshed: features.FeatureRefresh, lines) -> dict:
        conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
        if scheduled is not None:
            # Another replica may have scored some of these buckets for this fire since
            # they were chosen (they changed hands in between): never twice.
            done = set(conn.execute(
                select(scorer_buckets.c.bucket)
                .where(scorer_buckets.c.tenant == tenant, scorer_buckets.c.bucket.in_(scope.buckets),
                       scorer_buckets.c.scheduled_at >= scheduled.fire)
            ).scalars())
            if done:
                scope = UserScope(scope.n, tuple(b for b in scope.buckets if b not in done), scope.users)
            if not scope.buckets:
                figures = {"buckets": [], "already_scored": sorted(done), "users_scored": 0}
                conn.execute(update(scoring_runs).where(scoring_runs.c.id == run_id)
                             .values(status="succeeded", finished_at=func.clock_timestamp(), figures=figures))
                return figures
        t_scoring = time.perf_counter()

        ignored = set(conn.execute(select(ignored_users.c.user_name).where(ignored_users.c.tenant == tenant)).scalars())
        departments = dict(conn.execute(select(users.c.user_name, users.c.department).where(users.c.tenant == tenant)).all())
        first_hours = baseline.load_first_hours(conn, tenant)
        wanted = scope.users

        conn.execute(delete(event_scores).where(
            event_scores.c.tenant == tenant, event_scores.c.hour >= start, event_scores.c.hour < end,
            *scope.clauses(event_scores)))

        scored_users: set[str] = set()
        learning_users: set[str] = set()
        hours_scored = 0
        n_event_scores = 0
        last_assignment = None
        last_people = None
        held = 0
        day = floor_day(start)
        t_load = t_share = t_score = t_write = 0.0
        while day < end:
            lo, hi = max(start, day), min(end, day + DAY)
            a = time.perf_counter()
            data, people, shared = self._load_day(conn, auto, run_id, tenant, day, (lo, hi), first_hours, scope,
                                                  scheduled)
            b = time.perf_counter()
            loading = shared[0]
            assignment, sums = peers.peer_groups(people, departments, self.settings.min_peer_group, day,
                                                 self.settings.baseline_days)
            fetching = shared[0] - loading  # the other buckets' arrays, summed one at a time
            t_share += shared[0]
            held = max(held, data.baseline_nbytes + people.nbytes + sums.nbytes)
            last_assignment, last_people = assignment, people
            rates = scoring.shrunk_rates(data, assignment.group[people.rows_of(data.users)], sums,
                                         self.settings.baseline_days)
            learning = scoring.baseline_days(data, self.settings.baseline_days) < self.settings.min_baseline_days
            mine = None if scope.every_bucket else {
                u for u, b in buckets_of(conn, tenant, data.users, scope.n).items() if b in scope.buckets}
            in_scope = np.array([u not in ignored and (wanted is None or u in wanted) and (mine is None or u in mine)
                                 for u in data.users], dtype=bool)
            rows = np.flatnonzero(in_scope[data.w_user]) if data.w_user.size else np.zeros(0, dtype=np.int64)
            results = scoring.score_day(data, rates, rows)
            c = time.perf_counter()
            copy_rows = self._event_score_rows(tenant, run_id, data, results, learning, lines)
            self._copy_event_scores(conn, copy_rows)
            d = time.perf_counter()
            t_load += b - a - loading
            t_score += c - b - fetching
            t_write += d - c
            n_event_scores += len(copy_rows)
            hours_scored += rows.size
            scored = np.unique(data.w_user[rows])
            scored_users.update(data.users[i] for i in scored)
            learning_users.update(data.users[i] for i in scored if learning[i])
            day += DAY
        # Fresh statistics for the queries below, of the written days only: ANALYZE of the
        # parent would sample every partition of the retention period, and recurse into each.
        for written in window_days(start, end):
            analyze_unless_busy(conn, EVENT_SCORES.name(written))
        self._check("event_scores")

        # Every replica computes the same groups from everyone's baseline; the run that
        # holds bucket 0 stores them, so two runs never rewrite them at once.
        if last_assignment is not None and last_people is not None and last_people.users and 0 in scope.buckets:
            self._store_peer_groups(conn, tenant, last_assignment)
        days = (floor_day(start), floor_day(end - HOUR) + DAY) if end > start else (start, start)
        n_user_scores = self._write_user_scores(conn, tenant, run_id, days, scope, ignored, lines)
        self._check("user_scores")
        n_anomalies = self._write_anomalies(conn, tenant, days, scope, lines)
        self._check("anomalies")
        if scheduled is not None:
            self._record_fire(conn, tenant, run_id, scope, scheduled)
        figures = {
            "buckets": list(scope.buckets),
            **({"fire": scheduled.fire.isoformat(), "owner": scheduled.leases.owner} if scheduled is not None else {}),
            "new_events": refreshed.new_events,
            "dirty_user_hours": refreshed.dirty_user_hours,
            "users_scored": len(scored_users),
            "hours_scored": int(hours_scored),
            "event_scores": int(n_event_scores),
            "user_scores": n_user_scores,
            "anomalies": n_anomalies,
            "learning_users": len(learning_users),
            "ignored_users": len(ignored),
            # The most a day held of numpy baseline arrays: this run's users' whole, the rest's profiles and sums.
            "baseline_bytes": int(held),
            "stage_seconds": {
                "features": refreshed.seconds,
                "load": round(t_load, 3),
                "share_baselines": round(t_share, 3),
                "score": round(t_score, 3),
                "write_event_scores": round(t_write, 3),
                "user_scores_and_anomalies": round(
                    time.perf_counter() - t_scoring - t_load - t_share - t_score - t_write, 3),
            },
        }
        conn.execute(
            update(scoring_runs)
            .where(scoring_runs.c.id == run_id)
            .values(status="succeeded", finished_at=func.clock_timestamp(), figures=figures)
        )
        return figures

    def _load_day(self, conn, auto, run_id, tenant, day, hours, first_hours, scope: UserScope,
                  scheduled: ScheduledBuckets | None) -> tuple[baseline.DayData, peers.Everyone, list[float]]:
        """The baselines and window of the run's users, what the peer groups need of everyone, and
        the seconds spent sharing baselines (a list: fetching goes on while the groups are summed).

        A scheduled run over some buckets loads its own buckets' baselines, publishes them, and
        reads the others' from the other replicas of its fire (baseline_share), one bucket's arrays
        at a time; any other run loads everyone's (nobody publishes for it).
        """
        args = (conn, tenant, day, hours, self.settings.baseline_days, self.settings.min_baseline_days, first_hours)
        n = scope.n
        sharing = scheduled is not None and not scope.every_bucket
        data = baseline.load_day(*args, buckets=(n, list(scope.buckets)) if sharing else None)
        rows = baseline.by_bucket(data.users, buckets_of(conn, tenant, data.users, n))
        empty = np.zeros(0, dtype=np.int64)

        def own_part(b: int) -> baseline.Part:
            return baseline.part_of(data, rows.get(b, empty))

        def own(b: int) -> dict[str, np.ndarray]:
            return own_part(b)[1]

        def first_hour(users: list[str]) -> np.ndarray:
            return baseline.first_hour_array(users, first_hours)

        spent = [0.0]
        if not sharing:
            profiles = {b: ([data.users[i] for i in r], peers.behaviour_profile(own(b))) for b, r in rows.items()}
            return data, peers.everyone(profiles, first_hour, own), spent
        self._check("baselines")
        started = time.perf_counter()
        key = baseline_share.state(conn, tenant, day, hours, self.settings.baseline_days,
                                   self.settings.min_baseline_days)

        def load(buckets: list[int]) -> dict[int, baseline.Part]:
            lost = baseline.load_day(*args, buckets=(n, buckets))
            lost_rows = baseline.by_bucket(lost.users, buckets_of(conn, tenant, lost.users, n))
            return {b: baseline.part_of(lost, lost_rows.get(b, empty)) for b in buckets}

        # Publishing computes the own buckets' profiles; they serve here too.
        published = baseline_share.publish(auto, tenant, key, run_id, n, {b: own_part(b) for b in scope.buckets})
        shared = baseline_share.collect(auto, tenant, key, run_id, n, set(scope.buckets), scheduled.fire, load)
        profiles = {b: (one.users, one.profile) for b, one in (published | shared).items()}

        def arrays(b: int) -> dict[str, np.ndarray]:
            if b not in shared:
                return own(b)
            began = time.perf_counter()
            fetched = baseline_share.fetch(auto, tenant, key, n, b)
            if fetched is None:  # its publication outlived KEEP: load it again, as its replica did
                fetched = load([b])[b][1]
            spent[0] += time.perf_counter() - began
            return fetched

        spent[0] = time.perf_counter() - started
        return data, peers.everyone(profiles, first_hour, arrays), spent

    def _record_fire(self, conn, tenant, run_id, scope: UserScope, scheduled: ScheduledBuckets) -> None:
        conn.execute(
            text("""INSERT INTO scorer_buckets (tenant, bucket, scheduled_at, run_id)
                    SELECT :tenant, b, :fire, :run_id FROM unnest(CAST(:buckets AS int[])) AS b
                    ON CONFLICT (tenant, bucket) DO UPDATE SET
                        scheduled_at = GREATEST(scorer_buckets.scheduled_at, excluded.scheduled_at),
                        run_id = excluded.run_id, updated_at = now()"""),
            {"tenant": tenant, "fire": scheduled.fire, "run_id": run_id, "buckets": list(scope.buckets)},
        )

    # -- event scores --------------------------------------------------------------------------

    def _event_score_rows(self, tenant, run_id, data, results, learning, lines) -> list[tuple]:
        out: list[tuple] = []
        tenant_json = json.dumps(tenant)
        run_json = json.dumps(str(run_id))
        user_json = [json.dumps(u) for u in data.users]
        learning_json = ["true" if v else "false" for v in learning]
        for ms in results:
            # Formatting column by column with %-formats is several times faster than per value.
            if ms.names is None:
                heads = [[f'{{"name":"{f.name}","expected":'] * ms.rows.size for f in ms.model.features]
            else:
                heads = [[f'{{"name":"{n}","expected":' for n in ms.names[:, i]] for i in range(ms.names.shape[1])]
            cells = [
                [h + e + ',"observed":' + o + ',"share":' + sh + "}" for h, e, o, sh in zip(
                    hs, _numbers(ms.expected[:, i], "%.6g"), _numbers(ms.observed[:, i], "%.6g"),
                    _numbers(ms.share[:, i], "%.4g"))]
                for i, hs in enumerate(heads)
            ]
            model_json = json.dumps(ms.model.name)
            scores = ms.score.tolist()
            users = data.w_user[ms.rows].tolist()
            for k, (r, u) in enumerate(zip(ms.rows.tolist(), users)):
                hour = data.w_time[r]
                feats = "[" + ",".join(col[k] for col in cells) + "]"
                out.append((tenant, data.users[u], hour, ms.model.name, scores[k], feats, bool(learning[u]), run_id))
                lines.append(
                    f'{{"type":"event_score","tenant":{tenant_json},"user":{user_json[u]},'
                    f'"hour":"{hour.isoformat()}","model":{model_json},"score":{scores[k]},'
                    f'"learning":{learning_json[u]},"features":{feats},"run_id":{run_json}}}'
                )
        return out

    def _copy_event_scores(self, conn: Connection, rows: list[tuple]) -> None:
        if not rows:
            return
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(
                "COPY event_scores (tenant, user_name, hour, model, score, features, learning, run_id) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)

    # -- peer groups ---------------------------------------------------------------------------

    def _store_peer_groups(self, conn: Connection, tenant: str, assignment: peers.PeerAssignment) -> None:
        conn.execute(delete(peer_groups).where(peer_groups.c.tenant == tenant))
        if assignment.groups:
            conn.execute(
                insert(peer_groups),
                [
                    {"tenant": tenant, "id": g.id, "name": g.name, "method": g.method, "members": sorted(g.members),
                     "profile": g.profile}
                    for g in assignment.groups
                ],
            )
        names = [m for g in assignment.groups for m in g.members]
        ids = [g.id for g in assignment.groups for _ in g.members]
        conn.execute(
            text(
                """UPDATE users u SET peer_group_id = v.group_id
                FROM unnest(CAST(:names AS text[]), CAST(:ids AS text[])) AS v(user_name, group_id)
                WHERE u.tenant = :tenant AND u.user_name = v.user_name
                  AND u.peer_group_id IS DISTINCT FROM v.group_id"""
            ),
            {"names": names, "ids": ids, "tenant": tenant},
        )

    # -- user scores ---------------------------------------------------------------------------

    def _write_user_scores(self, conn, tenant, run_id, days, scope: UserScope, ignored, lines) -> int:
        """Conditioned mean per user and UTC day over every stored hourly score of the day.

        Each score is first scaled by its model's threat weight (so a low-relevance model
        alone cannot make a critical day); scaled scores under the threshold, and hours
        without scores, are left out; the rest are averaged. A day with nothing over the
        threshold scores its highest scaled score, which stays under the threshold.
        """
        d0, d1 = days
        conn.execute(delete(user_scores).where(
            user_scores.c.tenant == tenant, user_scores.c.day >= d0.date(), user_scores.c.day < d1.date(),
            *scope.clauses(user_scores)))
        models = sorted(self.weights)
        params = {
            "tenant": tenant, "d0": d0, "d1": d1, "run_id": run_id, "threshold": self.settings.mean_threshold,
            "models": models, "weights": [float(self.weights[m]) for m in models],
            **scope.params(), "ignored": sorted(ignored),
        }
        # One pass, no joins: after a run's COPY the planner has no statistics for
        # the new rows, and a join misjudged as one row each becomes quadratic.
        rows = conn.execute(
            text(
                """INSERT INTO user_scores (tenant, user_name, day, score, scored_hours, learning, top_features, run_id)
                SELECT :tenant, a.user_name, a.day, round(coalesce(a.conditioned, a.top)::numeric, 2), a.hours,
                       a.learning,
                       coalesce((SELECT jsonb_agg(f || jsonb_build_object('model', a.best_model)
                                                  ORDER BY (f ->> 'share')::float8 DESC)
                                 FROM (SELECT f FROM jsonb_array_elements(a.best_scoring) AS f
                                       WHERE (f ->> 'share')::float8 > 0
                                       ORDER BY (f ->> 'share')::float8 DESC LIMIT 3) top3), '[]'::jsonb),
                       :run_id
                FROM (
                    SELECT es.user_name, date_trunc('day', es.hour)::date AS day,
                           avg(w.weight * es.score) FILTER (WHERE w.weight * es.score >= :threshold) AS conditioned,
                           max(w.weight * es.score) AS top, count(DISTINCT es.hour) AS hours,
                           bool_or(es.learning) AS learning,
                           (array_agg(es.model ORDER BY w.weight * es.score DESC, es.hour, es.model))[1] AS best_model,
                           (array_agg(es.features ORDER BY w.weight * es.score DESC, es.hour, es.model))[1] AS best_scoring
                    FROM event_scores es
                    JOIN unnest(CAST(:models AS text[]), CAST(:weights AS float8[])) AS w(model, weight)
                      ON w.model = es.model
                    WHERE es.tenant = :tenant AND es.hour >= :d0 AND es.hour < :d1
                      AND (:all_users OR es.user_name = ANY(CAST(:users AS text[])))
                      AND (:all_buckets OR ueba_bucket(es.tenant, es.user_name, :n) = ANY(CAST(:buckets AS int[])))
                      AND NOT es.user_name = ANY(CAST(:ignored AS text[]))
                    GROUP BY es.user_name, date_trunc('day', es.hour)::date
                ) a
                RETURNING user_name, day, score, scored_hours, learning, top_features"""
            ),
            params,
        ).all()
        tenant_json, run_json = json.dumps(tenant), json.dumps(str(run_id))
        for user, day, score, hours, learning, top in rows:
            lines.append(
                f'{{"type":"user_score","tenant":{tenant_json},"user":{json.dumps(user)},"day":"{day.isoformat()}",'
                f'"score":{float(score)},"scored_hours":{hours},"learning":{"true" if learning else "false"},'
                f'"top_features":{json.dumps(top, separators=(",", ":"))},"run_id":{run_json}}}'
            )
        return len(rows)

    # -- model anomalies -----------------------------------------------------------------------

    def _write_anomalies(self, conn, tenant, days, scope: UserScope, lines) -> int:
        d0, d1 = days
        threshold = self.settings.anomaly_threshold
        day_rows = conn.execute(select(user_scores.c.user_name, user_scores.c.day, user_scores.c.score,
                                       user_scores.c.learning).where(
            user_scores.c.tenant == tenant, user_scores.c.day >= d0.date(), user_scores.c.day < d1.date(),
            *scope.clauses(user_scores))).all()
        high = [(u, d, s) for u, d, s, learning in day_rows if s >= threshold and not learning]
        # Re-runs that no longer reach the threshold withdraw their unreviewed anomaly.
        withdraw_unreviewed(conn, tenant, "model",
                            [self.dedup_key(u, d) for u, d, s, learning in day_rows if s < threshold or learning])
        records = [self._describe(conn, tenant, user, day, float(score)) for user, day, score in high]
        write_anomalies(conn, records, refresh_unreviewed=True)
        for record, (user, day, _score) in zip(records, high):
            lines.append(json.dumps({"type": "model_anomaly", "tenant": tenant, "user": user, "day": day.isoformat(),
                                     "score": record.risk_score, "model": record.profile_id,
                                     "description": record.description}, separators=(",", ":")))
        return len(records)

    @staticmethod
    def dedup_key(user: str, day: date) -> str:
        return f"model:{user}:{day.isoformat()}"

    def _describe(self, conn, tenant, user, day: date, score: float) -> AnomalyRecord:
        day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        rows = conn.execute(
            select(event_scores.c.hour, event_scores.c.model, event_scores.c.score, event_scores.c.features)
            .where(event_scores.c.tenant == tenant, event_scores.c.user_name == user,
                   event_scores.c.hour >= day_start, event_scores.c.hour < day_start + DAY)
        ).all()
        ranked = sorted(rows, key=lambda r: (-self.weights.get(r.model, 1.0) * r.score, r.hour, r.model))
        top = ranked[0]
        phrases: list[str] = []
        used_models: list[str] = []
        top_features = []
        for row in ranked[:6]:
            if row.model in used_models or self.weights.get(row.model, 1.0) * row.score < self.settings.mean_threshold:
                continue
            used_models.append(row.model)
            ranked_features = sorted(row.features, key=lambda f: -f["share"])
            chosen = [f for f in ranked_features[:2] if f["share"] >= 0.15]
            # Something new is always worth naming (the country, the host), even with a small share.
            chosen += [f for f in ranked_features[2:]
                       if _feature_of(row.model, f["name"]) in NOVELTY_ENTITY and f["observed"] > 0]
            for item in chosen:
                if item["observed"] <= item["expected"]:
                    continue
                top_features.append({**item, "model": row.model, "hour": row.hour.isoformat()})
                source, name = _feature_of(row.model, item["name"])
                feature = next(f for f in BY_NAME[source].features if f.name == name)
                phrase = self._phrase(conn, tenant, user, row.hour, source, feature, item)
                if phrase not in phrases:
                    phrases.append(phrase)
            if len(used_models) == 3 or len(phrases) >= 5:
                break
        model = BY_NAME[top.model]
        evidence = {
            "event_ids": list(conn.execute(
                text("""SELECT event_id FROM events WHERE tenant = :tenant AND user_name = :user
                        AND time >= :hour AND time < :end ORDER BY time, event_id LIMIT 50"""),
                {"tenant": tenant, "user": user, "hour": top.hour, "end": top.hour + HOUR},
            ).scalars()),
            "day_score": score,
            "top_model": top.model,
            "top_hour": top.hour.isoformat(),
            "model_scores": {m: max(r.score for r in rows if r.model == m) for m in sorted({r.model for r in rows})},
            "features": top_features,
        }
        description = "; ".join(p for p in phrases if p) or f"unusual {model.name.replace('_', ' ')} behaviour"
        return AnomalyRecord(
            tenant=tenant, user=user, source="model", profile_id=top.model,
            profile_name=f"{model.name.replace('_', ' ')} model", profile_kind=top.model,
            risk_score=int(min(100, max(1, round(score)))), description=description, dimension=model.dimension,
            time=top.hour, window_start=day_start, window_end=day_start + DAY,
            evidence=json.loads(json.dumps(evidence, default=str)), dedup_key=self.dedup_key(user, day),
        )

    def _phrase(self, conn, tenant, user, hour, model_name, feature, item) -> str:
        entities = ""
        entity_type = NOVELTY_ENTITY.get((model_name, feature.name))
        if entity_type:
            names = conn.execute(
                text("""SELECT entity FROM entity_seen WHERE tenant = :tenant AND user_name = :user
                        AND entity_type = :type AND first_seen >= :hour AND first_seen < :end ORDER BY entity LIMIT 5"""),
                {"tenant": tenant, "user": user, "type": entity_type, "hour": hour, "end": hour + HOUR},
            ).scalars().all()
            if entity_type == "city":
                names = [f"{n.split('/', 1)[1]}, {n.split('/', 1)[0]}" if "/" in n else n for n in names]
            entities = ", ".join(names) or "unnamed"
        phrase = feature.phrase or f"{feature.name} {{o}} vs {{e}} expected"
        return phrase.format(o=_human(item["observed"]), e=_human(item["expected"]), entities=entities)


def _feature_of(model: str, name: str) -> tuple[str, str]:
    """(model, feature) a stored feature entry stands for: the corroboration model quotes others' as model.feature."""
    source, _, own = name.rpartition(".")
    return (source, own) if source else (model, name)


def _human(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e9:
        return f"{v / 1e9:.1f}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def mark_interrupted(engine: Engine) -> int:
    """Fails runs left `running` by a process that died (their transaction never committed).

    A run holds an advisory lock keyed by its id while it works; a `running` row
    whose lock is free belongs to no live process, whichever replica started it.
    """
    marked = 0
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        running = conn.execute(select(scoring_runs.c.id).where(scoring_runs.c.status == "running")).scalars().all()
        for run_id in running:
            key = (func.hashtext(RUN_LOCK), func.hashtext(str(run_id)))
            if not conn.execute(select(func.pg_try_advisory_lock(*key))).scalar_one():
                continue
            try:
                marked += conn.execute(
                    update(scoring_runs)
                    .where(scoring_runs.c.id == run_id, scoring_runs.c.status == "running")
                    .values(status="failed", finished_at=func.now(), error="interrupted: the scorer stopped during the run")
                ).rowcount
            finally:
                conn.execute(select(func.pg_advisory_unlock(*key)))
    return marked
