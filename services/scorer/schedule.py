"""The scheduled runs: a background worker that scores the last 24 complete hours at fixed UTC times."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine, select

from services.scorer.runs import Scorer, default_window
from ueba.store.schema import users

log = logging.getLogger(__name__)


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


class ScheduledScoring:
    """start()/stop() worker for ServiceServer(background=...)."""

    def __init__(self, scorer: Scorer, engine: Engine, default_tenant: str, times: tuple[tuple[int, int], ...],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.scorer = scorer
        self.engine = engine
        self.default_tenant = default_tenant
        self.times = times
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.times:
            log.info("scheduled scoring disabled")
            return
        self._thread = threading.Thread(target=self._loop, name="scoring-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tenants(self) -> list[str]:
        with self.engine.connect() as conn:
            found = set(conn.execute(select(users.c.tenant).distinct()).scalars())
        return sorted(found | {self.default_tenant})

    def run_once(self, now: datetime) -> list:
        start, end = default_window(now)
        results = []
        for tenant in self.tenants():
            results.append(self.scorer.run(tenant, start, end, None, trigger="schedule"))
        return results

    def _loop(self) -> None:
        while not self._stop.is_set():
            at = next_fire(self.clock(), self.times)
            log.info("next scheduled scoring", extra={"at": at.isoformat()})
            while not self._stop.is_set():
                wait = (at - self.clock()).total_seconds()
                if wait <= 0:
                    break
                self._stop.wait(min(wait, 60.0))
            if self._stop.is_set():
                return
            try:
                self.run_once(at)
            except Exception:  # a bad run must not end the schedule
                log.exception("scheduled scoring failed")
