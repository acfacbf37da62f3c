"""Building destinations and running the delivery workers in the test's own thread."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select

from services.delivery.destinations import Destination, parse_destination
from services.delivery.worker import DestinationWorker, Router
from harness.receivers import SECRET
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import deliveries

ENV = {"HOOK_SECRET": SECRET}


def webhook(url: str, name: str = "soar", **options) -> Destination:
    return parse_destination({"name": name, "type": "webhook", "url": url, "secret_env": "HOOK_SECRET",
                              "backoff_seconds": 0.05, "max_backoff_seconds": 0.2, **options}, ENV)


def finding(tenant: str = "default", *, user: str = "alice", score: int = 60, kind: str = "failed_logins",
            source: str = "rule") -> AnomalyRecord:
    at = datetime.now(timezone.utc) - timedelta(minutes=30)
    return AnomalyRecord(
        tenant=tenant, user=user, source=source, profile_id=kind, profile_name=kind.replace("_", " "), profile_kind=kind,
        risk_score=score, description=f"{kind} of {user}", dimension="authentication", time=at,
        window_start=at - timedelta(minutes=10), window_end=at, evidence={"count": 3}, dedup_key=uuid.uuid4().hex,
    )


def write(engine: Engine, *records: AnomalyRecord) -> None:
    with engine.begin() as conn:
        write_anomalies(conn, list(records))


def statuses(engine: Engine, destination: str) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(deliveries.c.outbox_id, deliveries.c.status)
                                 .where(deliveries.c.destination == destination)).all())


def deliver(engine: Engine, destinations: list[Destination], timeout: float = 30.0, lease: float = 30.0) -> None:
    """Routes, then runs every destination's worker until nothing is pending (or the timeout)."""
    Router(engine, destinations, batch=100, poll_seconds=0.1).run_once()
    workers = [DestinationWorker(engine, d, "test-worker", lease, batch=50, poll_seconds=0.05) for d in destinations]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in workers:
            w.run_once()
        if all("pending" not in statuses(engine, d.name).values() for d in destinations):
            break
        time.sleep(0.05)
    for w in workers:
        w.sender.close()
