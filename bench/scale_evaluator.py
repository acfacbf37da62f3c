"""Replica scaling of the profiles evaluator: events/s with one and with two replicas (for bench_scale).

A simulated organisation is stored once through ingest. Each measurement starts
from no cursor and no leases (the whole table is the backlog), starts the replicas
as `python -m services.profiles` processes, and times from the moment all are
ready until every bucket cursor and the global one cover every event. Per-user
detectors are split by bucket; the cross-user ones (failed logins with spray, rare
event, exfiltration with peer novelty) run in the one replica holding the global
bucket, which also reads every event for them: that replica's share bounds the
speed-up (see services/profiles/README.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg

from bench.bench_profiles import _events, _peak_rss_mib
from ueba.store.databases import scratch_database
from ueba.db import libpq_url

USERS = int(os.environ.get("BENCH_SCALE_EVALUATOR_USERS", "200"))
DAYS = int(os.environ.get("BENCH_SCALE_EVALUATOR_DAYS", "14"))
BUCKETS = 64
CURSORS = "consumer = 'evaluator' OR consumer LIKE 'evaluator/b%'"
BEHIND = """SELECT EXISTS (SELECT 1 FROM events WHERE txid >= pg_snapshot_xmax(%(s)s::pg_snapshot))
    OR EXISTS (SELECT 1 FROM events WHERE txid = ANY(ARRAY(SELECT pg_snapshot_xip(%(s)s::pg_snapshot))))"""


def _caught_up(conn: psycopg.Connection) -> bool:
    snapshots = [s for (s,) in conn.execute(f"SELECT DISTINCT snapshot FROM profile_cursors WHERE {CURSORS}")]
    count = conn.execute(f"SELECT count(*) FROM profile_cursors WHERE {CURSORS}").fetchone()[0]
    return count == BUCKETS + 1 and not any(conn.execute(BEHIND, {"s": s}).fetchone()[0] for s in snapshots)


def _measure(url: str, replicas: int, env: dict, logs: Path, events: int) -> dict:
    from ueba.launcher import start_service

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DELETE FROM profile_cursors")
        conn.execute("DELETE FROM anomalies")
        conn.execute("DELETE FROM work_lease_members WHERE pool LIKE 'profiles%'")
        conn.execute("DELETE FROM work_leases WHERE pool LIKE 'profiles%'")
    procs = []
    try:
        for i in range(replicas):
            procs.append(start_service("profiles", {
                **env, "UEBA_BUCKETS": str(BUCKETS), "UEBA_LEASE_TTL_SECONDS": "5", "UEBA_LEASE_HEARTBEAT_SECONDS": "0.5",
                "UEBA_PROFILES_POLL_SECONDS": "0.5",
            }, log_path=logs / f"profiles-{replicas}-{i}.log"))
        started = time.perf_counter()  # from READY: process start-up is not evaluator work
        deadline = time.monotonic() + 1800
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            while not _caught_up(conn):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{replicas} evaluator replicas did not catch up")
                time.sleep(0.1)
            seconds = time.perf_counter() - started
            held = [n for (n,) in conn.execute(
                "SELECT count(*) FROM work_leases WHERE pool = 'profiles' GROUP BY owner ORDER BY 1")]
            anomalies = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]
        rss = [_peak_rss_mib(p.process.pid) for p in procs]
    finally:
        for p in procs:
            p.stop()
    return {"replicas": replicas, "buckets_held": held, "seconds": round(seconds, 2),
            "events_per_second": round(events / seconds), "anomalies": anomalies, "peak_rss_mib": rss,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2)}


def evaluator_replicas(server: str, out_dir: Path) -> dict:
    """Stores the organisation in a database of its own on `server`; measures one and two replicas."""
    from ueba.client.ingest import IngestClient
    from ueba.launcher import start_service
    from ueba.store.migrate import upgrade

    logs = out_dir / "scale-evaluator-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with scratch_database(server, "ueba_bench_scale_evaluator") as url:
        env = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_LOG_LEVEL": "WARNING",
               "UEBA_RETENTION_DAYS": "0"}
        upgrade(url)
        events, _ = _events(USERS, DAYS)
        ingest = start_service("ingest", env, log_path=logs / "ingest.log")
        try:
            with IngestClient(ingest.address, batch_size=1000) as client:
                stored = client.send(events).accepted
        finally:
            ingest.stop()
        del events
        one = _measure(url, 1, env, logs, stored)
        two = _measure(url, 2, env, logs, stored)
    return {"users": USERS, "days": DAYS, "events": stored, "buckets": BUCKETS, "one_replica": one, "two_replicas": two,
            "speedup": round(two["events_per_second"] / one["events_per_second"], 2),
            "same_anomalies": one["anomalies"] == two["anomalies"]}
