"""The delivery workers: a router that turns outbox rows into deliveries, one sender loop per
destination, and upkeep (gauges, pruning). Design: README."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from services.delivery import store
from services.delivery.destinations import Destination
from services.delivery.metrics import ATTEMPTS, DELAY, QUEUED, UNROUTED
from services.delivery.pacing import retry_delay
from services.delivery.senders import DeliveryFailed, Sender, sender_for
from ueba.worker import BackgroundWorker, PeriodicWorker

log = logging.getLogger(__name__)


class Router(PeriodicWorker):
    thread_name = "delivery-router"
    run_at_start = True

    def __init__(self, engine: Engine, destinations: list[Destination], batch: int, poll_seconds: float):
        super().__init__()
        self.engine, self.destinations, self.batch = engine, destinations, batch
        self.interval = poll_seconds

    def run_once(self) -> None:
        while not self.stopping.is_set():
            with self.engine.begin() as conn:
                if store.route(conn, self.destinations, self.batch) < self.batch:
                    return


class DestinationWorker(BackgroundWorker):
    """Sends one destination's due deliveries, a leased batch at a time, until stopped."""

    def __init__(self, engine: Engine, destination: Destination, owner: str, lease_seconds: float, batch: int,
                 poll_seconds: float, sender: Sender | None = None):
        super().__init__()
        self.thread_name = f"delivery-{destination.name}"
        self.engine, self.destination, self.owner = engine, destination, owner
        self.lease_seconds, self.batch, self.poll_seconds = lease_seconds, batch, poll_seconds
        self.sender = sender or sender_for(destination)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sent = self.run_once()
            except Exception:
                log.exception("delivery round failed", extra={"destination": self.destination.name})
                sent = 0
            if not sent and self.stopping.wait(self.poll_seconds):
                break
        self.sender.close()

    def _allowance(self) -> int:
        dest = self.destination
        if not dest.rate_limit:
            return self.batch
        with self.engine.connect() as conn:
            recent = store.delivered_recently(conn, dest.name, dest.rate_period_seconds)
        return max(0, min(self.batch, dest.rate_limit - recent))

    def run_once(self) -> int:
        """One leased batch; how many deliveries were attempted. The outcomes are recorded
        together after the batch: a crash before that sends the batch again, under the same keys."""
        allowance = self._allowance()
        if not allowance:
            return 0
        leased_at = time.monotonic()
        with self.engine.begin() as conn:
            claimed = store.claim(conn, self.destination.name, self.owner, self.lease_seconds, allowance,
                                  self.destination.held_back(datetime.now(timezone.utc)))
        sent: list[store.Claimed] = []
        failures: list[tuple[store.Claimed, DeliveryFailed]] = []
        for n, item in enumerate(claimed):
            # Stop well before the lease runs out, so no other worker sends these at the same time.
            if self.stopping.is_set() or time.monotonic() - leased_at > self.lease_seconds * 0.6:
                self._record(sent, failures, [c.outbox_id for c in claimed[n:]])
                return n
            try:
                self.sender.send(item.document)
                sent.append(item)
            except DeliveryFailed as exc:
                failures.append((item, exc))
        self._record(sent, failures, [])
        return len(claimed)

    def _record(self, sent: list[store.Claimed], failures: list[tuple[store.Claimed, DeliveryFailed]],
                unsent: list[int]) -> None:
        dest = self.destination
        with self.engine.begin() as conn:
            done = store.delivered(conn, dest.name, [item.outbox_id for item in sent])
            for item, exc in failures:
                give_up = exc.permanent or item.attempts >= dest.max_attempts
                retry_in = None if give_up else retry_delay(item.attempts, dest.backoff_seconds,
                                                            dest.max_backoff_seconds, exc.retry_after)
                store.failed(conn, dest.name, self.owner, item.outbox_id, str(exc), retry_in)
                ATTEMPTS.labels(dest.name, "dead" if give_up else "failed").inc()
                if give_up:
                    log.warning("delivery given up", extra={"destination": dest.name, "outbox_id": item.outbox_id,
                                                            "attempts": item.attempts, "error": str(exc)})
            store.release(conn, dest.name, self.owner, unsent)
        ATTEMPTS.labels(dest.name, "delivered").inc(len(sent))
        for item in sent:
            if item.outbox_id in done:
                DELAY.labels(dest.name).observe(max(0.0, (done[item.outbox_id] - item.created_at).total_seconds()))


class Upkeep(PeriodicWorker):
    """Keeps the gauges current and removes what was delivered longer ago than the retention."""

    thread_name = "delivery-upkeep"
    interval = 15.0
    run_at_start = True

    def __init__(self, engine: Engine, destinations: list[Destination], retention_days: int):
        super().__init__()
        self.engine, self.destinations, self.retention_days = engine, destinations, retention_days
        self._pruned_at: float | None = None

    def run_once(self) -> None:
        with self.engine.begin() as conn:
            if self._pruned_at is None or time.monotonic() - self._pruned_at > 3600:
                store.prune(conn, datetime.now(timezone.utc) - timedelta(days=self.retention_days))
                self._pruned_at = time.monotonic()
            counts = store.counts(conn)
            UNROUTED.set(store.unrouted(conn))
        for dest in self.destinations:
            for status in (store.PENDING, store.DEAD):
                QUEUED.labels(dest.name, status).set(counts.get((dest.name, status), 0))
