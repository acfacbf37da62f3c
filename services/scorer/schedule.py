"""The scheduled runs: each replica scores the last 24 complete hours of the users in its leased buckets.

Fire times are the same on every replica (UTC clock times, or multiples of an
interval since the epoch). A replica polls every lease heartbeat: for the latest
fire time that has passed, it runs its buckets that scorer_buckets does not yet
record as scored for that fire. So a replica that dies mid-run, or before the
fire, leaves its buckets due, and whoever takes them over scores them; the
record is written in the run's transaction with a fenced lease, so no bucket is
scored twice for one fire. A fire missed while no scorer was up is scored once
one starts (only the latest fire: its window covers the missed one's hours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine

from services.scorer.runs import ScheduledBuckets, Scorer, mark_interrupted
from services.scorer.store import buckets as bucket_store
from services.scorer.store import tenant as tenant_store
from services.scorer.window import default_window
from ueba.leases import LeaseManager
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def next_fire(now: datetime, times: tuple[tuple[int, int], ...]) -> datetime | None:
    """The first scheduled time strictly after `now` (UTC)."""
    if not times:
        return None
    now = now.astimezone(timezone.utc)
    for days in (0, 1):
        base = (now + timedelta(days=days)).replace(second=0, microsecond=0)
        for hour, minute in times:
            at = base.replace(hour=hour, minute=minute)
            if at > now:
                return at
    return None  # unreachable with a non-empty schedule


@dataclass(frozen=True)
class Schedule:
    times: tuple[tuple[int, int], ...] = ()
    every: int | None = None  # seconds, aligned to the epoch

    def __bool__(self) -> bool:
        return bool(self.times or self.every)

    def next_fire(self, now: datetime) -> datetime | None:
        if self.every:
            return self._floor(now) + timedelta(seconds=self.every)
        return next_fire(now, self.times)

    def last_fire(self, now: datetime) -> datetime | None:
        """The latest fire time at or before `now`."""
        if self.every:
            return self._floor(now)
        if not self.times:
            return None
        at = next_fire(now - timedelta(days=1), self.times)
        while at is not None and (following := next_fire(at, self.times)) <= now:
            at = following
        return at

    def _floor(self, now: datetime) -> datetime:
        seconds = int((now - EPOCH).total_seconds())
        return EPOCH + timedelta(seconds=seconds - seconds % self.every)


class ScheduledScoring(PeriodicWorker):
    """Scores the due buckets at every fire time; owns the replica's leases."""

    thread_name = "scoring-schedule"
    join_seconds = 5.0
    run_at_start = True

    def __init__(self, scorer: Scorer, engine: Engine, default_tenant: str, schedule: Schedule, leases: LeaseManager,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.scorer = scorer
        self.engine = engine
        self.default_tenant = default_tenant
        self.schedule = schedule
        self.leases = leases
        self.clock = clock
        super().__init__()

    def start(self) -> None:
        if not self.schedule:
            # Holding buckets without scoring them would starve them: no leases either.
            log.info("scheduled scoring disabled")
            return
        self.leases.start()
        super().start()

    def stop(self) -> None:
        if self.running:
            super().stop()
            self.leases.stop()

    def tenants(self) -> list[str]:
        with self.engine.connect() as conn:
            found = tenant_store.tenants(conn)
        return sorted(found | {self.default_tenant})

    def due(self, tenant: str, fire: datetime, held: dict[int, int]) -> dict[int, int]:
        """The held buckets not yet scored for `fire`."""
        with self.engine.connect() as conn:
            done = bucket_store.scored_since(conn, tenant, fire)
        return {b: t for b, t in held.items() if b not in done}

    def run_due(self, now: datetime) -> list:
        """Scores, per tenant, this replica's buckets that the latest fire time has not covered yet."""
        fire = self.schedule.last_fire(now)
        held = self.leases.owned()
        if fire is None or not held:
            return []
        start, end = default_window(fire)
        results = []
        for tenant in self.tenants():
            due = self.due(tenant, fire, held)
            if not due:
                continue
            with self.leases.hold(due):
                results.append(self.scorer.run(tenant, start, end, None, trigger="schedule",
                                               scheduled=ScheduledBuckets(fire, due, self.leases)))
        return results

    def run_once(self) -> None:
        marked = mark_interrupted(self.engine)  # a dead replica's `running` rows
        if marked:
            log.warning("marked interrupted scoring runs as failed", extra={"runs": marked})
        self.run_due(self.clock())

    def next_wait(self, failed: bool) -> float:
        # Wake at the next fire time, and at every heartbeat to pick up buckets taken over meanwhile.
        now = self.clock()
        upcoming = self.schedule.next_fire(now)
        wait = self.leases.heartbeat
        if upcoming is not None:
            wait = min(wait, max((upcoming - now).total_seconds(), 0.0) + 0.01)
        return wait
