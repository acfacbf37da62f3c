"""Aggregation: the tenant's new events into features, moving the cursor, in a transaction of its own."""

from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import Connection, Engine

from services.scorer import features
from services.scorer.store import cursor, locks
from services.scorer.store.transactions import repeatable_read


def aggregate(engine: Engine, lock_conn: Connection, tenant: str,
              check: Callable[[str], None]) -> features.FeatureRefresh:
    """Every user's new events of `tenant` into features under the tenant's aggregation lock (held
    on `lock_conn`); the replicas of one fire share this: the first does it, the others find nothing new."""
    with locks.aggregation_lock(lock_conn, tenant):
        with repeatable_read(engine) as (conn, _):
            previous = cursor.previous_snapshot(conn, tenant)
            started = time.perf_counter()
            refreshed = features.refresh(conn, tenant, previous)
            refreshed.seconds = round(time.perf_counter() - started, 3)
            check("features")
            cursor.save_snapshot(conn, tenant, refreshed.snapshot, refreshed.dirty_user_hours > 0)
            return refreshed
