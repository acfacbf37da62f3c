"""The continuous evaluator: tails newly committed events through the detectors and raises anomalies
(README: "Commit order without skipping", "State across restarts")."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import datetime
from operator import attrgetter
from typing import Callable, Iterable

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, Engine

from services.profiles.buckets import FixedOwnership, Lane, Ownership, Share, ensure_cursors, per_user, plan_lanes
from services.profiles.kinds import ParameterError, ProfileDetector, build_detector
from services.profiles.records import EventRecord
from services.profiles.store import definitions, history, tailing
from services.profiles.store.events import BucketSet
from services.profiles.warmup import warm_detector
from ueba.leases import LeaseLost, buckets_of
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.commits import CommitListener
from ueba.worker import BackgroundWorker

log = logging.getLogger(__name__)

EVENTS = Counter("ueba_profiles_events_total", "events the evaluator processed")
ANOMALIES = Counter("ueba_profiles_anomalies_total", "rule anomalies created", ["kind"])
BATCH_SECONDS = Histogram("ueba_profiles_batch_seconds", "time of one evaluator transaction",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))


# In C: a Python key function cost as much as the sort's share of the detectors.
_event_order = attrgetter("ts", "event_id")


class ProfileEvaluator(BackgroundWorker):
    """Tails committed events through the profiles' detectors, one batch after another."""

    thread_name = "profiles-evaluator"
    join_seconds = 30.0

    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float = 0.5,
        batch_events: int = 5000,
        start_from: str = "beginning",
        seed_defaults: bool = True,
        ownership: Ownership | None = None,
        risk_window_days: int = 30,
        listen: bool = True,
    ):
        self.engine = engine
        self.risk_window_days = risk_window_days
        self.poll_seconds = poll_seconds  # the fallback when no commit is announced (README: "Waking on commit")
        self.batch_events = batch_events
        self.start_from = start_from
        self.seed_defaults = seed_defaults
        self.ownership = ownership or FixedOwnership()
        self._detectors: dict[str, ProfileDetector] = {}  # profile id -> detector
        self._per_user: dict[str, bool] = {}  # profile id -> whether it runs on a share of the users
        self._versions: dict[str, tuple[str, datetime]] = {}
        # Profile id -> (version, per user; None: cannot be built): what need not be loaded again.
        self._seen: dict[str, tuple[tuple[str, datetime], bool | None]] = {}
        self._warm: frozenset[int] = frozenset()  # buckets whose users the per-user detectors know
        self._warm_global = False  # whether the global detectors are built
        self._cursors_ready = False
        self._bucket_of: dict[tuple[str, str], int] = {}  # (tenant, user) -> bucket, for sifted lanes
        self._share: Share | None = None
        self._seeded: set[str] = set()
        # (tenant, snapshot, users) -> where the tenant's processed events end, during one sync.
        self._positions: dict[tuple[str, str, BucketSet | None], datetime | None] = {}
        super().__init__()
        # Set by an announced commit (and by stop()); the loop waits on it instead of sleeping.
        self.wake = threading.Event()
        self.listener = CommitListener(engine, self.wake) if listen else None
        self.processed = 0
        self.created = 0
        self.backlog = False

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.ownership.start()
        if self.listener is not None:
            self.listener.start()
        super().start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        super().stop()
        if self.listener is not None:
            self.listener.stop()
        self.ownership.stop()

    def run(self) -> None:
        backoff = self.poll_seconds
        while not self.stopping.is_set():
            try:
                # Cleared before the batch reads its snapshot: a commit announced from here on
                # is either in this batch or wakes the next one.
                self.wake.clear()
                self.run_once()
                backoff = self.poll_seconds
                if not self.backlog:
                    # Idle until a commit is announced, or the poll interval passes (a lost
                    # announcement). With a backlog the next batch starts at once.
                    self.wake.wait(self.poll_seconds)
            except LeaseLost as exc:
                # A bucket was released or taken over mid-batch: the batch rolled back. Go on as
                # soon as the heartbeat has seen the new share (not at once: the same share would
                # only fail again, after warming everything up).
                log.info("batch dropped: lease moved", extra={"reason": str(exc)})
                deadline = time.monotonic() + self.ownership.heartbeat
                while self.ownership.share() == self._share and time.monotonic() < deadline:
                    if self.stopping.wait(0.05):
                        break
            except Exception:
                log.exception("evaluator batch failed; state is rebuilt from the store")
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def reset(self) -> None:
        self._detectors.clear()
        self._per_user.clear()
        self._versions.clear()
        self._warm = frozenset()
        self._warm_global = False
        self._cursors_ready = False

    # --- one batch ----------------------------------------------------------------------
    def run_once(self) -> int:
        """Processes one batch of newly committed events; returns how many (`backlog` says
        whether more were already committed)."""
        started = time.perf_counter()
        share = self._share = self.ownership.share()
        if share.empty:
            self.backlog = False
            return 0
        try:
            if not self._cursors_ready:
                ensure_cursors(self.engine, share.n, self.start_from)
                self._cursors_ready = True
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin() as transaction:
                    n, self.backlog = self._batch(conn, share)
                    # The leases cannot move while this commits; one that moved rolls it all back.
                    with self.ownership.fenced(share):
                        transaction.commit()
        except Exception:
            self.reset()  # the detectors saw rows whose batch did not commit
            raise
        BATCH_SECONDS.observe(time.perf_counter() - started)
        return n

    def _batch(self, conn: Connection, share: Share) -> tuple[int, bool]:
        """Read the deltas -> evaluate -> insert anomalies -> write the cursors, in the caller's
        transaction; returns (events taken, whether more were already waiting)."""
        now = tailing.current_snapshot(conn)
        cursors = tailing.read_cursors(conn, share.consumers())
        if len(cursors) < len(share.consumers()):
            raise RuntimeError("profile cursors missing; they are created again")  # reset() re-ensures them
        lanes = plan_lanes(share, cursors)
        pages = [(lane, *tailing.delta_page(conn, lane.snapshot, self.batch_events, lane.users)) for lane in lanes]
        if self.seed_defaults:
            tenants = {e.tenant for _, batch, _ in pages for e in batch}
            if tenants:
                self._seed(tenants, conn)
        self._sync_profiles(conn, share, lanes)
        taken, backlog, created = 0, False, 0
        for lane, batch, upto in pages:
            batch.sort(key=_event_order)
            if lane.sifted:  # every row for the global detectors, the lane's buckets' for the per-user ones
                firings = self.evaluate(batch, self._scope(per_user=False))
                firings += self.evaluate(self._sift(conn, batch, lane), self._scope(per_user=True))
            else:
                firings = self.evaluate(batch, [
                    d for pid, d in self._detectors.items() if (lane.per_user if self._per_user[pid] else lane.global_)
                ])
            created += write_anomalies(conn, firings, risk_window_days=self.risk_window_days)
            high_water = lane.high_water
            if batch:
                newest = max(e.time for e in batch)
                high_water = newest if high_water is None or newest > high_water else high_water
            next_cursor = tailing.Cursor(tailing.next_snapshot(lane.snapshot, now, upto), high_water)
            tailing.write_cursor(conn, lane.consumers, next_cursor)
            taken += len(batch)
            backlog = backlog or upto is not None
            for f in firings:
                ANOMALIES.labels(f.profile_kind).inc()
        self.processed += taken
        self.created += created
        EVENTS.inc(taken)
        if taken:
            log.debug("batch", extra={"events": taken, "anomalies": created, "lanes": len(lanes)})
        return taken, backlog

    def _scope(self, per_user: bool) -> list[ProfileDetector]:
        return [d for pid, d in self._detectors.items() if self._per_user[pid] == per_user]

    def _sift(self, conn: Connection, batch: list[EventRecord], lane: Lane) -> list[EventRecord]:
        """The events of users in the lane's buckets (a user's bucket never changes: cached)."""
        known = self._bucket_of
        missing: dict[str, set[str]] = defaultdict(set)
        for e in batch:
            if (e.tenant, e.user) not in known:
                missing[e.tenant].add(e.user)
        for tenant, users in missing.items():
            for user, bucket in buckets_of(conn, tenant, users, lane.n).items():
                known[(tenant, user)] = bucket
        return [e for e in batch if known[(e.tenant, e.user)] in lane.buckets]

    def evaluate(self, batch: list[EventRecord], detectors: Iterable[ProfileDetector] | None = None) -> list[AnomalyRecord]:
        # Per tenant and event type, the detectors that can want it (by their event types, which
        # parameters and filters narrow): most events meet three or four of the ten.
        routes: dict[tuple[str, str, bool], list[tuple[Callable, Callable]]] = {}
        detectors_of: dict[str, list[ProfileDetector]] = defaultdict(list)
        for d in self._detectors.values() if detectors is None else detectors:
            detectors_of[d.spec.tenant].append(d)
        firings: list[AnomalyRecord] = []
        for e in batch:
            # A failure naming no account is about its source: only detectors that charge sources take it.
            key = (e.tenant, e.event_type, bool(e.user))
            route = routes.get(key)
            if route is None:
                route = routes[key] = [
                    (d.accepts, d.observe) for d in detectors_of.get(e.tenant, ())
                    if (d.event_types is None or e.event_type in d.event_types) and (e.user or d.takes_nameless)
                ]
            for accepts, observe in route:
                if accepts(e):
                    found = observe(e)
                    if found:
                        firings.extend(found)
        return firings

    def _seed(self, tenants: set[str], conn: Connection) -> None:
        missing = tenants - self._seeded
        if not missing:
            return
        self._seeded |= definitions.seeded_tenants(conn)
        for tenant in missing - self._seeded:
            created = definitions.seed_defaults(conn, tenant)
            log.info("seeded built-in profiles", extra={"tenant": tenant, "profiles_created": created})
            self._seeded.add(tenant)

    def _sync_profiles(self, conn: Connection, share: Share, lanes: list[Lane]) -> None:
        """Follows the share and the profiles: per-user detectors know the users of the owned
        buckets (a gained bucket's users are warmed in, a lost one drops them all: they would be
        stale if it came back), global detectors exist while the global bucket is held, and a
        new or changed enabled profile gets a fresh, warmed detector."""
        owned = frozenset(share.buckets)
        holds_global = share.global_token is not None
        self._positions.clear()
        if self._warm - owned:
            self._drop(per_user_scope=True)
            self._warm = frozenset()
        if self._warm_global and not holds_global:
            self._drop(per_user_scope=False)
            self._warm_global = False
        versions = definitions.enabled_profile_versions(conn)
        for pid in [p for p in self._detectors if versions.get(p) != self._versions.get(p)]:
            del self._detectors[pid], self._per_user[pid]
        gained = owned - self._warm
        if gained:
            for pid, detector in self._detectors.items():
                if self._per_user[pid]:
                    self._warm_up(conn, detector, lanes, share.n, gained)
            self._warm = owned
        self._warm_global = holds_global
        self._versions = versions
        changed = [pid for pid in versions if pid not in self._detectors and self._wanted(pid, versions[pid], share)]
        for spec in definitions.load_profiles(conn, changed):
            scope = per_user(spec)
            self._seen[spec.id] = (versions[spec.id], scope)
            if not (owned if scope else holds_global):
                continue  # not this replica's work now; built when it is
            try:
                detector = build_detector(spec)
            except ParameterError as exc:  # stored before a rule tightened: skip it, say why
                log.warning("profile skipped", extra={"profile": spec.name, "tenant": spec.tenant, "reason": str(exc)})
                self._seen[spec.id] = (versions[spec.id], None)
                continue
            replayed = self._warm_up(conn, detector, lanes, share.n, owned if scope else None)
            log.info("profile warmed", extra={"profile": spec.name, "tenant": spec.tenant, "replayed": replayed})
            self._detectors[spec.id] = detector
            self._per_user[spec.id] = scope

    def _wanted(self, pid: str, version: tuple[str, datetime], share: Share) -> bool:
        """Whether to load a profile without a detector: new or changed, or now in this replica's share."""
        seen = self._seen.get(pid)
        if seen is None or seen[0] != version:
            return True
        scope = seen[1]
        return scope is not None and bool(share.buckets if scope else share.global_token is not None)

    def _drop(self, per_user_scope: bool) -> None:
        for pid in [p for p, scope in self._per_user.items() if scope == per_user_scope]:
            self._detectors.pop(pid, None)
            del self._per_user[pid]

    def _warm_up(
        self, conn: Connection, detector: ProfileDetector, lanes: list[Lane], n: int, buckets: frozenset[int] | None
    ) -> int:
        """Replays what the cursors of `buckets` of N (None: the global cursor) processed into the detector."""
        replayed = 0
        for lane in lanes:
            if buckets is None:
                if not lane.global_:
                    continue
                users = None
            else:
                mine = lane.buckets & buckets
                if not mine:
                    continue
                users = None if len(mine) == n else BucketSet(n, mine)
            # From the tenant's own position: one tenant's clock (or backfill) far behind
            # another's must not leave its windows unbuilt.
            key = (detector.spec.tenant, lane.snapshot, users)
            if key not in self._positions:
                self._positions[key] = history.tenant_position(conn, detector.spec.tenant, lane.snapshot, users)
            position = self._positions[key]
            if position is not None:
                replayed += warm_detector(conn, detector, position, until_inclusive=True,
                                          visible_in=lane.snapshot, buckets=users, fired_from_store=True)
        return replayed
