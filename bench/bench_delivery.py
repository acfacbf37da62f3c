"""Delivery of 1,000 findings to a webhook that fails 30% of its requests, with the shipped
back-off settings.

The delivery service runs as a process (as in its container) against a fresh database; the
findings are written through the one writer of findings (`ueba/store/anomalies.py`, 100 per
transaction as the profiles evaluator does), each with its outbox row. A local webhook
receiver checks every signature and answers 503 to 30% of requests at random. Figures:

- delivered: distinct findings the receiver accepted (all 1,000 is the target), duplicates
  (a finding accepted twice: same idempotency key), bad signatures;
- delay from the finding's commit to its acceptance, p50/p95/max over every finding;
- delay after recovery: for the findings whose first attempt failed, from that failure to
  the retry the receiver accepted, p50/p95/max: what back-off and jitter cost;
- the time to write the findings, from the first write to the last acceptance, and the load
  average at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import DATA
from ueba.store.databases import postgres_server, scratch_database

FINDINGS = int(os.environ.get("BENCH_DELIVERY_FINDINGS", "1000"))
FAIL_RATIO = float(os.environ.get("BENCH_DELIVERY_FAIL_RATIO", "0.3"))
TARGETS = {"all_delivered": True}


def _findings(n: int):
    from ueba.store.anomalies import AnomalyRecord

    now = datetime.now(timezone.utc)
    for i in range(n):
        at = now - timedelta(minutes=i % 600)
        yield AnomalyRecord(
            tenant="default", user=f"user{i % 200}", source="rule", profile_id="failed_logins",
            profile_name="failed logins", profile_kind="failed_logins", risk_score=20 + i % 70,
            description="repeated failed logons", dimension="authentication", time=at,
            window_start=at - timedelta(minutes=10), window_end=at, evidence={"count": 12}, dedup_key=uuid.uuid4().hex,
        )


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "max": round(ordered[-1], 3)}


def _write_all(url: str) -> float:
    from sqlalchemy import create_engine

    from ueba.store.anomalies import write_anomalies

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    started = time.time()
    batch = []
    for record in _findings(FINDINGS):
        batch.append(record)
        if len(batch) == 100:
            with engine.begin() as conn:
                write_anomalies(conn, batch)
            batch = []
    if batch:
        with engine.begin() as conn:
            write_anomalies(conn, batch)
    engine.dispose()
    return started


def run(out_dir: Path) -> dict:
    import psycopg

    from harness.receivers import SECRET, WebhookReceiver
    from ueba.db import libpq_url
    from ueba.launcher import start_service
    from ueba.store.migrate import upgrade

    logs = out_dir / "delivery-bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    receiver = WebhookReceiver(fail_ratio=FAIL_RATIO)
    hook = {"name": "soar", "type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "kinds": ["rule"]}
    with postgres_server(DATA / "bench") as server_url, scratch_database(server_url, "ueba_bench_delivery") as url:
        upgrade(url)
        service = start_service("delivery", {
            "DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_LOG_LEVEL": "WARNING",
            "UEBA_ANOMALY_LOG": "off", "HOOK_SECRET": SECRET, "UEBA_DELIVERY_DESTINATIONS": json.dumps([hook]),
        }, log_path=logs / "delivery.log")
        try:
            started = _write_all(url)
            written = time.time()
            deadline = time.monotonic() + 900
            while len(set(receiver.keys())) < FINDINGS and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            service.stop()
            receiver.close()
        with psycopg.connect(libpq_url(url)) as conn:
            created = {str(k): t.timestamp() for k, t in conn.execute("SELECT event_id, created_at FROM outbox WHERE kind = 'rule'")}
            dead = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'dead'").fetchone()[0]
    first_accept: dict[str, float] = {}
    for r in receiver.accepted:
        first_accept.setdefault(r.key, r.at)
    delivered = len(set(first_accept) & set(created))
    return {
        "findings": FINDINGS, "fail_ratio": FAIL_RATIO, "delivered": delivered, "dead": dead,
        "duplicates": len(receiver.accepted) - len(first_accept), "bad_signatures": receiver.bad_signatures,
        "requests": receiver.requests, "failed_requests": len(receiver.failed_keys),
        "commit_to_delivery_seconds": _quantiles([first_accept[k] - created[k] for k in first_accept if k in created]),
        "delay_after_recovery_seconds": _quantiles([first_accept[k] - t for k, t in receiver.first_failure.items()
                                                    if k in first_accept]),
        "write_seconds": round(written - started, 2),
        "first_write_to_last_delivery_seconds": round(max(first_accept.values(), default=started) - started, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "targets_met": delivered == FINDINGS and dead == 0,
    }
