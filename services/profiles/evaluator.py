"""The continuous evaluator: tails newly committed events and raises anomalies.

Commit order without skipping: every event row carries the id of the
transaction that wrote it (events.txid). The cursor is a pg_snapshot of what
has been processed; a poll, in one REPEATABLE READ transaction, reads the rows
visible now whose transaction was not visible in the cursor, feeds them to the
detectors, inserts the anomalies and stores the new cursor, and commits all of
it at once. A writer that commits late, after others with later ids, is still
"not visible in the cursor" at the next poll, so no row is skipped; and since
the anomalies and the cursor commit together, a crash repeats a whole batch or
none of it (anomalies.dedup_key absorbs any repeat).

Large backlogs are taken in pages of whole transactions: the cursor after a
page is the snapshot in which exactly the processed rows are visible
(store.next_snapshot).

Detector state lives in memory and is rebuilt from the events table (the
cursor's visible rows) on start, after any failure, and for a new or changed
profile (warmup.warm_detector). One process evaluates at a time: a session
advisory lock elects it, so extra replicas wait as hot standbys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import datetime
from typing import Callable

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, Engine, text

from services.profiles import store
from services.profiles.kinds import ParameterError, ProfileDetector, build_detector
from services.profiles.records import EventRecord, Firing
from services.profiles.warmup import warm_detector

log = logging.getLogger(__name__)

CONSUMER = "evaluator"
LEADER_LOCK = 0x0E0E_0002

EVENTS = Counter("ueba_profiles_events_total", "events the evaluator processed")
ANOMALIES = Counter("ueba_profiles_anomalies_total", "rule anomalies created", ["kind"])
BATCH_SECONDS = Histogram("ueba_profiles_batch_seconds", "time of one evaluator transaction",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))


def _event_order(e: EventRecord) -> tuple[float, str]:
    return e.ts, e.event_id


class ProfileEvaluator:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float = 0.5,
        batch_events: int = 5000,
        start_from: str = "beginning",
        seed_defaults: bool = True,
        consumer: str = CONSUMER,
    ):
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.batch_events = batch_events
        self.start_from = start_from
        self.seed_defaults = seed_defaults
        self.consumer = consumer
        self._detectors: dict[str, ProfileDetector] = {}  # profile id -> detector
        self._versions: dict[str, tuple[str, datetime]] = {}
        self._seeded: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader: Connection | None = None
        self.processed = 0
        self.created = 0
        self.backlog = False

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="profiles-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._release()

    def _run(self) -> None:
        backoff = self.poll_seconds
        while not self._stop.is_set():
            try:
                if not self._lead():
                    self._stop.wait(max(self.poll_seconds, 2.0))
                    continue
                self.run_once()
                backoff = self.poll_seconds
                if not self.backlog:
                    # Idle: poll. With a backlog the next batch starts at once.
                    self._stop.wait(self.poll_seconds)
            except Exception:
                log.exception("evaluator batch failed; state is rebuilt from the store")
                self.reset()
                self._release()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _lead(self) -> bool:
        """Holds the leader lock on a dedicated connection; False while another process holds it."""
        if self._leader is not None:
            self._leader.execute(text("SELECT 1"))
            return True
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar()
        conn.commit()
        if not got:
            conn.close()
            return False
        self._leader = conn
        self.reset()  # another leader may have moved on since this process last held the lock
        log.info("evaluator is leading")
        return True

    def _release(self) -> None:
        if self._leader is not None:
            try:
                self._leader.close()
            except Exception:  # the connection may already be gone
                pass
            self._leader = None

    def reset(self) -> None:
        self._detectors.clear()
        self._versions.clear()

    # --- one batch ----------------------------------------------------------------------
    def run_once(self) -> int:
        """Processes one batch of newly committed events; returns how many (`backlog` says
        whether more were already committed)."""
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    n, self.backlog = self._batch(conn)
        except Exception:
            self.reset()
            raise
        BATCH_SECONDS.observe(time.perf_counter() - started)
        return n

    def _batch(self, conn: Connection) -> tuple[int, bool]:
        """Read the delta -> evaluate -> insert anomalies -> write the cursor, in the caller's
        transaction; returns (events taken, whether more were already waiting)."""
        now = store.current_snapshot(conn)
        cursor = store.read_cursor(conn, self.consumer)
        if cursor is None:
            cursor = store.Cursor(store.EMPTY_SNAPSHOT if self.start_from == "beginning" else now, None)
            store.write_cursor(conn, self.consumer, cursor)
        batch, upto = store.delta_page(conn, cursor.snapshot, self.batch_events)
        if self.seed_defaults and batch:
            self._seed({e.tenant for e in batch}, conn)
        self._sync_profiles(conn, cursor)
        batch.sort(key=_event_order)
        firings = self.evaluate(batch)
        created = store.insert_anomalies(conn, firings)
        high_water = cursor.high_water
        if batch:
            newest = max(e.time for e in batch)
            high_water = newest if high_water is None or newest > high_water else high_water
        store.write_cursor(conn, self.consumer, store.Cursor(store.next_snapshot(cursor.snapshot, now, upto), high_water))
        self.processed += len(batch)
        self.created += created
        EVENTS.inc(len(batch))
        for f in firings:
            ANOMALIES.labels(f.profile_kind).inc()
        if batch:
            log.debug("batch", extra={"events": len(batch), "anomalies": created})
        return len(batch), upto is not None

    def evaluate(self, batch: list[EventRecord]) -> list[Firing]:
        # Per tenant and event type, the detectors that can want it (by their event types, which
        # parameters and filters narrow): most events meet three or four of the ten.
        routes: dict[tuple[str, str], list[tuple[Callable, Callable]]] = {}
        detectors_of: dict[str, list[ProfileDetector]] = defaultdict(list)
        for d in self._detectors.values():
            detectors_of[d.spec.tenant].append(d)
        firings: list[Firing] = []
        for e in batch:
            key = (e.tenant, e.event_type)
            route = routes.get(key)
            if route is None:
                route = routes[key] = [
                    (d.accepts, d.observe) for d in detectors_of.get(e.tenant, ())
                    if d.event_types is None or e.event_type in d.event_types
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
        self._seeded |= store.seeded_tenants(conn)
        for tenant in missing - self._seeded:
            created = store.seed_defaults(conn, tenant)
            log.info("seeded built-in profiles", extra={"tenant": tenant, "profiles_created": created})
            self._seeded.add(tenant)

    def _sync_profiles(self, conn: Connection, cursor: store.Cursor) -> None:
        """Builds detectors for new or changed enabled profiles and drops the rest."""
        versions = store.enabled_profile_versions(conn)
        if versions == self._versions:
            return
        for pid in [p for p in self._detectors if versions.get(p) != self._versions.get(p)]:
            del self._detectors[pid]
        changed = [pid for pid, v in versions.items() if pid not in self._detectors]
        for spec in store.load_profiles(conn, changed):
            try:
                detector = build_detector(spec)
            except ParameterError as exc:  # stored before a rule tightened: skip it, say why
                log.warning("profile skipped", extra={"profile": spec.name, "tenant": spec.tenant, "reason": str(exc)})
                continue
            if cursor.high_water is not None:
                replayed = warm_detector(conn, detector, cursor.high_water, until_inclusive=True, visible_in=cursor.snapshot)
                log.info("profile warmed", extra={"profile": spec.name, "tenant": spec.tenant, "replayed": replayed})
            self._detectors[spec.id] = detector
        self._versions = versions
