"""Profiles evaluator throughput against ingest, and the delay from commit to anomaly.

The ingest and profiles services run as processes (as in containers) against a
fresh database, every built-in profile enabled. A simulated organisation (with
its labelled attacks) is streamed through ingest; meanwhile the evaluator tails
the commits. Figures:

- ingest rate: events / time until the last batch is acknowledged (committed);
- evaluator rate while streaming: events / time until it has taken every event;
- evaluator capacity: a second evaluator process, started with no cursor on the
  full table, takes the whole backlog; events / time from READY to caught up;
- peak RSS of the profiles process (VmHWM) in each run, and the load average at the end;
- commit-to-anomaly delay of the live run: anomaly created_at minus ingested_at
  of its triggering event (the event at the anomaly's time for its user), p50/p95/max.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from bench import DATA
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import libpq_url

USERS = int(os.environ.get("BENCH_PROFILES_USERS", "200"))
DAYS = int(os.environ.get("BENCH_PROFILES_DAYS", "14"))
BATCH_SIZE = int(os.environ.get("BENCH_PROFILES_BATCH", "1000"))
TARGETS = {"evaluator_keeps_up_ratio_min": 1.0, "delay_p95_seconds_max": 0.5}  # as bench/summary.py

# Whether any event is not yet visible in the evaluator's cursor (at or after its xmax, or one of
# the transactions it saw running), as two index probes: a count over the whole table every 50 ms
# took a good part of a core from the evaluator and Postgres it measures.
BEHIND = """WITH c AS (SELECT snapshot::pg_snapshot AS s FROM profile_cursors WHERE consumer = 'evaluator')
    SELECT EXISTS (SELECT 1 FROM events WHERE txid >= pg_snapshot_xmax((SELECT s FROM c)))
        OR EXISTS (SELECT 1 FROM events WHERE txid = ANY(ARRAY(SELECT pg_snapshot_xip((SELECT s FROM c)))))"""
DELAYS = """SELECT EXTRACT(EPOCH FROM a.created_at - max(e.ingested_at))
    FROM anomalies a JOIN events e
      ON e.tenant = a.tenant AND e.user_name = a.user_name AND e.time = a.time
    GROUP BY a.id, a.created_at"""


def _events(users: int, days: int):
    from ueba.simulator import SimulationConfig, simulate

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sim = simulate(SimulationConfig(users=users, days=days, seed=5, start=today - timedelta(days=days + 1)))
    return list(sim.events()), len(sim.labels)


def _wait_caught_up(url: str, timeout: float = 900.0) -> float:
    """Waits until the evaluator's cursor covers every event; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM profile_cursors WHERE consumer = 'evaluator'").fetchone()
            if row[0] and not conn.execute(BEHIND).fetchone()[0]:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError("evaluator did not catch up")
            time.sleep(0.05)


def _peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), read before it is stopped."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(out_dir: Path) -> dict:
    from ueba.client.ingest import IngestClient
    from ueba.launcher import start_service
    from ueba.store.migrate import upgrade

    logs = out_dir / "profiles-bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with postgres_server(DATA / "bench") as server_url, scratch_database(server_url, "ueba_bench_profiles") as url:
        env = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_LOG_LEVEL": "WARNING",
               "UEBA_RETENTION_DAYS": "0"}
        upgrade(url)
        events, labels = _events(USERS, DAYS)
        ingest = start_service("ingest", env, log_path=logs / "ingest.log")
        profiles = start_service("profiles", {**env, "UEBA_PROFILES_POLL_SECONDS": "0.5"}, log_path=logs / "profiles.log")
        try:
            with psycopg.connect(libpq_url(url)) as conn:
                enabled = conn.execute("SELECT count(*), count(DISTINCT kind) FROM profiles WHERE enabled").fetchone()
            with IngestClient(ingest.address, batch_size=BATCH_SIZE) as client:
                started = time.perf_counter()
                totals = client.send(events)
                ingest_done = time.perf_counter()
            caught_up = _wait_caught_up(url)
            live_rss = _peak_rss_mib(profiles.process.pid)
        finally:
            profiles.stop()
            ingest.stop()
        ingest_seconds = ingest_done - started
        stream_seconds = caught_up - started
        with psycopg.connect(libpq_url(url)) as conn:
            delays = [float(r[0]) for r in conn.execute(DELAYS)]
            anomalies = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]
            # The capacity run starts from nothing: no cursor, so the whole table is a backlog.
            conn.execute("DELETE FROM profile_cursors")
            conn.commit()
        profiles = start_service("profiles", {**env, "UEBA_PROFILES_POLL_SECONDS": "0.5"}, log_path=logs / "profiles-2.log")
        backlog_start = time.perf_counter()  # from READY: process start-up is not evaluator work
        try:
            backlog_done = _wait_caught_up(url)
            backlog_rss = _peak_rss_mib(profiles.process.pid)
        finally:
            profiles.stop()
        capacity_seconds = backlog_done - backlog_start
        n = totals.accepted
        ingest_rate = n / ingest_seconds
        capacity = n / capacity_seconds
        result = {
            "users": USERS, "days": DAYS, "events": n, "labelled_attacks": labels,
            "profiles_enabled": enabled[0], "profile_kinds_enabled": enabled[1],
            "ingest_events_per_second": round(ingest_rate),
            "evaluator_events_per_second_while_streaming": round(n / stream_seconds),
            "evaluator_lag_after_last_commit_seconds": round(caught_up - ingest_done, 2),
            "evaluator_capacity_events_per_second": round(capacity),
            "evaluator_capacity_seconds": round(capacity_seconds, 1),
            "profiles_peak_rss_mib_while_streaming": live_rss,
            "profiles_peak_rss_mib_backlog": backlog_rss,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "anomalies": anomalies,
            "delay_seconds_p50": round(statistics.median(delays), 3) if delays else None,
            "delay_seconds_p95": round(_percentile(delays, 0.95), 3) if delays else None,
            "delay_seconds_max": round(max(delays), 3) if delays else None,
            "delays_measured": len(delays),
        }
        result["targets"] = TARGETS
        result["targets_met"] = bool(
            delays and capacity / ingest_rate >= TARGETS["evaluator_keeps_up_ratio_min"]
            and result["delay_seconds_p95"] < TARGETS["delay_p95_seconds_max"]
        )
        return result
