"""Keeps the pre-aggregates the summary reads fresh: merged rollups and current user risk (README: the rollup cache)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Engine

from services.query import suppression
from services.query.store import risk_state as store
from ueba.risk import open_entity_scores, user_risk
from ueba.worker import PeriodicWorker

def refresh(conn: Connection, tenant: str, now: datetime, window_days: int, user_mode: str) -> int:
    """Recomputes user_risk and entity_risk for the tenant's dirty and aged-out entities (in the caller's transaction).

    The suppression rules in force are applied first to the findings that marked them dirty,
    so no refreshed risk counts a finding a rule suppresses.
    """
    horizon = now - timedelta(days=window_days)
    store.lock(conn, tenant)
    suppression.apply_active(conn, tenant, now, window_days, user_mode)
    claimed = store.claim(conn, tenant, horizon)
    for entity_type, names in claimed.items():
        scores = open_entity_scores(conn, tenant, now, window_days, entity_type, names)
        oldest = store.oldest_open(conn, tenant, entity_type, names, horizon)
        rows = []
        for name in names:
            if scores.get(name):
                points, risk, _level = user_risk(scores[name])
                rows.append({
                    "name": name, "points": points, "risk": risk, "open_anomalies": len(scores[name]),
                    "oldest_open": oldest.get(name), "updated_at": now,
                })
        store.write_risk(conn, tenant, entity_type, rows, gone=[n for n in names if not scores.get(n)])
    return sum(len(names) for names in claimed.values())


def ensure_fresh(engine: Engine, tenant: str, now: datetime, window_days: int, user_mode: str) -> bool:
    """Brings the tenant's user_risk and entity_risk up to date before a read that relies on it; True when it wrote."""
    with engine.connect() as conn:
        if not store.needs_refresh(conn, tenant, now - timedelta(days=window_days)):
            return False
    with engine.begin() as conn:
        return refresh(conn, tenant, now, window_days, user_mode) > 0


class Maintainer(PeriodicWorker):
    """Background work of the query service: merges rollups, refreshes user risk.

    A failed round is retried at the next: reads stay correct without it.
    """

    thread_name = "query-maintenance"
    # Wakes no sooner than this after a round, however soon the next finding ages out,
    # and this much after it has (an early wake-up would find nothing to refresh).
    min_wait = 0.2
    aging_margin = 0.01

    def __init__(self, engine: Engine, window_days: int, interval: float, user_mode: str):
        super().__init__()
        self.engine = engine
        self.window_days = window_days
        self.user_mode = user_mode
        self.interval = interval
        self.next_aging: datetime | None = None

    def run_once(self) -> None:
        now = datetime.now(timezone.utc)
        while store.merge_rollups(self.engine) > 0 and not self.stopping.is_set():
            pass
        with self.engine.connect() as conn:
            tenants = store.tenants_to_refresh(conn, now - timedelta(days=self.window_days))
        for tenant in sorted(tenants):
            with self.engine.begin() as conn:
                refresh(conn, tenant, now, self.window_days, self.user_mode)
        with self.engine.connect() as conn:
            oldest = store.first_oldest_open(conn)
        self.next_aging = oldest + timedelta(days=self.window_days) if oldest is not None else None

    def next_wait(self, failed: bool) -> float:
        # A finding leaving the risk window makes user_risk stale, and the first summary to see it
        # refreshes inside its call (tens of ms, longer behind the lock). Waking as it leaves takes
        # that work off the calls: on the benchmark store a finding ages out about every 30 s.
        if failed or self.next_aging is None:
            return self.interval
        until = (self.next_aging - datetime.now(timezone.utc)).total_seconds()
        return min(self.interval, max(self.min_wait, until + self.aging_margin))
